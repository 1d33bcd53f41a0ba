"""scripts/fit_undamped.py: the undamped top's release decay from isolated notes."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from midi2wave.midi import Notes, PedalEvents, pitch_to_hz, write_midi

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import fit_undamped  # noqa: E402

SR = 16000


def _corpus(folder: Path, top_db_per_s: float, pitches=(78, 81, 84, 87, 90, 93, 96), repeats: int = 3) -> Path:
    """Notes held 0.5 s, 1.5 s apart: below MIDI 90 a damper (20 dB at once, then 60 dB/s), from 90 up
    `top_db_per_s` after the release; 40 dB/s while held; a little noise."""
    rng = np.random.default_rng(0)
    keys = [p for p in pitches for _ in range(repeats)]
    onsets = 0.3 + 1.5 * np.arange(len(keys))
    x = 1e-5 * rng.standard_normal(int((onsets[-1] + 1.5) * SR))
    t = np.arange(int(1.4 * SR)) / SR
    for on, p in zip(onsets, keys):
        after = np.maximum(t - 0.5, 0.0)
        db = -40.0 * np.minimum(t, 0.5) - ((20.0 * (after > 0) + 60.0 * after) if p < 90 else top_db_per_s * after)
        note = 0.2 * 10 ** (db / 20.0) * np.sin(2 * np.pi * float(pitch_to_hz(p)) * t)
        x[int(on * SR):int(on * SR) + len(t)] += note
    folder.mkdir(parents=True, exist_ok=True)
    sf.write(folder / "notes.wav", x.astype(np.float32), SR, subtype="FLOAT")
    notes = Notes(onsets, onsets + 0.5, np.array(keys, np.int16), np.full(len(keys), 80, np.int16))
    write_midi(notes, PedalEvents(np.zeros(0), np.zeros(0, np.int16), np.zeros(0, np.int16)), folder / "notes.midi")
    return folder


def test_it_recovers_the_tops_release_decay_and_shows_the_damper_line(tmp_path, capsys):
    """25 dB/s recovered from the keys from 90 up; the damped keys' drop stands far over theirs (broken
    once: the median over every key, 60 dB/s)."""
    folder = _corpus(tmp_path / "c", 25.0)
    assert fit_undamped.main([str(folder)]) == 0
    out = capsys.readouterr()
    block = json.loads(out.out)["data"]["resonators"]
    assert block == {"undamped_from_pitch": 90, "undamped_release_db_per_s": 25.0}
    drops = {int(line.split()[1].rstrip(":")): float(line.split(",")[1].split()[0])
             for line in out.err.splitlines() if line.startswith("MIDI ")}
    assert min(drops[78], drops[81], drops[84], drops[87]) > 15.0 and max(drops[90], drops[93], drops[96]) < 5.0, drops


def test_it_refuses_too_few_top_notes_in_one_line(tmp_path, capsys):
    folder = _corpus(tmp_path / "c", 25.0, pitches=(84, 90), repeats=2)
    assert fit_undamped.main([str(folder)]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("fit_undamped: ") and "2 lone notes from MIDI 90 up, need 8" in err
