"""Config files: clear one-line errors naming file and key; the presets in configs/ load and build."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from midi2wave.cli import main as cli_main
from midi2wave.checkpoint import bundled_model_path, load_model, load_state, save_checkpoint
from midi2wave.config import Config, ConfigError, DataConfig, ResonatorConfig, config_from_dict, load_config
from midi2wave.model import Midi2Wave

ROOT = Path(__file__).resolve().parents[1]
PRESETS = sorted((ROOT / "configs").rglob("*.json"))  # every preset, the study configs included


def write(tmp_path: Path, values, name: str = "cfg.json") -> Path:
    path = tmp_path / name
    path.write_text(values if isinstance(values, str) else json.dumps(values))
    return path


@pytest.mark.parametrize("values, key, problem", [
    ({"model": {"residual_channel": 8}}, "model.residual_channel", "unknown key (did you mean 'residual_channels'?)"),
    ({"trian": {}}, "trian", "unknown section"),
    ({"train": {"learning_rate": -1}}, "train.learning_rate", "must be > 0"),
    ({"model": {"output_kind": "gauss"}}, "model.output_kind", "must be 'mol' or 'mulaw'"),
    ({"data": {"conditioning": ["onsets"]}}, "data.conditioning", "unknown channel"),
    ({"train": {"batch_size": "8"}}, "train.batch_size", "must be an integer"),
    ({"train": {"batch_size": 2.5}}, "train.batch_size", "must be an integer"),
    ({"model": {"bias": 1}}, "model.bias", "must be true or false"),
    ({"train": {"adam_betas": [0.9]}}, "train.adam_betas", "must be a list of 2"),
    ({"data": {"conditioning": "onset_velocity"}}, "data.conditioning", "must be a list"),
    ({"model": {"gate_channels": 7}}, "model.gate_channels", "must be even"),
    ({"model": []}, "model", "must be an object"),
    ({"data": {"resonators": {"kapa": 0.1}}}, "data.resonators.kapa", "unknown key (did you mean 'kappa'?)"),
    ({"data": {"resonators": {"partials": "6"}}}, "data.resonators.partials", "must be an integer"),
    ({"data": {"resonators": {"partials": 2, "input": "x"}}}, "data.resonators.input", "must be 'audio' or"),
    ({"data": {"resonators": 6}}, "data.resonators", "must be an object"),
    ({"data": {"resonators": {"partials": 2}, "resonator_kappa": 0.1}}, "data",
     "both 'resonators' and the old flat key(s) resonator_kappa given"),
    ({"data": {"resonator_kapa": 0.1}}, "data.resonator_kapa", "unknown key (did you mean 'resonator_kappa'?)"),
    ({"data": {"resonator_partials": 2, "resonator_kappa": 2.0}}, "data.resonators.kappa", "must be in (0, 1)"),
])
def test_errors_name_the_file_and_the_key(tmp_path, values, key, problem):
    path = write(tmp_path, values)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert message.startswith(f"{path}: {key}")
    assert problem in message
    assert "\n" not in message


def test_bad_json_and_missing_file(tmp_path):
    path = write(tmp_path, '{"model": {"residual_channels": 8,}}')
    with pytest.raises(ConfigError, match=rf"^{path}: not valid JSON \(.* line 1, column"):
        load_config(path)
    with pytest.raises(ConfigError, match=r"nothere\.json: cannot read"):
        load_config(tmp_path / "nothere.json")
    with pytest.raises(ConfigError, match="must be a JSON object"):
        load_config(write(tmp_path, "[1, 2]"))


def test_round_trip_and_defaults(tmp_path):
    assert load_config(write(tmp_path, {})) == Config()
    for path in PRESETS:
        config = load_config(path)
        assert config_from_dict(json.loads(config.to_json())) == config


# Every setting of the bank with a value other than its default, in the flat form of configs and
# checkpoints written before the data.resonators section.
FLAT_BANK = {"resonator_partials": 5, "resonator_kappa": 0.03, "resonator_max_hz": 5000.0,
             "resonator_release_tau_s": 0.09, "resonator_decay_scale": 0.7, "resonator_decay_exponent": 0.8,
             "resonator_input": "innovation", "resonator_sustain_kappa": 0.002, "resonator_attack_s": 0.04,
             "resonator_gain": 0.3, "resonator_gain_velocity_exponent": 1.5, "resonator_gain_attack_s": 0.02,
             "resonator_gain_sustain": 0.2, "resonator_gain_decay_scale": 0.9, "resonator_gain_release_s": 0.07,
             "resonator_gain_floor": 2e-4, "resonator_tuning_cents": (-0.4, 1.6, 0.4),
             "resonator_inharmonicity": (-3.6, 0.48), "resonator_kappa_exponent": 0.5,
             "resonator_synthesis_inharmonicity_pitches": (30.0, 60.0),
             "resonator_synthesis_inharmonicity_log10": (-4.0, -3.5),
             "resonator_pre_emphasis": 0.85, "resonator_noise_lowpass": 0.6,
             "resonator_level_pitches": (40.0, 80.0), "resonator_levels_db": ((-30.0,) * 5, (-40.0,) * 5),
             "resonator_level_velocity_slopes": (1.0, 1.2, 1.4, 1.6, 1.8), "resonator_level_velocity_slope_table": (),
             "resonator_prompt_levels_db": (), "resonator_prompt_velocity_slope_table": (), "resonator_prompt_seconds": 0.0,
             "resonator_synthesis_partials": 0,
             "resonator_room_years": (2004, 2018),
             "resonator_room_release_tau_s": (0.12, 0.07), "resonator_room_tone_hz": (500.0, 4000.0),
             "resonator_room_tone_db": ((-1.0, -3.0), (1.0, 2.0)), "resonator_velocity_tone_velocities": (40.0, 120.0),
             "resonator_velocity_tone_hz": (1000.0, 6000.0), "resonator_velocity_tone_db": ((0.0, -2.0), (0.0, 5.0)),
             "resonator_prompt_velocity_tone_db": (), "resonator_aftersound_pitches": (48.0, 72.0),
             "resonator_aftersound_knee_s": (1.2, 0.8), "resonator_aftersound_decay_db_per_s": (3.0, 8.0),
             "resonator_aftersound_hold_decay_db_per_s": (12.0, 20.0), "resonator_undamped_from_pitch": 96,
             "resonator_undamped_release_db_per_s": 30.0, "resonator_damper_level_db": -45.0,
             "resonator_damper_velocity_slope": 0.9, "resonator_damper_pitch_db_per_octave": 0.4,
             "resonator_damper_hz": 106.0, "resonator_damper_q": 3.5, "resonator_damper_lowpass_hz": 1400.0,
             "resonator_damper_rise_s": 0.115}


def test_flat_resonator_keys_mean_the_nested_section(tmp_path):
    nested = {"data": {"segment_seconds": 0.25, "resonators": {k[len("resonator_"):]: v for k, v in FLAT_BANK.items()}}}
    flat = {"data": {"segment_seconds": 0.25, **FLAT_BANK}}
    config = config_from_dict(nested)
    assert config_from_dict(flat) == config
    assert load_config(write(tmp_path, flat)) == config
    bank = config.data.resonators
    assert {f"resonator_{f.name}": getattr(bank, f.name) for f in dataclasses.fields(bank)} == FLAT_BANK
    assert bank != ResonatorConfig(partials=5)  # every value above differs from its default
    # the defaults of the section are the ones the flat keys had
    assert config_from_dict({"data": {"resonator_partials": 5}}).data.resonators == ResonatorConfig(partials=5)
    assert DataConfig().resonators == ResonatorConfig() and not ResonatorConfig().enabled
    # saved configs are nested
    saved = json.loads(config.to_json())["data"]
    assert saved["resonators"]["kappa"] == 0.03 and not [k for k in saved if k.startswith("resonator_")]


def test_old_checkpoints_with_flat_resonator_keys_load(tmp_path):
    config = Config(data=DataConfig(conditioning=("frame",), segment_seconds=0.032,
                                    resonators=ResonatorConfig(partials=2, input="innovation", sustain_kappa=0.004)))
    model = Midi2Wave(config.model, config.data)
    path = save_checkpoint(tmp_path / "new.pt", config, model, step=3)
    state = torch.load(path, weights_only=False)
    old = json.loads(state["config"])
    old["data"].update({f"resonator_{k}": v for k, v in old["data"].pop("resonators").items()})
    state["config"] = json.dumps(old)
    torch.save(state, tmp_path / "old.pt")
    _, loaded, _ = load_state(tmp_path / "old.pt")
    assert loaded == config


def test_the_bundled_model_is_the_default_config_in_the_nested_form():
    """midi2wave/assets holds a model trained with configs/default.json (data, model, sampling), saved
    with the nested resonator section."""
    from safetensors import safe_open

    with safe_open(str(bundled_model_path()), "pt") as f:
        stored = json.loads(f.metadata()["config"])
    assert "resonators" in stored["data"] and not any(k.startswith("resonator_") for k in stored["data"])
    _, config = load_model(None)
    default = load_config(Path(__file__).resolve().parents[1] / "configs" / "default.json")
    assert config.data == default.data and config.model == default.model and config.sampling == default.sampling
    assert config.data.network_reads_innovation and config.data.resonators.gain > 0
    assert config == config_from_dict(json.loads(config.to_json()))


def test_train_cli_reports_a_bad_config_first(tmp_path, capsys):
    """A bad config is one line on stderr, exit 2, before anything (data, run folder) is looked at."""
    path = write(tmp_path, {"train": {"learning_rat": 0.1}})
    out = tmp_path / "run"
    assert cli_main(["train", "-c", str(path), "--data", str(tmp_path / "no-store"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"midi2wave: error: {path}: train.learning_rat: unknown key (did you mean 'learning_rate'?)"
    assert not out.exists()


def test_presets_exist():
    assert {p.stem for p in PRESETS} >= {"paper", "nv-wavenet", "demo", "tiny"}
    assert len([p for p in PRESETS if p.parent.name == "study"]) >= 19


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.relative_to(ROOT / "configs").with_suffix("").as_posix())
def test_presets_load_and_build(path):
    config = load_config(path)
    with torch.device("meta"):  # sizes only: no memory for the big presets
        model = Midi2Wave(config.model, config.data)
    n = sum(p.numel() for p in model.parameters())
    assert n > 0
    if path.stem == "tiny":
        assert 200 <= n <= 5000
        d = config.data
        real = Midi2Wave(config.model, d)
        audio = torch.zeros(2, d.segment_samples)
        cond = torch.zeros(2, d.conditioning_channels, d.segment_frames + 2 * real.context_margin_frames)
        out = real(audio, cond, torch.tensor([0, 1]))
        assert out.shape == (2, config.model.output_channels, d.segment_samples)


def test_paper_and_nv_wavenet_sizes():
    paper = load_config(ROOT / "configs" / "paper.json")
    m = paper.model
    assert (m.n_stacks, m.layers_per_stack, m.dilations[-1]) == (6, 10, 512)
    assert (m.context_stacks, m.context_layers_per_stack) == (2, 6)
    assert (m.output_kind, m.n_mixtures) == ("mol", 10)
    assert paper.data.conditioning == ("onset_velocity",) and paper.data.frame_rate_hz == 250
    assert paper.data.sample_rate_hz == 16000 and m.year_embedding and paper.data.use_year
    nv = load_config(ROOT / "configs" / "nv-wavenet.json").model
    assert (nv.input_kind, nv.output_kind, nv.mulaw_classes) == ("mulaw_embedding", "mulaw", 256)
    assert (nv.residual_channels, nv.gate_channels, nv.skip_channels, nv.n_layers, nv.bias) == (64, 128, 256, 20, True)


# ------------------------------------------------------------------------------------- sampling


def test_resolve_leaves_no_model_default_unset_and_is_idempotent():
    from midi2wave.config import MODEL_SAMPLING_FIELDS, ModelSampling, SamplingOptions

    own = ModelSampling(temperature=0.9, sustain_temperature=0.3, attack_seconds=0.02, sustain_innovation=0.6)
    config = Config(sampling=own)
    resolved = SamplingOptions(attack_seconds=0.04, seed=7).resolve(config)
    assert resolved.is_resolved and not SamplingOptions().is_resolved
    assert all(getattr(resolved, name) is not None for name in MODEL_SAMPLING_FIELDS)
    # the options' own settings win; the rest are the model's; the release share follows the sustain share
    assert (resolved.temperature, resolved.sustain_temperature, resolved.attack_seconds, resolved.seed) == \
        (0.9, 0.3, 0.04, 7)
    assert resolved.sustain_innovation == resolved.release_innovation == 0.6
    assert resolved.resolve(config) == resolved and resolved.resolve(Config()) == resolved  # resolved stays
    assert SamplingOptions().resolve() == SamplingOptions().resolve(Config())  # None: the built-in defaults
    with pytest.raises(ConfigError, match="no fitted partial levels"):
        SamplingOptions(partial_levels=0.5).resolve(Config())


def test_sampling_flags_come_from_the_fields(tmp_path):
    """Every flagged SamplingOptions field is a flag of its commands, with the declared default,
    and a value given on the command line reaches the options under the field's name."""
    from midi2wave.cli import _sampling_options, build_parser
    from midi2wave.config import SamplingOptions
    from midi2wave.errors import Midi2WaveError

    parser = build_parser()
    flagged = [f for f in dataclasses.fields(SamplingOptions) if "flag" in f.metadata]
    assert {f.name for f in flagged} >= {"temperature", "sustain_temperature", "attack_seconds", "sustain_innovation",
                                         "release_innovation", "partial_levels", "chunk_seconds", "overlap_seconds"}
    for command, base in (("synthesize", ["synthesize", "x.mid"]), ("evaluate", ["evaluate"])):
        defaults = _sampling_options(parser.parse_args(base), command)
        for f in flagged:
            declared = f.metadata["flag"]
            if command not in declared["commands"]:
                continue
            expected = declared["overrides"].get(command, {}).get("default", f.default)
            assert getattr(defaults, f.name) == expected, (command, f.name)
            kind = int if f.type == "int" else str if declared["choices"] else float
            value = declared["choices"][-1] if declared["choices"] else "3" if kind is int else "0.75"
            args = parser.parse_args(base + [f"--{f.name.replace('_', '-')}", value])
            assert getattr(_sampling_options(args, command), f.name) == kind(value), (command, f.name)
    with pytest.raises(Midi2WaveError, match="--sustain-innovation 1.5: must be in"):  # named as the flag
        _sampling_options(parser.parse_args(["synthesize", "x.mid", "--sustain-innovation", "1.5"]), "synthesize")
    for bad in ("1.0", "-0.1", "nan"):  # a cut at 1 would leave nothing to draw
        with pytest.raises(Midi2WaveError, match=f"--min-p {bad}: must be in"):
            _sampling_options(parser.parse_args(["play", "x.mid", "--min-p", bad]), "play")
