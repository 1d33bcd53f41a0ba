"""scripts/note_corpus.py: the training instrument's isolated notes for the level fit, kept apart
from the note sheet that judges the fit (other Salamander velocity layers, other rooms)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import fit_partials  # noqa: E402
import note_corpus  # noqa: E402

from midi2wave.midi import read_midi  # noqa: E402


def test_the_default_corpus_shares_no_velocity_layer_and_no_room_with_the_note_sheet():
    """Broken once (a default velocity of 60, the sheet's layer 8): the sheet's recordings stay out."""
    sheet_layers = {note_corpus.salamander_layer(v) for v in note_corpus.SHEET.velocities}
    assert sheet_layers == {2, 8, 12, 15}
    assert not {note_corpus.salamander_layer(v) for v in note_corpus.DEFAULT_VELOCITIES} & sheet_layers
    assert not set(note_corpus.DEFAULT_YEARS) & set(note_corpus.SHEET_YEARS)
    assert [note_corpus.salamander_layer(v) for v in (1, 26, 27, 127)] == [1, 1, 2, 16]
    with pytest.raises(ValueError):
        note_corpus.salamander_layer(0)


@pytest.mark.parametrize("argv, problem", [
    (["--velocities", "40", "90"], "velocities [90] play the note sheet's Salamander layers"),
    (["--years", "2018"], "years [2018] are the note sheet's rooms"),
    (["--years", "1999"], "years [1999]: the demo rooms are"),
    (["--pitches", "20"], "pitches [20]: must lie in 21..108"),
    (["--velocities", "0"], "velocities [0]: must lie in 1..127"),
])
def test_bad_arguments_get_one_line_before_anything_renders(tmp_path, capsys, monkeypatch, argv, problem):
    monkeypatch.setattr(note_corpus, "render_notes", lambda *a, **k: pytest.fail("rendered"))
    with pytest.raises(SystemExit) as e:
        note_corpus.main([str(tmp_path / "c"), *argv])
    assert e.value.code == 2
    assert problem in capsys.readouterr().err
    assert not (tmp_path / "c").exists()


def test_the_corpus_is_a_midi_and_wav_pair_per_year_that_fit_partials_reads(tmp_path, monkeypatch):
    """Each year's pair holds every pitch at every velocity as the note sheet lays notes out; a rerun
    keeps what exists (resume) unless forced; `fit_partials.corpus_pieces` reads the pairs back."""
    calls = []

    def fake_render(notes, pedals, instrument, rate, year):
        calls.append(year)
        return np.full(int(notes.offset_s.max() * rate) + rate, 0.01 * (year - 2000), np.float32)

    monkeypatch.setattr(note_corpus, "render_notes", fake_render)
    out = tmp_path / "corpus"
    assert note_corpus.main([str(out), "--years", "2006", "2011", "--velocities", "40", "100",
                             "--pitches", "33", "60"]) == 0
    assert calls == [2006, 2011]
    notes, _ = read_midi(out / "2006" / "notes.midi")
    assert list(zip(notes.pitch.tolist(), notes.velocity.tolist())) == [(33, 40), (33, 100), (60, 40), (60, 100)]
    np.testing.assert_allclose(np.diff(notes.onset_s), 2.0, atol=1e-3)
    np.testing.assert_allclose(notes.offset_s - notes.onset_s, 0.8, atol=1e-3)
    audio, rate = sf.read(out / "2011" / "notes.wav")
    assert rate == 16000 and np.allclose(audio, 0.11)
    assert note_corpus.main([str(out), "--years", "2006", "2011", "--velocities", "40", "100",
                             "--pitches", "33", "60"]) == 0
    assert calls == [2006, 2011]  # kept
    assert note_corpus.main([str(out), "--years", "2006", "--velocities", "40", "--force"]) == 0
    assert calls == [2006, 2011, 2006]
    pieces = fit_partials.corpus_pieces(out)
    assert len(pieces) == 2 and len(pieces[1][0]) == 4 and np.allclose(pieces[1][1], 0.11)
    assert not list(out.rglob("*.tmp"))
