"""The undamped top (`ResonatorConfig.undamped_from_pitch`, `undamped_release_db_per_s`): in synthesis
the partials of the keys without dampers decay after their release by their own rate, in every room;
the analysis, the keys below and a config without it are untouched; the live bank builds the same rows."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from midi2wave.conditioning import resonators as rs
from midi2wave.config import SYNTHESIS_ONLY_KEYS, ConfigError
from midi2wave.midi import Notes
from helpers import LIVE_BANK, undriven_amplitudes

SR = 16000
# a room releasing at 0.05 s (174 dB/s); the keys from MIDI 80 up at 30 dB/s
TOP = dataclasses.replace(LIVE_BANK, undamped_from_pitch=80, undamped_release_db_per_s=30.0)
# a low and a top note, both released at 0.4 s, and a top note released at 0.2 s
NOTES = Notes(np.array([0.0, 0.05, 0.1]), np.array([0.4, 0.4, 0.2]), np.array([60, 84, 80], np.int16),
              np.array([90, 90, 50], np.int16))


def _sampled(config, year=2011):
    sched = rs.schedule(NOTES, 0, 2 * SR, SR, config)
    pole = rs.release_pole_for(config, year, SR)
    return sched.for_sampling(partial_levels=1.0, release_pole=pole, undamped=rs.undamped_release(config, SR))


@pytest.mark.parametrize("change, problem", [
    (dict(undamped_from_pitch=90), "must be > 0 exactly when"),
    (dict(undamped_release_db_per_s=30.0), "must be > 0 exactly when"),
    (dict(undamped_from_pitch=200, undamped_release_db_per_s=30.0), "MIDI pitch"),
    (dict(undamped_from_pitch=90, undamped_release_db_per_s=-1.0), "must lie in"),
    (dict(undamped_from_pitch=90, undamped_release_db_per_s=math.inf), "must lie in"),
    (dict(undamped_from_pitch=90, undamped_release_db_per_s=0.5), "must lie in"),  # would ring for minutes
    (dict(undamped_from_pitch=90, undamped_release_db_per_s=2000.0), "must lie in"),
    (dict(undamped_from_pitch=10, undamped_release_db_per_s=30.0), "MIDI pitch"),
    (dict(undamped_from_pitch=90, undamped_release_db_per_s=30.0, partials=0, gain=0.0, pre_emphasis=0.0,
          noise_lowpass=0.0, levels_db=(), level_pitches=(), level_velocity_slope_table=(), prompt_levels_db=(),
          prompt_velocity_slope_table=(), prompt_seconds=0.0, room_tone_hz=(), room_tone_db=(),
          velocity_tone_velocities=(), velocity_tone_hz=(), velocity_tone_db=()), "needs the resonator bank"),
])
def test_the_config_refuses_a_bad_undamped_top(change, problem):
    with pytest.raises(ConfigError, match=problem):
        dataclasses.replace(LIVE_BANK, **change)


def test_the_undamped_top_is_a_synthesis_setting():
    """`export --sampling-from` carries it over without retraining: the analysis never reads it."""
    for name in ("undamped_from_pitch", "undamped_release_db_per_s"):
        assert f"data.resonators.{name}" in SYNTHESIS_ONLY_KEYS


def test_the_top_keys_rows_release_by_their_own_decay_in_every_room():
    """Rows of notes from `undamped_from_pitch` up take its pole and ring 5 of its time constants;
    the others keep the room's (broken once: every row took the undamped pole, and once: the stop
    left at the room's tail)."""
    plain, top = _sampled(LIVE_BANK), _sampled(TOP)
    undamped = top.pitch >= 80
    assert undamped.any() and (~undamped).any()
    pole = math.exp(-math.log(10.0) * 30.0 / 20.0 / SR)  # 30 dB/s
    np.testing.assert_allclose(top.r_release[undamped], pole, rtol=1e-12)
    np.testing.assert_array_equal(top.r_release[~undamped], plain.r_release[~undamped])
    assert (plain.r_release < 0.9995).all()  # the room's 0.05 s: much faster
    tail = rs.room_tail_samples(pole)
    np.testing.assert_array_equal(top.stop[undamped], top.release[undamped] + tail)
    np.testing.assert_array_equal(top.stop[~undamped], plain.stop[~undamped])
    for name in rs.Schedule.FIELDS:
        if name not in ("r_release", "stop"):
            np.testing.assert_array_equal(getattr(top, name), getattr(plain, name), err_msg=name)
    # a year without a room: the same undamped rows
    no_room = rs.schedule(NOTES, 0, 2 * SR, SR, TOP).for_sampling(partial_levels=1.0, undamped=rs.undamped_release(TOP, SR))
    np.testing.assert_allclose(no_room.r_release[no_room.pitch >= 80], pole, rtol=1e-12)


def test_an_undriven_top_note_decays_at_the_undamped_rate_after_its_release():
    """The locked trajectory after the release falls 30 dB/s on a top key; a low key falls by the room."""
    sched = _sampled(TOP)
    release = int(sched.release.max())
    amps = undriven_amplitudes(sched, release + SR // 2)
    top = np.flatnonzero((sched.pitch == 84))
    low = np.flatnonzero((sched.pitch == 60))
    per_s = 20 * np.log10(amps[release + SR // 4, top] / amps[release, top]) * 4
    np.testing.assert_allclose(per_s, -30.0, atol=1e-6)
    low_per_s = 20 * np.log10(amps[release + SR // 20, low] / amps[release, low]) * 20
    np.testing.assert_allclose(low_per_s, -20 / math.log(10) / 0.05, rtol=1e-6)


@pytest.mark.parametrize("start_s", [0.0, 1.0])
def test_the_analysis_is_unchanged_by_it(start_s):
    """The analysis of the same audio is the same to the bit with the undamped top in the config: from
    the piece's start (the same rows) and from a window begun after the top notes' release, where the
    schedule keeps their rows longer (rows that stopped before the window, never active)."""
    start = int(start_s * SR)
    x = 0.1 * np.random.default_rng(0).standard_normal(2 * SR)
    a = rs.schedule(NOTES, start, 2 * SR, SR, LIVE_BANK)
    b = rs.schedule(NOTES, start, 2 * SR, SR, TOP)
    assert len(b) >= len(a) and (len(b) > len(a)) == (start_s > 0)
    np.testing.assert_array_equal(rs.analyze(x, a)[0], rs.analyze(x, b)[0])


def test_a_window_begun_after_a_top_notes_release_still_hears_its_ring():
    """A window starting 0.6 s after the top notes' release keeps their rows (still ringing at 30
    dB/s), where the damped bank has long dropped them."""
    start = int(0.8 * SR)
    damped = rs.schedule(NOTES, start, SR, SR, LIVE_BANK)
    ringing = rs.schedule(NOTES, start, SR, SR, TOP)
    assert not (damped.pitch >= 80).any()
    kept = ringing.for_sampling(partial_levels=1.0, undamped=rs.undamped_release(TOP, SR))
    assert (kept.pitch >= 80).any() and (kept.stop[kept.pitch >= 80] > 0).all()


def test_the_live_bank_builds_the_offline_rows():
    """Release pole and stop of every row, as `for_sampling` gives them in the bank's year (broken
    once: the live bank kept the room's pole on the top keys)."""
    want = _sampled(TOP)
    bank = rs.LiveBank(TOP, SR, year=2011, partial_levels=1.0)
    rows = [bank.add_note(int(p), int(v), int(np.ceil(o * SR))) for o, p, v in zip(NOTES.onset_s, NOTES.pitch, NOTES.velocity)]
    for r, off in zip(rows, NOTES.offset_s):
        bank.release_note(r, int(np.ceil(off * SR)))
    # the live rows come note by note as added; the offline ones sorted by start: the same order here
    for name in ("r_release", "stop", "pitch", "release"):
        np.testing.assert_array_equal(getattr(bank, name)[:bank.size], getattr(want, name), err_msg=name)


def test_the_live_engine_rings_the_top_on_in_any_blocks(tmp_path):
    """A live render of a piece whose MIDI 72 and 76 are undamped: the same in any blocks, and louder
    than the damped bank's after those notes' releases (broken once: the live bank's rows kept the
    room's release pole; and once: every note's tail as long as the top's, which moved the silences the
    engine skips and changed the notes before)."""
    from midi2wave.render import live
    from helpers import LIVE_OPTIONS, live_piece

    piece = live_piece(tmp_path)
    model = _model

    top = dataclasses.replace(LIVE_BANK, undamped_from_pitch=72, undamped_release_db_per_s=30.0)
    renders = {name: live.render_file_live(model(bank), piece, LIVE_OPTIONS, year=2011, end_s=3.6, block_samples=16000)
               for name, bank in (("damped", LIVE_BANK), ("undamped", top))}
    assert np.array_equal(live.render_file_live(model(top), piece, LIVE_OPTIONS, year=2011, end_s=3.6,
                                                block_samples=[64, 37, 128]), renders["undamped"])
    # to the top's first release (2.7 s) the renders are the same, the silences the engine skips
    # included; after its last release (3.0 s, the soft pedal's) it rings on
    cut = int(2.7 * SR)
    np.testing.assert_array_equal(renders["damped"][:cut], renders["undamped"][:cut])
    late = slice(int(3.2 * SR), int(3.6 * SR))
    rms = {k: float(np.sqrt(np.mean(v[late] ** 2))) for k, v in renders.items()}
    assert rms["undamped"] > 3.0 * rms["damped"], rms


def _model(bank):
    """A tiny causal model over this bank (the live engine's kind: `helpers.live_model`)."""
    import torch

    from midi2wave.config import DataConfig
    from midi2wave.model import Midi2Wave
    from helpers import tiny_model_config

    torch.manual_seed(0)
    cfg = tiny_model_config(n_stacks=1, layers_per_stack=4, context_layers_per_stack=2, output_kind="mulaw",
                            context_causal=True)
    data = DataConfig(conditioning=("onset_velocity", "frame", "offset", "pedals"), segment_seconds=0.032,
                      resonators=bank, excitation_partials=4)
    return Midi2Wave(cfg, data).eval()


def test_an_offline_render_changes_only_after_a_top_keys_release():
    """Two notes, a silence the render skips, a top note: with the undamped top the render is the same
    to the bit up to the top note's release, the skipped silence included, and rings on after it
    (broken once: every note's tail as long as the top's, which moved the silence and changed the
    second note)."""
    from midi2wave.midi import PedalEvents
    from midi2wave.render.synthesize import render_notes
    from helpers import LIVE_OPTIONS

    notes = Notes(np.array([0.05, 2.6, 4.3]), np.array([0.3, 2.9, 4.5]), np.array([60, 67, 84], np.int16),
                  np.array([90, 70, 100], np.int16))
    pedals = PedalEvents(np.zeros(0), np.zeros(0, np.int16), np.zeros(0, np.int16))
    top = dataclasses.replace(LIVE_BANK, undamped_from_pitch=80, undamped_release_db_per_s=30.0)
    damped, undamped = (render_notes(_model(bank), notes, pedals, LIVE_OPTIONS, end_s=5.6, year=2011, progress=False)
                        for bank in (LIVE_BANK, top))
    release = int(np.ceil(4.5 * SR))
    np.testing.assert_array_equal(damped[:release], undamped[:release])
    late = slice(int(4.8 * SR), int(5.3 * SR))
    assert np.sqrt(np.mean(undamped[late] ** 2)) > 3.0 * np.sqrt(np.mean(damped[late] ** 2))


# 10 dB/s: the top rings 4.3 s (5 time constants), far longer than every other tail (1 s)
SLOW = dataclasses.replace(LIVE_BANK, undamped_from_pitch=80, undamped_release_db_per_s=10.0)


def test_a_long_undamped_tail_sounds_offline_and_live_until_it_ends():
    """With a ring longer than every other tail, the offline render and the live engine (in any blocks)
    keep sounding for it and fall silent after it: exact zeros (broken once each: the offline spans
    without the top's tail, the live engine's silence without it, and its prune of the notes' table
    without it; each cut the ring about 1-3 s after the release)."""
    from midi2wave.midi import PedalEvents, write_midi
    from midi2wave.render import live
    from midi2wave.render.synthesize import render_notes
    from helpers import LIVE_OPTIONS

    import tempfile
    from pathlib import Path

    notes = Notes(np.array([0.05, 0.5]), np.array([0.3, 0.7]), np.array([60, 84], np.int16), np.array([90, 100], np.int16))
    # an event while the top rings, past the point where the live engine forgets a note rung out: the
    # silence it computes then must still count the top's ring
    pedals = PedalEvents(np.array([4.0]), np.array([67], np.int16), np.array([100], np.int16))
    end_s, release_s = 7.0, 0.7
    tail_s = SLOW.undamped_tail_s
    assert 4.0 < tail_s < 4.5
    model = _model(SLOW)
    offline = render_notes(model, notes, pedals, LIVE_OPTIONS, end_s=end_s, year=2011, progress=False)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "top.mid"
        write_midi(notes, pedals, path)
        whole = live.render_file_live(model, str(path), LIVE_OPTIONS, year=2011, end_s=end_s, block_samples=16000)
        blocks = live.render_file_live(model, str(path), LIVE_OPTIONS, year=2011, end_s=end_s, block_samples=[64, 300])
    assert np.array_equal(whole, blocks)
    for audio in (offline, whole):
        ringing = audio[int((release_s + 3.4) * SR):int((release_s + 3.9) * SR)]
        assert np.abs(ringing).max() > 0, "the ring was cut"
        assert not np.any(audio[int((release_s + tail_s + 0.3) * SR):]), "no silence after the ring"
