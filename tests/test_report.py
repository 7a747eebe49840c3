"""``opd-bench report`` on tiny real runs (cascade and OPD on a test task + GenEval): every section's numbers
are checked against the runs' own files, the page is self-contained, and a non-run folder is one clear error."""
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from tiny_world import make_tiny_world

from opd_bench.analysis import normalize
from opd_bench.cli import main
from opd_bench.config import build_config
from opd_bench.methods import METHODS
from opd_bench.report import SECTIONS, ci_ranks, seeds_cell
from opd_bench.runner import Runner
from opd_bench.tasks import register_task, registry
from opd_bench.tasks.base import Task

TASKS = ["rpt_glow", "geneval"]
ROOT = Path(__file__).resolve().parents[1]

if "rpt_glow" not in registry():

    @register_task("rpt_glow")
    class Glow(Task):
        """Test-only task with a learned-reward-like pair of metrics: proxy = brightness, gold = closeness of the
        brightness to 0.6 (so the proxy can be over-optimised)."""

        def prompts(self, split):
            return [{"prompt": f"a glowing image number {i}"} for i in range(8 if split == "train" else 4)]

        def reward(self, images, records):
            return images.mean(dim=(1, 2, 3))

        def metrics(self, images, records):
            b = self.reward(images, records)
            return {"score": b, "gold": 1 - (b - 0.6).abs()}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    d = tmp_path_factory.mktemp("report")
    make_tiny_world(d)
    exp = d / "runs" / "exp"
    for method in ("cascade", "opd"):
        over = [f"method={method}", f"tasks={','.join(TASKS)}", f"model.checkpoint={d / 'base'}", "name=exp",
                "sampler.steps=2", "sampler.guidance=2.0", "train.prompts_per_step=2", "grpo.group_size=2",
                "eval.steps=2", "eval.prompts_per_task=4", "eval.bootstrap=50", "eval.guidance=2.0",
                "eval.every=1", "budget.value=12", "train.checkpoint_every=1", "train.lr=3e-3", "grpo.beta=0"]
        over += [f"opd.teachers.{t}={d / 'teacher'}" for t in TASKS]
        Runner(build_config({}, over), exp / f"{method}_s0", METHODS[method](), TASKS, show_progress=False,
               log_tensorboard=False).run()
    old = os.environ.get("OPD_BENCH_EVAL_CACHE")
    os.environ["OPD_BENCH_EVAL_CACHE"] = str(d / "eval_cache")  # the teachers' evals are cached here
    yield d
    if old is None:
        os.environ.pop("OPD_BENCH_EVAL_CACHE")
    else:
        os.environ["OPD_BENCH_EVAL_CACHE"] = old


@pytest.fixture(scope="module")
def report(runs):
    out = runs / "reports" / "exp"
    code = main(["report", str(runs / "runs" / "exp"), "--out", str(out), "--samples", "1"])
    assert code == 0
    return out


def _hist(run):
    return [json.loads(l) for l in (run / "eval_history.jsonl").read_text().splitlines()]


def test_report_files_and_self_contained_html(report):
    html = (report / "report.html").read_text()
    md = (report / "report.md").read_text()
    for s in SECTIONS:
        assert f">{s}</h2>" in html and f"## {s}" in md
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, re.I)
    assert "<link" not in html and "@import" not in html and "<script" not in html
    assert html.count('src="data:image/png;base64,') >= 5  # curves, interference, hacking, samples per task
    for png in ("curves.png", "interference.png", "hacking.png", "samples_rpt_glow.png", "samples_geneval.png"):
        assert (report / png).is_file() and f"]({png})" in md
    assert "opd-bench analyze variance" in html  # no variance results yet: the section says how


def test_final_table_matches_summaries_and_ledgers(runs, report):
    data = json.loads((report / "report.json").read_text())
    html = (report / "report.html").read_text()
    for method in ("cascade", "opd"):
        run = runs / "runs" / "exp" / f"{method}_s0"
        summary = json.loads((run / "summary.json").read_text())
        row = data["final_table"][method]
        for t in TASKS:
            v = summary["final"]["scores"][t]
            assert row["tasks"][t]["mean"] == pytest.approx(v)
            assert row["tasks"][t]["ci"] == pytest.approx(summary["final"]["ci"][t])
            assert f"{v:.3f} [" in html
        ledger = json.loads((run / "ledger.json").read_text())
        assert row["budget"]["spent"] == pytest.approx(ledger["spent"]["train"]["images"])
        base = {t: data["base"][t]["mean"] for t in data["base"]}
        teach = {t: data["teachers"][t]["mean"] for t in data["teachers"]}
        norm = [normalize(summary["final"]["scores"][t], base.get(t), teach.get(t)) for t in TASKS]
        assert row["normalized_avg"]["mean"] == pytest.approx(np.mean(norm))
    # the base is the runs' start eval; the teacher was evaluated (same protocol) through the eval cache
    start = _hist(runs / "runs" / "exp" / "opd_s0")[0]
    assert data["base"]["rpt_glow"]["mean"] == pytest.approx(start["scores"]["rpt_glow"])
    assert set(data["teachers"]) == set(TASKS)


def test_forgetting_matches_a_hand_computation(runs, report):
    data = json.loads((report / "report.json").read_text())
    base = {t: data["base"][t]["mean"] for t in data["base"]}
    teach = {t: data["teachers"][t]["mean"] for t in data["teachers"]}
    by_label = {f["label"]: f for f in data["forgetting"]}
    # cascade: checkpoints = end of stage 0, final; tasks in stage order
    hist = _hist(runs / "runs" / "exp" / "cascade_s0")
    rows = [h for h in hist if h["label"] == "end of stage 0"] + [h for h in hist if h["label"] == "final"]
    assert len(rows) == 2
    R = np.array([[normalize(h["scores"][t], base.get(t), teach.get(t)) for t in TASKS] for h in rows])
    f = by_label["cascade"]
    # F counts only checkpoints after the task was first trained: the stage-0 task from its stage's end; the
    # last stage's task has no earlier checkpoint (None)
    assert f["forgetting"][TASKS[0]] == pytest.approx(R[0, 0] - R[1, 0])
    assert f["forgetting"][TASKS[1]] is None
    assert f["bwt"] == pytest.approx(R[1, 0] - R[0, 0])
    # opd: every eval point of the run
    hist = _hist(runs / "runs" / "exp" / "opd_s0")
    pts = {}
    for h in hist:
        pts[(h["round"], json.dumps(h["budget"], sort_keys=True))] = h
    R = np.array([[normalize(h["scores"][t], base.get(t), teach.get(t)) for t in TASKS] for h in pts.values()])
    labels = [h["label"] for h in pts.values()]
    first = labels.index(next(lab for lab in labels if lab != "start"))   # checkpoints after start only
    for i, t in enumerate(TASKS):
        expect = R[first:-1, i].max() - R[-1, i] if first < len(labels) - 1 else None
        assert by_label["opd"]["forgetting"][t] == (pytest.approx(expect) if expect is not None else None)
    assert by_label["opd"]["bwt"] is None


def test_interference_hacking_and_statistics_sections(runs, report):
    data = json.loads((report / "report.json").read_text())
    for method, objective in (("opd", "opd"), ("cascade", "grpo")):
        r = data["interference"][method]
        C = np.array(r["cosine"])
        n = np.array([r["grad_norms"][t] for t in r["tasks"]])
        assert r["objective"] == objective and C.shape == (2, 2) and np.allclose(np.diag(C)[n > 0], 1)
        assert r["conflict_rate"] == float(C[0, 1] < 0)
        # a task whose rewards are all equal in the batch has a zero GRPO gradient: imbalance infinite (null)
        assert r["magnitude_imbalance"] == (pytest.approx(n.max() / n.min()) if n.min() > 0 else None)
        assert (runs / "runs" / "exp" / f"{method}_s0" / "final").is_dir()
        cb = r["conflict_over_batches"]   # 8 fresh batches: an interval and a verdict for the one task pair
        assert cb["batches"] == 8 and cb["pair_verdicts"][0][1] in ("conflict", "aligned", "indistinguishable from 0")
        lo, hi = cb["cosine_low"][0][1], cb["cosine_high"][0][1]
        if lo is not None and hi is not None:
            assert lo <= cb["cosine_debiased"][0][1] <= hi
            assert (cb["pair_verdicts"][0][1] == "conflict") == (hi < 0)
    md = (report / "report.md").read_text()
    assert "resolved conflicts (8 batches)" in md and "same-task cosine (noise floor)" in md
    hist = _hist(runs / "runs" / "exp" / "opd_s0")
    s = data["hacking"]["opd s0"]["series"]["rpt_glow"]
    assert s["proxy"][-1] == pytest.approx(hist[-1]["metrics"]["rpt_glow"]["score"])
    assert s["gold"][-1] == pytest.approx(hist[-1]["metrics"]["rpt_glow"]["gold"])
    neg = data["negative_transfer"]["opd"]
    for t in TASKS:
        assert neg[t] == pytest.approx(data["final_table"]["opd"]["tasks"][t]["mean"] - data["teachers"][t]["mean"])
    poi = data["probability_of_improvement"]
    assert poi["opd"]["cascade"] + poi["cascade"]["opd"] == pytest.approx(1.0)


def test_ranks_separate_only_disjoint_cis():
    assert ci_ranks({"a": (0.5, 0.7), "b": (0.1, 0.3), "c": (0.25, 0.55)}) == {"a": 1, "b": 2, "c": 1}


def test_variance_cli_feeds_the_report(runs, capsys):
    run = runs / "runs" / "exp" / "opd_s0"
    code = main(["analyze", "variance", "--checkpoint", str(run), "--tasks", "rpt_glow", "--k", "2",
                 "--batch-sizes", "2"])
    assert code == 0, capsys.readouterr().err
    v = json.loads((run / "variance" / "variance.json").read_text())
    res = v["results"]["rpt_glow"]
    assert set(v["estimators"]) == {"opd_ode", "opd_sde", "opd_ppo", "grpo"}
    for e in v["estimators"]:
        assert res[e]["k"] == 2 and res[e]["V"] is not None and set(res[e]["by_batch_size"]) == {"2"}
        assert len(res[e]["per_step"]) >= 1
    assert (run / "variance" / "variance_overall.png").is_file()
    out = runs / "reports" / "with_variance"
    assert main(["report", str(run), "--out", str(out), "--no-interference", "--samples", "0"]) == 0
    md = (out / "report.md").read_text()
    assert "variance0_overall.png" in md and (out / "variance0_per_step.png").is_file()
    assert "opd-bench analyze variance --checkpoint" not in md


def test_non_run_folder_is_one_clear_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: not a run folder") and "\n" not in err
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert main(["analyze", "variance", "--checkpoint", str(tmp_path / "missing")]) == 2


def test_multi_seed_table_uses_seed_cis_iqm_and_ci_separated_ranks(tmp_path):
    from opd_bench.analysis import RunInfo
    from opd_bench.report import final_table, group_runs, improvement_matrix
    from opd_bench.stats import iqm

    def fake(method, seed, a, b):
        cfg = build_config({}, [f"method={method}", "tasks=rpt_glow,geneval", f"seed={seed}"])
        final = {"scores": {"rpt_glow": a, "geneval": b}, "ci": {"rpt_glow": [a, a], "geneval": [b, b]}}
        return RunInfo(path=tmp_path / f"{method}_s{seed}", cfg=cfg, history=[], metrics=[],
                       ledger={"budget": {"unit": "images", "value": 8}, "spent": {"train": {"images": 8.0}}},
                       summary={"final": final}, label=method)

    runs = [fake("opd", s, 0.9 + 0.01 * s, 0.8) for s in range(3)] + \
           [fake("cascade", s, 0.3 + 0.01 * s, 0.2) for s in range(3)] + \
           [fake("multi-reward", s, 0.85 + 0.1 * s, 0.75) for s in range(3)]
    base = {"rpt_glow": {"mean": 0.1}, "geneval": {"mean": 0.0}}
    teachers = {"rpt_glow": {"mean": 1.1}, "geneval": {"mean": 1.0}}
    rows = final_table(group_runs(runs), base, teachers, n_boot=500)
    opd = rows["opd"]
    assert opd["tasks"]["rpt_glow"]["ci_over"] == "seeds" and opd["tasks"]["rpt_glow"]["n"] == 3
    norm = [v - 0.1 for v in (0.9, 0.91, 0.92)] + [0.8] * 3
    assert opd["normalized_avg"]["mean"] == pytest.approx((np.mean(norm[:3]) + 0.8) / 2)
    assert opd["iqm"] == pytest.approx(iqm(norm))
    lo, hi = opd["normalized_avg"]["ci"]
    assert lo <= opd["normalized_avg"]["mean"] <= hi
    # opd and multi-reward overlap (tie at 1); cascade is separated below both
    assert rows["opd"]["rank"] == 1 and rows["multi-reward"]["rank"] == 1 and rows["cascade"]["rank"] == 3
    poi = improvement_matrix(rows)
    assert poi["opd"]["cascade"] == 1.0 and poi["cascade"]["opd"] == 0.0


def test_report_records_every_runs_config_and_what_differs(runs, report):
    import yaml

    data = json.loads((report / "report.json").read_text())
    for path, cfg in data["run_configs"].items():
        assert cfg == yaml.safe_load((Path(path) / "config.yaml").read_text())
    diffs = data["config_differences"]
    assert set(diffs["method"].values()) == {"opd", "cascade"}           # the runs are one opd, one cascade
    assert "seed" not in diffs and "name" not in diffs
    assert all(len({repr(v) for v in d.values()}) > 1 for d in diffs.values())
    assert "| method |" in (report / "report.md").read_text()


def test_report_states_signs_and_seed_counts_consistently(runs, report):
    html = (report / "report.html").read_text()
    md = (report / "report.md").read_text()
    assert html.count("Reading the signs:") >= 5 and md.count("**Reading the signs:**") >= 5
    assert "F &lt; 0 means the final checkpoint is the run&#x27;s best" in html
    data = json.loads((report / "report.json").read_text())
    for lab, row in data["final_table"].items():        # the final and statistics tables show the same cell
        cell = f"<td>{seeds_cell(row['seeds'])}</td>"
        assert html.count(cell) >= 2 and cell == "<td>1 (seed 0)</td>"


def test_heatmap_text_colour_follows_cell_luminance():
    import matplotlib

    from opd_bench.analysis.interference import text_colour

    cmap = matplotlib.colormaps["RdBu"]
    assert text_colour(cmap(0.0)) == "white" and text_colour(cmap(1.0)) == "white"   # dark red, dark blue
    assert text_colour(cmap(0.5)) == "black"                                           # near white
    assert text_colour((1, 1, 0, 1)) == "black" and text_colour((0, 0, 0.5, 1)) == "white"


def test_wide_figures_scroll_at_their_own_size(tmp_path):
    from PIL import Image

    from opd_bench.report import PAGE_WIDTH_PX, Doc, png_width

    for w in (600, 2380):
        Image.new("RGB", (w, 40)).save(tmp_path / f"w{w}.png")
        assert png_width((tmp_path / f"w{w}.png").read_bytes()) == w
    doc = Doc(tmp_path, "t")
    doc.image(tmp_path / "w600.png", "narrow")
    doc.image(tmp_path / "w2380.png", "wide")
    assert 2380 > PAGE_WIDTH_PX >= 600
    assert doc.html[0].startswith("<figure><img") and doc.html[1].startswith('<figure class="wide"><img')
    assert "figure.wide{overflow-x:auto}figure.wide img{max-width:none}" in doc.render_html()


def test_curves_carry_the_per_round_training_signal(runs):
    from opd_bench.analysis import forgetting as fg
    from opd_bench.analysis import label_runs, load_run

    run = load_run(runs / "runs" / "exp" / "opd_s0")
    label_runs([run])
    metrics = [json.loads(l) for l in (run.path / "metrics.jsonl").read_text().splitlines()]
    sig = fg.curves(run)["train"]["rpt_glow"]
    assert sig["kind"] == "distillation loss" and sig["y"] == [m["loss/rpt_glow"] for m in metrics]
    assert fg.smooth([1.0, 3.0, 5.0], 2).tolist() == [1.0, 2.0, 4.0]


@pytest.mark.skipif(not any(shutil.which(c) for c in ("chromium", "chromium-browser", "google-chrome")),
                    reason="no Chromium on PATH (apt-get install -y chromium)")
def test_report_page_reads_well_in_headless_chromium(report, tmp_path, capsys):
    """The page as a browser shows it: every figure at >= 90% of its pixel width, sign notes, no external
    request, a non-blank full-page screenshot (scripts/report_screenshot.py)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("report_screenshot", ROOT / "scripts" / "report_screenshot.py")
    shot = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(shot)
    assert shot.main([str(report / "report.html"), "--out", str(tmp_path)]) == 0, capsys.readouterr().out
    out = capsys.readouterr().out
    assert "FAIL" not in out and out.count("PASS  figure legible") >= 5
    measured = json.loads((tmp_path / "measure.json").read_text())
    assert all(f["shown"] >= 0.9 * f["natural"] for f in measured["figures"])
    assert (tmp_path / "report.png").stat().st_size > 10_000
