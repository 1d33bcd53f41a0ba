"""Configuration: frozen dataclasses loaded from JSON, with clear errors for unknown keys and bad values.

A config file holds up to four sections, each optional (missing keys take their defaults)::

    {"data": {..., "resonators": {...}}, "model": {...}, "train": {...}, "sampling": {...}}

(`data.resonators`, the resonator bank's settings, is a section of its own inside `data`.)

Checkpoints store the same structure, so a model is rebuilt from its file alone.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from . import constants as C
from .errors import Midi2WaveError


class ConfigError(Midi2WaveError, ValueError):
    """A config file or dict has an unknown key or a bad value. The message names both."""


# Frame-rate conditioning channels a model may use, and how many rows each contributes.
FRAME_CHANNELS: dict[str, int] = {
    "onset_velocity": C.N_KEYS,  # velocity/127 in the onset frame of each note (the paper's roll)
    "frame": C.N_KEYS,  # velocity/127 while a key sounds (held or sustained)
    "onset": C.N_KEYS,  # 1 in the onset frame
    "offset": C.N_KEYS,  # 1 in the frame a sounding note ends
    "pedals": C.N_PEDALS,  # continuous CC64, CC66, CC67 values / 127
}

# The most a tone may move a partial's level either way (dB; `ResonatorConfig.room_tone_db`,
# `velocity_tone_db`, `prompt_velocity_tone_db`).
TONE_MAX_DB: float = 24.0


@dataclass(frozen=True)
class ResonatorConfig:
    """The MIDI-driven resonator bank (resonators.py): `DataConfig.resonators`, the JSON section
    `"data": {"resonators": {...}}`. `partials` 0 (the default) disables the bank; otherwise each
    sounding note gets damped oscillators at its first `partials` partials (below `max_hz`) whose
    prediction is added to the network's output, and the network models the innovation.

    Configs written before this section existed name these settings `data.resonator_<name>` (e.g.
    `resonator_kappa`); `config_from_dict` maps them here (`FLAT_PREFIX`)."""

    partials: int = 0  # partials per note (k * f0 for k = 1..partials); 0: no bank
    # Synthesis only: partials per note in synthesis, `partials` and more (0: `partials`; each needs a
    # fitted level). The analysis, and so the network's target, keeps `partials`. Why: 16 partials
    # stop the bass at 0.4-1 kHz, where a piano's bass has partials to 3 kHz (docs/evaluation.md).
    synthesis_partials: int = 0
    kappa: float = 0.02  # innovation gain: tracking speed (and notch width) of the analysis
    max_hz: float = 6000.0  # no oscillator at or above this frequency
    release_tau_s: float = 0.08  # decay after the note's (sustained) offset
    # held-note decay time of partial k = decay_scale * tau(pitch) / k**decay_exponent
    decay_scale: float = 0.5
    decay_exponent: float = 1.0
    # What the network reads of the past: "audio" (x) or "innovation" (e: the bank's output never
    # feeds back into the network, so a loud free-running bank cannot run away).
    input: str = "audio"
    # Innovation gain once a note is `attack_s` old (0: kappa throughout). Small: sampled innovations
    # barely move a ringing note's partials, so held notes do not wander (and the analysis tracks
    # them more slowly).
    sustain_kappa: float = 0.0
    attack_s: float = 0.05
    # Partial k takes kappa / k**kappa_exponent of the innovation (both kappas). Why: a hammer excites
    # a string's upper partials far less than its fundamental (on the Salamander data partial 4 is
    # ~20 dB and partial 8 ~35 dB below the first, 0.1 s after the onset), while the sampled
    # innovation is close to white; 0 drives every partial alike.
    kappa_exponent: float = 0.0
    # The innovation gain from the notes (0: off, the network's sample is the innovation itself). On:
    # the network samples u and the innovation is e = g_t * u, where g_t comes from the notes alone:
    #   g_t = gain_floor + sqrt(sum over sounding notes of a_n(t)^2)
    #   a_n(t) = gain * (velocity / 127)**gain_velocity_exponent
    #            * (exp(-age / gain_attack_s) + gain_sustain * exp(-age / (gain_decay_scale * tau(pitch))))
    # while the (sustained) note is held, then times exp(-(t - offset) / gain_release_s) until the
    # note's oscillators stop. So nothing can sound where nothing plays (g = floor), the hammer's
    # noise is loud only at the onsets, and the teacher-forced target u = e / g has about the same
    # scale everywhere. Fitted per dataset: scripts/fit_innovation_gain.py.
    gain: float = 0.0
    gain_velocity_exponent: float = 1.0
    gain_attack_s: float = 0.01
    gain_sustain: float = 0.1
    gain_decay_scale: float = 1.0
    gain_release_s: float = 0.05
    gain_floor: float = 1e-4
    # Where the partials lie (resonators.partial_hz; scripts/fit_partials.py fits both to a store):
    # the piano's stretch tuning as a polynomial in octaves from middle C (cents), and its strings'
    # stiffness as (log10 B at middle C, decades per octave). Empty: equal temperament and harmonic
    # partials k * f0.
    tuning_cents: tuple[float, ...] = ()
    inharmonicity: tuple[float, ...] = ()
    # Synthesis only: where the synthesis-only partials (k > `partials`) lie. Each at k f0 2**(c/1200)
    # sqrt(1 + B k**2) with the tuning above, and log10 B read off this table over pitch
    # (`synthesis_inharmonicity_log10[i]` at `synthesis_inharmonicity_pitches[i]`; linear between, flat
    # beyond; scripts/fit_partials.py --synthesis-inharmonicity) instead of `inharmonicity`'s line.
    # The analysis's partials, and so the network's target, stay where they were. Why: the line is
    # fitted on partials 1-16; on the training piano B is 7-30 % higher in the middle and up to 3.5
    # times higher in the low bass (strings below MIDI 30), so partials 17-48 lay up to 21 cents flat
    # of the piano's, and their levels were read off their peaks (docs/evaluation.md, "Where the upper
    # partials lie"). Empty: the line.
    synthesis_inharmonicity_pitches: tuple[float, ...] = ()
    synthesis_inharmonicity_log10: tuple[float, ...] = ()
    # Noise shaping of the innovation (0, 0: off). With n_t = e_t / g_t, the network samples u and
    # synthesis shapes it: n = D(z) u, D(z) = (1 + c z^-1) / ((1 + c)(1 - a z^-1)), a = pre_emphasis
    # (LPCNet's), c = noise_lowpass; analysis applies the inverse (resonators.shape_noise,
    # unshape_noise). So the sampled noise follows the innovation's own spectral tilt instead of
    # being white. Why: a piano's innovation is dark (on the Salamander data its 4-8 kHz band is
    # ~35 dB below its 0-500 Hz band, hammer included), and white samples land as broadband clicks
    # at the attacks. The pole a also lifts the lowest frequencies (DC gain 1 / (1 - a)), so n is
    # bounded to [-1, 1] when a > 0 (|e| <= g still holds); the zero c rolls off the top only.
    pre_emphasis: float = 0.0
    noise_lowpass: float = 0.0
    # Fitted partial levels (scripts/fit_partials.py): the amplitude in dB (re full scale) of partial
    # k of a note `attack_s` after its onset at velocity 64, on a grid of pitches (`level_pitches`,
    # rising; linear in between, flat beyond), one row of `levels_db` per grid pitch and one column
    # per partial; the level rises `level_velocity_slopes[k - 1]` dB per dB of velocity, or, given
    # `level_velocity_slope_table` (a row per grid pitch, like `levels_db`, instead of the slopes),
    # by that table's slope at the note's pitch (linear in between). Synthesis
    # can set each oscillator's amplitude to it at the attack's end (`sampling.partial_levels`);
    # the analysis never does. Why: free-running, a partial's level is whatever the few sampled
    # innovations of its attack made it (a random draw per note), and a white attack drives the bass
    # notes' fundamentals, which a piano barely radiates (docs/conditioning-study.md). Empty: none.
    level_pitches: tuple[float, ...] = ()
    levels_db: tuple[tuple[float, ...], ...] = ()
    level_velocity_slopes: tuple[float, ...] = ()
    level_velocity_slope_table: tuple[tuple[float, ...], ...] = ()
    # The prompt sound (scripts/fit_partials.py --prompt-delay): a struck string's upper partials
    # first die fast, then ring on with the note (a piano's double decay). `prompt_levels_db` (and
    # `prompt_velocity_slope_table`, shaped like `levels_db`) is each partial's level at the attack's
    # end with its prompt sound; synthesis sets an oscillator there where it is above the level
    # table's and lets it fall in a straight line in dB onto the level table's decay, reached
    # `prompt_seconds` after the attack's end, then decay as before (`resonators.oscillators`:
    # `r_prompt`, `prompt_end`; through the attack the lock's target is the same line drawn back).
    # Why: the level table is measured 0.31 s after the attack's end and carried back along the
    # note's one decay, so a loud note's top came out of its attack 7-17 dB below the training
    # piano's (docs/evaluation.md, "The prompt sound"). Empty: one decay from the attack's end.
    prompt_levels_db: tuple[tuple[float, ...], ...] = ()
    prompt_velocity_slope_table: tuple[tuple[float, ...], ...] = ()
    prompt_seconds: float = 0.0
    # Each year's room in the bank (scripts/fit_rooms.py fits it to a store): after a note's release
    # its partials decay with `room_release_tau_s[i]` in recordings of year `room_years[i]` (other
    # years, and the analysis: `release_tau_s`). Why: the rooms differ most in how long a note rings
    # after its dampers fall (the reverberation), which the year embedding alone did not make audible
    # (docs/evaluation.md, the note sheet). Empty: one release for every year.
    room_years: tuple[int, ...] = ()
    room_release_tau_s: tuple[float, ...] = ()
    # Each room's tone (scripts/fit_rooms.py --tone): in recordings of year `room_years[i]` synthesis
    # sets every partial's fitted level (`levels_db`, its prompt sound with it) `room_tone_db[i]` dB
    # higher, read at the partial's frequency on `room_tone_hz` (linear in log frequency between
    # those frequencies, flat beyond; other years, and the analysis: none). Why: the level table is
    # the same in every year, so the years' rooms came out alike in level and treble, where the
    # recordings' differ by several dB (docs/evaluation.md, "The rooms' tone"). Empty: no tone.
    room_tone_hz: tuple[float, ...] = ()
    room_tone_db: tuple[tuple[float, ...], ...] = ()
    # The level table's velocity tone (scripts/fit_partials.py --velocity-tone): synthesis sets every
    # partial's fitted level (`levels_db`, its prompt sound with it) `velocity_tone_db[i][j]` dB higher
    # for a note of velocity `velocity_tone_velocities[i]` at partial frequency `velocity_tone_hz[j]`
    # (linear in dB of velocity and in log frequency between them, flat beyond; every year, the
    # analysis never). Why: the table's level is a straight line in dB of velocity, and the training
    # piano's is not: its loudest blows' top is 3-11 dB over the line at 4-8 kHz and its moderate
    # ones' 1-5 dB under it (docs/evaluation.md, "The velocity tone"). `prompt_velocity_tone_db` (the
    # same grid): the prompt sound's (`prompt_levels_db`) instead, fitted at the attack's end as that
    # table is; empty: the same tone. Empty: the straight line.
    velocity_tone_velocities: tuple[float, ...] = ()
    velocity_tone_hz: tuple[float, ...] = ()
    velocity_tone_db: tuple[tuple[float, ...], ...] = ()
    prompt_velocity_tone_db: tuple[tuple[float, ...], ...] = ()
    # The aftersound (scripts/fit_aftersound.py): a held piano note's partials die at one rate for the
    # first second or so, then much more slowly (a struck string's double decay: its vertical motion
    # dies first, its horizontal motion and the unison's out-of-phase mode ring on). With the lock on,
    # past `aftersound_knee_s[i]` after its onset (not before its prompt sound ends) each partial of a
    # note of pitch `aftersound_pitches[i]` decays by `aftersound_decay_db_per_s[i]` instead of its
    # hold decay (`decay_scale`), until its release (linear in pitch between the grid pitches, flat
    # beyond; `resonators.oscillators`: `knee`, `r_after`). Why: the bank's one decay, fitted over the
    # first half second, left a held note's partials a median 9.8 dB under the training piano's 2 s
    # after its onset and 19.3 dB under at 3.4 s (docs/evaluation.md, "The aftersound"). Empty: one
    # decay until the release.
    # `aftersound_hold_decay_db_per_s[i]` (optional, on the same grid): with the lock on, from its prompt
    # sound's end to its knee each partial decays by it instead of its hold decay (`r_hold_locked`). Why:
    # the hold decay is one law of pitch, and the training piano's top does not follow it: from MIDI
    # 81 up its partials die at 16-29 dB/s where the law gives 33-71 (docs/evaluation.md, "The top's
    # hold"). Empty: the hold decay.
    aftersound_pitches: tuple[float, ...] = ()
    aftersound_knee_s: tuple[float, ...] = ()
    aftersound_decay_db_per_s: tuple[float, ...] = ()
    aftersound_hold_decay_db_per_s: tuple[float, ...] = ()
    # The undamped top (synthesis only): a piano's strings from about F#6 up have no dampers, so a
    # released key there rings on. In synthesis the partials of notes of pitch `undamped_from_pitch`
    # and up decay by `undamped_release_db_per_s` after their (sustained) release, in every room,
    # instead of the room's release (`room_release_tau_s`; `resonators.Schedule.for_sampling`, and the
    # live bank's rows). Why: the bank damped every key alike, so a top note's fundamental fell
    # 10-60 dB under the training piano's within 0.6 s of its release, where the recording's rings on
    # (docs/evaluation.md, "The undamped top"). 0: every key damped. The analysis never reads it.
    undamped_from_pitch: int = 0
    undamped_release_db_per_s: float = 0.0
    # The dampers' noise (synthesis only): a damped key's release drops its damper on the strings, a
    # low thump. In synthesis every note of a damped key (below `undamped_from_pitch`; every key without
    # an undamped top) plays at its (sustained) release white noise through a resonance at `damper_hz`
    # (quality `damper_q`) and a one-pole low-pass at `damper_lowpass_hz`, rising over `damper_rise_s`
    # (a raised cosine) while it decays by the note's release (its room's), at an RMS of
    # `damper_level_db` dB (of full scale, at the envelope's full level) for velocity 127 at MIDI 60,
    # plus `damper_velocity_slope` dB per dB of velocity (20 log10 v) and `damper_pitch_db_per_octave`
    # (`resonators.damper_levels`, `damper_filter`; the live bank's rows). Why: the training piano
    # plays a damper noise at every damped key's release that the bank did not make (docs/evaluation.md,
    # "The dampers' noise"). 0 dB: none. Fitted by scripts/fit_dampers.py. The analysis never reads it.
    damper_level_db: float = 0.0
    damper_velocity_slope: float = 0.0
    damper_pitch_db_per_octave: float = 0.0
    damper_hz: float = 0.0
    damper_q: float = 0.0
    damper_lowpass_hz: float = 0.0
    damper_rise_s: float = 0.0

    # Settings that change synthesis only (the analysis never reads them): `Config.with_synthesis_settings_from`.
    SYNTHESIS_ONLY: ClassVar[tuple[str, ...]] = ("synthesis_partials", "synthesis_inharmonicity_pitches",
                                                 "synthesis_inharmonicity_log10", "level_pitches", "levels_db", "level_velocity_slopes",
                                                 "level_velocity_slope_table", "prompt_levels_db",
                                                 "prompt_velocity_slope_table", "prompt_seconds", "room_years",
                                                 "room_release_tau_s", "room_tone_hz", "room_tone_db",
                                                 "velocity_tone_velocities", "velocity_tone_hz", "velocity_tone_db",
                                                 "prompt_velocity_tone_db", "aftersound_pitches", "aftersound_knee_s",
                                                 "aftersound_decay_db_per_s", "aftersound_hold_decay_db_per_s",
                                                 "undamped_from_pitch", "undamped_release_db_per_s",
                                                 "damper_level_db", "damper_velocity_slope",
                                                 "damper_pitch_db_per_octave", "damper_hz", "damper_q",
                                                 "damper_lowpass_hz", "damper_rise_s")
    # Old configs' flat key of a setting: "resonator_" + its name (data.resonator_kappa -> kappa).
    FLAT_PREFIX: ClassVar[str] = "resonator_"
    # Analysis warm-up before a teacher-forced window (the bank starts from silence and re-locks
    # within ~2/kappa samples).
    WARMUP_SECONDS: ClassVar[float] = 0.05

    def __post_init__(self) -> None:
        key = "data.resonators."
        for name in ("tuning_cents", "inharmonicity", "synthesis_inharmonicity_pitches",
                     "synthesis_inharmonicity_log10", "level_pitches", "level_velocity_slopes", "room_years",
                     "room_release_tau_s", "room_tone_hz", "velocity_tone_velocities", "velocity_tone_hz",
                     "aftersound_pitches", "aftersound_knee_s", "aftersound_decay_db_per_s",
                     "aftersound_hold_decay_db_per_s"):
            object.__setattr__(self, name, tuple(getattr(self, name)))  # tuples, whatever sequence was given
        object.__setattr__(self, "levels_db", tuple(tuple(row) for row in self.levels_db))
        object.__setattr__(self, "level_velocity_slope_table", tuple(tuple(row) for row in self.level_velocity_slope_table))
        for name in ("prompt_levels_db", "prompt_velocity_slope_table", "room_tone_db", "velocity_tone_db",
                     "prompt_velocity_tone_db"):
            object.__setattr__(self, name, tuple(tuple(row) for row in getattr(self, name)))
        _require(self.partials >= 0, key + "partials", self.partials, "must be >= 0")
        _require(self.synthesis_partials == 0 or self.synthesis_partials >= self.partials > 0,
                 key + "synthesis_partials", self.synthesis_partials, f"must be 0 or >= partials ({self.partials})")
        _require(self.synthesis_partials <= self.partials or (
                 bool(self.levels_db) and len(self.levels_db[0]) >= self.synthesis_partials),
                 key + "synthesis_partials", self.synthesis_partials, "needs a fitted level for each of them (levels_db)")
        _require(0 < self.kappa < 1, key + "kappa", self.kappa, "must be in (0, 1)")
        _require(self.max_hz > 0, key + "max_hz", self.max_hz, "must be > 0")
        _require(self.release_tau_s > 0, key + "release_tau_s", self.release_tau_s, "must be > 0")
        _require(self.decay_scale > 0, key + "decay_scale", self.decay_scale, "must be > 0")
        _require(self.decay_exponent >= 0, key + "decay_exponent", self.decay_exponent, "must be >= 0")
        _require(0 <= self.sustain_kappa < 1, key + "sustain_kappa", self.sustain_kappa,
                 "must be in [0, 1) (0: kappa throughout)")
        _require(self.attack_s >= 0, key + "attack_s", self.attack_s, "must be >= 0")
        _require(0 <= self.kappa_exponent <= 4, key + "kappa_exponent", self.kappa_exponent, "must be in [0, 4]")
        _require(self.input in ("audio", "innovation"), key + "input", self.input, "must be 'audio' or 'innovation'")
        _require(0 <= self.pre_emphasis < 1, key + "pre_emphasis", self.pre_emphasis, "must be in [0, 1) (0: off)")
        _require(self.gain >= 0, key + "gain", self.gain, "must be >= 0 (0: off)")
        _require(len(self.tuning_cents) <= 6, key + "tuning_cents", list(self.tuning_cents),
                 "at most 6 polynomial coefficients (cents, c0 + c1 z + ...)")
        _require(len(self.inharmonicity) in (0, 2), key + "inharmonicity", list(self.inharmonicity),
                 "must be [] or [log10 B at middle C, decades per octave]")
        if self.inharmonicity:
            _require(-8.0 <= self.inharmonicity[0] <= -1.0, key + "inharmonicity", list(self.inharmonicity),
                     "log10 B at middle C must be in [-8, -1]")
        if self.synthesis_inharmonicity_pitches or self.synthesis_inharmonicity_log10:
            grid = self.synthesis_inharmonicity_pitches
            _require_pitch_grid(key + "synthesis_inharmonicity_pitches", grid)
            values = self.synthesis_inharmonicity_log10
            _require(len(values) == len(grid), key + "synthesis_inharmonicity_log10", len(values),
                     f"needs one value per pitch of synthesis_inharmonicity_pitches ({len(grid)})")
            _require(all(math.isfinite(v) and -8.0 <= v <= -1.0 for v in values), key + "synthesis_inharmonicity_log10",
                     list(values), "log10 B must lie in [-8, -1]")
        _require(0 <= self.noise_lowpass < 1, key + "noise_lowpass", self.noise_lowpass, "must be in [0, 1) (0: off)")
        if self.level_pitches or self.levels_db or self.level_velocity_slopes or self.level_velocity_slope_table:
            _require(len(self.levels_db) == len(self.level_pitches) > 0, key + "levels_db", len(self.levels_db),
                     f"needs one row per level pitch ({len(self.level_pitches)})")
            _require(all(b > a for a, b in zip(self.level_pitches, self.level_pitches[1:])), key + "level_pitches",
                     list(self.level_pitches), "must rise")
            table = bool(self.level_velocity_slope_table)
            _require(table != bool(self.level_velocity_slopes), key + "level_velocity_slopes",
                     len(self.level_velocity_slopes), "give the slopes per partial or the slope table, one of them")
            width = len(self.levels_db[0]) if table else len(self.level_velocity_slopes)
            _require(width >= self.partials, key + ("levels_db" if table else "level_velocity_slopes"), width,
                     f"needs a level and a slope per partial ({self.partials})")
            _require(all(len(row) == width for row in self.levels_db), key + "levels_db",
                     sorted({len(row) for row in self.levels_db}), f"rows must have one level per slope ({width})")
            _require(not table or (len(self.level_velocity_slope_table) == len(self.levels_db)
                                   and all(len(row) == width for row in self.level_velocity_slope_table)),
                     key + "level_velocity_slope_table", len(self.level_velocity_slope_table),
                     "must have the shape of levels_db (a row per level pitch, a slope per partial)")
            _require(all(math.isfinite(v) for v in (*self.level_velocity_slopes, *(v for row in self.levels_db for v in row),
                                                    *(v for row in self.level_velocity_slope_table for v in row))),
                     key + "levels_db", "...", "levels and slopes must be finite")
            _require(self.partials > 0, key + "levels_db", "...", "needs the resonator bank (partials > 0)")
            _require(self.attack_s > 0, key + "attack_s", self.attack_s, "must be > 0 with partial levels (they are "
                     "set at the attack's end)")
        if self.prompt_levels_db or self.prompt_velocity_slope_table or self.prompt_seconds:
            shape = (len(self.levels_db), len(self.levels_db[0]) if self.levels_db else 0)
            for name in ("prompt_levels_db", "prompt_velocity_slope_table"):
                table = getattr(self, name)
                _require(bool(self.level_velocity_slope_table) and len(table) == shape[0]
                         and all(len(row) == shape[1] for row in table), key + name, len(table),
                         "must have the shape of levels_db, with level_velocity_slope_table (a row per level pitch, "
                         "a value per partial)")
                _require(all(math.isfinite(v) for row in table for v in row), key + name, "...", "must be finite")
            _require(math.isfinite(self.prompt_seconds) and 0.001 <= self.prompt_seconds <= 10.0,
                     key + "prompt_seconds", self.prompt_seconds,
                     "must be in [0.001, 10] with prompt levels (how long the prompt sound lasts)")
        _require(len(self.room_years) == len(self.room_release_tau_s), key + "room_release_tau_s",
                 len(self.room_release_tau_s), f"needs one release time per room year ({len(self.room_years)})")
        _require(all(y in C.MAESTRO_YEARS for y in self.room_years) and len(set(self.room_years)) == len(self.room_years),
                 key + "room_years", list(self.room_years), f"must be distinct MAESTRO years {list(C.MAESTRO_YEARS)}")
        _require(all(math.isfinite(t) and t > 0 for t in self.room_release_tau_s), key + "room_release_tau_s",
                 list(self.room_release_tau_s), "must be > 0")
        if self.room_tone_hz or self.room_tone_db:
            _require_tone_grid(key, "room_tone_hz", self.room_tone_hz, "room_tone_db", self.room_tone_db,
                               [f"room year {y}" for y in self.room_years],
                               f"needs a row per room year ({len(self.room_years)} in room_years)")
            _require(bool(self.levels_db), key + "room_tone_db", "...",
                     "needs the fitted partial levels (levels_db): the tone sets them per year")
        if self.velocity_tone_velocities or self.velocity_tone_hz or self.velocity_tone_db or self.prompt_velocity_tone_db:
            _require(bool(self.velocity_tone_db) or not self.prompt_velocity_tone_db, key + "prompt_velocity_tone_db",
                     "...", "needs the level table's velocity tone (velocity_tone_db) and its grid")
            _require(len(self.velocity_tone_velocities) > 0
                     and all(math.isfinite(v) and 1 <= v <= C.MAX_MIDI_VELOCITY for v in self.velocity_tone_velocities)
                     and all(b > a for a, b in zip(self.velocity_tone_velocities, self.velocity_tone_velocities[1:])),
                     key + "velocity_tone_velocities", list(self.velocity_tone_velocities),
                     f"must be MIDI velocities in [1, {C.MAX_MIDI_VELOCITY}] that rise")
            per_velocity = [f"velocity {v:g}" for v in self.velocity_tone_velocities]
            rows = f"needs a row per velocity of velocity_tone_velocities ({len(self.velocity_tone_velocities)})"
            _require_tone_grid(key, "velocity_tone_hz", self.velocity_tone_hz, "velocity_tone_db",
                               self.velocity_tone_db, per_velocity, rows)
            if self.prompt_velocity_tone_db:
                _require_tone_grid(key, "velocity_tone_hz", self.velocity_tone_hz, "prompt_velocity_tone_db",
                                   self.prompt_velocity_tone_db, per_velocity, rows)
                _require(bool(self.prompt_levels_db), key + "prompt_velocity_tone_db", "...",
                         "needs the prompt sound (prompt_levels_db) it bends")
            _require(bool(self.levels_db), key + "velocity_tone_db", "...",
                     "needs the fitted partial levels (levels_db): the tone sets them by velocity")
        if (self.aftersound_pitches or self.aftersound_knee_s or self.aftersound_decay_db_per_s
                or self.aftersound_hold_decay_db_per_s):
            n = len(self.aftersound_pitches)
            _require(n > 0, key + "aftersound_pitches", [], "needs the grid of pitches its knees and decays are given on")
            _require_pitch_grid(key + "aftersound_pitches", self.aftersound_pitches)
            for name, lo, hi in (("aftersound_knee_s", 0.0, 60.0), ("aftersound_decay_db_per_s", 0.0, 1000.0)):
                values = getattr(self, name)
                _require(len(values) == n, key + name, len(values), f"needs one value per aftersound pitch ({n})")
                _require(all(math.isfinite(v) and lo <= v <= hi for v in values), key + name, list(values),
                         f"must lie in [{lo:g}, {hi:g}]")
            hold = self.aftersound_hold_decay_db_per_s
            if hold:  # optional: empty keeps the hold decay
                _require(len(hold) == n, key + "aftersound_hold_decay_db_per_s", len(hold),
                         f"needs one value per aftersound pitch ({n}), or none")
                _require(all(math.isfinite(v) and 0.0 <= v <= 1000.0 for v in hold),
                         key + "aftersound_hold_decay_db_per_s", list(hold), "must lie in [0, 1000]")
            _require(self.partials > 0, key + "aftersound_pitches", "...", "needs the resonator bank (partials > 0)")
            _require(bool(self.levels_db), key + "aftersound_pitches", "...",
                     "needs the fitted partial levels (levels_db): it acts through the lock that holds them")
        _require(self.undamped_from_pitch == 0 or C.MIN_MIDI_PITCH <= self.undamped_from_pitch <= C.MAX_MIDI_PITCH,
                 key + "undamped_from_pitch", self.undamped_from_pitch,
                 f"must be 0 (every key damped) or a MIDI pitch in [{C.MIN_MIDI_PITCH}, {C.MAX_MIDI_PITCH}]")
        # at least 1 dB/s: a slower release would ring for minutes (5 time constants), and the live engine
        # would never fall silent
        _require(self.undamped_release_db_per_s == 0.0 or (
                 math.isfinite(self.undamped_release_db_per_s) and 1.0 <= self.undamped_release_db_per_s <= 1000.0),
                 key + "undamped_release_db_per_s", self.undamped_release_db_per_s,
                 "must lie in [1, 1000] dB/s (0: every key damped)")
        _require((self.undamped_from_pitch > 0) == (self.undamped_release_db_per_s > 0), key + "undamped_release_db_per_s",
                 self.undamped_release_db_per_s, "must be > 0 exactly when undamped_from_pitch is (0: every key damped)")
        if self.undamped_from_pitch > 0:
            _require(self.partials > 0, key + "undamped_from_pitch", self.undamped_from_pitch,
                     "needs the resonator bank (partials > 0)")
        _require(self.damper_level_db == 0.0 or (math.isfinite(self.damper_level_db) and -150.0 <= self.damper_level_db < 0.0),
                 key + "damper_level_db", self.damper_level_db, "must lie in [-150, 0) dB (0: no damper noise)")
        if self.damper_level_db != 0.0:
            _require(self.partials > 0, key + "damper_level_db", self.damper_level_db,
                     "needs the resonator bank (partials > 0)")
            # a network that reads the audio would hear the noise; one reading the innovation never does
            _require(self.input == "innovation", key + "damper_level_db", self.damper_level_db,
                     "needs input 'innovation' (a model reading its audio would hear the noise)")
            for name in ("damper_velocity_slope", "damper_pitch_db_per_octave"):
                _require(math.isfinite(getattr(self, name)) and abs(getattr(self, name)) <= 10.0, key + name,
                         getattr(self, name), "must lie in [-10, 10] dB per dB (of velocity) or per octave")
            _require(math.isfinite(self.damper_hz) and 10.0 <= self.damper_hz <= 2000.0, key + "damper_hz",
                     self.damper_hz, "must lie in [10, 2000] Hz with a damper noise")
            _require(math.isfinite(self.damper_q) and 0.1 <= self.damper_q <= 20.0, key + "damper_q", self.damper_q,
                     "must lie in [0.1, 20] with a damper noise")
            _require(math.isfinite(self.damper_lowpass_hz) and 10.0 <= self.damper_lowpass_hz <= 4000.0,
                     key + "damper_lowpass_hz", self.damper_lowpass_hz, "must lie in [10, 4000] Hz with a damper noise")
            # the noise rises while the note's release already decays: a rise past 0.5 s would never be heard
            _require(math.isfinite(self.damper_rise_s) and 0.0 <= self.damper_rise_s <= 0.5, key + "damper_rise_s",
                     self.damper_rise_s, "must lie in [0, 0.5] s with a damper noise")
        for name in ("pre_emphasis", "noise_lowpass"):
            if getattr(self, name) > 0:
                _require(self.partials > 0, key + name, getattr(self, name), "needs the resonator bank (partials > 0)")
        if self.gain > 0:
            _require(self.partials > 0, key + "gain", self.gain, "needs the resonator bank (partials > 0)")
            _require(self.max_hz > C.MAX_PITCH_HZ, key + "max_hz", self.max_hz,
                     f"must be above the highest fundamental ({C.MAX_PITCH_HZ:.0f} Hz) when the gain is on "
                     "(each note's fundamental oscillator carries its gain)")
            for name in ("gain_attack_s", "gain_decay_scale", "gain_release_s", "gain_floor"):
                _require(getattr(self, name) > 0, key + name, getattr(self, name), "must be > 0")
            _require(self.gain_sustain >= 0, key + "gain_sustain", self.gain_sustain, "must be >= 0")
            _require(self.gain_velocity_exponent >= 0, key + "gain_velocity_exponent",
                     self.gain_velocity_exponent, "must be >= 0")

    @property
    def enabled(self) -> bool:
        """True when the config has a bank (`partials` > 0)."""
        return self.partials > 0

    @property
    def release_tail_s(self) -> float:
        """How long after its note's (sustained) offset an oscillator is removed: 5 x the longer of
        `release_tau_s` and, with the gain on, `gain_release_s` (so the gain follows the room's tail)."""
        return 5.0 * max(self.release_tau_s, self.gain_release_s if self.gain > 0 else 0.0)

    @property
    def room_tail_s(self) -> float:
        """The longest a note may ring after its offset in synthesis: `release_tail_s`, or 5 x the
        longest room (`room_release_tau_s`; `resonators.Schedule.for_sampling` extends the
        oscillators' stops to their year's). What renders keep ringing for (an undamped key's notes:
        `undamped_tail_s`); the analysis keeps `release_tail_s`."""
        return max(self.release_tail_s, 5.0 * max(self.room_release_tau_s, default=0.0))

    def undamped(self, pitch: Any) -> Any:
        """Whether notes of these MIDI pitches (a number, or a numpy array: bool, or a bool array) have no
        dampers (`undamped_from_pitch` and up): the one test the schedule's window, the live bank's rows,
        the offline spans and the live engine's silence make (`resonators.Schedule.for_sampling` makes it
        on its rows' pitch with `resonators.undamped_release`'s lowest pitch)."""
        return (pitch >= self.undamped_from_pitch) & (self.undamped_from_pitch > 0)

    def damped(self, pitch: Any) -> Any:
        """Whether keys of `pitch` (a number or an array) play the dampers' noise at their release: a
        damper noise configured (`damper_level_db`) and the key damped (`undamped`)."""
        return ((pitch < self.undamped_from_pitch) | (self.undamped_from_pitch <= 0)) & (self.damper_level_db != 0.0)

    @property
    def undamped_tail_s(self) -> float:
        """The longest a note of an undamped key may ring after its offset in synthesis: `room_tail_s`, or
        5 x `undamped_tau_s` where longer (0 without an undamped top)."""
        return max(self.room_tail_s, 5.0 * self.undamped_tau_s) if self.undamped_from_pitch > 0 else 0.0

    @property
    def undamped_tau_s(self) -> float:
        """The time constant (s) of the undamped top's decay after a release (`undamped_release_db_per_s`);
        0 without one."""
        if self.undamped_from_pitch <= 0:
            return 0.0
        return 20.0 / (math.log(10.0) * self.undamped_release_db_per_s)

    def room_tone_for(self, year: int | None) -> tuple[float, ...] | None:
        """The tone (dB at `room_tone_hz`) of `year`'s room; None for None, a year without a room or
        a config without tones."""
        if not self.room_tone_db or year not in self.room_years:
            return None
        return self.room_tone_db[self.room_years.index(year)]

    def release_tau_for(self, year: int | None) -> float:
        """The partials' decay time after a release in recordings of `year` (None or a year
        without a fitted room: `release_tau_s`)."""
        if year in self.room_years:
            return float(self.room_release_tau_s[self.room_years.index(year)])
        return float(self.release_tau_s)

    @property
    def kappa_after_attack(self) -> float:
        """The innovation gain once a note is `attack_s` old (`sustain_kappa`, or `kappa` when that is 0)."""
        return self.sustain_kappa if self.sustain_kappa > 0 else self.kappa

    def warmup_samples(self, sample_rate_hz: int) -> int:
        """Samples of analysis warm-up before a teacher-forced window."""
        return int(math.ceil(self.WARMUP_SECONDS * sample_rate_hz))


@dataclass(frozen=True)
class DataConfig:
    """What a training example is: rates, segment length and the conditioning channels."""

    sample_rate_hz: int = C.SAMPLE_RATE_HZ
    frame_rate_hz: int = C.FRAME_RATE_HZ
    segment_seconds: float = 0.5
    conditioning: tuple[str, ...] = ("onset_velocity",)
    use_year: bool = True
    sustain_threshold: int = C.PEDAL_ON_THRESHOLD
    # Audio-rate excitation rendered from the MIDI alone (sinusoids at each sounding note's
    # partials); 0 disables it, otherwise the number of partials per note summed into one channel.
    excitation_partials: int = 0
    # The MIDI-driven resonator bank (resonators.py), off by default: the `resonators` section.
    resonators: ResonatorConfig = field(default_factory=ResonatorConfig)

    def __post_init__(self) -> None:
        _require(self.sample_rate_hz > 0, "data.sample_rate_hz", self.sample_rate_hz, "must be > 0")
        _require(self.frame_rate_hz > 0, "data.frame_rate_hz", self.frame_rate_hz, "must be > 0")
        _require(
            self.sample_rate_hz % self.frame_rate_hz == 0,
            "data.frame_rate_hz",
            self.frame_rate_hz,
            f"must divide sample_rate_hz ({self.sample_rate_hz})",
        )
        _require(self.segment_seconds > 0, "data.segment_seconds", self.segment_seconds, "must be > 0")
        _require(len(self.conditioning) > 0 or self.excitation_partials > 0, "data.conditioning",
                 list(self.conditioning), "a model needs at least one conditioning channel")
        for name in self.conditioning:
            _require(name in FRAME_CHANNELS, "data.conditioning", name,
                     f"unknown channel (choose from {sorted(FRAME_CHANNELS)})")
        _require(len(set(self.conditioning)) == len(self.conditioning), "data.conditioning",
                 list(self.conditioning), "lists a channel twice")
        _require(0 <= self.sustain_threshold <= 127, "data.sustain_threshold", self.sustain_threshold,
                 "must be in 0..127")
        _require(self.excitation_partials >= 0, "data.excitation_partials", self.excitation_partials,
                 "must be >= 0")
        _require(isinstance(self.resonators, ResonatorConfig), "data.resonators", self.resonators,
                 "must be a ResonatorConfig")

    @property
    def samples_per_frame(self) -> int:
        return self.sample_rate_hz // self.frame_rate_hz

    @property
    def network_reads_innovation(self) -> bool:
        """True when the network's input is the bank's innovation rather than the audio."""
        return self.resonators.enabled and self.resonators.input == "innovation"

    @property
    def segment_frames(self) -> int:
        """Frames per training segment (segments are whole frames long)."""
        return max(1, round(self.segment_seconds * self.frame_rate_hz))

    @property
    def segment_samples(self) -> int:
        return self.segment_frames * self.samples_per_frame

    @property
    def conditioning_channels(self) -> int:
        """Rows of the frame-rate conditioning array, in the order of `conditioning`."""
        return sum(FRAME_CHANNELS[name] for name in self.conditioning)


@dataclass(frozen=True)
class ModelConfig:
    """The audio WaveNet, the context stack over the piano roll, and the output distribution."""

    # Audio stack
    input_kind: str = "mulaw_embedding"  # "mulaw_embedding" | "scalar"
    residual_channels: int = 64
    gate_channels: int = 128  # split in halves for tanh and sigmoid
    skip_channels: int = 256
    n_stacks: int = 2
    layers_per_stack: int = 10  # dilations 1, 2, 4, ... 2**(layers_per_stack-1), repeated n_stacks times
    kernel_size: int = 2
    bias: bool = True
    # Output
    output_kind: str = "mol"  # "mol" (discretized mixture of logistics, 16 bit) | "mulaw" (256-way softmax)
    n_mixtures: int = 10
    mulaw_classes: int = C.MU_LAW_CLASSES
    # Context stack over the frame-rate conditioning
    context_channels: int = 64
    context_stacks: int = 2
    context_layers_per_stack: int = 6  # dilations 1, 2, ... 2**(n-1) per stack
    context_kernel_size: int = 3
    context_causal: bool = False  # non-causal may look ahead: the whole MIDI is known before synthesis
    upsample: str = "repeat"  # "repeat" | "transposed" (learned transposed conv, frame -> audio rate)
    # Global conditioning
    year_embedding: bool = True
    # Auxiliary head: the context stack predicts the target's log-mel spectrogram (0 disables)
    aux_mel_bands: int = 0

    def __post_init__(self) -> None:
        _require(self.input_kind in ("mulaw_embedding", "scalar"), "model.input_kind", self.input_kind,
                 "must be 'mulaw_embedding' or 'scalar'")
        _require(self.output_kind in ("mol", "mulaw"), "model.output_kind", self.output_kind,
                 "must be 'mol' or 'mulaw'")
        _require(self.upsample in ("repeat", "transposed"), "model.upsample", self.upsample,
                 "must be 'repeat' or 'transposed'")
        for name in ("residual_channels", "skip_channels", "n_stacks", "layers_per_stack", "n_mixtures",
                     "context_channels", "context_layers_per_stack"):
            value = getattr(self, name)
            _require(value >= 1, f"model.{name}", value, "must be >= 1")
        _require(self.context_stacks >= 0, "model.context_stacks", self.context_stacks, "must be >= 0")
        _require(self.gate_channels >= 2 and self.gate_channels % 2 == 0, "model.gate_channels",
                 self.gate_channels, "must be even and >= 2 (tanh half, sigmoid half)")
        _require(self.kernel_size >= 2, "model.kernel_size", self.kernel_size, "must be >= 2")
        _require(self.context_kernel_size >= 1 and self.context_kernel_size % 2 == 1,
                 "model.context_kernel_size", self.context_kernel_size, "must be odd and >= 1")
        _require(self.mulaw_classes >= 2, "model.mulaw_classes", self.mulaw_classes, "must be >= 2")
        _require(self.aux_mel_bands >= 0, "model.aux_mel_bands", self.aux_mel_bands, "must be >= 0")

    @property
    def dilations(self) -> tuple[int, ...]:
        return tuple(2**i for i in range(self.layers_per_stack)) * self.n_stacks

    @property
    def receptive_field_samples(self) -> int:
        """How many past audio samples the prediction of one sample depends on.

        The input layer is a causal kernel-2 conv (nv-wavenet's embedding_prev/embedding_curr) over
        the previous sample and the one before it; each dilated layer adds (kernel_size-1)*dilation.
        """
        return (self.kernel_size - 1) * sum(self.dilations) + 2

    @property
    def n_layers(self) -> int:
        return self.n_stacks * self.layers_per_stack

    @property
    def output_channels(self) -> int:
        return 3 * self.n_mixtures if self.output_kind == "mol" else self.mulaw_classes


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation, checkpointing and logging."""

    batch_size: int = 8
    max_steps: int = 10_000
    learning_rate: float = 1e-3
    warmup_steps: int = 500
    lr_decay_half_life_steps: int = 50_000  # exponential decay after warm-up
    min_learning_rate: float = 1e-5
    adam_betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    grad_clip_norm: float = 1.0
    ema_decay: float = 0.999  # 0 disables EMA weights
    amp: str = "auto"  # "auto" (bf16 on CUDA, fp32 on CPU) | "bf16" | "fp16" | "none"
    seed: int = 0
    num_workers: int = 0
    log_every_steps: int = 50
    validate_every_steps: int = 500
    validation_batches: int = 8
    checkpoint_every_steps: int = 500
    keep_checkpoints: int = 3
    audio_samples_every_steps: int = 0  # 0: no audio summaries
    max_consecutive_nonfinite: int = 20
    # Regularisers against the decoder ignoring the MIDI
    input_noise_std: float = 0.0  # Gaussian noise on the teacher-forced audio input ([-1, 1] units)
    input_dropout: float = 0.0  # probability of zeroing teacher-forced input samples
    aux_mel_loss_weight: float = 0.0  # weight of the model's aux log-mel head loss (needs model.aux_mel_bands)

    def __post_init__(self) -> None:
        for name in ("batch_size", "max_steps", "log_every_steps", "validate_every_steps",
                     "checkpoint_every_steps", "keep_checkpoints", "max_consecutive_nonfinite"):
            value = getattr(self, name)
            _require(value >= 1, f"train.{name}", value, "must be >= 1")
        for name in ("warmup_steps", "num_workers", "validation_batches", "audio_samples_every_steps"):
            value = getattr(self, name)
            _require(value >= 0, f"train.{name}", value, "must be >= 0")
        _require(self.learning_rate > 0, "train.learning_rate", self.learning_rate, "must be > 0")
        _require(self.lr_decay_half_life_steps > 0, "train.lr_decay_half_life_steps",
                 self.lr_decay_half_life_steps, "must be > 0")
        _require(0 <= self.ema_decay < 1, "train.ema_decay", self.ema_decay, "must be in [0, 1)")
        _require(self.grad_clip_norm > 0, "train.grad_clip_norm", self.grad_clip_norm, "must be > 0")
        _require(self.amp in ("auto", "bf16", "fp16", "none"), "train.amp", self.amp,
                 "must be 'auto', 'bf16', 'fp16' or 'none'")
        _require(len(self.adam_betas) == 2 and all(0 <= b < 1 for b in self.adam_betas),
                 "train.adam_betas", list(self.adam_betas), "must be two numbers in [0, 1)")
        _require(self.input_noise_std >= 0, "train.input_noise_std", self.input_noise_std, "must be >= 0")
        _require(0 <= self.input_dropout < 1, "train.input_dropout", self.input_dropout, "must be in [0, 1)")
        _require(self.aux_mel_loss_weight >= 0, "train.aux_mel_loss_weight", self.aux_mel_loss_weight,
                 "must be >= 0")


@dataclass(frozen=True)
class ModelSampling:
    """How a model samples best when a render does not say otherwise: part of its config (the
    `sampling` section), so a released model carries them. With the innovation gain, a low
    temperature after each note's first milliseconds keeps broadband noise from under the ringing
    partials (docs/conditioning-study.md)."""

    temperature: float = 1.0
    # temperature more than `attack_seconds` after every note onset (0: `temperature` throughout)
    sustain_temperature: float = 0.0
    attack_seconds: float = 0.05
    # Models with the resonator bank: the share of the sampled innovation that reaches the output
    # directly while notes sound (held or releasing) and none is in its attack
    # (`data.resonators.attack_s`); the bank is still driven by all of it, so the noise reaches the
    # listener through the notes' partials (resonators.direct_share). 1: x = p + e, as in training.
    sustain_innovation: float = 1.0
    # The same share once every sounding note is released (no key or pedal holds one; until the
    # last oscillator stops). None: `sustain_innovation`. Why separately: after the dampers the
    # network's sampled innovation settles on a level and then jumps, which the direct path
    # plays as a broadband click some 60 ms after each release; the recording's residual there
    # is the partials' reverberation, which the bank (still driven by all of it) reproduces.
    release_innovation: float | None = None
    # Models with fitted partial levels (`data.resonators.levels_db`): through each note's attack its
    # oscillators' amplitudes are pulled onto the fitted levels, rising from the onset over 30 ms and
    # held there to the attack's end with w = 1 (below 1: each sample closes the fraction w of the
    # log distance; 0: the sampled attack alone decides); the phases stay the innovation's.
    partial_levels: float = 0.0
    # Models with the resonator bank: while a note is in its attack (`data.resonators.attack_s`), the
    # innovation is heard directly through a two-pole low-pass at this cut-off (Hz; 0: unfiltered,
    # as in training); the bank and the network still get all of it. Why: the recorded hammer is
    # short and dark (its energy above 4 kHz in the first 30 ms is about -46 dB of the note's), while
    # the network samples near-white noise there, which a listener hears as a click on every attack.
    attack_lowpass_hz: float = 0.0
    # How far that cut-off follows the key of the newest note: attack_lowpass_hz is middle C's, and a
    # note n semitones above has it times 2**(tracking * n / 12) (0: the same for every key; 1: an
    # octave per octave, as a synthesizer's key tracking). Why: the recorded hammer is darker in the
    # bass and brighter in the treble than one cut-off gives (the note sheet's attack by register).
    attack_lowpass_key_tracking: float = 0.0
    # How far that cut-off follows the velocity of the newest notes: times 2**(tracking * (velocity -
    # 64) / 64) (0: the same for every velocity; 1: an octave brighter from velocity 64 to 128).
    # Why: a harder blow is a brighter hammer; with one cut-off per key the note sheet's soft attacks
    # (velocity 30) read 11-14 dB too bright above 4 kHz and its loud ones (120) 6-11 dB too dark.
    attack_lowpass_velocity_tracking: float = 0.0
    # Models with the resonator bank: past the attacks the innovation is heard directly through two
    # one-pole high-passes at this cut-off (Hz; 0: none). Why: the noise the network samples under
    # held notes lies mostly below 1 kHz (10 dB above the recording's below 500 Hz on the note
    # sheet), where a listener hears it as a rumble under every note; above 1 kHz it is quieter than
    # the recording's. Needs nothing of the network: the bank and the network still get all of it.
    sustain_highpass_hz: float = 0.0
    # Models with the resonator bank: with a direct-path filter on (either above), the innovation heard
    # directly past the attacks is held within this many times its running RMS (over its gain, 10 ms;
    # 0: not held).
    # Why: the network's low-temperature samples under a held note sit near a level and now and then
    # jump; through the high-pass a jump is one sample off the waveform, a tick (docs/evaluation.md).
    sustain_limit: float = 0.0
    # Models with the resonator bank, with a direct-path filter on: past its attack's end each note's
    # share of the innovation heard directly dies this many dB per second faster than its gain (0:
    # with the gain; the bank and the network still get all of it). Why: the recorded noise between
    # a held note's partials dies faster than its partials, about 30-35 dB/s on the training piano
    # against the partials' 17-19, while the gain follows the partials (it is fitted to the
    # innovation, mostly the bank's tracking error at them): without it, the hiss between the
    # partials of a held note stands 8-10 dB over the recording's 0.7 s in (docs/evaluation.md).
    sustain_noise_decay_db_per_s: float = 0.0
    # Min-p sampling: no value is drawn whose probability, after the temperature, is below this
    # fraction of the most likely value's (0: the whole distribution, as in training; a mixture of
    # logistics: no component under it of the heaviest's weight, and no value where the chosen
    # logistic's density is under it of its peak, `distributions.sample_mol`). Why: the
    # network's distribution has a long tail; a draw from it, rare per sample but frequent per
    # second, puts one sample off the waveform, which a listener hears as a tick on a soft note.
    min_p: float = 0.0

    def __post_init__(self) -> None:
        _require(self.temperature > 0, "sampling.temperature", self.temperature, "must be > 0")
        _require(math.isfinite(self.min_p) and 0 <= self.min_p < 1, "sampling.min_p", self.min_p,
                 "must be in [0, 1) (0: the whole distribution)")
        _require(self.sustain_temperature >= 0, "sampling.sustain_temperature", self.sustain_temperature,
                 "must be >= 0 (0: same as temperature)")
        _require(self.attack_seconds >= 0, "sampling.attack_seconds", self.attack_seconds, "must be >= 0")
        _require(0 <= self.sustain_innovation <= 1, "sampling.sustain_innovation", self.sustain_innovation,
                 "must be in [0, 1] (1: all of it, as in training)")
        _require(0 <= self.partial_levels <= 1, "sampling.partial_levels", self.partial_levels,
                 "must be in [0, 1] (0: as sampled, 1: the fitted levels)")
        _require(self.release_innovation is None or 0 <= self.release_innovation <= 1, "sampling.release_innovation",
                 self.release_innovation, "must be in [0, 1] or null (null: the sustain innovation share)")
        _require(math.isfinite(self.attack_lowpass_hz) and self.attack_lowpass_hz >= 0, "sampling.attack_lowpass_hz",
                 self.attack_lowpass_hz, "must be a finite number >= 0 (0: the attacks heard unfiltered)")
        _require(math.isfinite(self.attack_lowpass_key_tracking) and -2 <= self.attack_lowpass_key_tracking <= 2,
                 "sampling.attack_lowpass_key_tracking", self.attack_lowpass_key_tracking,
                 "must be a number in [-2, 2] (0: the same cut-off for every key; 1: an octave per octave)")
        _require(math.isfinite(self.attack_lowpass_velocity_tracking) and -4 <= self.attack_lowpass_velocity_tracking <= 4,
                 "sampling.attack_lowpass_velocity_tracking", self.attack_lowpass_velocity_tracking,
                 "must be a number in [-4, 4] (0: the same cut-off for every velocity; 1: an octave from velocity "
                 "64 to 128)")
        _require(math.isfinite(self.sustain_highpass_hz) and self.sustain_highpass_hz >= 0,
                 "sampling.sustain_highpass_hz", self.sustain_highpass_hz, "must be a finite number >= 0 (0: none)")
        _require(math.isfinite(self.sustain_limit) and self.sustain_limit >= 0, "sampling.sustain_limit",
                 self.sustain_limit, "must be a finite number >= 0 (0: not limited)")
        _require(math.isfinite(self.sustain_noise_decay_db_per_s) and 0 <= self.sustain_noise_decay_db_per_s <= 1000,
                 "sampling.sustain_noise_decay_db_per_s", self.sustain_noise_decay_db_per_s,
                 "must be a number in [0, 1000] (dB per second; 0: the noise dies with the gain)")


# The sustain limit and the noise decay act on the direct path's filtered sustain: without a filter they
# would do nothing.
_NEEDS_A_FILTER = ("acts on the direct path's filters: set sustain_highpass_hz or attack_lowpass_hz "
                         "(--sustain-highpass-hz, --attack-lowpass-hz), or use 0")

# The noise decay acts on the notes' innovation gains: a bank without a gain has none to decay.
_DECAY_NEEDS_A_GAIN = ("decays each note's innovation gain: the model's bank has none (data.resonators.gain 0), "
                       "use 0")

# The direct path's settings past the attacks that act through its filters (Config, SamplingOptions.resolve).
_FILTERED_SETTINGS = ("sustain_limit", "sustain_noise_decay_db_per_s")

# `config_differences` keys of the settings that change synthesis only.
SYNTHESIS_ONLY_KEYS: tuple[str, ...] = tuple(f"data.resonators.{name}" for name in ResonatorConfig.SYNTHESIS_ONLY)

# The settings a model carries as its own defaults (`Config.sampling`), which a render may override.
MODEL_SAMPLING_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(ModelSampling))

# The commands whose sampling flags `SamplingOptions` declares (see `_flag`).
SAMPLING_COMMANDS: tuple[str, ...] = ("synthesize", "evaluate")
# the model's own settings, the seed and the precision apply to the live engine too (`live`, `play`)
_LIVE = ("live", "play")


def _flag(default: Any, help: str, *, choices: tuple[str, ...] | None = None,
          commands: tuple[str, ...] = SAMPLING_COMMANDS, overrides: dict[str, dict[str, Any]] | None = None) -> Any:
    """A `SamplingOptions` field that is also the flag `--name-with-dashes` of `commands` (cli.py builds
    the flags from this metadata, so a new setting is one field here): `help` its help text,
    `choices` its allowed values; `overrides` {command: {"default": ..., "help": ...}} what one command
    does differently."""
    return field(default=default, metadata={"flag": {"help": help, "choices": choices, "commands": commands,
                                                     "overrides": overrides or {}}})


_OWN = "default: the model's own"


@dataclass(frozen=True)
class SamplingOptions:
    """How `synthesize` (and `midi2wave.render`) sample from the model: every setting of a render
    that is not the piece itself (the MIDI, the window, the year, a prime). Settings left None are
    the model's own: `resolve` fills them in once, where a render or an evaluation starts."""

    # None: the model's own default (`Config.sampling`, see `resolve`), else the built-in one
    temperature: float | None = _flag(None, f"sampling temperature ({_OWN}, from its config; else 1.0)",
                                      commands=SAMPLING_COMMANDS + _LIVE)
    seed: int = _flag(0, "random seed", commands=("synthesize",) + _LIVE)  # evaluate's --seed sets it and the excerpts'
    engine: str = _flag("auto", "generation engine", choices=("auto", "numba", "torch"),
                        commands=("synthesize",))  # "auto" | "numba" | "torch"
    # None: chunks across all cores once the piece is long enough to gain (`chunks.auto_chunk_seconds`);
    # 0: one stream for the whole piece; else chunks of this length generated as a batch
    chunk_seconds: float | None = _flag(
        None, "cut the piece into chunks of this length generated as a batch across cores "
              "(default: automatic once the piece is long enough to gain; 0: one stream)",
        overrides={"evaluate": {"default": 0.0, "help": "generate each excerpt in chunks as `synthesize "
                                                        "--chunk-seconds` does (0: one stream)"}})
    overlap_seconds: float = _flag(0.5, "warm-up overlap between chunks")  # crossfaded
    threads: int = _flag(0, "CPU threads (0: all cores)", commands=("synthesize",))  # 0: all cores
    # Temperature for samples more than `attack_seconds` after every note onset (0: `temperature`
    # throughout): random innovations while notes sustain make their loudness wander, which
    # listeners and transcribers hear as re-struck notes.
    sustain_temperature: float | None = _flag(
        None, f"temperature more than --attack-seconds after every onset (0: --temperature throughout; {_OWN})",
        commands=SAMPLING_COMMANDS + _LIVE)
    attack_seconds: float | None = _flag(None, f"see --sustain-temperature ({_OWN})", commands=SAMPLING_COMMANDS + _LIVE)
    sustain_innovation: float | None = _flag(  # see ModelSampling
        None, "models with the resonator bank: share of the sampled innovation heard directly while notes "
              "sound past their attacks; the rest reaches the output only through the notes' partials "
              f"(1: all, as in training, with --release-innovation 1 too; {_OWN})", commands=SAMPLING_COMMANDS + _LIVE)
    # see ModelSampling (None: the model's own, which may itself be None: the sustain share)
    release_innovation: float | None = _flag(
        None, "models with the resonator bank: the same share once every sounding note is released "
              f"({_OWN}; a model that sets none follows the sustain share, --sustain-innovation included)",
        commands=SAMPLING_COMMANDS + _LIVE)
    partial_levels: float | None = _flag(  # see ModelSampling
        None, "models with fitted partial levels: how hard (0..1: the share of the log distance closed per "
              "sample) each note's partials are pulled through its attack onto the levels fitted to the training "
              f"audio, rising from the onset (1: held there; 0: as the sampled attack drives them; {_OWN})", commands=SAMPLING_COMMANDS + _LIVE)
    attack_lowpass_hz: float | None = _flag(  # see ModelSampling
        None, "models with the resonator bank: cut-off (Hz) of the two-pole low-pass through which the innovation "
              f"is heard directly during each note's attack (0: unfiltered, as in training; {_OWN})",
        commands=SAMPLING_COMMANDS + _LIVE)
    attack_lowpass_key_tracking: float | None = _flag(  # see ModelSampling
        None, "models with the resonator bank: how far that cut-off follows the newest note's key (it is middle C's; "
              f"0: the same for every key, 1: an octave per octave; {_OWN})", commands=SAMPLING_COMMANDS + _LIVE)
    attack_lowpass_velocity_tracking: float | None = _flag(  # see ModelSampling
        None, "models with the resonator bank: how far that cut-off follows the newest notes' velocity (it is "
              f"velocity 64's; 0: the same for every velocity, 1: an octave brighter at 128; {_OWN})",
        commands=SAMPLING_COMMANDS + _LIVE)
    sustain_highpass_hz: float | None = _flag(  # see ModelSampling
        None, "models with the resonator bank: cut-off (Hz) of the two one-pole high-passes through which the "
              f"innovation is heard directly past the attacks (0: none; {_OWN})", commands=SAMPLING_COMMANDS + _LIVE)
    sustain_limit: float | None = _flag(  # see ModelSampling
        None, "models with the resonator bank, with a direct-path filter on: hold the innovation heard directly "
              f"past the attacks within this many times its running RMS (10 ms; 0: not held; {_OWN})",
        commands=SAMPLING_COMMANDS + _LIVE)
    sustain_noise_decay_db_per_s: float | None = _flag(  # see ModelSampling
        None, "models with the resonator bank, with a direct-path filter on: past its attack each note's share of "
              f"the innovation heard directly dies this many dB per second faster than its gain (0: with it; {_OWN})",
        commands=SAMPLING_COMMANDS + _LIVE)
    min_p: float | None = _flag(  # see ModelSampling
        None, "min-p sampling: never draw a value whose probability is below this fraction of the most likely "
              "value's (mixtures of logistics: per component and within the chosen one; 0: the whole distribution, "
              f"as in training; {_OWN})", commands=SAMPLING_COMMANDS + _LIVE)
    precision: str = _flag("fp32", "numba engine weight storage (fp16: faster for one stream of a big model)",
                           choices=("fp32", "fp16", "int8"), commands=("synthesize",) + _LIVE)  # numba-only
    crossfade: str = "equal_power"  # chunk joins: "equal_power" | "linear"

    def __post_init__(self) -> None:
        builtin = ModelSampling()
        ModelSampling(**{name: getattr(builtin, name) if getattr(self, name) is None else getattr(self, name)
                         for name in MODEL_SAMPLING_FIELDS})  # validates the model-default settings given
        _require(self.engine in ("auto", "numba", "torch"), "sampling.engine", self.engine,
                 "must be 'auto', 'numba' or 'torch'")
        _require(self.chunk_seconds is None or self.chunk_seconds >= 0, "sampling.chunk_seconds", self.chunk_seconds,
                 "must be >= 0 (0: one stream)")
        _require(self.overlap_seconds >= 0, "sampling.overlap_seconds", self.overlap_seconds, "must be >= 0")
        _require(not self.chunk_seconds or self.overlap_seconds < self.chunk_seconds,
                 "sampling.overlap_seconds", self.overlap_seconds, "must be shorter than chunk_seconds")
        _require(self.threads >= 0, "sampling.threads", self.threads, "must be >= 0")
        _require(self.precision in ("fp32", "fp16", "int8"), "sampling.precision", self.precision,
                 "must be 'fp32', 'fp16' or 'int8'")
        _require(self.crossfade in ("equal_power", "linear"), "sampling.crossfade", self.crossfade,
                 "must be 'equal_power' or 'linear'")
        _require(self.precision == "fp32" or self.engine != "torch", "sampling.precision", self.precision,
                 "the torch engine runs in fp32 (fp16 / int8 are numba-only)")

    def resolve(self, config: "Config | None" = None) -> "SamplingOptions":
        """These options with no model default left None: each taken from the model's own
        (`config.sampling`; config None: the built-in `ModelSampling()`), and `release_innovation`
        still None after that the sustain share. Refuses settings the model cannot honour (partial
        levels asked of a model without fitted ones; ConfigError). Resolving resolved options
        changes nothing, so every entry (`synthesize`, `render`, `evaluate`) resolves once and
        passes the result down."""
        defaults = config.sampling if config is not None else ModelSampling()
        resolved = dataclasses.replace(self, **{name: getattr(defaults, name) for name in MODEL_SAMPLING_FIELDS
                                                if getattr(self, name) is None})
        if resolved.release_innovation is None:
            resolved = dataclasses.replace(resolved, release_innovation=resolved.sustain_innovation)
        for name in _FILTERED_SETTINGS:
            _require(not getattr(resolved, name) or bool(resolved.attack_lowpass_hz or resolved.sustain_highpass_hz),
                     "sampling." + name, getattr(resolved, name), _NEEDS_A_FILTER)
        if config is not None:
            # (a model without the bank ignores every bank setting, as it does the filters)
            _require(not resolved.sustain_noise_decay_db_per_s or not config.data.resonators.enabled
                     or config.data.resonators.gain > 0, "sampling.sustain_noise_decay_db_per_s",
                     resolved.sustain_noise_decay_db_per_s, _DECAY_NEEDS_A_GAIN)
            _require(not resolved.partial_levels or bool(config.data.resonators.levels_db), "sampling.partial_levels",
                     resolved.partial_levels, "the model has no fitted partial levels (data.resonators.levels_db; "
                     "scripts/fit_partials.py fits them): use 0")
        return resolved

    @property
    def is_resolved(self) -> bool:
        """No model default left None (see `resolve`)."""
        return all(getattr(self, name) is not None for name in MODEL_SAMPLING_FIELDS)


@dataclass(frozen=True)
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sampling: ModelSampling = field(default_factory=ModelSampling)

    def __post_init__(self) -> None:
        _require(self.sampling.partial_levels == 0 or bool(self.data.resonators.levels_db), "sampling.partial_levels",
                 self.sampling.partial_levels, "the config has no fitted partial levels (data.resonators.levels_db)")
        for name in _FILTERED_SETTINGS:
            _require(not getattr(self.sampling, name) or self.sampling.attack_lowpass_hz > 0
                     or self.sampling.sustain_highpass_hz > 0, "sampling." + name, getattr(self.sampling, name),
                     _NEEDS_A_FILTER)
        for name in ("attack_lowpass_hz", "sustain_highpass_hz") + _FILTERED_SETTINGS:
            _require(getattr(self.sampling, name) == 0 or self.data.resonators.enabled, "sampling." + name,
                     getattr(self.sampling, name), "filters the innovation of the resonator bank: the config has none "
                     "(data.resonators.partials 0)")
        _require(not self.sampling.sustain_noise_decay_db_per_s or self.data.resonators.gain > 0,
                 "sampling.sustain_noise_decay_db_per_s", self.sampling.sustain_noise_decay_db_per_s,
                 _DECAY_NEEDS_A_GAIN)

    def to_dict(self) -> dict[str, Any]:
        return _to_jsonable(dataclasses.asdict(self))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def replace(self, **sections: Any) -> "Config":
        return dataclasses.replace(self, **sections)

    def with_synthesis_settings_from(self, source: "Config") -> "Config":
        """This config with `source`'s settings that change synthesis only: its `sampling` section
        and the bank's fitted partial levels, synthesis-only partials' positions and rooms
        (`ResonatorConfig.SYNTHESIS_ONLY`); neither changes what
        the network was trained on, so a model's best ones may be found after it was trained. Its
        data (those aside) and model sections must be this config's (ConfigError naming the first
        setting that differs): the settings must belong to this model."""
        changed = [c for section in ("data", "model")
                   for c in config_differences(source, self, section, ignore=SYNTHESIS_ONLY_KEYS)]
        if changed:
            raise ConfigError(f"{changed[0].split(':')[0]}: differs from the model's own, so these synthesis settings "
                              "are not for this model (only `sampling`, the partial levels and positions and the rooms may differ)")
        levels = {name: getattr(source.data.resonators, name) for name in ResonatorConfig.SYNTHESIS_ONLY}
        data = dataclasses.replace(self.data, resonators=dataclasses.replace(self.data.resonators, **levels))
        return dataclasses.replace(self, data=data, sampling=source.sampling)


_SECTIONS: dict[str, type] = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig,
                              "sampling": ModelSampling}


def _require(ok: bool, key: str, value: Any, problem: str) -> None:
    if not ok:
        raise ConfigError(f"{key} = {value!r}: {problem}")


def _require_pitch_grid(key: str, grid: tuple[float, ...]) -> None:
    """A table's grid of pitches (`aftersound_pitches`, `synthesis_inharmonicity_pitches`): MIDI
    pitches in range that rise, at least one."""
    _require(len(grid) > 0 and all(math.isfinite(p) and C.MIN_MIDI_PITCH <= p <= C.MAX_MIDI_PITCH for p in grid)
             and all(b > a for a, b in zip(grid, grid[1:])), key, list(grid),
             f"must be MIDI pitches in [{C.MIN_MIDI_PITCH}, {C.MAX_MIDI_PITCH}] that rise")


def _require_tone_grid(key: str, hz_name: str, hz: tuple[float, ...], db_name: str,
                       rows: tuple[tuple[float, ...], ...], row_labels: list[str], rows_problem: str) -> None:
    """A tone's checks (`ResonatorConfig.room_tone_db`, `velocity_tone_db`, `prompt_velocity_tone_db`):
    its frequencies `hz` rise above 0 Hz, it has a row per label and each row a finite value within
    +-TONE_MAX_DB per frequency; the messages name the row and its label."""
    _require(len(hz) > 0 and all(math.isfinite(f) and f > 0 for f in hz) and all(b > a for a, b in zip(hz, hz[1:])),
             key + hz_name, list(hz), "must be frequencies > 0 Hz that rise")
    _require(len(rows) == len(row_labels), key + db_name, len(rows), rows_problem)
    for i, row in enumerate(rows):
        _require(len(row) == len(hz), f"{key}{db_name}[{i}]", len(row),
                 f"needs a value per frequency of {hz_name} ({len(hz)})")
        for v in row:
            _require(math.isfinite(v) and abs(v) <= TONE_MAX_DB, f"{key}{db_name}[{i}]", v,
                     f"must be finite dB within +-{TONE_MAX_DB:g} ({row_labels[i]})")


def _to_jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_jsonable(v) for v in obj]
    return obj


def config_differences(new: "Config", old: "Config", section: str, ignore: tuple[str, ...] = ()) -> list[str]:
    """`"section.key: old -> new"` for every setting of `section` that differs between two configs,
    nested sections descended (`data.resonators.kappa`), except the dotted keys in `ignore`."""
    out: list[str] = []

    def walk(a: Any, b: Any, key: str) -> None:
        if key in ignore:
            return
        if isinstance(a, dict) and isinstance(b, dict):
            for name in sorted(set(a) | set(b)):
                walk(a.get(name), b.get(name), f"{key}.{name}")
        elif a != b:
            out.append(f"{key}: {b!r} -> {a!r}")

    walk(new.to_dict()[section], old.to_dict()[section], section)
    return out


def _coerce(section: str, name: str, annotation: Any, value: Any) -> Any:
    """Check a JSON value against a dataclass field's annotation; tuples come from JSON lists."""
    key = f"{section}.{name}"
    origin = typing.get_origin(annotation)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} = {value!r}: must be a list")
        args = typing.get_args(annotation)
        inner = args[0]
        if len(args) == 2 and args[1] is not Ellipsis:
            if len(value) != 2:
                raise ConfigError(f"{key} = {value!r}: must be a list of 2")
        return tuple(_coerce(section, name, inner, v) for v in value)
    if isinstance(annotation, type) and dataclasses.is_dataclass(annotation):
        return section_from_dict(annotation, key, value)
    args = typing.get_args(annotation)
    if len(args) == 2 and type(None) in args:  # an optional setting (X | None): null, or an X
        return None if value is None else _coerce(section, name, next(a for a in args if a is not type(None)), value)
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key} = {value!r}: must be true or false")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{key} = {value!r}: must be an integer")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key} = {value!r}: must be a number")
        if not math.isfinite(value):
            raise ConfigError(f"{key} = {value!r}: must be finite")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key} = {value!r}: must be a string")
        return value
    return value


def section_from_dict(cls: type, section: str, values: dict[str, Any]) -> Any:
    """Build one config dataclass from a dict, rejecting unknown keys with a suggestion."""
    if not isinstance(values, dict):
        raise ConfigError(f"{section}: must be an object, got {type(values).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for name, value in values.items():
        if name not in fields:
            close = difflib.get_close_matches(name, sorted(fields), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(f"{section}.{name}: unknown key{hint}")
        kwargs[name] = _coerce(section, name, hints[name], value)
    return cls(**kwargs)


def migrate_flat_resonator_keys(data: Any) -> Any:
    """A `data` section with the flat keys of configs and checkpoints written before the
    `resonators` section (`resonator_kappa`: 0.02, ...) as the same section with them nested
    (`resonators`: {`kappa`: 0.02, ...}); any other value is returned as it is. Giving both forms
    at once is a ConfigError, as is an old-style key that never existed (with a suggestion)."""
    prefix = ResonatorConfig.FLAT_PREFIX
    if not isinstance(data, dict) or not any(name.startswith(prefix) for name in data):
        return data
    flat = sorted(name for name in data if name.startswith(prefix))
    if "resonators" in data:
        raise ConfigError(f"data: both 'resonators' and the old flat key(s) {', '.join(flat)} given "
                          "(write them inside data.resonators only)")
    fields = {f.name for f in dataclasses.fields(ResonatorConfig)}
    for name in flat:
        if name[len(prefix):] not in fields:
            close = difflib.get_close_matches(name, sorted(prefix + f for f in fields), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(f"data.{name}: unknown key{hint}")
    out = {name: value for name, value in data.items() if not name.startswith(prefix)}
    out["resonators"] = {name[len(prefix):]: data[name] for name in flat}
    return out


def config_from_dict(values: dict[str, Any]) -> Config:
    """Build a Config from its JSON form (every section optional). Old configs' flat
    `data.resonator_*` keys are read as the `data.resonators` section (`migrate_flat_resonator_keys`)."""
    if not isinstance(values, dict):
        raise ConfigError(f"config must be a JSON object, got {type(values).__name__}")
    unknown = set(values) - set(_SECTIONS)
    if unknown:
        raise ConfigError(f"{sorted(unknown)[0]}: unknown section (expected data, model, train, sampling)")
    if "data" in values:
        values = {**values, "data": migrate_flat_resonator_keys(values["data"])}
    return Config(**{name: section_from_dict(cls, name, values.get(name, {})) for name, cls in _SECTIONS.items()})


def load_config(path: str | Path) -> Config:
    """Read a JSON config; every problem is a ConfigError whose message starts with the file name."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read ({e.strerror or e})") from None
    try:
        values = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})") from None
    try:
        return config_from_dict(values)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
