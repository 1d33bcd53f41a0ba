"""The numba kernel's sampler draws from fixed-point integer weights (`kernel.WEIGHT_SCALE`): inlined
into the fastmath kernel, a float sum of the probabilities was vectorized with a lane arrangement
that a fresh compile and numba's cache chose differently, so the first process after a compile
rendered other audio than the later ones (docs/live.md, "Across processes")."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import torch

from midi2wave.model import distributions
from midi2wave.render import kernel

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_the_draw_is_the_integer_inverse_cdf_and_torchs_but_for_rare_flips():
    rng = np.random.default_rng(0)
    flips = 0
    for case in range(400):
        logits = (rng.normal(0.0, 3.0, 256)).astype(np.float32)
        u = np.float32(rng.random())
        e = np.exp(logits - logits.max()).astype(np.float32)
        w = (e.astype(np.float64) * kernel.WEIGHT_SCALE).astype(np.int64)
        want = min(int(np.count_nonzero(np.cumsum(w) <= np.int64(np.float64(u) * np.float64(w.sum())))), 255)
        assert kernel._select(e, 256, u) == want, case
        probs = e.copy()
        assert kernel._sample_mulaw(logits, 256, u, np.float32(1.0), np.float32(0.0), probs) == want
        torch_k = distributions._select(torch.cumsum(torch.softmax(torch.from_numpy(logits), -1), -1),
                                        torch.tensor(u))
        flips += int(torch_k) != want
    assert flips <= 4, flips  # a float rounding of torch's running sum across u


def test_a_fresh_compile_and_numbas_cache_render_the_same_live_audio(tmp_path):
    """The live model's render of examples/example.mid's first 6 s in a process that compiles the
    kernel and in one that loads it from numba's cache (broken once: with the float sum the two
    differed from 4.69 s on). About 20 s on a 2-core VM, so CI runs it."""
    code = ("import hashlib; from midi2wave.files import LIVE_ASSETS_DIR; from midi2wave.render import live; "
            "from midi2wave.render.livemodel import load_live_model; from midi2wave.config import SamplingOptions; "
            "x = live.render_file_live(load_live_model(LIVE_ASSETS_DIR), 'examples/example.mid', SamplingOptions(), "
            "end_s=6.0, block_samples=64); print(hashlib.md5(x.tobytes()).hexdigest())")
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "numba"), MIDI2WAVE_KERNELS="jit")
    digests = [subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip().splitlines()[-1] for _ in range(2)]
    assert (tmp_path / "numba").is_dir()  # the first compiled and cached, the second loaded
    assert digests[0] == digests[1], digests
