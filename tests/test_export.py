"""`midi2wave export --format nv-wavenet`: nv-wavenet's layout, its per-sample algorithm run in numpy
on the exported arrays reproducing the model's logits, and each incompatibility refused by name."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from midi2wave import constants as C
from midi2wave.checkpoint import save_checkpoint
from midi2wave.cli import main
from midi2wave.config import Config, DataConfig, ModelConfig, ResonatorConfig
from midi2wave.render.export import (
    NV_WAVENET_ARGS,
    ExportError,
    export_nv_wavenet,
    nv_wavenet_conditioning,
    nv_wavenet_weights,
    reference_logits,
)
from midi2wave.model import Midi2Wave
from midi2wave.model.distributions import mulaw_encode, quantize_pcm
from midi2wave.render.synthesize import midi_model_inputs

from test_synthesize import write_midi

# the smallest nv-wavenet shape: R = 32, S = 128, A = 256
NV = ModelConfig(residual_channels=32, gate_channels=64, skip_channels=128, n_stacks=2, layers_per_stack=3,
                 output_kind="mulaw", context_channels=8, context_stacks=1, context_layers_per_stack=2)
DATA = DataConfig(conditioning=("onset_velocity", "pedals"), excitation_partials=2)


def _model(model_config: ModelConfig = NV, data: DataConfig = DATA, seed: int = 0) -> Midi2Wave:
    torch.manual_seed(seed)
    model = Midi2Wave(model_config, data).eval()
    with torch.no_grad():  # make every bias, the year table and the excitation weights matter
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model


@pytest.fixture()
def midi(tmp_path):
    return write_midi(tmp_path / "piece.mid", [(0.0, 0.03, 60, 100), (0.01, 0.05, 67, 50)],
                      sustain=[(0.0, 90), (0.02, 0)])


@pytest.mark.parametrize("overrides", [{}, {"bias": False}, {"upsample": "transposed"},
                                       {"residual_channels": 64, "gate_channels": 128, "skip_channels": 256,
                                        "n_stacks": 1, "layers_per_stack": 2}])
def test_reference_algorithm_on_exported_arrays_reproduces_the_logits(midi, tmp_path, overrides):
    model = _model(dataclasses.replace(NV, **overrides))
    path = tmp_path / "nv.pt"
    export_nv_wavenet(model, path, midi_path=midi, end_s=0.06, year=2011)
    exported = torch.load(path, weights_only=True)  # plain tensors, lists, numbers and strings only

    inputs = midi_model_inputs(model, midi, end_s=0.06, year=2011)
    T = inputs.n_samples
    cond_input = exported["cond_input"]
    assert tuple(cond_input.shape) == (2 * model.model_config.residual_channels, 1, model.model_config.n_layers, T)
    g = torch.Generator().manual_seed(0)
    audio = quantize_pcm(torch.rand(1, T, generator=g) * 1.2 - 0.6)
    with torch.no_grad():
        logits = model(audio, inputs.rolls, inputs.year, inputs.excitation)  # [1, 256, T]
    ours = reference_logits(exported, mulaw_encode(audio).numpy(), cond_input)
    assert np.abs(ours - logits.double().numpy()).max() <= 1e-4
    assert float(logits.abs().max()) > 0.5  # a real check, not of zeros


def test_batch_conditioning_layout_with_year_and_excitation():
    model = _model()
    B, F = 3, 2
    T = F * model.samples_per_frame
    g = torch.Generator().manual_seed(1)
    rolls = torch.rand(B, DATA.conditioning_channels, F + 2 * model.context_margin_frames, generator=g)
    year = torch.tensor([0, C.year_index(2004), C.year_index(2018)])
    exc = torch.randn(B, T, generator=g)
    audio = quantize_pcm(torch.rand(B, T, generator=g) - 0.5)
    with torch.no_grad():
        logits = model(audio, rolls, year, exc)
    weights = nv_wavenet_weights(model)
    cond = nv_wavenet_conditioning(model, rolls, year, exc, T)
    assert tuple(cond.shape) == (64, B, 6, T)  # channels x batch x layers x samples
    ours = reference_logits(weights, mulaw_encode(audio).numpy(), cond)
    assert np.abs(ours - logits.double().numpy()).max() <= 1e-4


def test_layout_matches_the_nv_wavenet_wrapper():
    model = _model()
    w = nv_wavenet_weights(model)
    R, S, A, L = 32, 128, 256, 6
    assert set(NV_WAVENET_ARGS) <= set(w)
    assert w["embedding_prev"].shape == (A, R) and w["embedding_curr"].shape == (A, R)
    assert w["conv_out_weight"].shape == (A, S) and w["conv_end_weight"].shape == (A, A)
    assert [tuple(x.shape) for x in w["dilate_weights"]] == [(2 * R, R, 2)] * L
    assert [tuple(x.shape) for x in w["dilate_biases"]] == [(2 * R,)] * L
    assert [tuple(x.shape) for x in w["res_weights"]] == [(R, R)] * (L - 1)  # the wrapper adds the last
    assert [tuple(x.shape) for x in w["res_biases"]] == [(R,)] * (L - 1)
    assert [tuple(x.shape) for x in w["skip_weights"]] == [(S, R)] * L
    assert [tuple(x.shape) for x in w["skip_biases"]] == [(S,)] * L
    assert w["max_dilation"] == 4 and w["use_embed_tanh"] is False
    assert w["head_biases_nonzero"] is True
    assert nv_wavenet_weights(_model(dataclasses.replace(NV, bias=False)))["head_biases_nonzero"] is False


@pytest.mark.parametrize("overrides,named", [
    ({"output_kind": "mol"}, "model.output_kind"),
    ({"input_kind": "scalar"}, "model.input_kind"),
    ({"mulaw_classes": 128}, "model.mulaw_classes"),
    ({"residual_channels": 16, "gate_channels": 32}, "model.residual_channels"),
    ({"residual_channels": 48, "gate_channels": 96}, "model.residual_channels"),
    ({"skip_channels": 64}, "model.skip_channels"),
    ({"kernel_size": 3}, "model.kernel_size"),
    ({"gate_channels": 128}, "model.gate_channels"),
])
def test_incompatible_models_are_refused_naming_the_constraint(overrides, named, tmp_path):
    model = Midi2Wave(dataclasses.replace(NV, **overrides), DATA)
    with pytest.raises(ExportError, match=named.replace(".", r"\.")):
        export_nv_wavenet(model, tmp_path / "x.pt")
    assert not (tmp_path / "x.pt").exists()


def test_models_with_the_resonator_bank_are_refused(tmp_path):
    model = Midi2Wave(NV, dataclasses.replace(DATA, resonators=ResonatorConfig(partials=4)))
    with pytest.raises(ExportError, match=r"data\.resonators\.partials = 4"):
        export_nv_wavenet(model, tmp_path / "x.pt")
    assert not (tmp_path / "x.pt").exists()


def test_head_hidden_width_other_than_a_is_refused():
    model = _model()
    model.head[1] = torch.nn.Conv1d(128, 200, 1)
    model.head[3] = torch.nn.Conv1d(200, 256, 1)
    with pytest.raises(ExportError, match="hidden width is 200"):
        nv_wavenet_weights(model)


def test_cli_export_writes_loadable_file_and_refuses_overwrite(midi, tmp_path, capsys):
    model = _model()
    ckpt = tmp_path / "m.pt"
    save_checkpoint(ckpt, Config(data=DATA, model=NV), model)
    out = tmp_path / "nv.pt"
    assert main(["export", str(ckpt), str(out), "--midi", str(midi), "--end", "0.04"]) == 0
    d = torch.load(out, weights_only=True)
    assert d["format"] == "midi2wave-nv-wavenet" and tuple(d["cond_input"].shape) == (64, 1, 6, 640)
    assert "setOutWeights" in capsys.readouterr().out  # the note about the head's biases
    assert main(["export", str(ckpt), str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["export", str(ckpt), str(out), "--force"]) == 0
    assert "cond_input" not in torch.load(out, weights_only=True)

    mol = tmp_path / "mol.pt"
    save_checkpoint(mol, Config(data=DATA, model=dataclasses.replace(NV, output_kind="mol")),
                    Midi2Wave(dataclasses.replace(NV, output_kind="mol"), DATA))
    assert main(["export", str(mol), str(tmp_path / "mol_nv.pt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "model.output_kind" in err[0] and "mu-law" in err[0]


def test_cli_export_safetensors_writes_a_model_folder_that_loads(tmp_path, capsys):
    from midi2wave.checkpoint import load_model

    model = _model()
    ckpt = tmp_path / "m.pt"
    save_checkpoint(ckpt, Config(data=DATA, model=NV), model)
    out = tmp_path / "release"
    assert main(["export", "--format", "safetensors", str(ckpt), str(out)]) == 0
    assert (out / "model.safetensors").exists() and (out / "config.json").exists()
    loaded, config = load_model(out / "model.safetensors")
    assert config.model == NV
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        torch.testing.assert_close(a, b, msg=name)
    assert main(["export", "--format", "safetensors", str(ckpt), str(out)]) == 2  # refuses to overwrite
    assert "already exists" in capsys.readouterr().err
    # synthesis settings only from the model's own config: another model's is one line naming the file
    other = tmp_path / "other.json"
    other.write_text(Config(data=DATA, model=dataclasses.replace(NV, residual_channels=NV.residual_channels * 2)).to_json())
    assert main(["export", "--format", "safetensors", str(ckpt), str(out), "--force", "--sampling-from", str(other)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "other.json" in err[0] and "model.residual_channels: differs" in err[0], err
