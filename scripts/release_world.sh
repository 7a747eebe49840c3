#!/usr/bin/env bash
# Rebuild every released checkpoint of the embedded world from scratch, in dependency order.
# Each step is seeded; the commands and metrics are recorded in each checkpoint's config.json.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1
python -m opd_bench.world.make_prompts --seed 0 --samples docs/img/world_samples.png   # geneval + ocr prompt sets
python -m opd_bench.world.taste_prompts                                                 # aesthetic + preference prompt sets
python -m opd_bench.world.train_rewards --task aesthetic --out checkpoints/reward_aesthetic
python -m opd_bench.world.train_rewards --task preference --out checkpoints/reward_preference
opd-bench world pretrain --out checkpoints/base                                          # ~35-60 min on 2 cores
for t in geneval ocr aesthetic preference; do
  opd-bench run --method grpo --tasks "$t" --config teacher --name "teacher_$t"
  opd-bench world release "runs/teacher_$t" "teacher_$t"
done
