#!/usr/bin/env bash
# Does each released teacher beat the base on its own task? Full eval sets (40-step ODE, CFG 4.5, the
# per-prompt noises of `opd-bench eval`), paired with the base prompt by prompt (`opd-bench compare`).
# GenEval uses 16 images per prompt (seeds 1234-1249), not GenEval's 4: the embedded world has 4 shapes, so
# three of its six equally weighted categories have only 4-12 prompts (4 single-object prompts), and at 4
# binary draws per prompt their means are mostly seed noise (the released GenEval teacher read +0.063 at 4
# seeds and +0.033 at 16, docs/teachers.md). Writes reports/teachers_vs_base/ (README.md + one folder per
# task with compare.{json,md}); the eval.json files land under reports/teachers_vs_base/evals/.
# About 30 min on one idle core (GenEval's 32 evaluations, ~40 s each, are most of it).
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1
OUT=reports/teachers_vs_base
EV=$OUT/evals
GENEVAL_SEEDS="$(seq -s " " 1234 1249)"

ev() {  # ev CHECKPOINT TASK SEED: evaluate unless an eval of this very checkpoint is already there
  local dir="$EV/$1/$2_$3"
  if [[ -f $dir/eval.json ]] && python -c 'import sys; from opd_bench.compare import is_eval_of
sys.exit(not is_eval_of(sys.argv[1], sys.argv[2]))' "$dir" "$1"; then echo "up to date: $dir"; else opd-bench eval --checkpoint "$1" --tasks "$2" --seed "$3" --out "$dir"; fi
}

for task in geneval ocr aesthetic preference; do
  if [[ $task == geneval ]]; then seeds=$GENEVAL_SEEDS; else seeds=1234; fi
  b=(); c=()
  for s in $seeds; do
    ev base "$task" "$s"; ev "teacher_$task" "$task" "$s"
    b+=(-b "$EV/base/${task}_$s"); c+=(-c "$EV/teacher_$task/${task}_$s")
  done
  opd-bench compare "${b[@]}" "${c[@]}" --tasks "$task" --out "$OUT/$task"
done
python - "$OUT" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
rows = ["# Released teachers vs the base, each on its own task", "",
        "Written by `bash scripts/teachers_vs_base.sh` (`opd-bench compare`: paired by prompt, 95% bootstrap CI, "
        "GenEval stratified by category; 'better' = CI above zero and a gain of at least the margin).", "",
        "| task | prompts x seeds | base | teacher | diff | 95% CI | verdict |", "|---|---|---|---|---|---|---|"]
for task in ("geneval", "ocr", "aesthetic", "preference"):
    d = json.loads((out / task / "compare.json").read_text())
    r = d["tasks"][task]
    rows.append(f"| {task} | {r['n_prompts']} x {len(d['seeds']['candidate'])} | {r['base']:.3f} | {r['candidate']:.3f} "
                f"| {r['diff']:+.3f} | [{r['ci_low']:+.3f}, {r['ci_high']:+.3f}] | {r['verdict']} |")
(out / "README.md").write_text("\n".join(rows) + "\n")
print("\n".join(rows))
PY
