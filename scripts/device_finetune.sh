#!/usr/bin/env bash
# Joint fine-tuning of the shipped tiny model on a lent GPU machine, in one call of the device tool (no registry
# there, at most 64 MiB carried, about 10 minutes a call). Run from the repository root:
#
#   here:  python -m training.device_text_encoder pack --data <data generated as below> --out .device/minilm
#          pip download pycocotools (cp312 manylinux wheel) -d .device          # the GPU image lacks it
#   there: scripts/device_finetune.sh data [MINUTES_HIGH_LR] [MINUTES_LOW_LR]     # carry: .device
#          (INIT=<weights> to start from other weights than the shipped file)
#
# Steps: install the carried wheels; generate the synthetic training data (more images than the CPU recipes use:
# the GPU sees many more samples); rebuild the packaged MiniLM from .device/minilm and check it covers every text
# of that data; train `tiny_gpu_joint` for MINUTES_HIGH_LR, then `tiny_gpu_joint_low_lr` (LR / 10) from its last
# checkpoint for MINUTES_LOW_LR; write each phase's weights without the text encoder, in float16, split into
# 15 MiB parts (the device returns files of at most 16 MiB), and both metrics logs under $OUT.
# Join at home: cat weights_low_lr.part-* > runs/gpu_joint/low_lr.safetensors
# The two recipes build the model they trained (no prompt subject). When $INIT has one (the file shipped since the
# subject fit), the phases run copies of them with `prompt_subject: true` under runs/gpu_joint/, so the run goes on
# from the shipped file instead of refusing its subject weights.
# With DATA_ONLY=1 it only generates the data (here, to pack the text encoder for the same texts).
set -euo pipefail
ROOT=${1:?data folder}
HIGH=${2:-4.5}
LOW=${3:-1.5}
OUT=${OUT:-runs/gpu_joint/out}
PY=${PY:-python3}
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
start=$(date +%s)
log() { echo "[$(( $(date +%s) - start )) s] $*"; }

if [ -z "${DATA_ONLY:-}${SKIP_WHEELS:-}" ] && ls .device/*.whl >/dev/null 2>&1; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .device/*.whl
    export PYTHONPATH=/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}
fi
# Workers per task in proportion to its frames (15 of 16 cores; one each on a small machine).
w() { if [ "$(nproc)" -ge 16 ]; then echo "$1"; else echo 1; fi; }
G="$PY -m uninext_core.data.synthetic --seed 0 --size 320 --difficulty medium"
if [ ! -f "$ROOT/complete" ]; then
    log "generating data into $ROOT"
    $G --workers "$(w 2)" --out "$ROOT/det" --task detection --num-images 8000 > /dev/null 2>&1 &
    $G --workers "$(w 2)" --out "$ROOT/ref" --task referring --num-images 8000 > /dev/null 2>&1 &
    $G --workers "$(w 4)" --out "$ROOT/sot" --task sot --num-videos 300 --num-frames 48 > /dev/null 2>&1 &
    $G --workers "$(w 2)" --out "$ROOT/vis" --task vis --num-videos 300 --num-frames 24 > /dev/null 2>&1 &
    $G --workers "$(w 2)" --out "$ROOT/rvos" --task video --num-videos 300 --num-frames 24 > /dev/null 2>&1 &
    $G --workers "$(w 1)" --out "$ROOT/mot" --task mot --num-videos 80 --num-frames 48 > /dev/null 2>&1 &
    $G --workers "$(w 2)" --out "$ROOT/vos" --task vos --num-videos 300 --num-frames 24 > /dev/null 2>&1 &
    wait
    $PY -m uninext_core.data.synthetic.phrases --instances "$ROOT/det/annotations/instances.json" \
        --out "$ROOT/det/annotations/phrases.json" > /dev/null
    touch "$ROOT/complete"
fi
log "data: $(find "$ROOT" -name '*.jpg' | wc -l) images"
[ -n "${DATA_ONLY:-}" ] && exit 0

$PY -m training.device_text_encoder unpack --packed .device/minilm --site /tmp/site --data "$ROOT"
export PYTHONPATH=/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
mkdir -p "$OUT"
mkdir -p data
ln -sfn "$(realpath "$ROOT")" data/gpu_synth

ship() {  # $1 checkpoint, $2 name, [$3 --end-of-stage]: float16 weights without the text encoder, in parts
    $PY -m training.ship_weights --checkpoint "$1" --out "runs/gpu_joint/$2.safetensors" ${3:-} > /dev/null
    split -b 15M "runs/gpu_joint/$2.safetensors" "$OUT/weights_$2.part-"
}
newest() { ls "$1"/checkpoints/model_*.safetensors | sort | tail -1; }

mkdir -p runs/gpu_joint
cp "${INIT:-uninext_core/assets/uninext_tiny.safetensors}" runs/gpu_joint/init.safetensors
HIGH_RECIPE=training/recipes/tiny_gpu_joint.yaml
LOW_RECIPE=training/recipes/tiny_gpu_joint_low_lr.yaml
if $PY -c "import sys; from uninext_core.checkpoint.safetensors_io import read_config
sys.exit(0 if read_config('runs/gpu_joint/init.safetensors').heads.prompt_subject else 1)"; then
    for recipe in "$HIGH_RECIPE" "$LOW_RECIPE"; do
        sed 's/prompt_subject: false/prompt_subject: true/' "$recipe" > "runs/gpu_joint/$(basename "$recipe")"
    done
    HIGH_RECIPE=runs/gpu_joint/tiny_gpu_joint.yaml
    LOW_RECIPE=runs/gpu_joint/tiny_gpu_joint_low_lr.yaml
    log "the init has a prompt subject: running copies of the recipes with prompt_subject: true"
fi
log "high-LR phase, $HIGH minutes"
$PY -m training.train --recipe "$HIGH_RECIPE" --max-minutes "$HIGH" \
    --data-workers "${DATA_WORKERS:-12}" --no-progress
cp runs/gpu_joint/high_lr/metrics.jsonl "$OUT/metrics_high_lr.jsonl" || true
cp "$(newest runs/gpu_joint/high_lr)" runs/gpu_joint/high_lr_last.safetensors
ship runs/gpu_joint/high_lr_last.safetensors high_lr
log "low-LR phase, $LOW minutes"
$PY -m training.train --recipe "$LOW_RECIPE" --max-minutes "$LOW" \
    --data-workers "${DATA_WORKERS:-12}" --no-progress
cp runs/gpu_joint/low_lr/metrics.jsonl "$OUT/metrics_low_lr.jsonl" || true
ship "$(newest runs/gpu_joint/low_lr)" low_lr --end-of-stage
log "done"
ls -la "$OUT"
