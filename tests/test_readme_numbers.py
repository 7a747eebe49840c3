"""Every result quoted in README.md and docs/results.md comes from a committed file, and agrees with it to the digits printed:
the base's full eval (reports/base_eval/eval.json), the teachers-vs-base table (reports/teachers_vs_base/*/
compare.json), the released student's final eval (checkpoints/opd_student/config.json) and the 3-seed
comparison table (reports/default_3seed/report.json)."""
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: the README and the dated results log it links to (docs/results.md): every number quoted in either
README = (ROOT / "README.md").read_text() + "\n" + (ROOT / "docs" / "results.md").read_text()
NUM = r"(-?\d+\.\d+)"
TASK_NAMES = {"aesthetic": "aesthetic", "GenEval": "geneval", "OCR": "ocr", "preference": "preference"}
METHOD_ROWS = {"DiffusionOPD": "opd", "multi-reward RL": "multi-reward", "cascade RL": "cascade"}


def r3(x):
    return f"{x:.3f}"


def md_table(header_start: str):
    """The rows (lists of cells) of the README's Markdown table whose header starts with ``header_start``."""
    lines = README.splitlines()
    for i, line in enumerate(lines):
        if line.strip().startswith(header_start):
            header = [c.strip() for c in line.strip().strip("|").split("|")]
            rows = []
            for row in lines[i + 2:]:
                if not row.strip().startswith("|"):
                    break
                rows.append([c.strip() for c in row.strip().strip("|").split("|")])
            return header, rows
    raise AssertionError(f"README has no table starting {header_start!r}")


def test_base_full_eval_numbers_come_from_reports_base_eval():
    ev = json.loads((ROOT / "reports" / "base_eval" / "eval.json").read_text())["tasks"]
    m = re.search(r"aesthetic {0} \[{0}, {0}\], GenEval {0}\s+\[{0}, {0}\] \(single object {0}, two objects {0}, "
                  r"counting {0}, colours {0}, position {0}, colour\s+attribution {0}\), OCR {0} \[{0}, {0}\] "
                  r"\({0}% exact\), preference {0} \[{0}, {0}\]".format(NUM), README)
    assert m, "README's base eval sentence changed: update this test with it"
    g = [float(x) for x in m.groups()]
    expect = []
    for t in ("aesthetic", "geneval"):
        expect += [ev[t]["mean"], ev[t]["ci_low"], ev[t]["ci_high"]]
    cats = ev["geneval"]["categories"]
    expect_cats = [cats[c]["mean"] for c in ("single_object", "two_object", "counting", "colors", "position", "color_attr")]
    expect_ocr = [ev["ocr"]["mean"], ev["ocr"]["ci_low"], ev["ocr"]["ci_high"], 100 * ev["ocr"]["metrics"]["exact"]]
    expect_pref = [ev["preference"]["mean"], ev["preference"]["ci_low"], ev["preference"]["ci_high"]]
    assert g[:6] == pytest.approx([round(x, 3) for x in expect], abs=1e-9)
    assert g[6:12] == pytest.approx([round(x, 2) for x in expect_cats], abs=1e-9)
    assert g[12:15] == pytest.approx([round(x, 3) for x in expect_ocr[:3]], abs=1e-9)
    assert g[15] == pytest.approx(round(expect_ocr[3], 1), abs=1e-9)
    assert g[16:] == pytest.approx([round(x, 3) for x in expect_pref], abs=1e-9)


def test_teachers_vs_base_table_comes_from_the_committed_comparisons():
    header, rows = md_table("| task | base | teacher | diff | 95% CI | verdict |")
    assert len(rows) == 4
    for task, base, teacher, diff, ci, verdict in rows:
        t = TASK_NAMES[task]
        c = json.loads((ROOT / "reports" / "teachers_vs_base" / t / "compare.json").read_text())["tasks"][t]
        assert (base, teacher) == (r3(c["base"]), r3(c["candidate"]))
        assert diff == f"{c['diff']:+.3f}" and ci == f"[{c['ci_low']:+.3f}, {c['ci_high']:+.3f}]"
        assert ("beats the base" in verdict) == (c["verdict"] == "better")


def test_released_student_final_eval_is_its_checkpoints():
    rel = json.loads((ROOT / "checkpoints" / "opd_student" / "config.json").read_text())["release"]["final_eval"]
    m = re.search(r"Its final eval \(64 prompts per task, one image each\): aesthetic {0}, GenEval {0}, OCR {0},\s+"
                  r"preference {0}".format(NUM), README)
    assert m, "README's student final-eval sentence changed: update this test with it"
    assert list(m.groups()) == [r3(rel[t]) for t in ("aesthetic", "geneval", "ocr", "preference")]


def test_three_seed_table_comes_from_reports_default_3seed():
    rep = json.loads((ROOT / "reports" / "default_3seed" / "report.json").read_text())
    header, rows = md_table("| method | aesthetic | GenEval | OCR | preference |")
    tasks = [TASK_NAMES[h] for h in header[1:5]]
    by_name = {r[0]: r for r in rows}
    assert by_name["base"][1:5] == [r3(rep["base"][t]["mean"]) for t in tasks]
    assert by_name["teachers"][1:5] == [r3(rep["teachers"][t]["mean"]) for t in tasks]
    for name, key in METHOD_ROWS.items():
        row, ft = by_name[name], rep["final_table"][key]
        for cell, t in zip(row[1:5], tasks):
            d = ft["tasks"][t]
            assert cell == f"{r3(d['mean'])} [{r3(d['ci'][0])}, {r3(d['ci'][1])}]"
            assert d["n"] == 3 and d["ci_over"] == "seeds"
        avg = ft["normalized_avg"]
        assert row[5] == f"{r3(avg['mean'])} [{r3(avg['ci'][0])}, {r3(avg['ci'][1])}]"
        assert row[6] == str(ft["rank"])
    # the prose quotes the same base and teacher numbers on the student's 64 prompts
    base = " / ".join(r3(rep["base"][t]["mean"]) for t in tasks)
    teach = " / ".join(r3(rep["teachers"][t]["mean"]) for t in tasks)
    assert f"The base scores {base} on the same prompts; the teachers {teach}" in " ".join(README.split())


@pytest.mark.parametrize("name,pattern", [
    ("teacher_geneval", r"for (\d+) images, releasing the\s+weights' EMA, (\d+) min \((\d+) s in its ledger"),
    ("teacher_preference", r"Preference: the same recipe for (\d+) images, releasing the weights' EMA, (\d+) h (\d+) min"),
    ("teacher_ocr", r"\(released\), (\d+) images, (\d+) min\."),
    ("teacher_aesthetic", r"Aesthetic: 4 prompts per step, (\d+) images, (\d+) min\."),
    ("opd_student", r"It took (\d+\.\d) min \((\d+) s in its ledger\)"),
])
def test_released_budgets_and_times_are_their_ledgers(name, pattern):
    led = json.loads((ROOT / "checkpoints" / name / "config.json").read_text())["release"]["ledger"]["train"]
    m = re.search(pattern, README)
    assert m, f"README's sentence on {name} changed: update this test with it"
    g = m.groups()
    if name == "opd_student":
        assert float(g[0]) == round(led["seconds"] / 60, 1) and int(g[1]) == round(led["seconds"])
        return
    assert int(g[0]) == led["images"]
    minutes = int(g[1]) * 60 + int(g[2]) if name == "teacher_preference" else int(g[1])
    assert minutes == pytest.approx(led["seconds"] / 60, abs=0.5 if name != "teacher_preference" else 5)
    if name == "teacher_geneval":
        assert int(g[2]) == pytest.approx(led["seconds"], abs=5)


def test_what_to_expect_times_are_the_recorded_ones():
    """The README's Time bullet quotes benchmarks/RESULTS.md's idle-core measurements (main_job.py's default row,
    eval_time.py's two-thread line) to the digits printed."""
    text = " ".join(README.split())
    results = " ".join((ROOT / "benchmarks" / "RESULTS.md").read_text().split())
    m = re.search(r"the main job takes about \*\*(\d+) min\*\* of wall time: 2,000 training images at (\d+\.\d) "
                  r"images/s \((\d+\.\d) min\)", text)
    assert m, "README's 'What to expect' time sentence changed: update this test with it"
    job_min, rate, train_min = int(m.group(1)), float(m.group(2)), float(m.group(3))
    row = re.search(r"\| fused \(`opd\.student_from_rollout=true`, the default since\) \|(.*?)\|\| ", results + "||| ")
    cells = [c.strip() for c in row.group(1).split("|")]
    assert rate == round(float(cells[4]), 1) and train_min == round(2000 / float(cells[4]) / 60, 1)
    assert job_min == round(float(cells[9].strip("*").split()[0]))
    m = re.search(r"default `--protocol full`: 6,400 images, docs/evaluation\.md\) takes about \*\*(\d+\.\d) min\*\* "
                  r"\((\d\.\d)-(\d\.\d) images/s per task\)", text)
    assert m, "README's full-evaluation time sentence changed: update this test with it"
    e = re.search(r"`OMP_NUM_THREADS=2 python benchmarks/eval_time\.py --images 32`: aesthetic (\d+\.\d+), geneval "
                  r"(\d+\.\d+), ocr (\d+\.\d+), preference (\d+\.\d+) images/s; one full evaluation \(6,400 images\) "
                  r"projects to \*\*(\d+\.\d) min\*\*", results)
    rates = [float(x) for x in e.groups()[:4]]
    assert m.group(1) == e.group(5)
    assert (float(m.group(2)), float(m.group(3))) == (round(min(rates), 1), round(max(rates), 1))

def test_full_protocol_teachers_vs_base_table_is_its_report_and_recomputes_from_the_shipped_evals():
    """README's full-protocol teacher table is reports/teachers_vs_base_full (scripts/teachers_vs_base_full.py),
    and that report is what the shipped full-protocol evaluations give today (no sampling: they are shipped)."""
    import importlib.util

    doc = json.loads((ROOT / "reports" / "teachers_vs_base_full" / "table.json").read_text())
    header, rows = md_table("| task | scored by | prompts x seeds | base | teacher |")
    assert [r[0] for r in rows] == list(doc["tasks"])
    for cells in rows:
        r = doc["tasks"][cells[0]]
        assert cells[3:5] == [r3(r["base"]), r3(r["teacher"])]
        assert cells[5] == f"{r['gain']:+.3f} [{r['low']:+.3f}, {r['high']:+.3f}]" and cells[6] == r3(r["mde"])
        assert ("beats the base" in cells[7]) == r["beats_base_beyond_mde"] == (r["gain"] > r["mde"])
    spec = importlib.util.spec_from_file_location("tvb", ROOT / "scripts" / "teachers_vs_base_full.py")
    tvb = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tvb)
    fresh = json.loads(json.dumps(tvb.table()))
    assert fresh["protocol"] == doc["protocol"]
    for t, r in doc["tasks"].items():
        for k, v in r.items():
            assert fresh["tasks"][t][k] == (pytest.approx(v, abs=1e-9) if isinstance(v, float) else v), (t, k)


def test_claims_and_default_comparison_tables_are_the_committed_reports():
    """README's claims table and its default-comparison table are what scripts/readme_results.py generates from
    reports/claims/claims.json and reports/default_5seed/report.json, line for line; the campaign's run count and
    CPU hours quoted beside them are claims.json's."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("readme_results", ROOT / "scripts" / "readme_results.py")
    rr = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(rr)
    doc = json.loads(rr.CLAIMS.read_text())
    text = (ROOT / "README.md").read_text()
    for line in rr.claims_table(doc) + rr.comparison_table(json.loads(rr.DEFAULT.read_text()), doc):
        assert line in text, line
    flat = " ".join(text.split())
    for name, value in rr.prose_numbers(json.loads(rr.DEFAULT.read_text()), doc).items():
        assert value in flat, (name, value)    # the "what changed" paragraph's numbers
    done = len(doc["runs"]["done"])
    assert f"**Where the campaign stands**: {done} of its 45 runs are finished" in flat
    assert f"{doc['cpu_hours']:.1f} CPU hours recorded so far" in flat
    # the comparison's runs are the claims' runs: the same seeds per method
    rep = json.loads(rr.DEFAULT.read_text())
    for m in rr.METHODS:
        assert sorted(rep["final_table"][m]["seeds"]) == sorted(
            int(r.rsplit("/s", 1)[1]) for r in doc["runs"]["done"] if r.startswith(f"{m}/"))
