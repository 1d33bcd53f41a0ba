"""`synthesize --instrument`: the demo data's pianos as renderers (render/instrument.py)."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from midi2wave.data.instruments import render_notes
from midi2wave.midi import read_midi

REPO = Path(__file__).resolve().parents[1]
RESTS = REPO / "examples" / "rests.mid"


def run(*args):
    return subprocess.run([sys.executable, "-m", "midi2wave.cli", "synthesize", *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=300)


def fluidsynth_ready():
    try:
        from midi2wave.data import demo

        demo.find_soundfont()
        import fluidsynth  # noqa: F401
    except Exception:
        return False
    return True


@pytest.mark.skipif(not fluidsynth_ready(), reason="FluidSynth or its soundfont is missing")
def test_an_instrument_renders_the_file_in_the_years_room(tmp_path):
    out, dry = tmp_path / "room.wav", tmp_path / "dry.wav"
    assert run(RESTS, "--instrument", "musescore", "--year", "2004", "--end", "2", "-o", out).returncode == 0
    assert run(RESTS, "--instrument", "musescore", "--end", "2", "-o", dry).returncode == 0
    room, sr = sf.read(out, dtype="int16")
    assert sr == 16000 and len(room) == 32000
    notes, pedals = read_midi(RESTS)
    want = render_notes(notes, pedals, "musescore", year=2004)[:32000]
    assert np.max(np.abs(room.astype(int) - np.round(want * 32768).astype(int))) <= 1  # the 16-bit rounding
    assert not np.array_equal(room, sf.read(dry, dtype="int16")[0])  # the room is heard


def test_bad_instrument_year_and_file_get_one_line(tmp_path):
    for args, needle in (((RESTS, "--instrument", "bogus"), "--instrument 'bogus'"),
                         ((RESTS, "--instrument", "musescore", "--year", "1999"), "--year 1999"),
                         ((tmp_path / "none.mid", "--instrument", "musescore"), "none.mid: no such file")):
        proc = run(*args, "-o", tmp_path / "x.wav")
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode != 0 and len(lines) == 1 and needle in lines[0], proc.stderr
        assert "Traceback" not in proc.stderr
