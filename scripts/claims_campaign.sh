#!/usr/bin/env bash
# The CPU campaign behind `opd-bench claims` (issue 21), in the order it must run: the equal-tuning sweeps
# (configs/sweeps/equal_tuning.yaml -> configs/recipes/<recipe>.yaml, selected on val), then every run of
# configs/claims.yaml with those recipes, then the report. Every step is resumable: a finished trial or run is
# read back, an interrupted one resumed, so rerunning this script after an interruption (a session's end, a
# kill) continues where it stopped. Two processes side by side with one thread each (one thread trained the main
# job's rounds at 3.9 images/s under load against 3.3 on two idle threads, benchmarks/RESULTS.md: the embedded
# model's small matmuls gain little from a second thread), the sweeps split by recipe, the campaign's runs and final
# evaluations by `claims --shard`; OPD_BENCH_JOBS=1 for one process with every core.
#   nohup bash scripts/claims_campaign.sh > runs/claims_campaign.log 2>&1 &
set -euo pipefail
cd "$(dirname "$0")/.."
GRID=configs/sweeps/equal_tuning.yaml
SWEEPS=runs/sweeps
JOBS=${OPD_BENCH_JOBS:-2}
export HF_HUB_OFFLINE=1
if [ "$JOBS" = 1 ]; then export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}; else export OMP_NUM_THREADS=1; fi

sweep_plain() {
  opd-bench sweep --method opd,multi-reward,cascade,sft-distill --tasks all --grid "$GRID" --runs-dir "$SWEEPS"
}
sweep_objectives() {
  for spec in "grpo-guard:mt-grpo-guard:multi-reward" "nft:mt-nft:multi-reward" "nft:cascade-nft:cascade"; do
    IFS=: read -r objective recipe method <<< "$spec"
    opd-bench sweep --method "$method" --set "grpo.objective=$objective" --recipe-name "$recipe" --tasks all \
      --grid "$GRID" --runs-dir "$SWEEPS"
  done
}
CLAIMS=(opd-bench claims --run --spec configs/claims.yaml --runs-dir runs/claims --out reports/claims)
if [ "$JOBS" = 1 ]; then
  sweep_plain
  sweep_objectives
else
  sweep_plain > runs/claims_campaign.sweep0.log 2>&1 & a=$!
  sweep_objectives > runs/claims_campaign.sweep1.log 2>&1 & b=$!
  wait "$a"; wait "$b"
  pids=()
  for i in $(seq 0 $((JOBS - 1))); do
    "${CLAIMS[@]}" --shard "$i/$JOBS" > "runs/claims_campaign.shard$i.log" 2>&1 & pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p"; done
fi
"${CLAIMS[@]}"
