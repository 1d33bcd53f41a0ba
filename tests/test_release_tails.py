"""scripts/release_tails.py: how a note sheet's notes ring after their release."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from midi2wave.midi import pitch_to_hz

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import release_tails  # noqa: E402

SR = 16000
HOLD_S = 0.8


def _sheet(folder: Path, model_db_per_s: float, reference_db_per_s: float) -> Path:
    """A sheet of two notes (MIDI 60 and 96, 2 s apart, held 0.8 s) whose fundamentals fall these rates
    after their release (20 dB/s while held), in one year."""
    pitches, onsets = [60, 96], [0.5, 2.5]
    (folder / "audio").mkdir(parents=True)
    t = np.arange(int(1.9 * SR)) / SR
    for side, rate in (("model", model_db_per_s), ("reference", reference_db_per_s)):
        x = 1e-6 * np.random.default_rng(0).standard_normal(int(4.5 * SR))
        for on, p in zip(onsets, pitches):
            db = -20.0 * np.minimum(t, HOLD_S) - rate * np.maximum(t - HOLD_S, 0.0)
            x[int(on * SR):int(on * SR) + len(t)] += 0.3 * 10 ** (db / 20.0) * np.sin(2 * np.pi * float(pitch_to_hz(p)) * t)
        sf.write(folder / "audio" / f"{side}_2018.wav", x.astype(np.float32), SR, subtype="FLOAT")
    # the sheet's release tails: the model's -6 below 72 and -4 from 90, the reference's -9 and -7
    notes = [{"pitch": p, "velocity": 90, "onset_s": on, "release_db": -6.0 if p < 72 else -4.0}
             for on, p in zip(onsets, pitches)]
    report = {"sheet": {"pitches": pitches, "hold_seconds": HOLD_S}, "comparison": {"years": [2018]},
              "per_note": {"model": {"2018": notes},
                           "reference": {"2018": [dict(n, release_db=n["release_db"] - 3.0) for n in notes]}}}
    (folder / "note_sheet.json").write_text(json.dumps(report))
    return folder


def test_it_reads_the_tops_fundamental_after_its_release(tmp_path, capsys):
    """A fundamental falling 30 dB/s after its release reads -4 / -7 / -13 / -19 dB at 0.1 / 0.2 / 0.4 /
    0.6 s, the reference's at 60 dB/s -7 / -13 / -25 / -37; the tails by key range (broken once: the
    level read 50 ms after the release instead of before it)."""
    sheet = _sheet(tmp_path / "s", 30.0, 60.0)
    assert release_tails.main([str(sheet), "--figure", str(tmp_path / "f.png")]) == 0
    out = capsys.readouterr().out
    assert "below 72 -6.0 / -9.0" in out and "90 up -4.0 / -7.0" in out and "72-89" not in out
    line = next(line for line in out.splitlines() if "MIDI 96" in line)
    model = [float(v) for v in line.split("s after the release: ")[1].split("  (")[0].split()]
    reference = [float(v) for v in line.split("(training audio ")[1].rstrip(")").split()]
    # relative to 50 ms before the release, 1 dB over it at 20 dB/s
    np.testing.assert_allclose(model, [-4.0, -7.0, -13.0, -19.0], atol=0.3)
    np.testing.assert_allclose(reference, [-7.0, -13.0, -25.0, -37.0], atol=0.3)
    mean = float(out.split("the top's fundamentals after the release: ")[1].split(" dB")[0])
    assert abs(mean - 9.75) < 0.3, mean  # the mean of 3, 6, 12 and 18
    assert (tmp_path / "f.png").stat().st_size > 1000


def test_a_folder_that_is_not_a_sheet_is_one_line(tmp_path, capsys):
    assert release_tails.main([str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("release_tails: ") and "not a note sheet" in err and "\n" not in err
