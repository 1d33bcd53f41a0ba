"""Generation: from a trained model and MIDI to audio, and the model exported for other engines (render/).

Owns: autoregressive generation (`generate.py`: `GenerationCache`, `generate`), the two engines
behind it (`engines.py`: torch; numba, running the fused CPU kernel of `kernel.py`), chunk planning
and joining (`chunks.py`), whole pieces and files (`synthesize.py`, the library behind `midi2wave
synthesize` and `midi2wave.render`) and the nv-wavenet / safetensors export (`export.py`). It reads
models through `checkpoint` and `model/`, and inputs through `conditioning/`; `evaluation/`, `api`
and `cli` call it. Units: audio float32 in [-1, 1) at the model's rate (16 kHz), 16-bit on output;
`B` streams, `n` samples; times given in seconds (`start_s`, `chunk_seconds`).

This package's `__init__` must stay light: `import midi2wave` imports it first, so that the
package's attribute `midi2wave.render` is the function `render(midi, model)`, not this package.
Import its modules as `from midi2wave.render import synthesize` (never `import
midi2wave.render.synthesize as ...`). Entry points (`__all__`, imported on first use):
- `synthesize_files(inputs, options, *, out, checkpoint, ...) -> exit status` (the command),
  `render_midi(model, path, options)` / `render_notes(model, notes, pedals, options)` -> float32
  [n], `stream_notes(...) -> Rendering` (the same, piece by piece) (synthesize.py);
- `GenerationCache`, `teacher_forced_params` (generate.py; `generate.generate` is the sampler);
- `make_engine`, `resolve_engine`, `Engine` (engines.py);
- `ChunkPlan`, `StreamingJoin` (chunks.py);
- `export_model`, `ExportError` (export.py);
- `LiveSynth`, `RateAdapter`, `render_file_live` (live.py: the live engine, events in and blocks out,
  explicit state; block-wise == offline bit for bit) and `JackBackend`, `DeviceBackend` (playback.py:
  JACK, PortAudio + RtMidi; `midi2wave live`, `midi2wave play`).

The step-by-step weights
------------------------
```
model/stepping.py   stepping_weights(model) -> SteppingWeights   the only reader of head / layers / input_layer
      |                    |                          |
engines.TorchEngine   kernel.pack_weights        export.nv_wavenet_weights
engines.NumbaEngine --'  (kernel layout, fp32/16/int8)
      |
generate.GenerationCache (engine + position + resonator bank) <- generate() / teacher_forced_params()
```
An engine (`engines.Engine`) has `reset()`, `cond_layout(layer_cond, n_steps)`, `launch(Block,
threads) -> wait` and `close()`; `generate._run_blocks` cuts a call into `Block`s and launches them
the same way for both engines (the numba one runs off the GIL while the next block is prepared).
`mulaw_tables` (PCM level -> class, class -> value) lives in `model/distributions.py`.

`generate(model, n_samples, conditioning=..., year=..., excitation=..., uniforms|seed, temperature,
min_p, prime, engine="auto"|"numba"|"torch", cache=GenerationCache(...)) -> [B, n_samples]`: the context
stack runs once per call; each layer keeps a ring buffer of the (k-1)*d past inputs it reaches; the
same uniforms give the same samples in both engines. Each sample is drawn by inverse CDF from the
head's distribution after the temperature, less its tail under `min_p` of the most likely value
(min-p sampling: `model.distributions.sample_mulaw` / `sample_mol`, and `kernel._sample_mulaw` /
`_sample_mol`, which tests/test_generate.py holds equal up to rare rounding flips). `synthesize.render_notes` / `render_midi` turn
a MIDI file into the model's own conditioning (from its config), optionally cut it into overlapping
chunks generated as one batch and crossfaded, and `synthesize_files` writes WAVs. Full API in
generate.py's module docstring.

Streaming a render
------------------
A render streams (`synthesize.stream_notes` -> `Rendering`, float32 pieces in order;
`render_notes` collects them): the sounding spans' rows are generated in rounds (all chunks of a
round as one batch; one stream per span when unchunked), every row window by window (a 1-s first
window, then 10 s) through one `GenerationCache` per group of rows, the next window's inputs
(`model_inputs` -> `conditioning.inputs.window_inputs`, uniforms, temperatures) built on a helper
thread while the kernel threads generate the current one. A round's rows are joined one by one
(`chunks.StreamingJoin`: hands back everything before the next row's crossfade) and each final part
goes straight to the WAV writer; silences come as zero blocks. Memory is a round (rows x chunk
length), not the piece. Samples over full scale (equal-power fades of correlated chunks) are
clipped one by one, never rescaled. Each generated span passes through a DC blocker of its own
(`audio.DCBlocker`: a running mean at 5 Hz subtracted; it takes over without a step, after a
prime, which is output as given), so a model output settled on a constant is not heard and the
silences stay exact zeros; `evaluation.evaluate` passes each excerpt's generation through one from
its lead-in's start.

Sampling settings and chunks
----------------------------
```
cli.py (argparse -> SamplingOptions, once) --> synthesize.synthesize_files --> stream_notes(model, notes, pedals, options, ...) --> audio.wav_writer
midi2wave.render(midi, checkpoint, options) (api.py) --> render_notes (= stream_notes(...).collect())  |
                                                  chunks.ChunkPlan.make / StreamingJoin <-------------+   chunks.ChunkPlan.make / .join <-- evaluation.evaluate
```
`config.SamplingOptions` carries every sampling setting (temperature, sustain temperature, min-p, seed,
engine, precision, threads, chunk / overlap seconds, crossfade) from the command line or the Python
API down to `generate`; the piece (notes, window, year, prime) travels beside it. Each field
declares its own command-line flag (`cli._add_sampling_flags` builds them), and settings left None
take the model's own defaults in one place, `SamplingOptions.resolve(config)`, at each entry
(`synthesize_files`, `stream_notes`, `synthesize_corpus`, `evaluate_model`); a loaded model carries
its defaults (`Midi2Wave.sampling_defaults`), so `render(midi, model)` and `render(midi, path)` sound
the same. `rows.py` builds the rows a round generates (inputs, temperatures, schedules) for both
`stream_notes` and evaluation's excerpts (`render_batch`), and the bank's synthesis settings of the
options in the bank's units (`bank_sampling`), which the live engine's bank takes too. `chunks.py` owns
chunk planning and the crossfade join for `synthesize` and `evaluate`, and, for long pieces, the
default chunk length (`auto_chunk_seconds`: chunks across all cores once a piece is long enough,
in rounds of 4 streams per core) and the sounding spans (`sounding_spans`: long silences are not
generated, the output there is exact zeros). `synthesize_files` checks every output (folder
writable, file not taken without --force) before the model loads. Library modules take plain
values and options, never argparse namespaces.

The kernel's cache
------------------
numba keys a cached function on its own file only, and the kernel inlines the bank's jitted
helpers from `conditioning/resonators.py`, so `kernel.drop_stale_kernel_cache` deletes the cached
kernel in the package's `__pycache__` when resonators.py changes.

The kernels built ahead of time
-------------------------------
Every jitted function is declared through `midi2wave.jit` (`jit.njit`, `jit.intrinsic`). `build_kernels`
(`midi2wave kernels --build`) compiles the live engine's entry points ahead of time into one
extension module for this CPU; `play` and `live` load it when it fits these sources (`jit.kernels_key`)
and then never import numba: same audio, no numba start (docs/live.md).
"""

from __future__ import annotations

from ..lazy import entry_points

# entry point -> the module that defines it. Never a submodule's own name (`generate`, `synthesize`,
# `export` ...), so that `from midi2wave.render import generate` still imports the module. Nothing
# here is imported eagerly: `import midi2wave` imports this package and must not load torch or numba.
_ENTRY_POINTS = {
    "synthesize_files": "synthesize", "render_midi": "synthesize", "render_notes": "synthesize",
    "stream_notes": "synthesize", "Rendering": "synthesize",
    "GenerationCache": "generate", "teacher_forced_params": "generate",
    "Engine": "engines", "make_engine": "engines", "resolve_engine": "engines",
    "ChunkPlan": "chunks", "StreamingJoin": "chunks",
    "export_model": "export", "ExportError": "export",
    "LiveSynth": "live", "RateAdapter": "live", "render_file_live": "live",
    "JackBackend": "playback", "DeviceBackend": "playback",
    "build_kernels": "native",
}

__all__ = list(_ENTRY_POINTS)


__getattr__, __dir__ = entry_points(__name__, _ENTRY_POINTS)
