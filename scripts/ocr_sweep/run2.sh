#!/bin/bash
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD || exit 3
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 OMP_NUM_THREADS=3
mkdir -p $OUT/sw
D=${DEADLINE:-230}
S="python3 scripts/ocr_sweep/sweep.py --deadline $D --init checkpoints/base --glyph 4"
$S --name P --tf 0.4 --lr 5e-4 --steps 4000 --milestones 1000,2000,3000 --out $OUT/sw/P > $OUT/sw/P.log 2>&1 &
$S --name Q --tf 0.6 --lr 1e-3 --steps 4000 --milestones 1000,2000,3000 --out $OUT/sw/Q > $OUT/sw/Q.log 2>&1 &
$S --name R --tf 0.4 --lr 5e-4 --steps 2000 --milestones 1000 --out $OUT/sw/R > $OUT/sw/R.log 2>&1 &
$S --name U --tf 1.0 --lr 1e-3 --steps 4000 --milestones 1000,2000,3000 --out $OUT/sw/U > $OUT/sw/U.log 2>&1 &
wait
tail -n 3 $OUT/sw/*.log
cat $OUT/sw/*.json | head -c 2000
cd $OUT && tar cf - sw | split -b 15M - sweep.tar.part- && rm -rf sw && ls -la $OUT
