#!/usr/bin/env bash
# The recorded command for midi2wave/assets/ (the bundled model), on this project's 2-core CPU box.
# Stage 1 trains the resonator-bank model from scratch; stage 2 fine-tunes it with a small sustain
# gain (configs/default.json); then the EMA weights are exported as a safetensors folder.
#
#   bash scripts/train-bundled-model.sh [WORK_DIR]      (default: ./work; about 1.5 hours on 1 core)
#
# Each stage runs in the foreground with frequent checkpoints; rerun the same stage with --resume
# (see `midi2wave train --help`) if it was interrupted.
set -euo pipefail
WORK=${1:-work}
STAGE1_STEPS=${STAGE1_STEPS:-4999}
STAGE2_STEPS=${STAGE2_STEPS:-3077}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

# the default instrument: the Salamander grand (sfizz); the model bundled now was trained on
# `--instrument musescore` data
[ -d "$WORK/demo-maestro" ] || midi2wave make-demo-data "$WORK/demo-maestro" --minutes 60 --seed 0
[ -f "$WORK/demo-store/manifest.json" ] || midi2wave prepare "$WORK/demo-maestro" "$WORK/demo-store" --jobs 2

# stage 1: dense rolls + excitation + MIDI resonator bank, the network reading the innovation
midi2wave train -c configs/study/l-resonators-innovation-input.json --data "$WORK/demo-store" \
    --out "$WORK/runs/stage1" --max-steps "$STAGE1_STEPS" -q
# stage 2: the default config (sustain kappa), starting from stage 1's EMA weights
midi2wave train -c configs/default.json --data "$WORK/demo-store" --out "$WORK/runs/stage2" \
    --init-from "$WORK/runs/stage1" --max-steps "$STAGE2_STEPS" -q
midi2wave export --format safetensors "$WORK/runs/stage2/checkpoints/step_$(printf %06d "$STAGE2_STEPS").pt" \
    midi2wave/assets --force
