"""Peak memory of a full default render (`synthesize.render_notes` + the WAV write) with the
generation kernel stubbed out (zeros of the right shape): what the render path itself holds as
the piece grows, without waiting for a full generation.

    python bench/render_memory.py TREE PIECE.mid LABEL      # TREE: a checkout (this one, or a baseline)

Works with this tree's and the previous commit's `render_notes` signature.
"""
import resource, sys, time
root, piece, label = sys.argv[1], sys.argv[2], sys.argv[3]
sys.path.insert(0, root)
import numpy as np, torch
import midi2wave
assert midi2wave.__file__.startswith(root)
import midi2wave.generate as gen
from midi2wave.checkpoint import load_model
from midi2wave.config import SamplingOptions
from midi2wave import synthesize as S
import inspect

generated = [0]
def stub(model, n_samples, *, uniforms=None, progress=None, **kw):
    rows = uniforms.shape[0]
    generated[0] += rows * n_samples
    if progress is not None:
        progress(n_samples, n_samples)
    return torch.zeros(rows, n_samples)
gen.generate = stub
model, config = load_model(None)
notes, pedals = S.read_piece(piece, model.data_config.sustain_threshold)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.time()
opts = SamplingOptions(threads=2)  # the defaults otherwise
if "config" in inspect.signature(S.render_notes).parameters:
    audio = S.render_notes(model, None, notes, pedals, 0.0, None, opts, progress=False)
else:
    audio = S.render_notes(model, notes, pedals, opts, progress=False)
from midi2wave.audio import save_wav
import tempfile
with tempfile.TemporaryDirectory() as tmp:
    save_wav(f"{tmp}/out.wav", audio, 16000, force=True)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(f"{label}: {len(audio) / 16000 / 60:.1f} min, generated {generated[0] / 16000 / 60:.1f} min of samples, "
      f"peak RSS {peak / 1024:.0f} MB (after model load {before / 1024:.0f} MB, render adds {(peak - before) / 1024:.0f} MB), "
      f"output float32 {audio.nbytes / 2**20:.0f} MB, {time.time() - t:.0f} s")
