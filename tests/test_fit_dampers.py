"""scripts/fit_dampers.py: on a corpus whose damper noise is known (notes of sines that stop at
their release, plus the bank's own damper noise at a known law), it finds the law back."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from midi2wave.conditioning import resonators as rs
from midi2wave.midi import Notes, PedalEvents, pitch_to_hz, write_midi
from helpers import LIVE_BANK

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import fit_dampers  # noqa: E402

SR = 16000
TRUTH = dict(damper_level_db=-42.0, damper_velocity_slope=0.9, damper_pitch_db_per_octave=1.0, damper_hz=120.0,
             damper_q=3.0, damper_lowpass_hz=1500.0, damper_rise_s=0.1)
BANK = dataclasses.replace(LIVE_BANK, undamped_from_pitch=90, undamped_release_db_per_s=30.0, **TRUTH)


def _filtered(x: np.ndarray, f) -> np.ndarray:
    """`x` through the dampers' noise filter `f` (`resonators.DamperFilter`), by scipy: the resonance,
    then the low-pass."""
    from scipy.signal import lfilter

    y = lfilter([f.b0, 0.0, -f.b0], [1.0, -f.a1, f.a2], x)
    return lfilter([f.lowpass], [1.0, f.lowpass - 1.0], y)


def _corpus(folder: Path, year: int = 2011) -> None:
    """Lone notes MIDI 60-88 at three velocities, held 0.8 s, 2 s apart: a sine at the key that stops
    in 10 ms at the release, plus the damper noise as the bank plays it in `year`'s room."""
    pitch = np.repeat(np.arange(60, 90, 2), 3)
    velocity = np.tile([40, 80, 120], len(pitch) // 3)
    onset = 0.5 + 2.0 * np.arange(len(pitch))
    offset = onset + 0.8
    n = int((offset[-1] + 1.5) * SR)
    t = np.arange(n)
    f = rs.damper_filter(BANK, SR)
    y = _filtered(np.array([rs.damper_noise(int(i)) for i in t]) * f.scale, f)
    pole = rs.release_pole_for(BANK, year, SR)
    levels = rs.damper_levels(pitch, velocity, BANK) * rs.damper_room_gain(BANK, year, SR)
    audio = np.zeros(n)
    gain = np.zeros(n)
    for p, v, on, off, level in zip(pitch, velocity, onset, offset, levels):
        a, r = int(on * SR), int(off * SR)
        since = np.arange(r - a + int(0.01 * SR))
        fade = np.clip((r - a + int(0.01 * SR) - since) / (0.01 * SR), 0.0, 1.0)
        audio[a:a + len(since)] += 0.05 * (v / 127) * fade * np.sin(2 * np.pi * float(pitch_to_hz(int(p))) * since / SR)
        gain[r:r + SR] += (level * fit_dampers.envelope(np.arange(SR, dtype=np.float64), pole, f.rise)) ** 2
    audio += np.sqrt(gain) * y
    room = folder / str(year)
    room.mkdir(parents=True)
    sf.write(room / "notes.wav", audio.astype(np.float32), SR, subtype="FLOAT")
    write_midi(Notes(onset, offset, pitch.astype(np.int16), velocity.astype(np.int16)),
               PedalEvents(np.zeros(0), np.zeros(0, np.int16), np.zeros(0, np.int16)), room / "notes.mid")


def test_the_fits_envelope_is_the_banks():
    """`fit_dampers.envelope` (which the corpus below is built with) is `resonators.damper_gain`'s for
    one note of level 1, rise and decay alike."""
    pole, rise = rs.release_pole_for(BANK, 2011, SR), 0.1 * SR
    release = 100
    for since in (0, 1, 37, 800, 1600, 1601, 5000):
        bank = rs.damper_gain(release + since, np.array([0]), 1, np.array([release]), np.array([1.0]), np.array([pole]), rise)
        assert fit_dampers.envelope(np.array([float(since)]), pole, rise)[0] == pytest.approx(bank, rel=1e-9, abs=1e-15)


def test_the_fit_finds_the_damper_noise_back(tmp_path, capsys):
    _corpus(tmp_path / "corpus")
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"data": {"resonators": dataclasses.asdict(dataclasses.replace(
        BANK, **{k: 0.0 for k in TRUTH}))}}))
    assert fit_dampers.main([str(tmp_path / "corpus" / "2011"), "-c", str(config)]) == 0
    got = json.loads(capsys.readouterr().out)["data"]["resonators"]
    assert got["damper_hz"] == pytest.approx(120.0, rel=0.1)
    assert got["damper_rise_s"] == pytest.approx(0.1, abs=0.02)
    assert got["damper_level_db"] == pytest.approx(-42.0, abs=1.5)
    assert got["damper_velocity_slope"] == pytest.approx(0.9, abs=0.1)
    assert got["damper_pitch_db_per_octave"] == pytest.approx(1.0, abs=0.7)


def test_the_fit_needs_lone_damped_notes(tmp_path, capsys):
    folder = tmp_path / "2011"
    folder.mkdir()
    sf.write(folder / "notes.wav", np.zeros(SR, np.float32), SR)
    write_midi(Notes(np.array([0.1]), np.array([0.5]), np.array([95], np.int16), np.array([80], np.int16)),
               PedalEvents(np.zeros(0), np.zeros(0, np.int16), np.zeros(0, np.int16)), folder / "notes.mid")
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"data": {"resonators": dataclasses.asdict(dataclasses.replace(
        BANK, **{k: 0.0 for k in TRUTH}))}}))
    assert fit_dampers.main([str(folder), "-c", str(config)]) == 1
    assert "need 8" in capsys.readouterr().err
