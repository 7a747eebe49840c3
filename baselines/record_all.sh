#!/usr/bin/env bash
# Re-record the regression baseline of every released text-to-image checkpoint:
#   checkpoints/<name>/  ->  baselines/<name>.json
# Extra arguments go to every `opd-bench check --record` (e.g. --tasks all --prompts 48 --steps 12).
# Reward-model checkpoints (no "backbone" in their config.json) are skipped.
# Environment: CHECKPOINTS_DIR, BASELINES_DIR (defaults: the repository's), OPD_BENCH (default: opd-bench).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CHECKPOINTS_DIR="${CHECKPOINTS_DIR:-$ROOT/checkpoints}"
BASELINES_DIR="${BASELINES_DIR:-$ROOT/baselines}"
read -r -a OPD_BENCH <<< "${OPD_BENCH:-opd-bench}"
export HF_HUB_OFFLINE=1

is_backbone() {  # a model checkpoint (embedded or sd3 student), or a raw diffusers pipeline folder
    grep -q '"backbone"' "$1/config.json" 2>/dev/null || [[ -f "$1/model_index.json" ]]
}

recorded=0
for dir in "$CHECKPOINTS_DIR"/*/; do
    dir="${dir%/}"
    name="$(basename "$dir")"
    is_backbone "$dir" || continue
    echo "== recording $name"
    "${OPD_BENCH[@]}" check --record --checkpoint "$dir" --baseline "$BASELINES_DIR/$name.json" "$@"
    recorded=$((recorded + 1))
done
if [[ $recorded -eq 0 ]]; then
    echo "error: no text-to-image checkpoints under $CHECKPOINTS_DIR" >&2
    exit 2
fi
echo "recorded $recorded baseline(s) in $BASELINES_DIR"
