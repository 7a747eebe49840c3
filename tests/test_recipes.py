"""The committed equal-tuning recipes (configs/recipes/, written by `opd-bench sweep`, issue 20 item 4): every
claims-campaign group has one, each loads as a config, its body is the trial its sweep table marks as chosen, and
that trial has the table's highest mean (the declared selection rule)."""
import math
import re
from pathlib import Path

import pytest

from opd_bench.claims import load_campaign
from opd_bench.config import load_config

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted((ROOT / "configs" / "recipes").glob("*.yaml"))


def sweep_table(path: Path):
    """(column names, rows as lists of cells, the chosen row) of a recipe's sweep table (its header comments)."""
    lines = [line[2:] for line in path.read_text().splitlines() if line.startswith("# ")]
    cols = [c.strip() for c in next(line for line in lines if line.startswith("trial |")).split("|")]
    rows, chosen = [], None
    for line in lines:
        if re.match(r"(\d+|ref) \|", line):
            cells = [c.strip() for c in re.sub(r"\s+(\(reference\)|<- chosen)", "", line).split("|")]
            rows.append(cells)
            if "<- chosen" in line:
                chosen = cells
    return cols, rows, chosen


def _value(cfg, key):
    for part in key.split("."):
        cfg = getattr(cfg, part)
    return cfg


def _same(value, cell: str) -> bool:
    if isinstance(value, bool):
        return str(value) == cell
    if isinstance(value, (int, float)):
        return math.isclose(float(value), float(cell), rel_tol=1e-9)
    return str(value) == cell


def test_every_campaign_group_runs_a_committed_recipe():
    have = {p.stem for p in RECIPES}
    for g in load_campaign(ROOT / "configs" / "claims.yaml").groups:
        assert {g.recipe, g.label, g.method} & have, f"group {g.label} has no recipe in configs/recipes/"


@pytest.mark.parametrize("path", RECIPES, ids=[p.stem for p in RECIPES])
def test_a_committed_recipe_is_the_trial_its_sweep_chose(path):
    cols, rows, chosen = sweep_table(path)
    assert chosen is not None and len(rows) >= 2, "no sweep table with a chosen trial"
    cfg = load_config(recipe=path)
    axes = [(i, c) for i, c in enumerate(cols) if "." in c]   # config keys; the rest are the trial and the scores
    assert axes
    for i, key in axes:
        assert _same(_value(cfg, key), chosen[i]), f"{key}: recipe {_value(cfg, key)!r}, chosen trial {chosen[i]!r}"
    mean = cols.index("mean")
    assert float(chosen[mean]) == max(float(r[mean]) for r in rows)   # selection = the highest mean on val
