#!/usr/bin/env bash
# The CPU campaign behind `opd-bench claims` (issue 21), in the order it must run: the equal-tuning sweeps
# (configs/sweeps/equal_tuning.yaml -> configs/recipes/<recipe>.yaml, selected on val), then every run of
# configs/claims.yaml with those recipes, then the report. Every step is resumable: a finished trial or run is
# read back, an interrupted one resumed, so rerunning this script after an interruption (a session's end, a
# kill) continues where it stopped. Two processes side by side with one thread each (one thread trained the main
# job's rounds at 3.9 images/s under load against 3.3 on two idle threads, benchmarks/RESULTS.md: the embedded
# model's small matmuls gain little from a second thread), the sweeps split by recipe, the campaign's runs and final
# evaluations by `claims --shard`; OPD_BENCH_JOBS=1 for one process with every core.
# A sweep whose recipe (configs/recipes/<recipe>.yaml) exists is not run again: delete the recipe to re-sweep.
# runs/ is git-ignored and is lost with the machine; every few minutes the script copies each finished sweep
# trial's config.yaml and summary.json (all that the sweep's selection reads back) to $ARCHIVE, a tracked folder,
# and restores them into runs/ at its start, so a fresh checkout carrying the archive resumes the sweeps.
#   nohup bash scripts/claims_campaign.sh > runs/claims_campaign.log 2>&1 &
#   bash scripts/claims_campaign.sh --restore-only     # only restore the archive (nothing trains)
#   OPD_BENCH_START_BEFORE=17:50 nohup bash scripts/claims_campaign.sh ...   # start no run from 17:50 on
set -euo pipefail
cd "$(dirname "$0")/.."
GRID=configs/sweeps/equal_tuning.yaml
SWEEPS=runs/sweeps
ARCHIVE=${OPD_BENCH_ARCHIVE:-experiments/claims_campaign/sweeps}
JOBS=${OPD_BENCH_JOBS:-2}
export HF_HUB_OFFLINE=1
if [ "$JOBS" = 1 ]; then export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}; else export OMP_NUM_THREADS=1; fi

# finished trials: runs/sweeps/sweep_<recipe>/trial_<k>/{config.yaml,summary.json} <-> $ARCHIVE/<recipe>/trial_<k>/
# finished campaign runs: runs/claims/<group>/s<seed>/ small files (config, summary, ledger, histories, the recorded
# full-protocol evaluation claims_eval.json, the cached analyses and the claims_complete.json marker) ->
# $RUNS_ARCHIVE/<group>/s<seed>/; restored are the complete ones: the report reads a run's scores from its record
# when its weights are gone (opd_bench.evalcache.final_results). Each shard scores and analyses a run as soon as it
# is trained (`claims --run`), so a machine reset loses at most the runs of the session's last hour.
RUNS_ARCHIVE=${OPD_BENCH_RUNS_ARCHIVE:-experiments/claims_campaign/runs}
archive() {
  local f d g
  for f in runs/claims/*/s*/summary.json; do
    [ -f "$f" ] || continue
    d=$(dirname "$f"); g=${d#runs/claims/}
    mkdir -p "$RUNS_ARCHIVE/$g"
    for n in config.yaml summary.json ledger.json eval_history.jsonl metrics.jsonl claims_eval.json \
             claims_interference.json claims_variance.json claims_complete.json; do
      if [ -f "$d/$n" ]; then cp -p "$d/$n" "$RUNS_ARCHIVE/$g/"; fi
    done
  done
  for f in "$SWEEPS"/sweep_*/trial_*/summary.json; do
    [ -f "$f" ] || continue
    d=$(dirname "$f"); d=${d#"$SWEEPS"/sweep_}
    mkdir -p "$ARCHIVE/$d"
    cp -p "$f" "$(dirname "$f")/config.yaml" "$ARCHIVE/$d/"
  done
}
restore() {
  local f d g
  # only a complete run (its final evaluation and analyses recorded, opd_bench.claims.COMPLETE): the weights are
  # not archived, so a run trained but not yet scored when the machine went is trained again
  for f in "$RUNS_ARCHIVE"/*/s*/claims_complete.json; do
    [ -f "$f" ] || continue
    d=$(dirname "$f"); g=${d#"$RUNS_ARCHIVE"/}
    [ -f "runs/claims/$g/summary.json" ] && continue
    mkdir -p "runs/claims/$g"
    cp -p "$d"/* "runs/claims/$g/"
  done
  # a run trained and (wholly or partly: the record is written after each task) scored but not complete when the
  # machine went is trained again, bit for bit on the same CPU (its final checkpoint's digest is the archived
  # record's): the tasks its record holds, kept in the eval cache, are then taken and only the rest scored
  # (opd_bench.evalcache.seed_from_record, final_results)
  local recs=()
  for f in "$RUNS_ARCHIVE"/*/s*/claims_eval.json; do
    [ -f "$f" ] && [ ! -f "$(dirname "$f")/claims_complete.json" ] && recs+=("$f")
  done
  if [ ${#recs[@]} -gt 0 ]; then
    "$(dirname "$(command -v opd-bench)")/python" -c \
      'import sys; from opd_bench.evalcache import seed_from_record; [seed_from_record(p) for p in sys.argv[1:]]' \
      "${recs[@]}"
  fi
  for f in "$ARCHIVE"/*/trial_*/summary.json; do
    [ -f "$f" ] || continue
    d=$(dirname "$f"); d=$SWEEPS/sweep_${d#"$ARCHIVE"/}
    [ -f "$d/summary.json" ] && continue
    mkdir -p "$d"
    cp -p "$f" "$(dirname "$f")/config.yaml" "$d/"
  done
}
# sweep RECIPE METHOD [opd-bench sweep options...]: skipped when the recipe exists. The trials skip the
# learning-curve evals (eval.curve_every=0, ~12% of a trial's compute): selection reads only the final val
# evaluation, and curve evals leave training bit-identical (tests/test_protocol.py).
sweep() {
  local recipe=$1 method=$2; shift 2
  if [ -f "configs/recipes/$recipe.yaml" ]; then echo "recipe $recipe exists: not swept again"; return; fi
  opd-bench sweep --method "$method" --recipe-name "$recipe" --tasks all --grid "$GRID" --runs-dir "$SWEEPS" \
    --set eval.curve_every=0 "$@"
}
sweep_plain() {
  for m in opd multi-reward cascade sft-distill; do sweep "$m" "$m"; done
}
sweep_objectives() {
  sweep mt-grpo-guard multi-reward --set grpo.objective=grpo-guard
  sweep mt-nft multi-reward --set grpo.objective=nft
  sweep cascade-nft cascade --set grpo.objective=nft
}
# ship_refs CHECKPOINTS: the released models' full-protocol evaluations (the report's base and teacher scores) into
# checkpoints/evals/, one task at a time (scripts/ship_evals.py; shipped ones are read back): tracked files that
# survive the machine, to commit with the campaign
ship_refs() {
  python scripts/ship_evals.py --protocol full --checkpoints "$1"
}
restore
if [ "${1:-}" = "--restore-only" ]; then exit 0; fi   # only put the archive back into runs/
( while sleep 300; do archive; done ) & keeper=$!
trap 'archive; kill "$keeper" 2>/dev/null' EXIT
CLAIMS=(opd-bench claims --run --spec configs/claims.yaml --runs-dir runs/claims --out reports/claims)
# OPD_BENCH_START_BEFORE=17:50 (HH:MM or an ISO date-time): no run starts from then on, the ones in progress finish;
# for a machine that goes away at a known time (a session's end), so that it loses no run half done
if [ -n "${OPD_BENCH_START_BEFORE:-}" ]; then CLAIMS+=(--start-before "$OPD_BENCH_START_BEFORE"); fi
if [ "$JOBS" = 1 ]; then
  sweep_plain
  sweep_objectives
  ship_refs base,teacher_aesthetic,teacher_geneval,teacher_ocr,teacher_preference
elif [ "$JOBS" = 2 ]; then
  # each process starts its campaign shard as soon as its own sweeps are done: a run resolves its recipe when its
  # turn comes (opd_bench.claims.run_campaign), and the groups whose sweeps run last (sft-distill) come last
  ( sweep_plain > runs/claims_campaign.sweep0.log 2>&1
    ship_refs base > runs/claims_campaign.refs0.log 2>&1
    "${CLAIMS[@]}" --shard 0/2 > runs/claims_campaign.shard0.log 2>&1 ) & a=$!
  ( sweep_objectives > runs/claims_campaign.sweep1.log 2>&1
    ship_refs teacher_aesthetic,teacher_geneval,teacher_ocr,teacher_preference > runs/claims_campaign.refs1.log 2>&1
    "${CLAIMS[@]}" --shard 1/2 > runs/claims_campaign.shard1.log 2>&1 ) & b=$!
  wait "$a"; wait "$b"
else
  sweep_plain > runs/claims_campaign.sweep0.log 2>&1 & a=$!
  sweep_objectives > runs/claims_campaign.sweep1.log 2>&1 & b=$!
  wait "$a"; wait "$b"
  ship_refs base,teacher_aesthetic,teacher_geneval,teacher_ocr,teacher_preference
  pids=()
  for i in $(seq 0 $((JOBS - 1))); do
    "${CLAIMS[@]}" --shard "$i/$JOBS" > "runs/claims_campaign.shard$i.log" 2>&1 & pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p"; done
fi
"${CLAIMS[@]}"
