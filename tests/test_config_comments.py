"""Config files state recipes; results live in reports and the dated docs/results.md (issue 25, item 5): no
comment of a configs/ file quotes a measured gain, a confidence interval or a date."""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: a signed gain (+0.084, -0.021), an interval ([0.013, 0.149]) or a date (2026-11-27)
RESULT = re.compile(r"(?<![\w.])[+-]\d*\.\d+|\[\s*[+-]?\d*\.\d+\s*,\s*[+-]?\d*\.\d+\s*\]|\b20\d\d-\d\d-\d\d\b")


def results_in_comments(text: str) -> list:
    found = []
    for n, line in enumerate(text.splitlines(), 1):
        if "#" in line:
            found += [(n, m.group(0)) for m in RESULT.finditer(line.split("#", 1)[1])]
    return found


@pytest.mark.parametrize("path", sorted((ROOT / "configs").rglob("*.yaml")), ids=lambda p: str(p.relative_to(ROOT)))
def test_config_comments_quote_no_results(path):
    found = results_in_comments(path.read_text())
    assert not found, f"{path.relative_to(ROOT)}: results in comments {found}; move them to docs/results.md"


def test_the_check_finds_a_result_in_a_comment():
    assert results_in_comments("lr: 1.0e-4  # gained +0.084 [+0.013, +0.149] on 2026-11-27") == [
        (1, "+0.084"), (1, "[+0.013, +0.149]"), (1, "2026-11-27")]
    assert results_in_comments("lr: 1.0e-4  # beta 0.04, old_decay [0.0, 0.001, 0.5]\nx: -0.5") == []
