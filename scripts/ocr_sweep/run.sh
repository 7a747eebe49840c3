#!/bin/bash
# device-side driver: GPU benchmark of the real backend, then the OCR pretraining sweep
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD || exit 3
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
nvidia-smi -L
python3 -c "import torch, transformers, diffusers, open_clip, peft; print('versions', torch.__version__, transformers.__version__, diffusers.__version__, peft.__version__)"
mkdir -p $OUT/sw
timeout 140 python3 benchmarks/gpu_step.py --json $OUT/gpu_step.json 2>&1 | tee $OUT/gpu_step.log | tail -8
D=${DEADLINE:-290}
S="python3 scripts/ocr_sweep/sweep.py --deadline $D"
export OMP_NUM_THREADS=2
$S --name A --init checkpoints/base --tf 0.7 --lr 5e-4 --steps 4000 --milestones 0,2000 --full_at 0 --cfg_probe --out $OUT/sw/A > $OUT/sw/A.log 2>&1 &
$S --name B --init checkpoints/base --tf 1.0 --lr 5e-4 --steps 4000 --out $OUT/sw/B > $OUT/sw/B.log 2>&1 &
$S --name C --init checkpoints/base --tf 0.7 --lr 1e-3 --steps 4000 --out $OUT/sw/C > $OUT/sw/C.log 2>&1 &
$S --name E --init checkpoints/base --tf 0.6 --lr 5e-4 --const --steps 60000 --milestones 4000,8000,12000,16000,24000,32000,40000 --out $OUT/sw/E > $OUT/sw/E.log 2>&1 &
$S --name G --arch '{"transformer": {"num_layers": 6, "num_attention_heads": 6, "attention_head_dim": 32, "patch_size": 4}}' --tf 0.3 --lr 1e-3 --const --steps 60000 --milestones 5000,10000,15000,20000,30000,40000 --seed 5 --out $OUT/sw/G > $OUT/sw/G.log 2>&1 &
$S --name H --arch '{"transformer": {"num_layers": 4, "num_attention_heads": 4, "attention_head_dim": 24, "patch_size": 2}}' --tf 0.3 --lr 1e-3 --const --steps 60000 --milestones 5000,10000,15000,20000,30000,40000 --seed 6 --out $OUT/sw/H > $OUT/sw/H.log 2>&1 &
for i in $(seq 1 40); do sleep 15; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader; jobs -r | wc -l | grep -q '^0$' && break; done
wait
tail -n 3 $OUT/sw/*.log
cat $OUT/sw/*.json | head -c 3000
cd $OUT && tar cf - sw | split -b 15M - sweep.tar.part- && rm -rf sw && ls -la $OUT
