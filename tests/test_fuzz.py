"""Fuzzed MIDI files through `midi2wave synthesize` (a subprocess, the bundled model): every file either
renders finite audio or fails with one line `midi2wave: error: <file>: ...`, never a traceback and
never a library warning.

The files come from a seeded generator (`fuzzed_files`): random bytes, truncated and byte-flipped
files, and valid files at the edges of what MIDI allows (zero-length and overlapping notes, extreme
tempos and time divisions, pitches out of the piano's range, velocities 0 / 1 / 127 and data bytes
above 127, pedals without notes, hours-long notes, empty and header-only files). They are rendered in
one `synthesize` call (a bad input does not stop the others), 0.5 s each, to stay fast. A further
600 mutated files go through the reading and conditioning in process, with warnings as errors.
A seeded generator rather than hypothesis: no extra dependency, the same files on every run.
"""

from __future__ import annotations

import os
import random
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
END_SECONDS = 0.5


# ------------------------------------------------------------------------------- writing the files


def _var_len(value: int) -> bytes:
    """A MIDI variable-length quantity."""
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))


def smf(events: list[tuple[int, bytes]], division: int = 480, fmt: int = 0) -> bytes:
    """A one-track Standard MIDI File of (absolute tick, raw event bytes) events, written byte by
    byte (no library's checks), so that data bytes above 127 and odd divisions can be written."""
    body = b""
    now = 0
    for tick, raw in sorted(events, key=lambda e: e[0]):
        body += _var_len(tick - now) + raw
        now = tick
    body += _var_len(0) + b"\xff\x2f\x00"
    return (b"MThd" + struct.pack(">IHHH", 6, fmt, 1, division)
            + b"MTrk" + struct.pack(">I", len(body)) + body)


def on(pitch: int, velocity: int = 80, channel: int = 0) -> bytes:
    return bytes([0x90 | channel, pitch & 0xFF, velocity & 0xFF])


def off(pitch: int, channel: int = 0) -> bytes:
    return bytes([0x80 | channel, pitch & 0xFF, 64])


def cc(control: int, value: int) -> bytes:
    return bytes([0xB0, control, value])


def tempo(us_per_beat: int) -> bytes:
    return b"\xff\x51\x03" + us_per_beat.to_bytes(3, "big")


def random_piece(rng: random.Random, n_notes: int = 12, division: int = 480) -> list[tuple[int, bytes]]:
    """Random notes (some out of range, some zero-length or overlapping) and pedals in the first beats."""
    events = []
    for _ in range(n_notes):
        start = rng.randrange(0, division * 2)
        length = rng.choice([0, 0, 1, rng.randrange(1, division * 4)])
        pitch = rng.randrange(0, 128)
        events += [(start, on(pitch, rng.randrange(1, 128))), (start + length, off(pitch))]
    for _ in range(3):
        events.append((rng.randrange(0, division * 2), cc(rng.choice([64, 66, 67]), rng.randrange(0, 128))))
    return events


def fuzzed_files(folder: Path, seed: int = 19) -> dict[str, Path]:
    """The fuzzed MIDI files, by name, written into `folder`."""
    rng = random.Random(seed)
    good = smf([(0, on(60)), (240, on(64, 100)), (480, off(60)), (720, off(64)), (0, cc(64, 127)),
                (600, cc(64, 0))])
    files: dict[str, bytes] = {
        "empty": b"",
        "random_bytes": bytes(rng.randrange(256) for _ in range(300)),
        "random_after_header": good[:14] + bytes(rng.randrange(256) for _ in range(200)),
        "header_only": good[:14],
        "no_tracks": b"MThd" + struct.pack(">IHHH", 6, 1, 0, 480),
        "truncated_in_track": good[: len(good) // 2 + 3],
        "truncated_in_header": good[:9],
        "zero_length_notes": smf([(0, on(60)), (0, off(60)), (100, on(62)), (100, on(62, 0)), (200, on(64)),
                                  (400, off(64))]),
        "only_zero_length_notes": smf([(0, on(60)), (0, off(60)), (100, on(62)), (100, off(62))]),
        "overlapping_same_pitch": smf([(0, on(60)), (50, on(60, 110)), (60, on(60, 30)), (300, off(60)),
                                       (310, off(60)), (900, off(60))]),
        "tempo_fastest": smf([(0, tempo(1)), (0, on(60)), (10_000, off(60)), (5_000, on(72)),
                              (200_000, off(72))]),
        "tempo_slowest_hours_long_note": smf([(0, tempo(0xFFFFFF)), (0, on(40)), (100_000, off(40)),
                                              (0, on(100, 127)), (1, off(100))], division=1),
        "tempo_changes_every_tick": smf([(i, tempo(rng.choice([1, 500_000, 0xFFFFFF]))) for i in range(50)]
                                        + [(0, on(60)), (40, off(60)), (3, on(67)), (7, off(67))]),
        "division_one_tick": smf([(0, on(60)), (1, off(60))], division=1),
        "division_zero": smf([(0, on(60)), (1, off(60))], division=0),
        "division_smpte": smf([(0, on(60)), (40, off(60))], division=(0xE7 << 8) | 40),  # -25 fps, 40 ticks
        "division_smpte_bad": smf([(0, on(60)), (40, off(60))], division=0x8000),
        "out_of_piano_range_only": smf([(0, on(0)), (0, on(20)), (0, on(109)), (0, on(127)),
                                        (100, off(0)), (100, off(20)), (100, off(109)), (100, off(127))]),
        "out_of_range_and_in": smf([(0, on(5)), (0, on(127)), (0, on(21)), (0, on(108)), (300, off(5)),
                                    (300, off(127)), (300, off(21)), (300, off(108))]),
        "velocities_extreme": smf([(0, on(60, 127)), (0, on(61, 1)), (0, on(62, 0)), (10, on(63, 127)),
                                   (20, on(64, 1)), (400, off(60)), (400, off(61)), (400, off(62)), (400, off(63)),
                                   (400, off(64))]),
        "data_bytes_above_127": smf([(0, bytes([0x90, 200, 200])), (100, bytes([0x80, 200, 0])),
                                     (0, on(60)), (200, off(60))]),
        "pedals_without_notes": smf([(0, cc(64, 127)), (100, cc(66, 127)), (200, cc(67, 64)), (300, cc(64, 0))]),
        "drums_only": smf([(0, on(38, 100, channel=9)), (100, off(38, channel=9))]),
        "never_released": smf([(0, on(60)), (0, on(64)), (50, cc(64, 127))]),
        "late_note": smf([(0, cc(64, 127)), (2**27, on(60)), (2**27 + 100, off(60))]),
        "many_notes_one_tick": smf([(0, on(p, 127)) for p in range(21, 109)] + [(10, off(p)) for p in range(21, 109)]),
    }
    for i in range(4):  # random pieces, some with flipped bytes
        piece = smf(random_piece(rng), division=rng.choice([1, 96, 480, 32767]))
        files[f"random_piece_{i}"] = piece
        flipped = bytearray(piece)
        for _ in range(3):
            flipped[rng.randrange(14, len(flipped))] = rng.randrange(256)
        files[f"flipped_piece_{i}"] = bytes(flipped)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, data in files.items():
        paths[name] = folder / f"{name}.mid"
        paths[name].write_bytes(data)
    return paths


# ------------------------------------------------------------------------------------------- tests

# Files that must render (valid MIDI with piano notes at the edges) and files that must be refused.
MUST_RENDER = {"zero_length_notes", "overlapping_same_pitch", "tempo_fastest", "tempo_slowest_hours_long_note",
               "tempo_changes_every_tick", "division_one_tick", "division_smpte", "out_of_range_and_in",
               "velocities_extreme", "never_released", "late_note", "many_notes_one_tick"}
MUST_FAIL = {"empty", "random_bytes", "random_after_header", "header_only", "no_tracks", "truncated_in_track",
             "truncated_in_header", "division_zero", "division_smpte_bad", "out_of_piano_range_only",
             "data_bytes_above_127", "pedals_without_notes", "drums_only"}


def synthesize(*argv: str | Path) -> subprocess.CompletedProcess:
    """`python -m midi2wave.cli synthesize ARGV --end 0.5 -q` from the checkout, default warning filters."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    return subprocess.run([sys.executable, "-m", "midi2wave.cli", "synthesize", *map(str, argv),
                           "--end", str(END_SECONDS), "-q"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)


def check_clean(result: subprocess.CompletedProcess) -> list[str]:
    """The stderr lines, after checking that they are all one-line errors (no traceback, no warning)."""
    output = result.stdout + result.stderr
    assert "Traceback" not in output and "Warning" not in output and "warning" not in output, output
    lines = result.stderr.splitlines()
    assert all(line.startswith("midi2wave: error: ") for line in lines), result.stderr
    return lines


def test_fuzzed_files_render_finite_audio_or_fail_in_one_line(tmp_path):
    inputs = fuzzed_files(tmp_path / "in")
    out = tmp_path / "out"
    result = synthesize(*inputs.values(), "-o", out)
    lines = check_clean(result)
    rendered, refused = set(), set()
    for name, path in inputs.items():
        mine = [line for line in lines if line.startswith(f"midi2wave: error: {path}: ")]
        wav = out / f"{name}.wav"
        if wav.exists():
            audio, rate = sf.read(str(wav), dtype="float32")
            assert not mine and len(audio) == round(END_SECONDS * rate) and np.isfinite(audio).all(), name
            rendered.add(name)
        else:
            assert len(mine) == 1, (name, result.stderr)
            refused.add(name)
    assert len(lines) == len(refused)  # every line names one refused file
    assert MUST_RENDER <= rendered and MUST_FAIL <= refused, (rendered, refused)
    assert result.returncode == 1  # some inputs failed; the others were rendered all the same
    assert not list(out.glob(".*.tmp"))


def test_one_bad_file_alone_exits_nonzero_in_one_line(tmp_path):
    inputs = fuzzed_files(tmp_path / "in")
    for name in ("empty", "truncated_in_track"):
        result = synthesize(inputs[name], "-o", tmp_path / f"{name}.wav")
        assert result.returncode != 0
        assert check_clean(result) == [result.stderr.strip()] and str(inputs[name]) in result.stderr
        assert not (tmp_path / f"{name}.wav").exists()


def test_mutated_files_read_to_valid_notes_or_one_error_without_warnings(tmp_path):
    """In process, many more files: byte-flipped, truncated and spliced random pieces are read,
    sustained, rolled and excited with warnings as errors; each gives a `MidiError` naming the file,
    or notes that are finite, in range and of positive length."""
    import warnings

    from midi2wave.errors import MidiError
    from midi2wave.midi import apply_sustain, excitation_signal, frame_rolls, read_midi

    rng = random.Random(20)
    outcomes = {"read": 0, "refused": 0}
    for i in range(600):
        data = bytearray(smf(random_piece(rng, n_notes=rng.randrange(1, 20)),
                             division=rng.choice([1, 7, 96, 480, 32767, (0xE2 << 8) | 4])))
        kind = i % 3
        if kind == 0:
            for _ in range(rng.randrange(1, 6)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        elif kind == 1:
            data = data[: rng.randrange(len(data))]
        else:
            at = rng.randrange(22, len(data))
            data[at:at] = tempo(rng.choice([0, 1, 0xFFFFFF])) if rng.random() < 0.5 else bytes([0, 0x90, 60, 0])
        path = tmp_path / f"m{i}.mid"
        path.write_bytes(bytes(data))
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            try:
                notes, pedals = read_midi(path)
            except MidiError as e:
                assert str(e).startswith(f"{path}: ") and "\n" not in str(e)
                outcomes["refused"] += 1
                continue
            assert np.isfinite(notes.onset_s).all() and (notes.offset_s > notes.onset_s).all()
            assert ((notes.pitch >= 21) & (notes.pitch <= 108)).all() and (notes.velocity >= 1).all()
            notes = apply_sustain(notes, pedals)
            start = int(notes.onset_s[0] * 250)
            rolls = frame_rolls(notes, pedals, ("onset_velocity", "frame", "pedals"), start, 50, 250.0)
            audio = excitation_signal(notes, start * 64, 3200, 16000, 4)
            assert np.isfinite(rolls).all() and np.isfinite(audio).all()
            outcomes["read"] += 1
    assert min(outcomes.values()) >= 50, outcomes  # both were exercised (97 read, 503 refused)
