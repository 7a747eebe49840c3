#!/usr/bin/env bash
# The CI regression gate: check every baseline baselines/<name>.json against checkpoints/<name>.
# Every checkpoint is checked even after a failure; JUnit XML and Markdown summaries land in $REPORT_DIR.
# Exit status: 0 = all pass, 1 = a regression, 2 = bad input (missing/tampered checkpoint, bad baseline...).
# Extra arguments go to every `opd-bench check` (e.g. --tasks geneval,ocr).
# Environment: CHECKPOINTS_DIR, BASELINES_DIR (defaults: the repository's), REPORT_DIR (default:
# $TMPDIR/opd-bench-check), OPD_BENCH (default: opd-bench).
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CHECKPOINTS_DIR="${CHECKPOINTS_DIR:-$ROOT/checkpoints}"
BASELINES_DIR="${BASELINES_DIR:-$ROOT/baselines}"
REPORT_DIR="${REPORT_DIR:-${TMPDIR:-/tmp}/opd-bench-check}"
read -r -a OPD_BENCH <<< "${OPD_BENCH:-opd-bench}"
export HF_HUB_OFFLINE=1
mkdir -p "$REPORT_DIR"

shopt -s nullglob
baselines=("$BASELINES_DIR"/*.json)
if [[ ${#baselines[@]} -eq 0 ]]; then
    echo "error: no baselines under $BASELINES_DIR (record them with baselines/record_all.sh)" >&2
    exit 2
fi
worst=0
declare -a failed=()
for baseline in "${baselines[@]}"; do
    name="$(basename "$baseline" .json)"
    echo "== checking $name"
    if [[ -e "$CHECKPOINTS_DIR/$name" ]]; then
        "${OPD_BENCH[@]}" check --checkpoint "$CHECKPOINTS_DIR/$name" --baseline "$baseline" \
            --junit "$REPORT_DIR/$name.xml" --markdown "$REPORT_DIR/$name.md" "$@"
        rc=$?
    else
        echo "error: checkpoint not found: $CHECKPOINTS_DIR/$name (baseline $baseline)" >&2
        rc=2
    fi
    if [[ $rc -ne 0 ]]; then
        failed+=("$name (exit $rc)")
        if [[ $rc -eq 2 || $worst -eq 0 ]]; then worst=$rc; fi
    fi
done
if [[ $worst -ne 0 ]]; then
    echo "regression gate FAILED: ${failed[*]}"
    exit "$worst"
fi
echo "regression gate passed: ${#baselines[@]} checkpoint(s)"
