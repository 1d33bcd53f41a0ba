"""The library's messages go through `logging`; the command line prints them on stderr as plain lines,
with `midi2wave -q` (warnings and errors only) and `midi2wave -v` (debug too)."""

from __future__ import annotations

import logging

import pytest

from midi2wave import cli
from midi2wave.midi import Notes, PedalEvents, write_midi


def _fake_info(args) -> int:
    log = logging.getLogger("midi2wave.somewhere")
    log.debug("a debug line")
    log.info("an info line")
    log.warning("midi2wave: warning: a warning line")
    return 0


@pytest.mark.parametrize("flags, shown", [
    ([], ["an info line", "midi2wave: warning: a warning line"]),
    (["-q"], ["midi2wave: warning: a warning line"]),
    (["--quiet"], ["midi2wave: warning: a warning line"]),
    (["-v"], ["a debug line", "an info line", "midi2wave: warning: a warning line"]),
])
def test_global_flags_set_which_messages_are_printed(flags, shown, monkeypatch, capsys):
    monkeypatch.setattr(cli, "_cmd_info", _fake_info)
    assert cli.main([*flags, "info"]) == 0
    captured = capsys.readouterr()
    assert captured.err.splitlines() == shown and captured.out == ""
    # main leaves logging as it found it (it is called repeatedly, in tests and by other programs)
    assert not logging.getLogger("midi2wave").handlers
    assert logging.getLogger("midi2wave").level == logging.NOTSET


def test_quiet_and_verbose_exclude_each_other(capsys):
    with pytest.raises(SystemExit):
        cli.main(["-q", "-v", "info"])
    assert "not allowed with" in capsys.readouterr().err


@pytest.fixture()
def piece(tmp_path):
    notes = Notes([0.0, 0.05], [0.08, 0.1], [60, 64], [90, 70])
    return write_midi(notes, PedalEvents.empty(), tmp_path / "piece.mid")


@pytest.mark.parametrize("flags", [[], ["-q"], ["synthesize-q"]])
def test_synthesize_says_what_it_wrote_unless_quiet(flags, piece, tmp_path, capsys):
    """The bundled model, 0.1 s. `-q` before the command (global) or after it (the command's own)."""
    out = tmp_path / "out.wav"
    own = ["-q"] if flags == ["synthesize-q"] else []
    glob = [] if own else flags
    assert cli.main([*glob, "synthesize", str(piece), "-o", str(out), "--end", "0.1", *own]) == 0
    err = capsys.readouterr().err
    if flags:
        assert err == ""  # no message and no progress bar
    else:
        assert f"wrote {out} (0.10 s of audio in" in err
