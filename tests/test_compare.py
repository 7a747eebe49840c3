"""`opd-bench compare`: paired, per-prompt comparison of two evaluations (teacher vs base)."""
import json

import numpy as np
import pytest
from opd_bench.cli import main
from opd_bench.compare import compare, compare_task
from opd_bench.errors import UserError


def _eval(rows, seed=1234, task="aesthetic", steps=40):
    return {"protocol": {"steps": steps, "guidance": 4.5, "shift": 1.0, "seed": seed},
            "tasks": {task: {"per_prompt": [{"prompt": p, "score": s} for p, s in rows]}}, "_path": f"seed{seed}"}


def test_pairing_removes_prompt_difficulty():
    """A small constant gain under large per-prompt spread: unpaired CIs overlap, the paired CI excludes 0."""
    rng = np.random.default_rng(0)
    hard = rng.uniform(0, 1, 200)
    base = _eval([(f"p{i}", h) for i, h in enumerate(hard)])
    cand = _eval([(f"p{i}", h + 0.03 + rng.normal(0, 0.01)) for i, h in enumerate(hard)])
    r = compare_task("aesthetic", [base], [cand], margin=0.02)
    assert r.diff == pytest.approx(0.03, abs=0.003)
    assert 0 < r.ci_low < 0.03 < r.ci_high < 0.04
    assert r.verdict == "better" and r.wins > 0.9
    # the same gain is "no clear difference" when the margin asks for more
    assert compare_task("aesthetic", [base], [cand], margin=0.05).verdict == "no clear difference"
    # and "worse" the other way round
    assert compare_task("aesthetic", [cand], [base]).verdict == "worse"


def test_seeds_are_averaged_per_prompt_and_categories_are_stratified():
    rows_a = [("a1", 0.0), ("a2", 1.0), ("b1", 0.0)]
    rows_b = [("a1", 1.0), ("a2", 1.0), ("b1", 0.0)]
    base = [_eval(rows_a, seed=1), _eval(rows_b, seed=2)]       # per prompt: a1 0.5, a2 1, b1 0
    cand = [_eval([("a1", 1.0), ("a2", 1.0), ("b1", 1.0)], seed=1)]
    r = compare_task("aesthetic", base, cand, categories={"a1": "A", "a2": "A", "b1": "B"})
    # category means: base A 0.75, B 0 -> 0.375; candidate 1, 1 -> 1; GenEval-style mean of categories
    assert r.base == pytest.approx(0.375) and r.candidate == pytest.approx(1.0)
    assert r.categories["A"]["diff"] == pytest.approx(0.25) and r.categories["B"]["n"] == 1
    with pytest.raises(UserError, match="same seed"):
        compare_task("aesthetic", [_eval(rows_a), _eval(rows_b)], cand)
    with pytest.raises(UserError, match="different prompt sets"):
        compare_task("aesthetic", base, [_eval(rows_a[:2])])


def test_compare_cli_on_real_evaluations(tmp_path):
    """Real `opd-bench eval` output: the released base against itself is an exact tie; the released aesthetic
    teacher beats the base on aesthetic (its own task) with a CI above zero."""
    for name in ("base", "teacher_aesthetic"):
        assert main(["eval", "--checkpoint", name, "--tasks", "aesthetic", "--prompts", "24",
                     "--steps", "12", "--out", str(tmp_path / name)]) == 0
    assert main(["eval", "--checkpoint", "base", "--tasks", "aesthetic", "--prompts", "24",
                 "--steps", "12", "--seed", "7", "--out", str(tmp_path / "base7")]) == 0

    same = compare([tmp_path / "base"], [tmp_path / "base"])
    assert same["tasks"]["aesthetic"]["diff"] == 0 and same["tasks"]["aesthetic"]["verdict"] == "no clear difference"

    # the candidate has one seed, the base two: still paired by prompt
    assert main(["compare", "-b", str(tmp_path / "base"), "-b", str(tmp_path / "base7"),
                 "-c", str(tmp_path / "teacher_aesthetic"), "--out", str(tmp_path / "cmp")]) == 0
    out = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    a = out["tasks"]["aesthetic"]
    assert out["seeds"] == {"base": [1234, 7], "candidate": [1234]}
    assert a["n_prompts"] == 24 and a["verdict"] == "better" and a["ci_low"] > 0
    assert "| aesthetic | 24 |" in (tmp_path / "cmp" / "compare.md").read_text()


@pytest.mark.parametrize("make_args, needle", [
    (lambda d: ["-b", str(d / "missing"), "-c", str(d / "x")], "no eval.json"),
    (lambda d: ["-b", str(d / "bad"), "-c", str(d / "bad")], "not a readable eval.json"),
    (lambda d: ["-b", str(d / "s40"), "-c", str(d / "s20")], "eval protocol"),
    (lambda d: ["-b", str(d / "s40"), "-c", str(d / "s40"), "--tasks", "geneval"], "not evaluated"),
])
def test_compare_bad_input_is_one_line_exit_2(tmp_path, make_args, needle, capsys):
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "eval.json").write_text("{not json")
    for name, steps in (("s40", 40), ("s20", 20)):
        (tmp_path / name).mkdir()
        e = _eval([("a", 0.5)], steps=steps)
        e.pop("_path")
        (tmp_path / name / "eval.json").write_text(json.dumps(e))
    assert main(["compare", *make_args(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err and err.strip().count("\n") == 0


def test_a_difference_under_the_mde_is_below_resolution_and_the_tables_print_the_mde():
    from opd_bench.compare import comparison_markdown

    rng = np.random.default_rng(2)
    hard = rng.uniform(0, 1, 30)
    base = _eval([(f"p{i}", h) for i, h in enumerate(hard)])
    cand = _eval([(f"p{i}", h + 0.001 + rng.normal(0, 0.1, 1)[0]) for i, h in enumerate(hard)])
    r = compare_task("aesthetic", [base], [cand])
    assert r.ci_low < 0 < r.ci_high and abs(r.diff) < r.mde and r.verdict == "below resolution"
    assert r.t_low < r.diff < r.t_high and 0 < r.p <= 1
    result = {"base_checkpoint": "b", "candidate_checkpoint": "c", "tasks": {"aesthetic": r.__dict__}}
    md = comparison_markdown(result)
    assert "| MDE |" in md and f"| {r.mde:.3f} | below resolution |" in md
