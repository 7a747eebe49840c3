#!/usr/bin/env bash
# Try the CPU-only install route in a throwaway venv OUTSIDE the repository and say whether it works:
# size and install time of the venv, whether opd-bench imports, and (if it does) whether a released
# checkpoint's eval on a few prompts equals the default environment's, per-prompt score for score.
#
#   bash scripts/cpu_install_check.sh [VENV_DIR]        (default /tmp/opd-bench-cpuvenv; removed first)
#
# Environment: TORCH_SPEC (default "torch==2.13.0 torchvision==0.28.0": the CPU torch wheel this project's
# machines hold, and PyPI's torchvision of the same release), PIP_EXTRA (extra pip arguments, e.g.
# "--index-url https://download.pytorch.org/whl/cpu" where that index is reachable), REF_PYTHON (the default
# environment's python, for the comparison; default: python3 on PATH).
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${1:-/tmp/opd-bench-cpuvenv}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0 torchvision==0.28.0}"
REF_PYTHON="${REF_PYTHON:-python3}"
case "$VENV" in "$ROOT"*) echo "error: put the venv outside the repository (got $VENV)" >&2; exit 2;; esac
rm -rf "$VENV"
python3 -m venv "$VENV"
t0=$(date +%s)
# shellcheck disable=SC2086
"$VENV/bin/pip" install -q ${PIP_EXTRA:-} $TORCH_SPEC || { echo "error: pip could not install $TORCH_SPEC" >&2; exit 1; }
t1=$(date +%s)
"$VENV/bin/pip" install -q -e "$ROOT[dev]" || { echo "error: pip could not install opd-bench" >&2; exit 1; }
t2=$(date +%s)
echo "install: torch+torchvision $((t1 - t0)) s, opd-bench and the rest $((t2 - t1)) s, total $((t2 - t0)) s"
echo "venv size: $(du -sm "$VENV" | cut -f1) MB ($(du -smc "$VENV"/lib/python*/site-packages/nvidia* 2>/dev/null | tail -1 | cut -f1) MB of nvidia-* libraries)"
"$VENV/bin/pip" list 2>/dev/null | grep -E "^(torch|torchvision) "
if ! "$VENV/bin/python" -c "import torchvision, open_clip, opd_bench.cli" 2>"$VENV/import.err"; then
    echo "RESULT: the CPU route does not work: $(tail -1 "$VENV/import.err")"
    exit 1
fi
out="$(mktemp -d)"
args=(eval --checkpoint opd_student --tasks all --prompts 4 --steps 8)
(cd "$out" && HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 "$VENV/bin/python" -m opd_bench.cli "${args[@]}" --out "$out/cpu" >/dev/null 2>&1)
(cd "$out" && HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 PYTHONPATH="$ROOT" "$REF_PYTHON" -m opd_bench.cli "${args[@]}" --out "$out/ref" >/dev/null 2>&1)
"$REF_PYTHON" - "$out/cpu/eval.json" "$out/ref/eval.json" <<'EOF'
import json, sys
a, b = (json.load(open(p))["tasks"] for p in sys.argv[1:3])
for t in b:
    pa, pb = a[t]["per_prompt"], b[t]["per_prompt"]
    diff = max(abs(x[k] - y[k]) for x, y in zip(pa, pb) for k in y if k != "prompt")
    print(f"{t}: max per-prompt |cpu - default| = {diff:.3g}" + (" (identical)" if diff == 0 else ""))
EOF
echo "RESULT: the CPU route installs and runs (see the differences above)"
