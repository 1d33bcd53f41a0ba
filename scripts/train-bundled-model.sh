#!/usr/bin/env bash
# The recorded command for midi2wave/assets/ (the bundled model), on this project's 2-core CPU box.
#   stage 1: the resonator-bank model from scratch (MuseScore demo data)
#   stage 2: a small sustain gain (study config o)
#   stage 3: the innovation gain fitted to the MuseScore store (study config p)
#   stage 4: the Salamander grand: the gain fitted to the Salamander store (study q)
#   stage 5: the bank's partials where the grand's stiff strings have them, 16 below 7.8 kHz,
#            decaying alike, sustain kappa 0.003 (study s; 250 steps)
#   stage 6: the hammer spectrum: partial k takes kappa / k of the innovation (study t)
#   stage 7: sustain kappa back to 0.001 (study u, the previous bundled model)
#   stage 8: the channel-aligned Salamander data, the sampled noise rolled off above 4 kHz
#            (noise_lowpass 0.6; study x; 300 steps)
# then the EMA weights of stage 8 are exported as a safetensors folder with configs/default.json's
# synthesis settings (= study y): its sampling defaults (sustain temperature 0.3 after a 20 ms
# attack; the innovation heard directly while notes sound past their attacks, each note's share
# dying 22 dB/s faster than its gain; partial levels 1) and the partial levels fitted to this store and the instrument's isolated notes
# (`python scripts/note_corpus.py CORPUS`, then `python scripts/fit_partials.py STORE -c
# configs/default.json --level-corpus CORPUS --prompt-delay 0 --prompt-share 0.5 --velocity-tone`,
# pasted into the config: the levels, the upper partials' prompt sound and the velocity tone; then
# the rooms, `python
# scripts/fit_rooms.py STORE --tone -c configs/default.json --tone-share 0.5`: each year's release
# and tone; then the aftersound, `python scripts/note_corpus.py LONG --velocities 40 68 100 124
# --hold-seconds 5 --spacing-seconds 6.5` and `python scripts/fit_aftersound.py LONG -c
# configs/default.json`: each key's knee and second decay; they change synthesis only, so training
# with or without them is the same).
#
#   bash scripts/train-bundled-model.sh [WORK_DIR]      (default: ./work; about 3.6 hours on 1 core)
#
# Each stage runs in the foreground with frequent checkpoints; rerun the same stage with --resume
# (see `midi2wave train --help`) if it was interrupted. The fitted settings are in the study configs:
# the gains from `python scripts/fit_innovation_gain.py STORE -c CONFIG --pieces 8 --seconds 20`
# (each stage's config), the partial positions (stage 5 on) from `python scripts/fit_partials.py
# STORE`; stage 5's decays (scale 0.5, exponent 0) from an earlier form of that fit, which now
# prints 0.54 / 0.10. Stages 4-7 of the bundled model learned from the Salamander demo data made
# before make-demo-data aligned the microphone pair (commit d7db8f4's `make-demo-data`), stage 8
# from the aligned data; this script makes the aligned data for all of them, so a rerun of stages
# 4-7 learns from slightly different audio.
set -euo pipefail
WORK=${1:-work}
STAGE1_STEPS=${STAGE1_STEPS:-4999}
STAGE2_STEPS=${STAGE2_STEPS:-3077}
STAGE3_STEPS=${STAGE3_STEPS:-1000}
STAGE4_STEPS=${STAGE4_STEPS:-500}
STAGE5_STEPS=${STAGE5_STEPS:-250}
STAGE6_STEPS=${STAGE6_STEPS:-300}
STAGE7_STEPS=${STAGE7_STEPS:-300}
STAGE8_STEPS=${STAGE8_STEPS:-300}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
step() { printf '%s/runs/%s/checkpoints/step_%06d.pt' "$WORK" "$1" "$2"; }

[ -d "$WORK/demo-musescore" ] || midi2wave make-demo-data "$WORK/demo-musescore" --minutes 60 --seed 0 --instrument musescore
[ -f "$WORK/store-musescore/manifest.json" ] || midi2wave prepare "$WORK/demo-musescore" "$WORK/store-musescore" --jobs 2
[ -d "$WORK/demo-salamander" ] || midi2wave make-demo-data "$WORK/demo-salamander" --minutes 60 --seed 0
[ -f "$WORK/store-salamander/manifest.json" ] || midi2wave prepare "$WORK/demo-salamander" "$WORK/store-salamander" --jobs 2

# stage 1: dense rolls + excitation + MIDI resonator bank, the network reading the innovation
midi2wave train -c configs/study/l-resonators-innovation-input.json --data "$WORK/store-musescore" \
    --out "$WORK/runs/stage1" --max-steps "$STAGE1_STEPS" -q
# stage 2: a small sustain kappa (the previous bundled model)
midi2wave train -c configs/study/o-resonators-sustain-kappa-0.001.json --data "$WORK/store-musescore" \
    --out "$WORK/runs/stage2" --init-from "$WORK/runs/stage1" --max-steps "$STAGE2_STEPS" -q
# stage 3: the innovation gain (MuseScore store)
midi2wave train -c configs/study/p-innovation-gain.json --data "$WORK/store-musescore" \
    --out "$WORK/runs/stage3" --init-from "$(step stage2 "$STAGE2_STEPS")" --max-steps "$STAGE3_STEPS" -q
# stage 4: the Salamander grand, its own fitted gain
midi2wave train -c configs/study/q-innovation-gain-salamander.json --data "$WORK/store-salamander" \
    --out "$WORK/runs/stage4" --init-from "$(step stage3 "$STAGE3_STEPS")" --max-steps "$STAGE4_STEPS" -q
# stage 5: stiff-string partial positions and decays, 16 partials, sustain kappa 0.003
midi2wave train -c configs/study/s-stiff-strings.json --data "$WORK/store-salamander" \
    --out "$WORK/runs/stage5" --init-from "$(step stage4 "$STAGE4_STEPS")" --max-steps "$STAGE5_STEPS" -q
# stage 6: the hammer spectrum (kappa exponent 1)
midi2wave train -c configs/study/t-hammer-spectrum.json --data "$WORK/store-salamander" \
    --out "$WORK/runs/stage6" --init-from "$(step stage5 "$STAGE5_STEPS")" --max-steps "$STAGE6_STEPS" -q
# stage 7: sustain kappa 0.001 with its own fitted gain (the previous bundled model)
midi2wave train -c configs/study/u-hammer-spectrum-sustain-kappa-0.001.json --data "$WORK/store-salamander" \
    --out "$WORK/runs/stage7" --init-from "$(step stage6 "$STAGE6_STEPS")" --max-steps "$STAGE7_STEPS" -q
# stage 8: the sampled noise rolled off above 4 kHz (noise_lowpass 0.6), stage 7's gain; the bundled model
midi2wave train -c configs/study/x-noise-lowpass-u-gain.json --data "$WORK/store-salamander" \
    --out "$WORK/runs/stage8" --init-from "$(step stage7 "$STAGE7_STEPS")" --max-steps "$STAGE8_STEPS" -q
midi2wave export --format safetensors "$(step stage8 "$STAGE8_STEPS")" midi2wave/assets --force \
    --sampling-from configs/default.json
