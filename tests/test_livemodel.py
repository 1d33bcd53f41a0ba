"""The live engine's snapshot (render/livemodel.py): `midi2wave export` writes it for a causal
model, it plays bit for bit as the torch model does, a stale or broken one is never played, and
`play` / `live` load the bundled one without importing torch."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import numpy as np

from midi2wave.checkpoint import load_model, save_checkpoint
from midi2wave.render.export import export_model
from midi2wave.config import Config, SamplingOptions
from midi2wave.files import LIVE_ASSETS_DIR
from midi2wave.model.stepping import SteppingWeights
from midi2wave.render import live
from midi2wave.render.livemodel import LIVE_NAME, live_model, load_live_model
from helpers import LIVE_OPTIONS, live_model as tiny_live_model, live_piece


def _export(model, folder):
    folder.mkdir(parents=True, exist_ok=True)
    config = Config(data=model.data_config, model=model.model_config, sampling=model.sampling_defaults)
    ckpt = save_checkpoint(folder / "ckpt.pt", config, model)
    export_model(ckpt, folder / "export", fmt="safetensors")
    return folder / "export"


def _arrays(snapshot):
    out = {f"s.{n}": getattr(snapshot.stepping, n) for n in SteppingWeights.ARRAYS}
    c = snapshot.context
    out.update({"in_w": c.in_weight, "in_b": c.in_bias, "proj": c.proj_weight, "years": c.year_table,
                "pcm": snapshot.tables.pcm_to_class, "values": snapshot.tables.class_to_value})
    for i, layer in enumerate(c.layers):
        out.update({f"l{i}.{k}": v for k, v in dataclasses.asdict(layer).items()})
    return out


def _same(a, b):
    x, y = _arrays(a), _arrays(b)
    assert x.keys() == y.keys()
    for k in x:
        assert (x[k] is None) == (y[k] is None), k
        if x[k] is not None:
            assert np.array_equal(np.asarray(x[k]), np.asarray(y[k])), k
    assert a.tables.silence_class == b.tables.silence_class
    assert a.config == b.config


def test_an_exported_causal_model_plays_from_its_snapshot_bit_for_bit(tmp_path):
    model = tiny_live_model()
    folder = _export(model, tmp_path)
    assert (folder / LIVE_NAME).is_file()
    snapshot = load_live_model(folder)
    assert snapshot is not None
    _same(snapshot, live_model(model))
    assert load_live_model(folder / "model.safetensors") is not None
    piece = live_piece(tmp_path)
    want = live.render_file_live(model, piece, LIVE_OPTIONS, year=2011, end_s=1.0, block_samples=128)
    got = live.render_file_live(snapshot, piece, LIVE_OPTIONS, year=2011, end_s=1.0, block_samples=128)
    assert np.abs(want).max() > 0.01
    assert np.array_equal(got, want)


def test_a_model_that_looks_ahead_gets_no_snapshot(tmp_path):
    folder = _export(tiny_live_model(causal=False), tmp_path)
    assert (folder / "model.safetensors").is_file() and not (folder / LIVE_NAME).exists()
    assert load_live_model(folder) is None


def test_a_stale_or_broken_snapshot_is_never_played(tmp_path):
    folder = _export(tiny_live_model(), tmp_path)
    other = _export(tiny_live_model(causal=False), tmp_path / "other")
    snapshot, weights = (folder / LIVE_NAME).read_bytes(), (folder / "model.safetensors").read_bytes()
    # other weights under the same snapshot: refused
    (folder / "model.safetensors").write_bytes((other / "model.safetensors").read_bytes())
    assert load_live_model(folder) is None
    # the right weights again, the snapshot cut short: refused
    (folder / "model.safetensors").write_bytes(weights)
    assert load_live_model(folder) is not None
    (folder / LIVE_NAME).write_bytes(snapshot[: len(snapshot) // 2])
    assert load_live_model(folder) is None
    # the snapshot is used only where the model would be loaded from model.safetensors
    (folder / LIVE_NAME).write_bytes(snapshot)
    assert load_live_model(folder) is not None
    assert load_live_model(folder / "nothing-here.pt") is None
    (folder / "last.pt").write_bytes((tmp_path / "ckpt.pt").read_bytes())  # a run folder: last.pt comes first
    assert load_live_model(folder) is None
    (folder / "last.pt").unlink()


def test_an_edited_snapshot_of_the_right_weights_is_not_played(tmp_path):
    """The hash covers the model's weights, not the snapshot: a snapshot edited after it was
    written (metadata, shapes, dtypes) is refused, not played or raised from."""
    from safetensors import safe_open
    from safetensors.numpy import save

    folder = _export(tiny_live_model(), tmp_path)
    with safe_open(str(folder / LIVE_NAME), framework="numpy") as f:
        meta, tensors = dict(f.metadata()), {k: f.get_tensor(k) for k in f.keys()}
    good = (folder / LIVE_NAME).read_bytes()
    edits = [({"context_gates": "[]"}, {}), ({"context_dilations": "[1]"}, {}), ({"config": "{}"}, {}),
             ({}, {"stepping.dilated_weight": tensors["stepping.dilated_weight"].astype(np.float16)}),
             ({}, {"context.in_weight": tensors["context.in_weight"].T.copy()})]
    for meta_edit, tensor_edit in edits:
        (folder / LIVE_NAME).write_bytes(save({**tensors, **tensor_edit}, metadata={**meta, **meta_edit}))
        assert load_live_model(folder) is None, (meta_edit, list(tensor_edit))
    (folder / LIVE_NAME).write_bytes(good)
    assert load_live_model(folder) is not None


def test_the_bundled_live_models_snapshot_is_made_from_its_weights():
    snapshot = load_live_model(LIVE_ASSETS_DIR)
    assert snapshot is not None, "re-make it: see docs/live.md, 'How soon `play` sounds'"
    model, _ = load_model(LIVE_ASSETS_DIR)
    _same(snapshot, live_model(model))


def test_play_loads_the_bundled_live_model_without_torch(tmp_path):
    """`midi2wave play` from the snapshot: torch never imported, and the same WAV as from the model."""
    piece = live_piece(tmp_path)
    code = (
        "import sys, runpy; sys.argv = ['midi2wave', 'play', sys.argv[1], '--no-audio', '-o', sys.argv[2], "
        "'--end', '0.5', '--quiet']\n"
        "try:\n    runpy.run_module('midi2wave', run_name='__main__')\nexcept SystemExit as e:\n    assert not e.code, e\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    out = tmp_path / "fast.wav"
    run = subprocess.run([sys.executable, "-c", code, piece, str(out)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    import soundfile as sf

    model, _ = load_model(LIVE_ASSETS_DIR)
    want = live.render_file_live(model, piece, SamplingOptions(), end_s=0.5)
    got, rate = sf.read(out, dtype="int16")
    assert rate == 16000 and got.shape == want.shape
    assert np.array_equal(got, np.clip(np.round(want * 32768), -32768, 32767).astype(np.int16))
