"""Checkpoints: weights_only loading (pickled objects refused), model rebuilding, safetensors export, info."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

import midi2wave
import midi2wave.checkpoint as ckpt
from midi2wave.checkpoint import (
    export_safetensors,
    load_checkpoint,
    load_model,
    save_checkpoint,
)
from midi2wave.cli import main as cli_main
from midi2wave.config import ConfigError, ModelSampling
from midi2wave.errors import CheckpointError
from midi2wave.info import describe
from midi2wave.model import Midi2Wave
from store_fixture import make_store
from helpers import tiny_config

ROOT = Path(__file__).resolve().parents[1]
TINY = tiny_config()

EXECUTED: list[str] = []


class Payload:
    """Unpickling this would run code (it records that it ran)."""

    def __reduce__(self):
        return (EXECUTED.append, ("unpickled!",))


def inputs(model: Midi2Wave, batch: int = 2, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    d = model.data_config
    audio = torch.round((torch.rand(batch, d.segment_samples, generator=g) - 0.5) * 32768) / 32768
    cond = torch.rand(batch, d.conditioning_channels, d.segment_frames + 2 * model.context_margin_frames, generator=g)
    return audio, cond, torch.tensor([1, 3])[:batch]


def trained_pair(seed: int = 0) -> tuple[Midi2Wave, Midi2Wave]:
    torch.manual_seed(seed)
    model = Midi2Wave(TINY.model, TINY.data)
    ema = Midi2Wave(TINY.model, TINY.data)  # different weights from the model
    return model, ema


@pytest.fixture()
def checkpoint(tmp_path) -> tuple[Path, Midi2Wave, Midi2Wave]:
    model, ema = trained_pair()
    opt = torch.optim.AdamW(model.parameters())
    audio, cond, year = inputs(model)
    model.bits_per_sample(model(audio, cond, year), audio).backward()
    opt.step()
    path = save_checkpoint(tmp_path / "step_000007.pt", TINY, model, 7, ema=ema, optimizer=opt.state_dict(),
                           data={"epoch": 1, "batch_in_epoch": 2}, metrics={"val_bits_per_sample": 9.5})
    return path, model, ema


def test_round_trip_is_weights_only(checkpoint):
    path, model, ema = checkpoint
    state = torch.load(path, weights_only=True)  # plain data only
    assert isinstance(state["config"], str) and json.loads(state["config"])["model"]["residual_channels"] == 4
    state = load_checkpoint(path)
    assert state["step"] == 7 and state["data"] == {"epoch": 1, "batch_in_epoch": 2}
    for name, value in model.state_dict().items():
        assert torch.equal(state["model"][name], value)
        assert torch.equal(state["ema"][name], ema.state_dict()[name])
    assert state["optimizer"]["state"]


def test_save_refuses_non_plain_data(tmp_path):
    model, _ = trained_pair()
    with pytest.raises(TypeError, match="Payload"):
        save_checkpoint(tmp_path / "x.pt", TINY, model, 0, metrics={"bad": Payload()})
    assert not list(tmp_path.iterdir())  # nothing written, no temp file left


@pytest.mark.parametrize("payload", ["top", "nested"])
def test_pickled_objects_are_refused_without_running_them(tmp_path, payload):
    model, _ = trained_pair()
    state = {"format": "midi2wave-checkpoint", "version": 1, "config": TINY.to_json(), "step": 0,
             "model": model.state_dict()}
    if payload == "top":
        obj = Payload()
    else:
        state["extra"] = {"list": [1, Payload()]}
        obj = state
    path = tmp_path / "evil.pt"
    torch.save(obj, path)
    EXECUTED.clear()
    with pytest.raises(CheckpointError, match=r"evil\.pt: refused"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match=r"evil\.pt: refused"):
        load_model(path)
    assert EXECUTED == []


def test_missing_corrupt_and_foreign_files(tmp_path, checkpoint):
    with pytest.raises(CheckpointError, match=r"nope\.pt: file not found"):
        load_checkpoint(tmp_path / "nope.pt")
    path, _, _ = checkpoint
    data = path.read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"cut\.pt: not a readable checkpoint"):
        load_checkpoint(tmp_path / "cut.pt")
    (tmp_path / "text.pt").write_text("hello")
    with pytest.raises(CheckpointError, match=r"text\.pt: not a readable checkpoint"):
        load_checkpoint(tmp_path / "text.pt")
    import pickle

    (tmp_path / "trunc.pt").write_bytes(pickle.dumps({"a": 1}, protocol=2)[:7])  # legacy format, cut short
    with pytest.raises(CheckpointError, match=r"trunc\.pt: not a readable checkpoint"):
        load_checkpoint(tmp_path / "trunc.pt")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match=r"other\.pt: not a midi2wave checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


def test_step_checkpoints_sort_numerically(tmp_path):
    for step in (999_999, 1_000_000, 500):
        (tmp_path / f"step_{step:06d}.pt").touch()
    (tmp_path / "step_notanumber.pt").touch()
    assert [p.name for p in ckpt.step_checkpoints(tmp_path)] == ["step_000500.pt", "step_999999.pt", "step_1000000.pt"]
    assert ckpt.find_checkpoint(tmp_path).name == "step_1000000.pt"
    (tmp_path / "last.pt").touch()
    assert ckpt.find_checkpoint(tmp_path).name == "last.pt"


def test_load_model_rebuilds_from_the_file_alone(checkpoint):
    path, model, ema = checkpoint
    audio, cond, year = inputs(model)
    with torch.no_grad():
        for use_ema, reference in ((False, model), (True, ema)):
            loaded, config = load_model(path, use_ema=use_ema)
            assert config == TINY and not loaded.training
            torch.testing.assert_close(loaded(audio, cond, year), reference.eval()(audio, cond, year), rtol=0, atol=0)
        # the package-level API, and a folder holding the checkpoint
        loaded, _ = midi2wave.load_model(path.parent)
        torch.testing.assert_close(loaded(audio, cond, year), ema(audio, cond, year), rtol=0, atol=0)


def test_weights_that_do_not_match_the_config_are_an_error(tmp_path):
    model, _ = trained_pair()
    other = TINY.replace(model=TINY.model.__class__(**{**TINY.model.__dict__, "residual_channels": 6}))
    save_checkpoint(tmp_path / "bad.pt", other, model, 0)
    with pytest.raises(CheckpointError, match=r"bad\.pt: weights do not match"):
        load_model(tmp_path / "bad.pt")


def test_safetensors_export_and_load(tmp_path, checkpoint):
    path, model, ema = checkpoint
    target = export_safetensors(path, tmp_path / "export")
    assert target.name == "model.safetensors" and (tmp_path / "export" / "config.json").is_file()
    assert json.loads((tmp_path / "export" / "config.json").read_text()) == TINY.to_dict()
    audio, cond, year = inputs(model)
    with torch.no_grad():
        loaded, config = load_model(tmp_path / "export")
        assert config == TINY
        torch.testing.assert_close(loaded(audio, cond, year), ema.eval()(audio, cond, year), rtol=0, atol=0)
        # model weights instead of EMA; the config from a sibling config.json when the metadata lacks it
        from safetensors.torch import save_file

        export_safetensors(load_checkpoint(path), tmp_path / "raw", use_ema=False)
        loaded, _ = load_model(tmp_path / "raw" / "model.safetensors")
        torch.testing.assert_close(loaded(audio, cond, year), model.eval()(audio, cond, year), rtol=0, atol=0)
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, tmp_path / "raw" / "model.safetensors")
        loaded, config = load_model(tmp_path / "raw" / "model.safetensors")
        assert config == TINY
    (tmp_path / "raw" / "config.json").unlink()
    with pytest.raises(CheckpointError, match="no config"):
        load_model(tmp_path / "raw" / "model.safetensors")
    with pytest.raises(CheckpointError, match="already exists"):
        export_safetensors(path, tmp_path / "export")
    # a released model's sampling defaults may differ from the checkpoint's (sampling never changes training)
    tuned = ModelSampling(sustain_temperature=0.3, sustain_innovation=0.4)
    export_safetensors(path, tmp_path / "tuned", synthesis_from=dataclasses.replace(TINY, sampling=tuned))
    _, config = load_model(tmp_path / "tuned")
    assert config.sampling == tuned and config.model == TINY.model and config.data == TINY.data
    # ... but nothing else (the partial levels: tests/test_partial_levels.py)
    with pytest.raises(ConfigError, match="data.segment_seconds: differs"):
        export_safetensors(path, tmp_path / "other", synthesis_from=dataclasses.replace(
            TINY, data=dataclasses.replace(TINY.data, segment_seconds=TINY.data.segment_seconds * 2)))
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(CheckpointError, match=r"junk\.safetensors: not a readable safetensors"):
        load_model(tmp_path / "junk.safetensors")


def test_bundled_model_missing_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(ckpt, "ASSETS_DIR", tmp_path)
    with pytest.raises(CheckpointError, match="no bundled model"):
        midi2wave.load_model()
    with pytest.raises(CheckpointError, match="no bundled model"):
        describe(None)


def test_bundled_model_loads_when_present(tmp_path, monkeypatch, checkpoint):
    path, _, ema = checkpoint
    export_safetensors(path, tmp_path)
    monkeypatch.setattr(ckpt, "ASSETS_DIR", tmp_path)
    model, config = midi2wave.load_model()
    assert config == TINY
    assert all(torch.equal(model.state_dict()[k], v) for k, v in ema.state_dict().items())


def test_info_describes_checkpoints_configs_and_stores(tmp_path, checkpoint, capsys):
    path, _, _ = checkpoint
    text = describe(path)
    assert "step 7" in text and "parameters: 1,626" in text and "receptive:  17 samples = 1.1 ms" in text
    assert "val bits per sample 9.5000" in text
    export_safetensors(path, tmp_path / "export")
    assert "exported model" in describe(tmp_path / "export")
    assert "R=64 G=128 S=256" in describe(ROOT / "configs" / "nv-wavenet.json")
    assert "with a prompt sound over 0.314 s" in describe(ROOT / "configs" / "default.json")
    assert "; rooms of 10 years with their tones" in describe(ROOT / "configs" / "default.json")
    make_store(tmp_path / "store", {"train": 2, "validation": 1}, seconds=1.0)
    text = describe(tmp_path / "store")
    assert "3 pieces" in text and "train            2 pieces" in text and "2.0 s" in text
    assert cli_main(["info", str(path)]) == 0
    assert "checkpoint at step 7" in capsys.readouterr().out
    assert cli_main(["info", str(tmp_path / "missing")]) == 2
    assert "missing: no such file" in capsys.readouterr().err
