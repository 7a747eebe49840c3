#!/usr/bin/env bash
# The CPU campaign behind `opd-bench claims` (issue 21), in the order it must run: the equal-tuning sweeps
# (configs/sweeps/equal_tuning.yaml -> configs/recipes/<recipe>.yaml, selected on val), then every run of
# configs/claims.yaml with those recipes, then the report. Every step is resumable: a finished trial or run is
# read back, an interrupted one resumed, so rerunning this script after an interruption (a session's end, a
# kill) continues where it stopped. Runs one job at a time with all cores (OPD_BENCH_THREADS to change it).
#   nohup bash scripts/claims_campaign.sh > runs/claims_campaign.log 2>&1 &
set -euo pipefail
cd "$(dirname "$0")/.."
GRID=configs/sweeps/equal_tuning.yaml
SWEEPS=runs/sweeps
export HF_HUB_OFFLINE=1
opd-bench sweep --method opd,multi-reward,cascade,sft-distill --tasks all --grid "$GRID" --runs-dir "$SWEEPS"
for spec in "grpo-guard:mt-grpo-guard:multi-reward" "nft:mt-nft:multi-reward" "nft:cascade-nft:cascade"; do
  IFS=: read -r objective recipe method <<< "$spec"
  opd-bench sweep --method "$method" --set "grpo.objective=$objective" --recipe-name "$recipe" --tasks all \
    --grid "$GRID" --runs-dir "$SWEEPS"
done
opd-bench claims --run --spec configs/claims.yaml --runs-dir runs/claims --out reports/claims
