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
    """Each velocity is taken as the sampler plays it in its room (a room's regulation bends it: the
    sheet's 90 plays as 88, layer 11). Broken once with 84 among the defaults (layer 11 in every
    default room), and once with the layers read from the velocities as struck."""
    assert note_corpus.sheet_layers() == {2, 8, 11, 15}
    assert note_corpus.salamander_layer(90) == 12 and note_corpus.salamander_layer(90, 2004) == 11
    corpus = {note_corpus.salamander_layer(v, y) for v in note_corpus.DEFAULT_VELOCITIES for y in note_corpus.DEFAULT_YEARS}
    assert not corpus & note_corpus.sheet_layers()
    assert len({note_corpus.salamander_layer(v, 2006) for v in note_corpus.DEFAULT_VELOCITIES}) == 9
    assert not set(note_corpus.DEFAULT_YEARS) & set(note_corpus.SHEET_YEARS)
    assert [note_corpus.salamander_layer(v) for v in (1, 26, 27, 127)] == [1, 1, 2, 16]
    with pytest.raises(ValueError):
        note_corpus.salamander_layer(0)


@pytest.mark.parametrize("argv, problem", [
    (["--velocities", "40", "90"], "velocities [90] play the note sheet's Salamander layers"),
    (["--velocities", "84"], "velocities [84] play the note sheet's Salamander layers"),
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
    assert note_corpus.main([str(out), "--years", "2006", "2011", "--velocities", "40"]) == 0
    assert calls == [2006, 2011, 2006, 2011]  # 2011's pair held other notes: rendered again
    (out / "2006" / "notes.midi").unlink()  # a WAV whose MIDI was never written: unfinished
    assert note_corpus.main([str(out), "--years", "2006", "--velocities", "40"]) == 0
    assert calls == [2006, 2011, 2006, 2011, 2006]
    # the same notes on another instrument are another pair (broken once: only the notes compared)
    assert note_corpus.main([str(out), "--years", "2006", "--velocities", "40", "--instrument", "musescore"]) == 0
    assert calls == [2006, 2011, 2006, 2011, 2006, 2006]
    assert note_corpus.main([str(out), "--years", "2006", "--velocities", "40", "--instrument", "musescore"]) == 0
    assert calls == [2006, 2011, 2006, 2011, 2006, 2006]
    # the same onsets held longer (the aftersound's corpus) are another pair (broken once: only the onsets compared)
    assert note_corpus.main([str(out), "--years", "2006", "--velocities", "40", "--instrument", "musescore",
                             "--hold-seconds", "1.5"]) == 0
    assert calls == [2006, 2011, 2006, 2011, 2006, 2006, 2006]
    long, _ = read_midi(out / "2006" / "notes.midi")
    np.testing.assert_allclose(long.offset_s - long.onset_s, 1.5, atol=1e-3)
    with pytest.raises(SystemExit):  # no room before the next onset
        note_corpus.main([str(out), "--years", "2006", "--velocities", "40", "--hold-seconds", "1.9"])
    pieces = fit_partials.corpus_pieces(out)
    assert len(pieces) == 2 and len(pieces[1][0]) == len(note_corpus.SAMPLE_KEYS) and np.allclose(pieces[1][1], 0.11)


def test_a_failed_render_is_one_line_and_leaves_no_pair(tmp_path, monkeypatch, capsys):
    """Missing samples (or sfizz failing) end the run with one line naming the folder, no traceback,
    and no half pair (broken once: only the demo data's own error caught)."""
    from midi2wave.data.samples import SampleError

    def broken(*a, **k):
        raise SampleError("the Salamander samples are missing (run setup-dev.sh)")

    monkeypatch.setattr(note_corpus, "render_notes", broken)
    out = tmp_path / "corpus"
    assert note_corpus.main([str(out), "--years", "2006"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(out) in err[0] and "samples are missing" in err[0]
    assert not list(out.rglob("notes.*"))
