"""The release policy's size check (docs/releasing.md): released assets stay small."""
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MiB = 1 << 20
LIMITS = {"checkpoints": 64 * MiB, "reports": 16 * MiB}
MAX_FILE = 16 * MiB


def _tracked_files():
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return [ROOT / p for p in out.decode().split("\0") if p]


def test_released_folders_stay_within_the_policy_limits():
    files = [f for f in _tracked_files() if f.is_file()]
    for folder, limit in LIMITS.items():
        size = sum(f.stat().st_size for f in files if f.relative_to(ROOT).parts[0] == folder)
        assert 0 < size <= limit, f"{folder}/ holds {size / MiB:.1f} MiB, over the {limit / MiB:.0f} MiB limit"


def test_no_tracked_file_is_over_the_single_file_limit():
    big = [(str(f.relative_to(ROOT)), f.stat().st_size) for f in _tracked_files()
           if f.is_file() and f.stat().st_size > MAX_FILE]
    assert not big, f"files over {MAX_FILE // MiB} MiB: {big}"


@pytest.mark.parametrize("path", ["experiments/claims_campaign/runs/opd/s0/claims_eval.json",
                                  "experiments/claims_campaign/sweeps/opd/trial_0/summary.json",
                                  "checkpoints/evals/index.json"])
def test_what_the_campaign_archives_is_not_git_ignored(path):
    """The claims campaign's archive and the shipped evaluations are tracked (scripts/claims_campaign.sh), while the
    working runs/ folder is ignored: a pattern for runs/ must not also match experiments/claims_campaign/runs/."""
    def ignored(p):
        try:
            r = subprocess.run(["git", "check-ignore", "-q", "--no-index", p], cwd=ROOT, capture_output=True)
        except OSError:
            pytest.skip("no git")
        if r.returncode not in (0, 1):
            pytest.skip("not a git checkout")
        return r.returncode == 0
    assert not ignored(path) and ignored("runs/claims/opd/s0/summary.json")
