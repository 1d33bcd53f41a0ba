"""A MIDI-driven resonator bank: linear prediction of the audio from the notes (LPCNet-style).

Why: a WaveNet trained by teacher forcing on piano audio learns to continue its own past and can
ignore sparse MIDI conditioning (the failure of the earlier public midi2wave). Here the notes
decide *where the model can put tonal energy*: for every sounding note and each of its first
partials (below `max_hz`) there is one damped complex oscillator at that partial's
equal-tempered frequency, driven by the innovation `e_t`:

    p_t  = sum_s Re(z_s)                       (the bank's prediction of x_t from the past)
    x_t  = p_t + e_t                           (the network models e_t, the innovation)
    z_s <- r_s * exp(i w_s) * (z_s + kappa * e_t)
    n_t  = e_t / g_t,  u = n shaped            (what the network samples: gain g, noise shaping:
                                                n = D(z) u, D(z) = (1 + c z^-1) / ((1 + c)(1 - a z^-1)),
                                                see `shape_noise`)

Teacher-forced (analysis), `e_t = x_t - p_t` is computed from the true audio: the bank tracks the
notes' partials (within ~2/kappa samples) and the network is left to predict the attacks, noise
and whatever the bank misses. Free-running (synthesis), the sampled innovations are filtered by
resonators at exactly the MIDI's pitches, so whatever the network emits at an onset rings at the
right frequencies. Analysis and synthesis are the same recursion, so they invert each other
exactly, and `e -> x` is a sum of stable resonators (|r_s| < 1).

Per oscillator: r_s = exp(-1 / (tau * sr)) with tau the note's decay while the (sustained) note is
held and `release_tau_s` after its offset; it is removed `release_tail_s` after the offset.
The settings are `config.ResonatorConfig`, the `data.resonators` section of a model's config.

Everything here is plain numpy + numba over float64 state; times are samples relative to the
start of the window being processed (oscillators of notes that began before the window start
from silence at the window start: analysis re-locks within a few ms, so windows need a short
warm-up, see `ResonatorConfig.warmup_samples`; `inputs.window_inputs` makes a window's
training target).
"""
from __future__ import annotations

import dataclasses
import functools
import math
import operator
from collections import namedtuple
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from ..config import DataConfig, ResonatorConfig
from ..midi import Notes, decay_tau_s, pitch_to_hz

from .. import jit
from ..constants import MAX_MIDI_PITCH, MAX_MIDI_VELOCITY, MIN_MIDI_PITCH

_njit = jit.njit(cache=True, nogil=True)
# The bank step and its batch loops are inlined (numba IR) into the kernel's loop: they pass the
# named tuples on without a call per sample (see `bank_step`).
_njit_inline = jit.njit(cache=True, nogil=True, inline="always")

# A release not known yet (a held key), or a knee that never comes (no aftersound): later than any
# sample a stream reaches, and far enough from the int64 limit that adding the release tail or a
# window's start cannot overflow.
NOT_RELEASED = 1 << 52


@dataclass
class Schedule:
    """The oscillators of a window, sorted by start. Sample indices are relative to the window.

    start/release/stop/attack_end: int64 [n]; omega (rad/sample), r_hold, r_release, kappa,
    kappa_sustain: float64 [n] (the gain is kappa before attack_end, kappa_sustain from then on);
    level: float64 [n], the oscillator's fitted amplitude at attack_end (0: none;
    `ResonatorConfig.levels_db`, raised to its prompt sound's, `prompt_levels_db`), which synthesis
    moves it towards by `partial_levels`.
    r_prompt: float64 [n], the oscillator's decay per sample until prompt_end (int64 [n]) with the
    partial levels' lock on (synthesis): its prompt sound falling from its level at attack_end onto
    the level table's decay (`ResonatorConfig.prompt_levels_db`); through the attack the lock's
    target is the same line drawn back (`locked_amplitude`). r_hold, and prompt_end = attack_end,
    without a prompt.
    knee: int64 [n], r_after: float64 [n]: with the lock on, from sample `knee` (not before
    prompt_end) until its release the oscillator decays by r_after per sample instead of r_hold (the
    aftersound, `ResonatorConfig.aftersound_knee_s`); knee `NOT_RELEASED` (never) and r_after =
    r_hold_locked without one.
    r_hold_locked: float64 [n]: with the lock on, its decay per sample from prompt_end to the knee
    (`ResonatorConfig.aftersound_hold_decay_db_per_s`); r_hold without one. The analysis decays by
    r_hold throughout, and the prompt sound falls onto the level table's decay by r_hold (the table
    is measured at its end), so neither changes with it.
    pitch: float64 [n], the MIDI pitch of the oscillator's note (the attacks' low-pass follows it:
    `attack_key_tracking`).
    velocity: float64 [n], the MIDI velocity of the oscillator's note (the attacks' low-pass follows
    it too: `attack_velocity_tracking`).
    damper: float64 [n], on each note's first oscillator the RMS of its dampers' noise at the
    envelope's full level (`damper_levels`; 0 on the others, for an undamped key and without a
    damper noise), heard from its release in synthesis when `for_sampling` set the noise's filter
    (`damper_scale` > 0; `damper_gain`, `bank_step`).
    synthesis_only: float64 [n], 1 for a partial above the analysis's `partials`
    (`ResonatorConfig.synthesis_partials`): `analyze` leaves them out (`for_analysis`), so the
    network's training target is the same with or without them.
    The innovation gain (`ResonatorConfig.gain`) rides on each note's first oscillator:
    gain_attack, gain_sustain (float64 [n]; 0 for the other oscillators) are its two components at
    the onset; their natural-log decays per sample are gain_attack_decay, gain_hold_decay while
    held and gain_release_decay (both) after the release. The gain is a function of time alone
    (`bank_gain`), so a window starting mid-note gets it exactly.
    """
    start: np.ndarray
    release: np.ndarray
    stop: np.ndarray
    omega: np.ndarray
    r_hold: np.ndarray
    r_release: np.ndarray
    kappa: np.ndarray
    attack_end: np.ndarray
    kappa_sustain: np.ndarray
    gain_attack: np.ndarray
    gain_sustain: np.ndarray
    gain_attack_decay: np.ndarray
    gain_hold_decay: np.ndarray
    gain_release_decay: np.ndarray
    level: np.ndarray
    r_prompt: np.ndarray
    prompt_end: np.ndarray
    knee: np.ndarray
    r_after: np.ndarray
    r_hold_locked: np.ndarray
    pitch: np.ndarray
    velocity: np.ndarray
    synthesis_only: np.ndarray
    damper: np.ndarray

    FIELDS = ("start", "release", "stop", "omega", "r_hold", "r_release", "kappa", "attack_end", "kappa_sustain",
              "gain_attack", "gain_sustain", "gain_attack_decay", "gain_hold_decay", "gain_release_decay", "level",
              "r_prompt", "prompt_end", "knee", "r_after", "r_hold_locked", "pitch", "velocity",
              "synthesis_only", "damper")
    TIME_FIELDS = ("start", "release", "stop", "attack_end", "prompt_end", "knee")
    # the fields of a note's oscillators that depend on its velocity (`oscillators`); the others
    # depend on its pitch alone, and the time fields move with its start (`LiveBank`'s note table)
    VELOCITY_FIELDS = ("gain_attack", "gain_sustain", "level", "r_prompt", "velocity", "damper")
    # The innovation gain's floor (ResonatorConfig.gain_floor); None: no gain (g = 1).
    gain_floor: float | None = None
    # The innovation's noise shaping (ResonatorConfig.pre_emphasis and noise_lowpass; 0: none).
    pre_emphasis: float = 0.0
    noise_lowpass: float = 0.0
    # Synthesis only: the share of the innovation that reaches the output directly while notes sound
    # past their attacks (`direct_share`; `ModelSampling.sustain_innovation`). Analysis ignores it.
    sustain_innovation: float = 1.0
    # Synthesis only: the same share once every note is released (`direct_share`;
    # `ModelSampling.release_innovation`).
    release_innovation: float = 1.0
    # Synthesis only: through each oscillator's attack its amplitude |z| is pulled onto its level's
    # trajectory, rising from the onset (`bank_update`): held there with partial_levels 1, each
    # sample closing that fraction of the log distance below 1 (where level > 0;
    # `ModelSampling.partial_levels`).
    partial_levels: float = 0.0
    # Synthesis only: the pole of the two-pole low-pass through which the innovation is heard
    # directly during attacks (`attack_lowpass_pole`; 0: unfiltered; `ModelSampling.attack_lowpass_hz`).
    attack_pole: float = 0.0
    # Synthesis only: the attacks' low-pass follows the newest note's pitch: its cut-off is the one of
    # `attack_pole` times 2**(attack_key_tracking * (pitch - KEY_TRACKING_PITCH) / 12) (0: the same
    # for every key; 1: an octave per octave; `ModelSampling.attack_lowpass_key_tracking`).
    attack_key_tracking: float = 0.0
    # Synthesis only: the attacks' low-pass follows the newest notes' velocity too: its cut-off is also
    # times 2**(attack_velocity_tracking * (velocity - VELOCITY_TRACKING_VELOCITY) / 64) (0: the same
    # for every velocity; 1: an octave brighter from velocity 64 to 128;
    # `ModelSampling.attack_lowpass_velocity_tracking`).
    attack_velocity_tracking: float = 0.0
    # Synthesis only: the rate of the two one-pole high-passes through which the innovation is heard
    # directly past the attacks (`highpass_rate`; 0: none; `ModelSampling.sustain_highpass_hz`).
    sustain_highpass: float = 0.0
    # Synthesis only: the rate of the drift remover's one-pole tracker (`DIRECT_DC_HZ`), set with either
    # filter above.
    direct_dc_rate: float = 0.0
    # Synthesis only, with either filter above: past the attacks (and in the sustain's fading path
    # within them) the directly heard innovation, in units of its gain, is held within this many
    # times its running RMS (`limit_sustain`; 0: not limited; `ModelSampling.sustain_limit`).
    sustain_limit: float = 0.0
    # Synthesis only, with either filter above: past its attack end each note's share of the gain at
    # which the sustain's direct path hears the innovation decays by this much more (natural log of
    # amplitude per sample; `bank_gain`, `noise_decay_rate`; 0: with the gain;
    # `ModelSampling.sustain_noise_decay_db_per_s`).
    sustain_noise_decay: float = 0.0
    # Synthesis only: the dampers' noise (`DamperFilter`, `damper_filter`; `Schedule.damper` per note):
    # white noise times `damper_scale` (0: no damper noise) through the resonance y = b0 (x - x[-2]) +
    # a1 y[-1] - a2 y[-2] and the one-pole low-pass of rate `damper_lowpass`, each note's share rising
    # over `damper_rise` samples from its release (`damper_gain`, `bank_step`).
    damper_b0: float = 0.0
    damper_a1: float = 0.0
    damper_a2: float = 0.0
    damper_lowpass: float = 0.0
    damper_scale: float = 0.0
    damper_rise: float = 0.0

    def __len__(self) -> int:
        return int(self.start.shape[0])

    @classmethod
    def empty(cls, gain_floor: float | None = None, pre_emphasis: float = 0.0, noise_lowpass: float = 0.0
              ) -> "Schedule":
        return cls(**{f: np.zeros(0, np.int64 if f in cls.TIME_FIELDS else np.float64) for f in cls.FIELDS},
                   gain_floor=gain_floor, pre_emphasis=pre_emphasis, noise_lowpass=noise_lowpass)

    def for_analysis(self) -> "Schedule":
        """The same schedule without its synthesis-only partials (itself when it has none)."""
        keep = self.synthesis_only == 0.0
        if keep.all():
            return self
        return dataclasses.replace(self, **{f: np.ascontiguousarray(getattr(self, f)[keep]) for f in self.FIELDS})

    def shifted(self, samples: int) -> "Schedule":
        """The same oscillators with every time moved later by `samples`."""
        return dataclasses.replace(self, **{f: getattr(self, f) + samples for f in self.TIME_FIELDS})

    def for_sampling(self, sustain_innovation: float = 1.0, partial_levels: float = 0.0,
                     release_innovation: float | None = None, attack_pole: float = 0.0,
                     release_pole: float | None = None, sustain_highpass: float = 0.0,
                     direct_dc_rate: float = 0.0, attack_key_tracking: float = 0.0,
                     sustain_limit: float = 0.0, attack_velocity_tracking: float = 0.0,
                     level_gain: np.ndarray | None = None, sustain_noise_decay: float = 0.0,
                     undamped: tuple[float, float] | None = None, damper: "DamperFilter | None" = None,
                     damper_gain: float = 1.0) -> "Schedule":
        """The same schedule whose synthesis lets `sustain_innovation` of the innovation reach the output
        directly while notes sound past their attacks, `release_innovation` (None: `sustain_innovation`)
        once all of them are released (`direct_share`), hears the attacks through the low-pass of pole
        `attack_pole` (0: unfiltered) and the rest through the high-passes of rate `sustain_highpass`, moves each oscillator `partial_levels` of the way (in log
        amplitude) to its fitted level at its attack end, and, given `release_pole` (per sample, a
        year's room: `release_pole_for`), lets every partial decay by it after its release, ringing
        until 5 of its time constants have passed (`stop`; the analysis's tail may be shorter).
        `direct_dc_rate`: the drift remover's rate (`highpass_rate(DIRECT_DC_HZ, sr)`), needed with
        either filter. `attack_key_tracking`: how far the attacks' cut-off follows the newest note's
        pitch (see the field), `attack_velocity_tracking` its velocity (see the field). `sustain_limit`: the bound of the sustain's direct path, in its running
        RMS (`limit_sustain`; 0: none; it acts with either filter on). `level_gain` (float [n], > 0;
        None: 1): each oscillator's fitted level times this, a year's room tone (`room_level_gain`):
        the lock's whole trajectory, prompt sound and decay, scales with it. `sustain_noise_decay`
        (natural log per sample, `noise_decay_rate`; 0: none): how much faster than its gain each
        note's share of the sustain's direct path dies past its attack end (it acts with either filter
        on). `undamped` (the lowest undamped pitch, its release pole; `undamped_release`): the partials of
        notes of that pitch and up decay by that pole after their release instead, in every room, ringing
        for 5 of its time constants. `damper` (`damper_filter`; None: none): the dampers' noise's
        filter, which makes each note's `damper` heard from its release, times `damper_gain` (> 0: the
        room's tone on it, `damper_room_gain`)."""
        if level_gain is not None:
            level_gain = np.asarray(level_gain, np.float64)
            if level_gain.shape != self.level.shape or not (np.isfinite(level_gain) & (level_gain > 0)).all():
                raise ValueError(f"level_gain must be finite and > 0, one per oscillator ({len(self)}), "
                                 f"got shape {level_gain.shape}")
        for what, share in (("sustain_innovation", sustain_innovation), ("release_innovation", release_innovation),
                            ("partial_levels", partial_levels)):
            if share is not None and not 0.0 <= float(share) <= 1.0:
                raise ValueError(f"{what} must be in [0, 1], got {share}")
        if not all(0.0 <= float(v) < 1.0 for v in (attack_pole, sustain_highpass, direct_dc_rate)):
            raise ValueError(f"filter poles and rates must lie in [0, 1), got attack pole {attack_pole}, "
                             f"high-pass rate {sustain_highpass}, drift rate {direct_dc_rate}")
        if not math.isfinite(attack_key_tracking):
            raise ValueError(f"the attacks' key tracking must be finite, got {attack_key_tracking}")
        if not math.isfinite(attack_velocity_tracking):
            raise ValueError(f"the attacks' velocity tracking must be finite, got {attack_velocity_tracking}")
        if release_pole is not None and not 0.0 < float(release_pole) < 1.0:
            raise ValueError(f"the release pole must lie in (0, 1), got {release_pole}")
        if (attack_pole > 0.0 or sustain_highpass > 0.0) and not direct_dc_rate > 0.0:
            raise ValueError("the direct path's filters need the drift remover's rate (direct_dc_rate)")
        if not (math.isfinite(sustain_limit) and sustain_limit >= 0.0):
            raise ValueError(f"the sustain limit must be a finite number >= 0, got {sustain_limit}")
        if not (math.isfinite(sustain_noise_decay) and 0.0 <= sustain_noise_decay < 1.0):
            raise ValueError(f"the sustain noise's decay must lie in [0, 1) per sample, got {sustain_noise_decay}")
        release = sustain_innovation if release_innovation is None else release_innovation
        out = dataclasses.replace(self, sustain_innovation=float(sustain_innovation), partial_levels=float(partial_levels),
                                  release_innovation=float(release), attack_pole=float(attack_pole),
                                  sustain_highpass=float(sustain_highpass), direct_dc_rate=float(direct_dc_rate),
                                  attack_key_tracking=float(attack_key_tracking), sustain_limit=float(sustain_limit),
                                  attack_velocity_tracking=float(attack_velocity_tracking),
                                  sustain_noise_decay=float(sustain_noise_decay))
        if release_pole is not None:
            out.r_release = np.full_like(self.r_release, float(release_pole))
            out.stop = np.maximum(self.stop, self.release + room_tail_samples(float(release_pole)))
        if undamped is not None:
            from_pitch, pole = float(undamped[0]), float(undamped[1])
            if not 0.0 < pole < 1.0:
                raise ValueError(f"the undamped top's release pole must lie in (0, 1), got {pole}")
            top = self.pitch >= from_pitch
            out.r_release = np.where(top, pole, out.r_release)
            out.stop = np.where(top, np.maximum(out.stop, self.release + room_tail_samples(pole)), out.stop)
        if level_gain is not None:
            out.level = self.level * level_gain
        if damper is not None:
            if not (all(math.isfinite(v) for v in damper) and damper.scale > 0.0 and 0.0 < damper.lowpass <= 1.0
                    and damper.rise >= 0.0):
                raise ValueError(f"the dampers' noise needs a scale > 0, a low-pass rate in (0, 1] and a rise >= 0, "
                                 f"got {damper}")
            out.damper_b0, out.damper_a1, out.damper_a2 = damper.b0, damper.a1, damper.a2
            out.damper_lowpass, out.damper_scale, out.damper_rise = damper.lowpass, damper.scale, damper.rise
            if not (math.isfinite(damper_gain) and damper_gain > 0.0):
                raise ValueError(f"the dampers' noise's room gain must be finite and > 0, got {damper_gain}")
            out.damper = self.damper * float(damper_gain)
        return out

    def without_gain(self) -> "Schedule":
        """The same oscillators (times, tails, decays, kappas) driven by the innovation itself
        (g = 1, no noise shaping): its analysis gives e = x - p, which the gain divides. Unlike a
        schedule of the config with `gain` 0, the oscillators keep the gain's longer tail
        (`release_tail_s`)."""
        zeros = np.zeros_like(self.gain_attack)
        return dataclasses.replace(self, gain_attack=zeros, gain_sustain=zeros.copy(), gain_floor=None,
                                   pre_emphasis=0.0, noise_lowpass=0.0)


# The key whose attacks the low-pass's own cut-off is for when it follows the keys (middle C;
# `Schedule.attack_key_tracking`).
KEY_TRACKING_PITCH = 60.0
# The velocity whose attacks the low-pass's own cut-off is for when it follows the velocity
# (`Schedule.attack_velocity_tracking`).
VELOCITY_TRACKING_VELOCITY = 64.0


@_njit
def tracked_pole(pole, tracking, pitch, velocity_tracking, velocity):
    """The attacks' low-pass pole for a note of this pitch and velocity: exp(-2 pi f' / sr), f' = f
    2**(tracking (pitch - 60) / 12 + velocity_tracking (velocity - 64) / 64), from the pole
    exp(-2 pi f / sr) of middle C at velocity 64 (the same pole with no tracking or no filter)."""
    if (tracking == 0.0 and velocity_tracking == 0.0) or pole <= 0.0:
        return pole
    return pole ** (2.0 ** (tracking * (pitch - KEY_TRACKING_PITCH) / 12.0
                            + velocity_tracking * (velocity - VELOCITY_TRACKING_VELOCITY) / 64.0))


def attack_lowpass_pole(cutoff_hz: float, sample_rate_hz: int) -> float:
    """The pole of each one-pole stage of the attacks' low-pass (`ModelSampling.attack_lowpass_hz`):
    exp(-2 pi f / sr) (0 for a cut-off of 0: no filter)."""
    return math.exp(-2.0 * math.pi * float(cutoff_hz) / sample_rate_hz) if cutoff_hz > 0 else 0.0


def highpass_rate(cutoff_hz: float, sample_rate_hz: int) -> float:
    """The rate of each one-pole stage of the sustain high-pass (`ModelSampling.sustain_highpass_hz`):
    1 - exp(-2 pi f / sr) (0 for a cut-off of 0: no filter)."""
    return 1.0 - math.exp(-2.0 * math.pi * float(cutoff_hz) / sample_rate_hz) if cutoff_hz > 0 else 0.0


def noise_decay_rate(db_per_s: float, sample_rate_hz: int) -> float:
    """A decay of `db_per_s` dB per second as the natural log of amplitude per sample
    (`Schedule.sustain_noise_decay`)."""
    return float(db_per_s) * math.log(10.0) / 20.0 / float(sample_rate_hz)


def room_tail_samples(release_pole: float) -> int:
    """How long (samples) after its release an oscillator decaying by `release_pole` per sample
    rings on: 5 time constants, as `ResonatorConfig.release_tail_s`."""
    return int(math.ceil(5.0 / -math.log(release_pole) - 1e-6))  # 5 tau sr, not one more for its rounding


def room_level_gain(config: ResonatorConfig, year: int | None, omega: np.ndarray, sample_rate_hz: int
                    ) -> np.ndarray | None:
    """The amplitude factor (float64 [n]) that `year`'s room tone (`ResonatorConfig.room_tone_db`)
    puts on the fitted levels of oscillators of these frequencies (`omega`, radians per sample):
    the tone in dB read at each frequency, linear in log frequency between `room_tone_hz` and flat
    beyond. None where the year has no tone (`ResonatorConfig.room_tone_for`)."""
    tone = config.room_tone_for(year)
    if tone is None:
        return None
    hz = np.asarray(omega, np.float64) * (sample_rate_hz / (2.0 * math.pi))
    return 10.0 ** (tone_at_hz(hz, config.room_tone_hz, (tone,))[0] / 20.0)


def tone_at_hz(hz: np.ndarray, tone_hz: tuple[float, ...], rows) -> np.ndarray:
    """Tones read at these frequencies (Hz, [n]): float64 [rows, n], each row of `rows` (dB at
    `tone_hz`, rising) linear in log frequency between its frequencies and flat beyond. The one
    reading of the rooms' tone (`room_level_gain`) and the velocity tone (`velocity_tone_db`)."""
    log_hz = np.log2(np.maximum(np.asarray(hz, np.float64).reshape(-1), 1e-3))
    knots = np.log2(np.asarray(tone_hz, np.float64))
    return np.stack([np.interp(log_hz, knots, np.asarray(row, np.float64)) for row in rows])


def grid_weights(x: np.ndarray, knots: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(lower point, upper point, the upper's weight) of each x ([n]) on a rising grid `knots`, linear
    between its points and flat beyond: a value on the grid reads (1 - w) v[lo] + w v[hi]. Shared by
    `velocity_tone_db` and the velocity tone's fit (scripts/fit_partials.py), so that what is fitted is
    what is read."""
    knots = np.asarray(knots, np.float64)
    pos = np.interp(np.asarray(x, np.float64), knots, np.arange(len(knots), dtype=np.float64))
    lo = np.minimum(pos.astype(np.int64), max(len(knots) - 2, 0))
    return lo, np.minimum(lo + 1, len(knots) - 1), pos - lo


def undamped_release(config: ResonatorConfig, sample_rate_hz: int) -> tuple[float, float] | None:
    """(the lowest undamped pitch, the per-sample decay of its partials after a release) of the
    undamped top (`ResonatorConfig.undamped_from_pitch`, `undamped_release_db_per_s`), in every room;
    None where every key is damped. `Schedule.for_sampling` and the live bank's rows take it."""
    if config.undamped_from_pitch <= 0:
        return None
    return float(config.undamped_from_pitch), math.exp(-1.0 / (config.undamped_tau_s * sample_rate_hz))


class DamperFilter(NamedTuple):
    """The dampers' noise's filter at a sample rate (`damper_filter`; `Schedule`'s `damper_*` settings)."""

    b0: float
    a1: float
    a2: float
    lowpass: float
    scale: float
    rise: float


def damper_filter(config: ResonatorConfig, sample_rate_hz: int) -> DamperFilter | None:
    """The dampers' noise's filter (`ResonatorConfig.damper_hz`, `damper_q`, `damper_lowpass_hz`,
    `damper_rise_s`) at `sample_rate_hz`: a band-pass resonance of unit gain at its peak (the RBJ
    cookbook's), a one-pole low-pass, and the scale of the white noise (uniform in [-1, 1)) that
    makes the filtered noise's RMS 1 (so `Schedule.damper` is the noise's RMS); None without a
    damper noise."""
    if config.damper_level_db == 0.0:
        return None
    return _damper_filter(float(config.damper_hz), float(config.damper_q), float(config.damper_lowpass_hz),
                          float(config.damper_rise_s), float(sample_rate_hz))


def damper_coefficients(hz: float, q: float, lowpass_hz: float, sample_rate_hz: float) -> tuple[float, float, float, float]:
    """(b0, a1, a2, the low-pass's rate) of the dampers' noise filter: the resonance y = b0 (x - x[-2])
    + a1 y[-1] - a2 y[-2] at `hz` of quality `q` (the RBJ cookbook's band-pass, unit gain at its peak),
    then z += rate (y - z) at `lowpass_hz` (both held below 0.45 of the rate). The one place they are
    computed: `damper_filter` and scripts/fit_dampers.py's response."""
    sr = float(sample_rate_hz)
    w0 = 2.0 * math.pi * min(hz, 0.45 * sr) / sr
    alpha = math.sin(w0) / (2.0 * q)
    lowpass = 1.0 - math.exp(-2.0 * math.pi * min(lowpass_hz, 0.45 * sr) / sr)
    return alpha / (1.0 + alpha), 2.0 * math.cos(w0) / (1.0 + alpha), (1.0 - alpha) / (1.0 + alpha), lowpass


@functools.lru_cache(maxsize=64)
def _damper_filter(hz: float, q: float, lowpass_hz: float, rise_s: float, sr: float) -> DamperFilter:
    b0, a1, a2, lowpass = damper_coefficients(hz, q, lowpass_hz, sr)
    # the cascade's white-noise power gain from its impulse response, over at most 4 s (at 10 Hz and
    # Q 20, the slowest allowed, its time constant is some 10 000 samples: 4 s hold the energy)
    n = int(4 * sr)
    x = np.zeros(n)
    x[0] = 1.0
    y = np.zeros(n)
    y1 = y2 = z = 0.0
    x1 = x2 = 0.0
    for i in range(n):
        yi = b0 * (x[i] - x2) + a1 * y1 - a2 * y2
        x2, x1, y2, y1 = x1, x[i], y1, yi
        z += lowpass * (yi - z)
        y[i] = z
        if i > 64 and abs(z) < 1e-12 and abs(y1) < 1e-12:
            break
    energy = float(np.sum(y * y))
    return DamperFilter(b0, a1, a2, lowpass, math.sqrt(3.0 / energy), rise_s * sr)


def damper_levels(pitch: np.ndarray, velocity: np.ndarray, config: ResonatorConfig) -> np.ndarray:
    """float64 [n]: the RMS of each note's dampers' noise at its envelope's full level
    (`ResonatorConfig.damper_level_db` at velocity 127 and MIDI 60, `damper_velocity_slope` dB per dB
    of velocity, `damper_pitch_db_per_octave`); 0 for an undamped key, and without a damper noise."""
    pitch = np.asarray(pitch, np.float64)
    if config.damper_level_db == 0.0:
        return np.zeros(pitch.shape)
    db = (config.damper_level_db
          + config.damper_velocity_slope * (velocity_db(velocity) - velocity_db(np.float64(MAX_MIDI_VELOCITY)))
          + config.damper_pitch_db_per_octave * (pitch - 60.0) / 12.0)
    return np.where(config.damped(pitch), 10.0 ** (db / 20.0), 0.0)


def damper_room_gain(config: ResonatorConfig, year: int | None, sample_rate_hz: int) -> float:
    """The amplitude factor `year`'s room tone puts on the dampers' noise: its tone at `damper_hz`
    (`room_level_gain`; scripts/fit_dampers.py fits the levels without it); 1 without a tone or a
    damper noise."""
    if config.damper_level_db == 0.0:
        return 1.0
    gain = room_level_gain(config, year, np.array([2.0 * math.pi * config.damper_hz / sample_rate_hz]), sample_rate_hz)
    return 1.0 if gain is None else float(gain[0])


def sampling_release(config: ResonatorConfig, year: int | None, sample_rate_hz: int) -> dict:
    """`Schedule.for_sampling`'s release arguments in a render of `year`: the year's room (`release_pole`;
    None in a config without rooms), the undamped top's (`undamped`), the dampers' noise's filter
    (`damper`) and the room's tone on it (`damper_gain`). The one place synthesis's release is put
    together: `render.rows.sampled_schedules` and scripts/fit_rooms.py take it, and the live bank
    builds its rows from the same functions."""
    return {"release_pole": release_pole_for(config, year, sample_rate_hz) if config.room_years else None,
            "undamped": undamped_release(config, sample_rate_hz), "damper": damper_filter(config, sample_rate_hz),
            "damper_gain": damper_room_gain(config, year, sample_rate_hz)}


def release_pole_for(config: ResonatorConfig, year: int | None, sample_rate_hz: int) -> float:
    """Per-sample decay of a partial after its release in recordings of `year` (the year's room,
    `ResonatorConfig.release_tau_for`)."""
    return math.exp(-1.0 / (config.release_tau_for(year) * sample_rate_hz))


def from_data_config(data: DataConfig) -> ResonatorConfig | None:
    """The bank a DataConfig asks for (`data.resonators`), or None when it has none (partials 0)."""
    return data.resonators if data.resonators.enabled else None


# Below A2 a piano's strings are wound and their stiffness no longer falls with pitch.
INHARMONICITY_FLAT_BELOW_PITCH = 45


def partial_hz(pitch: np.ndarray, k: np.ndarray, tuning_cents: tuple[float, ...] = (),
               inharmonicity: tuple[float, ...] = (), log10_b: np.ndarray | None = None) -> np.ndarray:
    """Frequency (Hz) of partial k of MIDI pitch p (numpy broadcasting of pitch and k):

        k * f0(p) * 2**(c(p) / 1200) * sqrt(1 + B(p) k**2)
        c(p) = sum_i tuning_cents[i] * z**i,  z = (p - 60) / 12    (stretch tuning, cents)
        log10 B(p) = inharmonicity[0] + inharmonicity[1] * max(z, z(A2))  (stiff strings)

    Why: piano strings are stiff, so partial k lies above k f0 (tens of cents by the 8th partial in
    the treble), and pianos are stretch-tuned. A resonator that misses a partial by more than about
    kappa * sample_rate / (2 pi) Hz cannot track it, and the untracked partial lands in the
    innovation the network must model. Empty tuples: equal temperament, harmonic partials. `log10_b`
    (broadcast with pitch): log10 B given outright, in place of `inharmonicity`'s line."""
    pitch = np.asarray(pitch, np.float64)
    k = np.asarray(k, np.float64)
    hz = pitch_to_hz(pitch) * k
    z = (pitch - 60.0) / 12.0
    if tuning_cents:
        cents = np.zeros_like(z)
        for i, a in enumerate(tuning_cents):
            cents = cents + float(a) * z ** i
        hz = hz * 2.0 ** (cents / 1200.0)
    if log10_b is not None and inharmonicity:
        raise ValueError("partial_hz: give the stiffness as inharmonicity's line or as log10_b, not both")
    if log10_b is None and inharmonicity:
        log10_b = inharmonicity_log10(pitch, inharmonicity)
    if log10_b is not None:
        hz = hz * np.sqrt(1.0 + 10.0 ** np.asarray(log10_b, np.float64) * k * k)
    return hz


def inharmonicity_log10(pitch: np.ndarray, inharmonicity: tuple[float, ...]) -> np.ndarray:
    """log10 B of MIDI pitches on `inharmonicity`'s line (`partial_hz`): linear in octaves from middle
    C, flat below A2."""
    z = (np.asarray(pitch, np.float64) - 60.0) / 12.0
    z_flat = (INHARMONICITY_FLAT_BELOW_PITCH - 60.0) / 12.0
    return float(inharmonicity[0]) + float(inharmonicity[1]) * np.maximum(z, z_flat)


def bank_partial_hz(pitch: np.ndarray, k: np.ndarray, config: ResonatorConfig) -> np.ndarray:
    """Where the bank puts partial k of MIDI pitch p (Hz; numpy broadcasting): `partial_hz` with the
    config's tuning and stiffness, and for the synthesis-only partials (k > `partials`) the stiffness
    of `synthesis_inharmonicity_log10` where the config has that table. The one place every engine,
    the live bank and the fitting scripts take a partial's position from."""
    if not config.synthesis_inharmonicity_pitches:
        return partial_hz(pitch, k, config.tuning_cents, config.inharmonicity)
    pitch = np.asarray(pitch, np.float64)
    k = np.asarray(k, np.float64)
    table = np.interp(pitch, np.asarray(config.synthesis_inharmonicity_pitches, np.float64),
                      np.asarray(config.synthesis_inharmonicity_log10, np.float64))
    line = inharmonicity_log10(pitch, config.inharmonicity) if config.inharmonicity else np.full(pitch.shape, -np.inf)
    return partial_hz(pitch, k, config.tuning_cents, log10_b=np.where(k > config.partials, table, line))


LEVEL_REFERENCE_VELOCITY = 64.0


def _table_db(pitch: np.ndarray, velocity: np.ndarray, k: np.ndarray, grid: np.ndarray, table, slope_table,
              slopes) -> np.ndarray:
    """Levels in dB from a table over (grid pitch, partial) at velocity 64, linear in pitch between
    the grid pitches and flat beyond, plus a slope in dB per dB of velocity: per grid pitch and
    partial (`slope_table`, linear in pitch too) or per partial (`slopes`)."""
    table = np.asarray(table, np.float64)          # [grid pitches, partials]
    db = np.empty(k.shape, np.float64)
    slope = np.empty(k.shape, np.float64)
    slope_rows = np.asarray(slope_table, np.float64) if len(slope_table) else None
    for j in np.unique(k):
        sel = k == j
        db[sel] = np.interp(pitch[sel], grid, table[:, j - 1])
        if slope_rows is not None:
            slope[sel] = np.interp(pitch[sel], grid, slope_rows[:, j - 1])
    if slope_rows is None:
        slope = np.asarray(slopes, np.float64)[k - 1]
    velocity = np.maximum(velocity, 1.0)
    return db + slope * 20.0 * np.log10(velocity / LEVEL_REFERENCE_VELOCITY)


def velocity_tone_db(velocity: np.ndarray, hz: np.ndarray, config: ResonatorConfig, prompt: bool = False
                     ) -> np.ndarray:
    """The level table's velocity tone (`ResonatorConfig.velocity_tone_db`; `prompt`: the prompt
    sound's, `prompt_velocity_tone_db`, where the config has one) in dB (float64 [n]) for partials of
    these frequencies (Hz, [n]) in notes of these velocities ([n]): bilinear in dB of velocity and in
    log frequency between the tone's velocities and frequencies, flat beyond; zeros where the config
    has none."""
    velocity = np.asarray(velocity, np.float64).reshape(-1)
    if not config.velocity_tone_db:
        return np.zeros(velocity.shape, np.float64)
    tone = config.prompt_velocity_tone_db if prompt and config.prompt_velocity_tone_db else config.velocity_tone_db
    by_velocity = tone_at_hz(hz, config.velocity_tone_hz, tone)  # [velocities, n]
    lo, hi, w = grid_weights(velocity_db(velocity), velocity_db(np.asarray(config.velocity_tone_velocities)))
    cols = np.arange(len(velocity))
    return (1.0 - w) * by_velocity[lo, cols] + w * by_velocity[hi, cols]


def velocity_db(velocity: np.ndarray) -> np.ndarray:
    """MIDI velocities (at least 1) in dB: the velocity tone's axis."""
    return 20.0 * np.log10(np.clip(np.asarray(velocity, np.float64), 1.0, None))


def fitted_levels(pitch: np.ndarray, velocity: np.ndarray, k: np.ndarray, config: ResonatorConfig,
                  prompt: bool = False, hz: np.ndarray | None = None) -> np.ndarray:
    """Fitted amplitude (float64 [n], full scale 1) of partial k of notes of these pitches and
    velocities `attack_s` after their onsets (`ResonatorConfig.levels_db`: linear in pitch between
    the grid pitches, flat beyond; the velocity slopes per partial, or per grid pitch and partial;
    plus the velocity tone at the partial's frequency, `velocity_tone_db`, the prompt's
    `prompt_velocity_tone_db` with it); zeros when the config has no levels. `prompt`: with the prompt
    sound (`prompt_levels_db`; the level table's where the config has none). `hz`: the partials'
    frequencies where the caller has them (`bank_partial_hz` of the config; None: computed)."""
    k = np.asarray(k, np.int64).reshape(-1)
    if not config.levels_db or k.size == 0:
        return np.zeros(k.shape, np.float64)
    grid = np.asarray(config.level_pitches, np.float64)
    pitch = np.asarray(pitch, np.float64).reshape(-1)
    velocity = np.asarray(velocity, np.float64).reshape(-1)
    if prompt and config.prompt_levels_db:
        db = _table_db(pitch, velocity, k, grid, config.prompt_levels_db, config.prompt_velocity_slope_table, ())
    else:
        db = _table_db(pitch, velocity, k, grid, config.levels_db, config.level_velocity_slope_table,
                       config.level_velocity_slopes)
    if config.velocity_tone_db:  # (a prompt tone exists only with the prompt sound: ResonatorConfig's checks)
        if hz is None:
            hz = bank_partial_hz(pitch, k, config)
        db = db + velocity_tone_db(velocity, hz, config, prompt=prompt)
    return 10.0 ** (db / 20.0)


def prompt_decay(level: np.ndarray, prompt_level: np.ndarray, r_hold: np.ndarray, prompt_samples: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(the level at the attack's end, the decay per sample over the prompt sound) of oscillators
    whose level table gives `level` and prompt table `prompt_level` there (float64 [n] each): the
    louder of the two, falling in a straight line in dB onto `level`'s decay (`r_hold`) over
    `prompt_samples`; `level` and `r_hold` where the prompt is not louder, or the level is 0 (none)."""
    louder = (prompt_level > level) & (level > 0.0) & (prompt_samples > 0)
    start = np.where(louder, prompt_level, level)
    ratio = np.where(louder, level / np.where(louder, prompt_level, 1.0), 1.0)
    return start, r_hold * ratio ** (1.0 / max(int(prompt_samples), 1))


def hold_tau_s(pitch: np.ndarray, k: np.ndarray, config: ResonatorConfig) -> np.ndarray:
    """The time constant (s) of partial k of held notes of these pitches (broadcast): the bank's hold
    decay, `decay_scale * midi.decay_tau_s(pitch) / k**decay_exponent` (higher partials of a real string
    die faster)."""
    return config.decay_scale * decay_tau_s(pitch) / np.asarray(k, np.float64) ** config.decay_exponent


def aftersound(pitch: np.ndarray, config: ResonatorConfig, sample_rate_hz: int) -> tuple[np.ndarray, np.ndarray]:
    """(samples from the onset to the knee, int64 [n]; the decay per sample past it, float64 [n]) of
    notes of these pitches (`ResonatorConfig.aftersound_knee_s`, `aftersound_decay_db_per_s`: linear in
    pitch between the grid pitches, flat beyond); (`NOT_RELEASED`: never, 1) each without an aftersound."""
    pitch = np.asarray(pitch, np.float64)
    if not config.aftersound_pitches:
        return np.full(pitch.shape, NOT_RELEASED, np.int64), np.ones(pitch.shape)
    knee_s = _on_aftersound_grid(pitch, config, config.aftersound_knee_s)
    db_per_s = _on_aftersound_grid(pitch, config, config.aftersound_decay_db_per_s)
    sr = float(sample_rate_hz)
    return np.round(knee_s * sr).astype(np.int64), 10.0 ** (-db_per_s / 20.0 / sr)


def aftersound_hold(pitch: np.ndarray, config: ResonatorConfig, sample_rate_hz: int) -> np.ndarray | None:
    """The decay per sample (float64 [n]) of notes of these pitches from their prompt sound's end to
    their knee with the lock on (`ResonatorConfig.aftersound_hold_decay_db_per_s`, on the aftersound's
    grid as its knees are); None where the config has none (their hold decay, `hold_tau_s`)."""
    if not config.aftersound_hold_decay_db_per_s:
        return None
    db_per_s = _on_aftersound_grid(np.asarray(pitch, np.float64), config, config.aftersound_hold_decay_db_per_s)
    return 10.0 ** (-db_per_s / 20.0 / float(sample_rate_hz))


def _on_aftersound_grid(pitch: np.ndarray, config: ResonatorConfig, values: tuple[float, ...]) -> np.ndarray:
    """`values` (one per `aftersound_pitches`) at these pitches: linear in between, flat beyond."""
    return np.interp(pitch, np.asarray(config.aftersound_pitches, np.float64), np.asarray(values, np.float64))


def schedule(notes: Notes, start_sample: int, n_samples: int, sample_rate_hz: int,
             config: ResonatorConfig) -> Schedule:
    """The oscillators that sound anywhere in samples [start_sample, start_sample + n_samples) of
    a piece, with times relative to `start_sample`. `notes` should already be sustained."""
    sr = float(sample_rate_hz)
    if len(notes) == 0 or n_samples <= 0 or config.partials <= 0:
        return Schedule.empty(*_settings(config))
    first = np.ceil(notes.onset_s * sr).astype(np.int64)
    release = np.ceil(notes.offset_s * sr).astype(np.int64)
    stop = release + int(math.ceil(config.room_tail_s * sr))  # rooms ring longer in synthesis (`for_sampling`)
    if config.undamped_from_pitch > 0:  # and so does the undamped top
        stop = np.where(config.undamped(notes.pitch), release + int(math.ceil(config.undamped_tail_s * sr)), stop)
    keep = (stop > start_sample) & (first < start_sample + n_samples)
    if not keep.any():
        return Schedule.empty(*_settings(config))
    out = oscillators(notes.pitch[keep], notes.velocity[keep], first[keep] - start_sample,
                      release[keep] - start_sample, sample_rate_hz, config,
                      restruck=restruck_releases(notes.pitch, first, release)[keep] if config.damper_level_db else None)
    order = np.argsort(out.start, kind="stable")
    return dataclasses.replace(out, **{f: np.ascontiguousarray(getattr(out, f)[order]) for f in Schedule.FIELDS})


def restruck_releases(pitch: np.ndarray, first: np.ndarray, release: np.ndarray) -> np.ndarray:
    """bool [n]: the notes whose (sustained) release sample is the first sample of a note of the same
    key: the key struck again while it still sounded (under the pedal, or before its note-off), or
    released and struck in one sample. Such a release drops no damper on the strings: the training
    piano plays no damper noise there (under the pedal it plays it once the pedal lifts, on the note
    that sounds then), so neither does the bank (`oscillators`' `restruck`; the live engine marks the
    same notes as the key is struck, `LiveBank.restrike`)."""
    pitch = np.asarray(pitch, np.int64)
    onsets = (pitch << 44) | np.asarray(first, np.int64)
    return np.isin((pitch << 44) | np.asarray(release, np.int64), onsets)


def _settings(config: ResonatorConfig) -> tuple[float | None, float, float]:
    """(gain floor or None, pre-emphasis, noise lowpass): a schedule's shared settings."""
    floor = float(config.gain_floor) if config.gain > 0 else None
    return floor, float(config.pre_emphasis), float(config.noise_lowpass)


def oscillators(pitch: np.ndarray, velocity: np.ndarray, first: np.ndarray, release: np.ndarray,
                sample_rate_hz: int, config: ResonatorConfig, restruck: np.ndarray | None = None) -> Schedule:
    """The oscillators of notes (pitch, velocity int [n]) starting at samples `first` and released at
    samples `release` (int64 [n]): note by note, each note's partials in order (not sorted by start).
    The one place the bank's settings become oscillators: `schedule` (a window of a piece) and the
    live engine's growing bank (`LiveBank.note_table`, every velocity of a key, copied per note and
    released later) both call it. The live bank relies on two things here: which partials a note
    keeps depends on its pitch alone, and its velocity reaches only `Schedule.VELOCITY_FIELDS`.
    `restruck` (bool [n]; `restruck_releases`): notes whose release plays no damper noise."""
    sr = float(sample_rate_hz)
    floor, emphasis, lowpass = _settings(config)
    pitch = np.asarray(pitch)
    velocity = np.asarray(velocity)
    first = np.asarray(first, np.int64)
    release = np.asarray(release, np.int64)
    tau = decay_tau_s(pitch)
    k = np.arange(1, max(config.partials, config.synthesis_partials) + 1, dtype=np.float64)
    freq = bank_partial_hz(pitch[:, None], k[None, :], config)  # [notes, partials]
    ok = freq < min(config.max_hz, sr / 2.0)
    if config.gain > 0:  # the gain rides on the fundamental: keep it even where stretch lifts it past max_hz
        ok[:, 0] = freq[:, 0] < sr / 2.0
    rows = np.nonzero(ok)
    note_idx = rows[0]
    partial = k[rows[1]]
    hz = freq[rows]
    tau_k = hold_tau_s(pitch[note_idx], partial, config)
    r_hold = np.exp(-1.0 / (tau_k * sr))
    attack_end = first[note_idx] + int(round(config.attack_s * sr))
    # each partial's level at the attack's end, its prompt sound's where louder (falling onto the level
    # table's decay by prompt_end)
    prompt_samples = int(round(config.prompt_seconds * sr)) if config.prompt_levels_db else 0
    table_level = fitted_levels(pitch[note_idx], velocity[note_idx], partial, config, hz=hz)
    prompt_level = (fitted_levels(pitch[note_idx], velocity[note_idx], partial, config, prompt=True, hz=hz)
                    if prompt_samples else table_level)
    partial_level, r_prompt = prompt_decay(table_level, prompt_level, r_hold, prompt_samples)
    prompt_end = attack_end + prompt_samples
    # the aftersound: from the prompt sound's end each partial decays by r_hold_locked (its pitch's
    # aftersound hold decay, or r_hold), past its knee by r_after (never without one: its decay stays
    # r_hold_locked; the knee moves with the note's start as every time does)
    knee_samples, r_after = aftersound(pitch, config, sample_rate_hz)
    knee = np.maximum(first[note_idx] + knee_samples[note_idx], prompt_end)
    hold_locked = aftersound_hold(pitch, config, sample_rate_hz)
    r_hold_locked = hold_locked[note_idx] if hold_locked is not None else r_hold.copy()
    r_after = r_after[note_idx] if config.aftersound_pitches else r_hold_locked.copy()
    # The dampers' noise rides on each note's first oscillator (whichever partials it keeps)
    damper = np.zeros(hz.shape)
    if config.damper_level_db != 0.0 and len(note_idx):
        first_rows = np.flatnonzero(np.r_[True, note_idx[1:] != note_idx[:-1]])
        levels = damper_levels(pitch, velocity, config)
        if restruck is not None:
            levels = np.where(restruck, 0.0, levels)
        damper[first_rows] = levels[note_idx[first_rows]]
    # The innovation gain rides on each note's first oscillator (the fundamental, kept above).
    carrier = (partial == 1.0) & (config.gain > 0)
    level = np.where(carrier, config.gain * (velocity[note_idx] / 127.0) ** config.gain_velocity_exponent, 0.0)
    return Schedule(
        start=first[note_idx],
        release=release[note_idx],
        stop=release[note_idx] + int(math.ceil(config.release_tail_s * sr)),
        omega=2.0 * np.pi * hz / sr,
        r_hold=r_hold,
        r_release=np.full(hz.shape, math.exp(-1.0 / (config.release_tau_s * sr))),
        kappa=float(config.kappa) / partial ** config.kappa_exponent,
        attack_end=attack_end,
        kappa_sustain=float(config.kappa_after_attack) / partial ** config.kappa_exponent,
        gain_floor=floor, pre_emphasis=emphasis, noise_lowpass=lowpass,
        gain_attack=level,
        gain_sustain=level * config.gain_sustain,
        gain_attack_decay=np.full(hz.shape, -1.0 / (config.gain_attack_s * sr)),
        gain_hold_decay=-1.0 / (config.gain_decay_scale * tau[note_idx] * sr),
        gain_release_decay=np.full(hz.shape, -1.0 / (config.gain_release_s * sr)),
        level=partial_level,
        r_prompt=r_prompt,
        prompt_end=prompt_end,
        knee=knee,
        r_after=r_after,
        r_hold_locked=r_hold_locked,
        pitch=pitch[note_idx].astype(np.float64),
        velocity=velocity[note_idx].astype(np.float64),
        synthesis_only=(partial > config.partials).astype(np.float64),
        damper=damper,
    )


class BankState:
    """Explicit, resettable state of one bank per batch element (for step-by-step generation).

    re, im: float64 [B, capacity] oscillator phasors; idx: int64 [B, capacity] indices into that
    element's schedule of the active oscillators; n_active, next: int64 [B]; n_prev, u_prev: float64 [B],
    the last innovation over its gain and its shaped value (the noise-shaping filter's state); dc, lp1, lp2, lf1, lf2:
    float64 [B], the direct path's high-pass and the attacks' two-pole low-pass states; hammer: float64
    [B], the samples the attacks have lasted without a break (the hammer's rise, `bank_step`);
    bright_gain, bright_share: float64 [B], the direct gain (`g_direct`) and the direct share at the
    last sample past the attacks (the sustain's path fades out at an attack's start at that level);
    limit_ms: float64 [B], the running mean square of the sustain's direct path over the gain it hears
    the innovation at
    (`limit_sustain`; 0: none yet); g_direct: float64 [B], the gain at which the sustain's direct
    path hears the innovation at the current sample (`bank_gain`; g itself without a noise decay);
    since_prime, prime_carry: float64 [B], the samples since the last teacher-forced one (from
    PRIME_FADE_SAMPLES on: none lately) and what the output carries of the given audio's residual
    after it; attack_key: float64 [B], the MIDI pitch of the newest note (the highest of those
    starting together), which the attacks' low-pass follows (`Schedule.attack_key_tracking`);
    attack_velocity: float64 [B], the newest notes' velocity (the loudest of those starting
    together), which it follows too (`Schedule.attack_velocity_tracking`); damper_state: float64 [B,
    DAMPER_STATE], the dampers' noise filter's states (x[-1], x[-2], y[-1], y[-2], the low-pass:
    `damper_sample`).
    """

    def __init__(self, batch_size: int, capacity: int = 64) -> None:
        self.re = np.zeros((batch_size, capacity))
        self.im = np.zeros((batch_size, capacity))
        self.idx = np.zeros((batch_size, capacity), np.int64)
        self.n_active = np.zeros(batch_size, np.int64)
        self.next = np.zeros(batch_size, np.int64)
        self.n_prev = np.zeros(batch_size)
        self.u_prev = np.zeros(batch_size)
        self.dc = np.zeros(batch_size)
        self.lp1 = np.zeros(batch_size)
        self.lp2 = np.zeros(batch_size)
        self.lf1 = np.zeros(batch_size)
        self.lf2 = np.zeros(batch_size)
        self.hammer = np.zeros(batch_size)
        self.bright_gain = np.zeros(batch_size)
        self.bright_share = np.zeros(batch_size)
        self.limit_ms = np.zeros(batch_size)
        self.g_direct = np.ones(batch_size)
        self.since_prime = np.full(batch_size, float(PRIME_FADE_SAMPLES))
        self.prime_carry = np.zeros(batch_size)
        self.attack_key = np.full(batch_size, KEY_TRACKING_PITCH)
        self.attack_velocity = np.full(batch_size, VELOCITY_TRACKING_VELOCITY)
        self.damper_state = np.zeros((batch_size, DAMPER_STATE))

    def reset(self) -> "BankState":
        self.re[:] = 0.0
        self.im[:] = 0.0
        self.n_active[:] = 0
        self.next[:] = 0
        self.n_prev[:] = 0.0
        self.u_prev[:] = 0.0
        self.dc[:] = 0.0
        self.lp1[:] = 0.0
        self.lp2[:] = 0.0
        self.lf1[:] = 0.0
        self.lf2[:] = 0.0
        self.hammer[:] = 0.0
        self.bright_gain[:] = 0.0
        self.bright_share[:] = 0.0
        self.limit_ms[:] = 0.0
        self.g_direct[:] = 1.0
        self.since_prime[:] = PRIME_FADE_SAMPLES
        self.prime_carry[:] = 0.0
        self.attack_key[:] = KEY_TRACKING_PITCH
        self.attack_velocity[:] = VELOCITY_TRACKING_VELOCITY
        self.damper_state[:] = 0.0
        return self

    def streams(self, p: np.ndarray, g: np.ndarray, e: np.ndarray) -> "BankStreams":
        """This state as numba reads it (views: `bank_step` updates it in place), with the per-sample
        buffers p, g, e ([B] float64), in `BankStreams`' order."""
        return BankStreams(*(getattr(self, name) for name in BankStreams._fields[:-3]), p, g, e)

    def ensure_capacity(self, needed: int) -> None:
        if needed <= self.re.shape[1]:
            return
        cap = max(needed, 2 * self.re.shape[1])
        for name in ("re", "im", "idx"):
            old = getattr(self, name)
            new = np.zeros((old.shape[0], cap), old.dtype)
            new[:, :old.shape[1]] = old
            setattr(self, name, new)


def max_concurrent(sched: Schedule) -> int:
    """The most oscillators alive at once (the state capacity a window needs)."""
    if len(sched) == 0:
        return 0
    events = np.concatenate([sched.start, sched.stop])
    delta = np.concatenate([np.ones(len(sched), np.int64), -np.ones(len(sched), np.int64)])
    order = np.lexsort((delta, events))  # stops before starts at the same sample
    return int(np.cumsum(delta[order]).max())


@_njit
def bank_predict(re, n_active):
    """p_t = sum of the real parts of the active phasors (one batch element)."""
    p = 0.0
    for j in range(n_active):
        p += re[j]
    return p


@_njit
def bank_gain(t, idx, n_active, start, release, gain_attack, gain_sustain, gain_attack_decay, gain_hold_decay,
              gain_release_decay, floor, attack_end, noise_decay):
    """(g_t, the direct gain) at sample t (one batch element; see ResonatorConfig): the innovation gain
    g_t = floor + sqrt(sum of the sounding notes' a_n(t)^2), each note's first oscillator carrying
    its envelope (the others add 0); and the same sum with each note's a_n(t) also decaying by
    `noise_decay` (natural log per sample) from its attack end (`attack_end`), the gain at which the
    sustain's direct path hears the innovation (`Schedule.sustain_noise_decay`; g_t itself where it
    is 0)."""
    acc = 0.0
    acc_direct = 0.0
    for j in range(n_active):
        s = idx[j]
        a0 = gain_attack[s]
        s0 = gain_sustain[s]
        if a0 == 0.0 and s0 == 0.0:
            continue
        held = min(t, release[s]) - start[s]
        a = a0 * math.exp(held * gain_attack_decay[s]) + s0 * math.exp(held * gain_hold_decay[s])
        if t > release[s]:
            a *= math.exp((t - release[s]) * gain_release_decay[s])
        acc += a * a
        if noise_decay > 0.0:
            if t > attack_end[s]:
                a *= math.exp(-(t - attack_end[s]) * noise_decay)
            acc_direct += a * a
    g = floor + math.sqrt(acc)
    if noise_decay > 0.0:
        return g, floor + math.sqrt(acc_direct)
    return g, g  # no decay: the gain itself, with no second sum on the per-sample path


@_njit
def damper_noise(t):
    """The dampers' noise source at sample t of a stream: a 32-bit integer hash of t (no state, so
    both offline engines and the live engine in any blocks hear the same sample at the same t; t
    counts from the stream's sample 0, so an offline render's chunk rows and spans each start the
    sequence again), uniform in [-1, 1)."""
    h = ((t & 0xFFFFFFFF) * 0x9E3779B1 + 0x7F4A7C15) & 0xFFFFFFFF
    h ^= h >> 16
    h = (h * 0x7FEB352D) & 0xFFFFFFFF
    h ^= h >> 15
    h = (h * 0x846CA68B) & 0xFFFFFFFF
    h ^= h >> 16
    return h / 2147483648.0 - 1.0


@_njit
def damper_gain(t, idx, n_active, release, damper, r_release, rise):
    """The dampers' noise's amplitude at sample t (one batch element): the root of the sum of
    squares of the active notes' `damper` (each note's first oscillator carries it), each from its
    release on rising as a raised cosine over `rise` samples while it decays by that oscillator's
    release pole (its room's, `r_release`)."""
    acc = 0.0
    for j in range(n_active):
        s = idx[j]
        level = damper[s]
        if level == 0.0 or t < release[s]:
            continue
        since = t - release[s]
        a = level * math.exp(since * math.log(r_release[s]))
        if since < rise:
            a *= 0.5 - 0.5 * math.cos(math.pi * since / rise)
        acc += a * a
    return math.sqrt(acc)


# The dampers' noise's state per stream (`BankState.damper_state`): the filter's x[-1], x[-2], y[-1],
# y[-2] and the low-pass's output.
DAMPER_STATE = 5


@_njit
def damper_sample(t, idx, n_active, release, damper, r_release, rise, state, b0, a1, a2, lowpass, scale):
    """The dampers' noise of one stream at sample t (`bank_step`, every unprimed sample while the
    noise is on): sample t's noise through the resonance and the low-pass (`state`: the stream's row
    of `BankState.damper_state`, moved on; RMS 1 for the noise's `scale`) at the amplitude
    `damper_gain`. One call, not inlined, made only with the noise on: inlined, or its gain computed
    in `batch_predict` behind the same test, it slowed every bank by 7-8 % (BENCHMARKS.md, "The
    dampers' noise")."""
    x = damper_noise(t) * scale
    y = b0 * (x - state[1]) + a1 * state[2] - a2 * state[3]
    state[1] = state[0]
    state[0] = x
    state[3] = state[2]
    state[2] = y
    state[4] += lowpass * (y - state[4])
    return damper_gain(t, idx, n_active, release, damper, r_release, rise) * state[4]


@_njit
def shape_noise(v, a, c, n_prev, u_prev):
    """n_t from the network's sample u_t = v: the noise-shaping filter
    D(z) = (1 + c z^-1) / ((1 + c)(1 - a z^-1)), i.e. n_t = (u_t + c u_{t-1}) / (1 + c) + a n_{t-1},
    bounded to [-1, 1] when a > 0 (with a = 0, |u| <= 1 keeps |n| <= 1 by itself). Why: the piano's
    innovation is dark; a pole a (LPCNet's pre-emphasis) darkens white samples by 1 / |1 - a e^-iw|
    but also lifts the lowest frequencies by up to 1 / (1 - a); the zero c rolls off only the top
    (-19 dB at the Nyquist frequency for c = 0.8, unity at DC). a = c = 0: n = u."""
    nt = (v + c * u_prev) / (1.0 + c) + a * n_prev
    if a > 0.0:
        nt = min(max(nt, -1.0), 1.0)
    return nt


@_njit
def unshape_noise(nt, a, c, n_prev, u_prev):
    """u_t from n_t (the inverse of `shape_noise` where its bound does not act): what the network
    models and reads. a = c = 0: u = n."""
    return (1.0 + c) * (nt - a * n_prev) - c * u_prev


# The cut-off of the directly heard innovation's drift remover (`bank_step`, with a direct-path
# filter on; its one-pole tracker's rate: `highpass_rate(DIRECT_DC_HZ, sr)`).
DIRECT_DC_HZ = 40.0

# The sustain limit's running mean square follows the sustain's direct path (over its gain) with this
# time constant in samples (10 ms at 16 kHz; `limit_sustain`).
LIMIT_WINDOW_SAMPLES = 160.0

# The direct share moves from the sustain share to the release share over this many samples after the
# last release (20 ms at 16 kHz): the network's samples sit near a constant there, and a step in
# their share would be a step in the output (a faint click of its own).
RELEASE_RAMP_SAMPLES = 320
# The direct path moves from the attack's low-pass to the sustain's high-pass over this many samples
# (10 ms at 16 kHz) after each attack end, in place of a switch.
ATTACK_FADE_SAMPLES = 160
# The attack's direct path (the hammer heard through the low-pass) rises over this many samples from
# the start of the attacks (4 ms at 16 kHz), a raised cosine: the recorded attack starts softly, and
# the sampled noise at full level from the first sample was a click in the treble.
HAMMER_RISE_SAMPLES = 64
# After a prime (teacher-forced samples) the given audio's residual fades out of the output, and the
# partial levels' lock rises from nothing, over this many samples (5 ms at 16 kHz): switched in one
# sample, the output stepped and every partial in its attack jumped to its level (a click).
PRIME_FADE_SAMPLES = 80


@_njit
def in_attack(t, idx, n_active, nxt, attack_end, stop):
    """Whether a sounding note (an active oscillator) is in its attack at sample t (t < attack_end;
    one batch element; see `direct_share` for why one look usually decides)."""
    if n_active == 0 or nxt == 0 or t >= attack_end[nxt - 1]:
        return False
    if stop[nxt - 1] > t:
        return True
    for j in range(n_active):
        if t < attack_end[idx[j]]:
            return True
    return False


@_njit
def hammer_rise(k):
    """The attack path's gain after k samples of attack: a raised cosine from 0 to 1 over
    HAMMER_RISE_SAMPLES."""
    if k >= HAMMER_RISE_SAMPLES:
        return 1.0
    return 0.5 - 0.5 * math.cos(math.pi * k / HAMMER_RISE_SAMPLES)


@_njit
def hammer_count(weight):
    """The count k at which `hammer_rise`(k) = weight (0..1): where an attack that begins while the
    attack path still has this weight in the direct path (`attack_fade`) goes on rising from."""
    if weight <= 0.0:
        return 0.0
    if weight >= 1.0:
        return float(HAMMER_RISE_SAMPLES)
    return HAMMER_RISE_SAMPLES * math.acos(1.0 - 2.0 * weight) / math.pi


@_njit
def attack_fade(t, nxt, attack_end):
    """The attack path's weight in the direct path at sample t past the attacks (one batch element):
    1 - (t - e + 1) / ATTACK_FADE_SAMPLES after the latest attack end e (the newest admitted
    oscillator's: every attack lasts as long), 0 from ATTACK_FADE_SAMPLES on or with no note."""
    if nxt == 0:
        return 0.0
    since = t - attack_end[nxt - 1] + 1
    if since < 0 or since >= ATTACK_FADE_SAMPLES:
        return 0.0
    return 1.0 - since / ATTACK_FADE_SAMPLES


@_njit
def direct_share(t, sustain_innovation, release_innovation, idx, n_active, nxt, attack_end, stop, held_until):
    """The share of the innovation that reaches the output directly at sample t (one batch
    element): `sustain_innovation` while some note sounds (an active oscillator) and none is in its attack
    (t < attack_end), moving linearly to `release_innovation` over `RELEASE_RAMP_SAMPLES` once every
    sounding note is released; else (an attack, or silence) 1. Why: after the hammer,
    the network's sampled noise lies between the notes' partials (the recording's innovation there
    is mostly the bank's tracking error at the partials, which sampling cannot reproduce); the bank
    still gets all of it, so that noise reaches the output through the resonators at the notes'
    partials. In silence (no oscillator) the innovation is the room's floor: all of it. Once the
    dampers are down the network's samples tend to settle and then jump (a click); the recording's
    residual there is the partials' reverberation, which the bank makes from all of it.
    `nxt`: the element's next schedule index (oscillators are admitted in start order and every
    attack lasts as long, so the newest admitted one ends its attack last: one look decides,
    unless it has already stopped). `held_until`: int64 [n], the latest release among
    oscillators 0..i (`BankBatch`), so no admitted note is held at t iff held_until[nxt - 1] <= t."""
    if n_active == 0 or nxt == 0:
        return 1.0
    if in_attack(t, idx, n_active, nxt, attack_end, stop):
        return 1.0
    done = held_until[nxt - 1]
    if done <= t:
        if t - done >= RELEASE_RAMP_SAMPLES:
            return release_innovation
        return sustain_innovation + (release_innovation - sustain_innovation) * ((t - done) / RELEASE_RAMP_SAMPLES)
    return sustain_innovation


@_njit
def bank_admit(t, re, im, idx, n_active, nxt, start, stop):
    """Drop oscillators whose stop <= t and admit those whose start <= t (one batch element).
    Returns (n_active, next)."""
    j = 0
    while j < n_active:
        if stop[idx[j]] <= t:
            n_active -= 1
            idx[j] = idx[n_active]
            re[j] = re[n_active]
            im[j] = im[n_active]
        else:
            j += 1
    n = start.shape[0]
    while nxt < n and start[nxt] <= t:
        if stop[nxt] > t:
            idx[n_active] = nxt
            re[n_active] = 0.0
            im[n_active] = 0.0
            n_active += 1
        nxt += 1
    return n_active, nxt


# The oscillators' gains are scaled down so that they sum to at most this: with many coinciding
# partials (octaves, a re-struck key ringing on) the analysis loop would otherwise go unstable.
KAPPA_SUM_MAX = 0.5


@_njit
def bank_update(t, e, re, im, idx, n_active, start, release, cos_omega, sin_omega, r_hold, r_release, kappa, attack_end,
                kappa_sustain, level, synthesis_only, lock, r_prompt, prompt_end, knee, r_after, r_hold_locked):
    """z <- r exp(i w) (z + g kappa e) for the active oscillators after sample t (one element),
    kappa switching to kappa_sustain at attack_end, g = min(1, KAPPA_SUM_MAX / sum of the active
    kappas of the analysis's partials: the synthesis-only ones leave the others driven as the
    analysis drove them).
    With `lock` w > 0 (`Schedule.partial_levels`; the analysis and a teacher-forced prime pass 0),
    an oscillator with a level is pulled onto its level's trajectory through its attack: each sample
    up to its attack end closes the fraction w of the log distance from its amplitude to
    A(t) = rise(t - start) * L(t) (w = 1: held on it), its phase kept, where L(t) = `locked_amplitude`
    (its level at the attack end carried back along its decay, and past a release inside the attack)
    and rise a raised cosine from 0 to 1 over the first `LOCK_RISE_SAMPLES`: the partials sound from
    the onset, rising as a struck string's do, and leave the attack at their levels without a step.
    (Left to the attack's few sampled innovations they stayed some 15 dB down, then moved to their
    levels at the attack end: a note that swelled 45 ms late.) One admitted at the stream's first
    sample after its attack ended (a window begun mid-note: it starts from silence) gets w * L at a
    spread phase, so it rings on as loud as it would have; one found silent in its attack starts at
    a spread phase too. With the lock on (any w > 0, also while it rises after a prime), an
    oscillator decays by `r_prompt` until `prompt_end` (its prompt sound; through the attack the
    target follows the same line), then by `r_hold_locked`, and from `knee` by `r_after` (its
    aftersound); without it (the analysis, a prime) by `r_hold` throughout."""
    total = 0.0
    for j in range(n_active):
        s = idx[j]
        if synthesis_only[s] == 0.0:
            total += kappa[s] if t < attack_end[s] else kappa_sustain[s]
    g = 1.0 if total <= KAPPA_SUM_MAX else KAPPA_SUM_MAX / total
    for j in range(n_active):
        s = idx[j]
        r = r_release[s]
        if t < release[s]:
            r = r_hold[s]
            if lock > 0.0:
                if t < prompt_end[s]:
                    r = r_prompt[s]
                elif t >= knee[s]:
                    r = r_after[s]
                else:
                    r = r_hold_locked[s]
        a = re[j] + g * (kappa[s] if t < attack_end[s] else kappa_sustain[s]) * e
        b = im[j]
        c = r * cos_omega[s]  # cos / sin of the oscillator's frequency, computed once (`unit_phasors`)
        d = r * sin_omega[s]
        re[j] = c * a - d * b
        im[j] = d * a + c * b
        if lock > 0.0 and level[s] > 0.0 and t + 1 <= attack_end[s]:
            k = t + 1 - start[s]  # samples since the oscillator began, after this one
            rise = 1.0 if k >= LOCK_RISE_SAMPLES else 0.5 - 0.5 * math.cos(math.pi * k / LOCK_RISE_SAMPLES)
            target = rise * locked_amplitude(t + 1, level[s], attack_end[s], release[s], r_hold_locked[s], r_release[s],
                                             r_prompt[s], prompt_end[s], knee[s], r_after[s])
            m = math.sqrt(re[j] * re[j] + im[j] * im[j])
            if m > 0.0:
                # lock 1 (the bundled models'): x ** 1 is x, without a pow per oscillator and sample
                # in every attack (BENCHMARKS.md "live")
                f = target / m if lock == 1.0 else (target / m) ** lock
                re[j] *= f
                im[j] *= f
            else:  # silent (undriven so far): at a spread phase
                re[j] = lock * target * math.cos(s * GOLDEN_ANGLE)
                im[j] = lock * target * math.sin(s * GOLDEN_ANGLE)
        elif t == 0 and attack_end[s] <= 0 and lock > 0.0 and level[s] > 0.0:  # admitted at the stream's
            # start (from silence) after its attack ended
            target = lock * locked_amplitude(1, level[s], attack_end[s], release[s], r_hold_locked[s], r_release[s],
                                             r_prompt[s], prompt_end[s], knee[s], r_after[s])
            re[j] = target * math.cos(s * GOLDEN_ANGLE)
            im[j] = target * math.sin(s * GOLDEN_ANGLE)


# The partial levels' lock raises each oscillator's amplitude over this many samples from its start
# (30 ms at 16 kHz; the training piano's partials reach their level in 20-30 ms; 25 ms read the
# 2004 room's onset 3 dB strong on the note sheet), then holds it on its level's decay to the
# attack end (docs/evaluation.md).
LOCK_RISE_SAMPLES = 480

# Phases of oscillators set without an attack of their own: spread, so that their partials do not
# start in phase (a click).
GOLDEN_ANGLE = math.pi * (3.0 - math.sqrt(5.0))


@_njit
def locked_amplitude(t, level, attack_end, release, r_hold, r_release, r_prompt, prompt_end, knee, r_after):
    """An oscillator's fitted level (at its attack end) carried to sample t >= attack_end as the bank
    decays it with the lock on: `level * r_prompt**(min(t, release, prompt_end) - attack_end) *
    r_hold**max(0, min(t, release, knee) - prompt_end) * r_after**max(0, min(t, release) - knee) *
    r_release**max(0, t - release)` (its prompt sound, then its hold, its aftersound from `knee`, then
    its release; knee >= prompt_end). A note released inside its attack is referred back along its
    prompt's decay to the release, so it comes out at level * (r_release / r_prompt)**(attack_end -
    release) at the attack end. `r_hold`: its hold decay with the lock on (`Schedule.r_hold_locked`)."""
    a = level * r_prompt ** (min(t, release, prompt_end) - attack_end) * r_hold ** max(0, min(t, release, knee) - prompt_end)
    if min(t, release) > knee:  # only then: a factor of 1 is not free in the fastmath kernel, whose
        # reordered product rounded otherwise (a render's samples moved where no knee was reached)
        a *= r_after ** (min(t, release) - knee)
    return a * r_release ** max(0, t - release)


@_njit
def locked_amplitudes(t, level, attack_end, release, r_hold, r_release, r_prompt, prompt_end, knee, r_after):
    """`locked_amplitude` of one oscillator at each sample of `t` (int64 [n]; float64 [n]): offline
    measurements read the bank's own trajectory (scripts/fit_rooms.py), where the kernel calls the
    scalar one per sample."""
    out = np.empty(t.shape[0])
    for i in range(t.shape[0]):
        out[i] = locked_amplitude(t[i], level, attack_end, release, r_hold, r_release, r_prompt, prompt_end, knee, r_after)
    return out


@_njit
def _run(signal, analysis, bank, capacity):
    """Analysis (`analysis`: e = signal - p) or synthesis (signal: the network's samples) of one stream
    through the bank `bank` (a `BankArrays` of one schedule): returns (out, prediction, gains)."""
    n = signal.shape[0]
    out = np.empty(n, np.float64)
    pred = np.empty(n, np.float64)
    gains = np.ones(n, np.float64)
    re = np.zeros(capacity)
    im = np.zeros(capacity)
    idx = np.zeros(capacity, np.int64)
    n_active = 0
    nxt = 0
    n_prev = 0.0
    u_prev = 0.0
    lock = 0.0 if analysis else bank.partial_levels  # the analysis tracks the audio as it is
    emphasis = bank.pre_emphasis
    lowpass = bank.noise_lowpass
    for t in range(n):
        n_active, nxt = bank_admit(t, re, im, idx, n_active, nxt, bank.start, bank.stop)
        p = bank_predict(re, n_active)
        pred[t] = p
        g = 1.0
        if bank.gain_on:
            g, _ = bank_gain(t, idx, n_active, bank.start, bank.release, bank.gain_attack, bank.gain_sustain,
                             bank.gain_attack_decay, bank.gain_hold_decay, bank.gain_release_decay, bank.gain_floor,
                             bank.attack_end, 0.0)
        gains[t] = g
        if analysis:
            e = signal[t] - p
            nt = e / g
            ut = unshape_noise(nt, emphasis, lowpass, n_prev, u_prev)
            out[t] = ut
        else:
            nt = shape_noise(signal[t], emphasis, lowpass, n_prev, u_prev)  # |e| <= g whatever is sampled
            ut = unshape_noise(nt, emphasis, lowpass, n_prev, u_prev)  # = signal[t] unless bounded
            e = nt * g
            out[t] = p + e
        n_prev = nt
        u_prev = ut
        bank_update(t, e, re, im, idx, n_active, bank.start, bank.release, bank.cos_omega, bank.sin_omega, bank.r_hold,
                    bank.r_release, bank.kappa,
                    bank.attack_end, bank.kappa_sustain, bank.level, bank.synthesis_only, lock, bank.r_prompt,
                    bank.prompt_end, bank.knee, bank.r_after, bank.r_hold_locked)
    return out, pred, gains


def _arrays(sched: Schedule) -> "BankArrays":
    return BankBatch([sched]).arrays


def warmup_window(audio, start_sample: int, n_samples: int, warmup_samples: int, scale: float = 1.0) -> np.ndarray:
    """Samples [start_sample - warmup_samples, start_sample + n_samples) of a piece times `scale`
    (float64; zeros before the piece's start). `audio`: the whole piece, any array sliceable by
    sample (e.g. an int16 memory map: only the window is read)."""
    lo = start_sample - warmup_samples
    out = np.zeros(warmup_samples + n_samples)
    part = np.asarray(audio[max(0, lo):start_sample + n_samples], np.float64)
    out[len(out) - len(part):] = part * scale
    return out


def analyze(audio: np.ndarray, sched: Schedule) -> tuple[np.ndarray, np.ndarray]:
    """Target and prediction of `audio` (float [n]) from silence at sample 0: returns (u, p), float32
    [n] each, with audio = p + e, n_t = e_t / g_t and u = n unshaped (g: `gain_track`, 1 when the
    schedule has no gain; `unshape_noise` with the schedule's noise shaping, none: u = n): u is what
    the network models (the innovation over the gain, noise-shaped)."""
    x = np.ascontiguousarray(audio, np.float64)
    sched = sched.for_analysis()
    u, p, _ = _run(x, True, _arrays(sched), max(1, max_concurrent(sched)))
    return u.astype(np.float32), p.astype(np.float32)


def gain_track(sched: Schedule, n_samples: int) -> np.ndarray:
    """The innovation gain g_t of samples 0..n_samples-1 (float64 [n]; ones without a gain)."""
    _, _, g = _run(np.zeros(n_samples), False, _arrays(sched), max(1, max_concurrent(sched)))
    return g


def synthesize(target: np.ndarray, sched: Schedule) -> np.ndarray:
    """Audio (float32 [n]) from the network's samples u through the gain and the bank (the inverse of
    analyze)."""
    u = np.ascontiguousarray(target, np.float64)
    x, _, _ = _run(u, False, _arrays(sched), max(1, max_concurrent(sched)))
    return x.astype(np.float32)


# ------------------------------------------------------------------ batched stepping (generation)


@_njit
def unit_phasors(omega, cos_out, sin_out):
    """cos and sin of each oscillator's frequency (rad/sample), with the math library the bank step
    was written with: `bank_update` multiplies them by the decay each sample instead of calling cos
    and sin per oscillator and sample (the same numbers, a fraction of the time)."""
    for i in range(omega.shape[0]):
        cos_out[i] = math.cos(omega[i])
        sin_out[i] = math.sin(omega[i])


# The synthesis settings a schedule carries for its whole bank (every stream's must agree: `BankBatch`;
# `BankArrays` carries them to numba), each with what an error calls it.
SYNTHESIS_SETTINGS = {"sustain_innovation": "the sustain innovation share",
                      "release_innovation": "the release innovation share", "partial_levels": "the partial levels share",
                      "attack_pole": "the attacks' low-pass", "attack_key_tracking": "the attacks' key tracking",
                      "attack_velocity_tracking": "the attacks' velocity tracking",
                      "sustain_highpass": "the sustain high-pass", "direct_dc_rate": "the drift remover",
                      "sustain_limit": "the sustain limit", "sustain_noise_decay": "the sustain noise's decay",
                      "damper_b0": "the dampers' noise's resonance", "damper_a1": "the dampers' noise's resonance",
                      "damper_a2": "the dampers' noise's resonance", "damper_lowpass": "the dampers' noise's low-pass",
                      "damper_scale": "the dampers' noise's scale", "damper_rise": "the dampers' noise's rise"}

# The bank of a batch of streams as numba reads it (`BankBatch.arrays`): the streams' schedules
# concatenated (stream b owns oscillators offsets[b] .. offsets[b + 1] - 1; Schedule.FIELDS), the
# running latest release per stream (`direct_share`) and the shared settings.
BankArrays = namedtuple("BankArrays", Schedule.FIELDS + (
    "offsets", "held_until", "cos_omega", "sin_omega", "gain_on", "gain_floor", "pre_emphasis", "noise_lowpass")
    + tuple(SYNTHESIS_SETTINGS))

# The streams' bank state (`BankBatch.streams`, updated in place): re, im, idx [B, capacity], n_active,
# next [B] (`BankState`), n_prev, u_prev [B] (the noise shaping's state), dc, lp1, lp2, lf1, lf2 [B] (the
# direct path's filters), the rest of `BankState`'s per-stream arrays (`g_direct`: the sustain's direct
# gain at the sample) and per sample p, g, e [B] float64 (prediction, innovation gain, innovation fed to
# the oscillators).
BankStreams = namedtuple("BankStreams", ("re", "im", "idx", "n_active", "next", "n_prev", "u_prev", "dc", "lp1", "lp2", "lf1", "lf2",
                                         "hammer", "bright_gain", "bright_share", "limit_ms", "g_direct", "since_prime", "prime_carry",
                                         "attack_key", "attack_velocity",
                                         "damper_state",
                                         "p", "g", "e"))

# One sample of a batch of streams through the bank (`bank_step`'s buffers, float32 / int64 [B]):
# in `value`, the network's sample (or the teacher-forced one); out `value` and `level`, the audio
# sample and its 16-bit level (not set while primed: the given sample stands); with
# `innovation_input`, `read` and `read_level`: what the network reads next instead of the audio
# (the noise-shaped innovation over the gain, on the 16-bit grid).
BankSample = namedtuple("BankSample", ("value", "level", "read", "read_level"))


@_njit_inline
def batch_predict(t, b0, b1, bank, streams):
    """Admit/drop the oscillators of streams b0..b1-1 at sample t and write their predictions
    p_t into streams.p[b] and their innovation gains into streams.g[b] (1 when the gain is off), the
    sustain's direct gain into streams.g_direct[b] (`bank_gain`)."""
    for b in range(b0, b1):
        o0 = bank.offsets[b]
        o1 = bank.offsets[b + 1]
        adm_before = streams.next[b]
        na, nx = bank_admit(t, streams.re[b], streams.im[b], streams.idx[b], streams.n_active[b], adm_before,
                            bank.start[o0:o1], bank.stop[o0:o1])
        streams.n_active[b] = na
        streams.next[b] = nx
        if nx > adm_before:  # the newest notes' key and velocity (the highest and the loudest of those
            # starting together): the attack's low-pass follows them (kept here, not looked up: the
            # live bank's compaction moves the rows)
            adm_start = bank.start[o0 + nx - 1]
            adm_key = bank.pitch[o0 + nx - 1]
            adm_velocity = bank.velocity[o0 + nx - 1]
            adm_j = nx - 2
            while adm_j >= adm_before and bank.start[o0 + adm_j] == adm_start:
                adm_key = max(adm_key, bank.pitch[o0 + adm_j])
                adm_velocity = max(adm_velocity, bank.velocity[o0 + adm_j])
                adm_j -= 1
            streams.attack_key[b] = adm_key
            streams.attack_velocity[b] = adm_velocity
        streams.p[b] = bank_predict(streams.re[b], na)
        streams.g[b] = 1.0
        streams.g_direct[b] = 1.0
        if bank.gain_on:
            adm_gain, adm_direct = bank_gain(t, streams.idx[b], na, bank.start[o0:o1], bank.release[o0:o1],
                                             bank.gain_attack[o0:o1], bank.gain_sustain[o0:o1],
                                             bank.gain_attack_decay[o0:o1], bank.gain_hold_decay[o0:o1],
                                             bank.gain_release_decay[o0:o1], bank.gain_floor, bank.attack_end[o0:o1],
                                             bank.sustain_noise_decay)
            streams.g[b] = adm_gain
            streams.g_direct[b] = adm_direct


@_njit_inline
def batch_update(t, b0, b1, lock, bank, streams):
    """Feed innovation streams.e[b] of sample t to the oscillators of streams b0..b1-1 (`bank_update`)."""
    for b in range(b0, b1):
        o0 = bank.offsets[b]
        o1 = bank.offsets[b + 1]
        bank_update(t, streams.e[b], streams.re[b], streams.im[b], streams.idx[b], streams.n_active[b],
                    bank.start[o0:o1], bank.release[o0:o1], bank.cos_omega[o0:o1], bank.sin_omega[o0:o1], bank.r_hold[o0:o1],
                    bank.r_release[o0:o1],
                    bank.kappa[o0:o1], bank.attack_end[o0:o1], bank.kappa_sustain[o0:o1], bank.level[o0:o1],
                    bank.synthesis_only[o0:o1], lock, bank.r_prompt[o0:o1], bank.prompt_end[o0:o1], bank.knee[o0:o1],
                    bank.r_after[o0:o1], bank.r_hold_locked[o0:o1])


@_njit_inline
def bank_step(t, b0, b1, primed, innovation_input, bank, streams, sample):
    """Sample t of streams b0..b1-1 through the bank, after the network sampled: the one bank step of
    both engines (the numba kernel calls it inside its loop, the torch engine through `BankBatch.step`).

    Per stream: the prediction p_t and gain g_t (`batch_predict`); unless `primed`, the sample is
    u_t, n_t = `shape_noise`(u_t), and the audio is p_t + share * g_t * n_t rounded down to 16 bits
    (`quantize_sum`; share = `direct_share`, 1 unless the sustain / release innovation share is below 1),
    or, with a direct-path filter on (`attack_pole` a > 0 or `sustain_highpass` > 0), from d = H(g n),
    H a one-pole high-pass at `DIRECT_DC_HZ` (the network's samples drift, and at an onset the gain
    turns a drifted sample into a step): while a note is in its attack (`in_attack`) L(d), L the
    two-pole low-pass (1 - a)^2 / (1 - a z^-1)^2 (d without it), rising over `HAMMER_RISE_SAMPLES`
    from the start of the attacks (`hammer_rise` of the count `hammer`: a note struck in another's
    attack does not restart it, which stepped the direct path, and one struck while the direct path
    fades from the attack's path goes on from that path's weight, `hammer_count`), which then also drives the
    oscillators (a dark hammer), while the sustain's path below fades out over the same rise, fed the
    innovation at the direct gain and share of the last sample past the attacks (`bright_gain`,
    `bright_share`: cut at the onset it stepped, and at the attack's gain it would pass a white burst);
    past the attacks share * Hs(d'), Hs two one-pole high-passes of rate `sustain_highpass` and d' the
    innovation heard at the direct gain (`streams.g_direct`, `bank_gain`: each note's share of the gain
    dying faster past its attack end with `sustain_noise_decay`; d itself without), faded in
    from the attack's path over `ATTACK_FADE_SAMPLES` (`attack_fade`: switched in one sample, the
    direct path stepped, a click 50 ms into every note); the filters' states follow the innovation
    at every unprimed sample;
    after a prime (teacher-forced samples) the output fades from the given audio's last residual over
    `PRIME_FADE_SAMPLES` (`prime_carry`, with a direct-path filter on) and the partial levels' lock rises
    from nothing over as many (`since_prime`): switched at once, the output stepped and every
    partial in its attack jumped to its level;
    the innovation e_t is g_t * n_t where the output got a share or the low-pass, else audio - p_t (a primed
    sample: the given audio); the noise shaping's state moves on (n = e / g, u = `unshape_noise`);
    the oscillators get e_t (`batch_update`, moving to their levels unless primed); with the dampers'
    noise on (`Schedule.damper_scale`), every unprimed sample also hears it (`damper_sample`: the
    filtered noise at the amplitude `damper_gain`), alone: the innovation the bank and the network get leaves it out. `sample`: a
    `BankSample` of the streams' buffers (see there). Inlined into the kernel (numba IR, with its
    batch loops): called there, the named tuples' arrays cost reference counting per sample
    (BENCHMARKS.md, "the bank step written once"). Its local names must differ from the kernel
    loop's (`kernel.run_streams`: a, d, g, ...): numba's inlining shares them, and a float `d` here
    retyped the kernel's dilation (tests/test_engines.py caught the engines apart)."""
    batch_predict(t, b0, b1, bank, streams)
    emphasis = bank.pre_emphasis
    lowpass = bank.noise_lowpass
    pole = bank.attack_pole
    hp_rate = bank.sustain_highpass
    dc_rate = bank.direct_dc_rate
    filtered = pole > 0.0 or hp_rate > 0.0
    tracking = bank.attack_key_tracking
    velocity_tracking = bank.attack_velocity_tracking
    for b in range(b0, b1):
        v = sample.value[b]
        p = streams.p[b]
        g = streams.g[b]
        # the attacks' low-pass of this stream: its cut-off follows the newest notes' key and velocity
        pole_b = pole
        if tracking != 0.0 or velocity_tracking != 0.0:  # before any note the state's key and velocity (60, 64)
            # give the pole itself; not gated on admitted rows: a live bank compacted to none keeps the last key
            pole_b = tracked_pole(pole, tracking, streams.attack_key[b], velocity_tracking, streams.attack_velocity[b])
        share = 1.0
        attack = False
        heard = 0.0
        nt = 0.0
        dampers = 0.0
        if not primed:
            nt = shape_noise(np.float64(v), emphasis, lowpass, streams.n_prev[b], streams.u_prev[b])
            o0, o1 = bank.offsets[b], bank.offsets[b + 1]
            if filtered:
                attack = in_attack(t, streams.idx[b], streams.n_active[b], streams.next[b], bank.attack_end[o0:o1],
                                   bank.stop[o0:o1])
            if bank.sustain_innovation < 1.0 or bank.release_innovation < 1.0:
                share = direct_share(t, bank.sustain_innovation, bank.release_innovation, streams.idx[b],
                                     streams.n_active[b], streams.next[b], bank.attack_end[o0:o1], bank.stop[o0:o1],
                                     bank.held_until[o0:o1])
            heard = share * nt * g
            if filtered:  # the direct path without the innovation's drift
                # in an attack the sustain's high-pass hears the innovation at the gain before it
                # (it fades out there: at the attack's gain it would be a white burst)
                # past the attacks it hears it at the direct gain (each note's noise dying faster than its
                # gain with a noise decay; g itself without one)
                g_heard = streams.g_direct[b]
                held = 1.0
                if attack and pole > 0.0:
                    held = streams.bright_gain[b] / g
                elif g_heard != g:
                    held = g_heard / g
                drift_free, dark, bright = direct_filters(nt * g, b, dc_rate, pole_b, hp_rate, streams, held)
                if bank.sustain_limit > 0.0:  # no sample of it far off its running level (a tick)
                    bright = limit_sustain(bright, streams.bright_gain[b] if attack and pole > 0.0 else g_heard,
                                           bank.sustain_limit, attack and pole > 0.0 and streams.hammer[b] == 0.0, b,
                                           streams)
                heard = drift_free
                if attack and pole > 0.0:  # the hammer, heard through the low-pass, rising from
                    # the attacks' start (a note struck in another's attack goes on rising: no restart)
                    # while the sustain's path fades out (cut, it stepped: a white line at the onset)
                    streams.hammer[b] = min(streams.hammer[b] + 1.0, HAMMER_RISE_SAMPLES)
                    rise = hammer_rise(streams.hammer[b])
                    heard = dark * rise + (1.0 - rise) * streams.bright_share[b] * bright
                elif not attack:  # past the attacks, through the high-pass (share: 1 in silence),
                    # faded in from the attack's path over ATTACK_FADE_SAMPLES (a switch is a click)
                    fade = attack_fade(t, streams.next[b], bank.attack_end[o0:o1])
                    # a note struck during the fade rises from the attack path's weight now, not from zero
                    streams.hammer[b] = hammer_count(fade)
                    heard = share * bright
                    streams.bright_gain[b] = g_heard
                    streams.bright_share[b] = share
                    if fade > 0.0:
                        heard = fade * (dark if pole > 0.0 else drift_free) + (1.0 - fade) * heard
            # after a prime the given audio's last residual fades out (switched, the output stepped)
            carried = 0.0
            k_prime = streams.since_prime[b]
            if k_prime < PRIME_FADE_SAMPLES:
                if filtered:
                    if k_prime == 0.0:
                        streams.prime_carry[b] -= heard
                    carried = streams.prime_carry[b] * (0.5 + 0.5 * math.cos(math.pi * k_prime / PRIME_FADE_SAMPLES))
                streams.since_prime[b] = k_prime + 1.0
            # the dampers' noise, heard alone (neither the bank nor the network gets it)
            if bank.damper_scale > 0.0:
                dampers = damper_sample(t, streams.idx[b], streams.n_active[b], bank.release[o0:o1], bank.damper[o0:o1],
                                        bank.r_release[o0:o1], bank.damper_rise, streams.damper_state[b],
                                        bank.damper_b0, bank.damper_a1, bank.damper_a2, bank.damper_lowpass,
                                        bank.damper_scale)
            level, v = quantize_sum(p, heard + carried + dampers)
            sample.value[b] = v
            sample.level[b] = level
        if not primed and (share < 1.0 or filtered):  # the output got a share or a filtered copy: the bank and
            # the network get all of it (a primed sample: the given audio, below)
            streams.e[b] = nt * g
        elif not primed and dampers != 0.0:  # the bank and the network get the sample without the noise,
            # rounded as it would be without it (the rounding of the sum with it would reach them)
            dm_level, dm_v = quantize_sum(p, heard + carried)
            streams.e[b] = np.float64(dm_v) - p
        else:
            streams.e[b] = np.float64(v) - p
        nt = streams.e[b] / g
        if primed:  # the given audio's residual, which the output fades from after the prime
            streams.prime_carry[b] = streams.e[b]
            streams.since_prime[b] = 0.0
        if filtered and primed:  # the filters follow the given audio's innovation too
            direct_filters(streams.e[b], b, dc_rate, pole_b, hp_rate, streams, 1.0)
        ut = unshape_noise(nt, emphasis, lowpass, streams.n_prev[b], streams.u_prev[b])
        if innovation_input:  # the network reads the (noise-shaped) innovation over the gain, on the 16-bit grid
            level_e, in_v = quantize_sum(min(max(ut, -1.0), 1.0), 0.0)
            sample.read[b] = in_v
            sample.read_level[b] = level_e
        streams.n_prev[b] = nt
        streams.u_prev[b] = ut
        if attack and pole > 0.0:  # the strings are struck by the dark hammer the listener hears (the network read all of it)
            streams.e[b] = heard
    # the lock rises from nothing over PRIME_FADE_SAMPLES after a prime (the analysis held the partials there:
    # locked at once, every partial in its attack stepped to its level)
    lock = 0.0
    if not primed and b1 > b0:
        lock = bank.partial_levels * min(1.0, streams.since_prime[b0] / PRIME_FADE_SAMPLES)
    batch_update(t, b0, b1, lock, bank, streams)


@_njit_inline
def limit_sustain(lim_x, lim_gain, limit, restart, b, streams):
    """The sustain's direct path `lim_x` of stream b (`bank_step`, once per sample) held within `limit`
    times its running RMS, both over `lim_gain` (the gain it hears the innovation at: its level follows
    the notes, the bound follows the noise). The running mean square (`streams.limit_ms`) starts
    from the sample's own at the first sample and at an attack's start (`restart`; `bank_step` knows
    it by the hammer's count, so only with the attacks' low-pass on: after a silence on the rail the
    level is near nothing, and it would bound the sustain's path as it comes in), and
    moves on by the samples as passed, over `LIMIT_WINDOW_SAMPLES` (moved by the samples as they
    came, it removed fewer of the note sheet's ticks). Why: the network's
    low-temperature samples under a held note sit near a level and now and then jump; through the
    sustain's high-pass a jump is a sample far off the waveform, a broadband tick
    (docs/evaluation.md, "Ticks"), while the noise between the partials stays within the bound.
    Local names differ from the kernel's (see `bank_step`)."""
    if lim_gain <= 0.0:
        return lim_x
    lim_r = lim_x / lim_gain
    lim_ms = streams.limit_ms[b]
    if lim_ms <= 0.0 or restart:
        lim_ms = lim_r * lim_r
    lim_bound = limit * math.sqrt(lim_ms)
    lim_r = min(max(lim_r, -lim_bound), lim_bound)
    streams.limit_ms[b] = lim_ms + (lim_r * lim_r - lim_ms) / LIMIT_WINDOW_SAMPLES
    return lim_r * lim_gain


@_njit_inline
def direct_filters(x, b, dc_rate, pole, hp_rate, streams, held):
    """Move stream b's direct-path filters on by the innovation x (`bank_step`, once per sample):
    returns (x without its drift, that through the attacks' two-pole low-pass, that times `held`
    through the sustain's two one-pole high-passes). Local names differ from the kernel's (see
    `bank_step`)."""
    streams.dc[b] += dc_rate * (x - streams.dc[b])
    drift_free = x - streams.dc[b]
    streams.lp1[b] = (1.0 - pole) * drift_free + pole * streams.lp1[b]
    streams.lp2[b] = (1.0 - pole) * streams.lp1[b] + pole * streams.lp2[b]
    streams.lf1[b] += hp_rate * (held * drift_free - streams.lf1[b])
    lf_h1 = held * drift_free - streams.lf1[b]
    streams.lf2[b] += hp_rate * (lf_h1 - streams.lf2[b])
    return drift_free, streams.lp2[b], lf_h1 - streams.lf2[b]


@_njit
def quantize_sum(p, v):
    """x = p + v rounded down to a 16-bit PCM level: returns (level in -32768..32767, x as float32)."""
    level = math.floor((p + v) * 32768.0)
    if level < -32768:
        level = -32768
    elif level > 32767:
        level = 32767
    return level, np.float32(level) / np.float32(32768.0)


class BankBatch:
    """The resonator banks of a batch of streams: their schedules (times relative to the stream's
    sample 0) concatenated, and the explicit state (`reset()` returns every bank to silence)."""

    FIELDS = Schedule.FIELDS

    def __init__(self, schedules) -> None:
        schedules = list(schedules)
        self.batch_size = len(schedules)
        def shared(what: str, of, default):  # a setting every stream's schedule must agree on
            values = {of(s) for s in schedules}
            if len(values) > 1:
                raise ValueError(f"the streams' schedules disagree on {what}: {sorted(map(str, values))}")
            return values.pop() if values else default

        floor = shared("the innovation gain floor", lambda s: s.gain_floor, None)
        self.gain_on = floor is not None
        self.gain_floor = float(floor or 0.0)
        self.pre_emphasis, self.noise_lowpass = map(float, shared(
            "the noise shaping (pre-emphasis, lowpass)", lambda s: (s.pre_emphasis, s.noise_lowpass), (0.0, 0.0)))
        defaults = {f.name: f.default for f in dataclasses.fields(Schedule)}
        for name, what in SYNTHESIS_SETTINGS.items():
            setattr(self, name, float(shared(what, operator.attrgetter(name), defaults[name])))
        lengths = np.array([len(s) for s in schedules], np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        for name in self.FIELDS:
            dtype = np.int64 if name in Schedule.TIME_FIELDS else np.float64
            parts = [np.asarray(getattr(s, name), dtype) for s in schedules]
            setattr(self, name, np.ascontiguousarray(np.concatenate(parts)) if parts else np.zeros(0, dtype))
        # per stream, the latest release among its oscillators so far (start order): `direct_share`
        self.held_until = np.concatenate([np.maximum.accumulate(np.asarray(s.release, np.int64))
                                          for s in schedules] + [np.zeros(0, np.int64)])
        self.cos_omega, self.sin_omega = np.empty_like(self.omega), np.empty_like(self.omega)
        unit_phasors(self.omega, self.cos_omega, self.sin_omega)
        capacity = max([1] + [max_concurrent(s) for s in schedules])
        self.state = BankState(self.batch_size, capacity)
        self.p = np.zeros(self.batch_size, np.float64)
        self.g = np.ones(self.batch_size, np.float64)
        self.e = np.zeros(self.batch_size, np.float64)
        # built once: every array is fixed after this (reset and the steps change them in place), and
        # the torch engine steps the bank once per sample
        self.arrays = self._arrays()
        self.streams = self._streams()

    def reset(self) -> "BankBatch":
        self.state.reset()
        return self

    def _arrays(self) -> BankArrays:
        """The schedules and settings as numba reads them."""
        return BankArrays(*(getattr(self, f) for f in Schedule.FIELDS), offsets=self.offsets,
                          held_until=self.held_until, cos_omega=self.cos_omega, sin_omega=self.sin_omega,
                          gain_on=self.gain_on, gain_floor=self.gain_floor,
                          pre_emphasis=self.pre_emphasis, noise_lowpass=self.noise_lowpass,
                          **{name: getattr(self, name) for name in SYNTHESIS_SETTINGS})

    def _streams(self) -> BankStreams:
        """The streams' state as numba reads it (views: `bank_step` updates it in place)."""
        return self.state.streams(self.p, self.g, self.e)

    def step(self, t: int, primed: bool, innovation_input: bool, value: np.ndarray) -> BankSample:
        """`bank_step` of sample t for every stream, from the network's samples `value` (float32 [B]):
        returns the `BankSample` (audio value and level, what the network reads and its level)."""
        sample = BankSample(np.array(value, np.float32), np.zeros(self.batch_size, np.int64),
                            np.zeros(self.batch_size, np.float32), np.zeros(self.batch_size, np.int64))
        bank_step(t, 0, self.batch_size, primed, innovation_input, self.arrays, self.streams, sample)
        return sample

    def predict(self, t: int) -> np.ndarray:
        """p_t of every stream (float64 [B]); call once per sample, before `update`. Also sets
        `self.g`, the streams' innovation gains at t."""
        batch_predict(t, 0, self.batch_size, self.arrays, self.streams)
        return self.p

    def update(self, t: int, innovation: np.ndarray, lock: bool = True) -> np.ndarray:
        """Feed every stream's innovation e_t (float64 [B]) to its oscillators and return u_t, its
        noise-shaped value over the gain (`predict` set g_t): what the network reads. `lock` False
        (a teacher-forced prime: the bank tracks given audio) leaves the partial levels alone."""
        s = self.state
        e = np.ascontiguousarray(innovation, np.float64)
        self.e[:] = e
        batch_update(t, 0, self.batch_size, self.partial_levels if lock else 0.0, self.arrays, self.streams)
        n = e / self.g
        if self.pre_emphasis == 0.0 and self.noise_lowpass == 0.0:  # no shaping: u = n
            u = n
        else:
            u = np.array([unshape_noise(n[b], self.pre_emphasis, self.noise_lowpass, s.n_prev[b], s.u_prev[b])
                          for b in range(self.batch_size)])
        s.n_prev[:] = n
        s.u_prev[:] = u
        return u


def empty_bank() -> BankBatch:
    """A bank of one stream without oscillators: the kernel's placeholder for a model without a bank
    (one kernel specialisation for both)."""
    return BankBatch([Schedule.empty()])


class LiveBank:
    """The resonator bank of one stream whose notes arrive while it runs (the live engine,
    `render/live.py`): the same oscillators as `schedule` (`oscillators`), appended in start order
    as notes begin and given their release when it becomes known, so the kernel steps it exactly
    as it steps a `BankBatch` (same `arrays` / `streams` layout, one stream).

    Why this is exact: every use of a release in the bank step compares it with the current sample
    (`t < release`, `min(t, release)`, the latest release <= t), so a release set at sample T >= the
    stream's position gives the samples before T what `NOT_RELEASED` gave them. Capacity is fixed
    (`capacity` oscillators; nothing is allocated while the kernel runs); `compact()` drops the
    stopped oscillators the kernel has left behind, between kernel calls."""

    def __init__(self, config: ResonatorConfig, sample_rate_hz: int, sustain_innovation: float = 1.0,
                 release_innovation: float = 1.0, partial_levels: float = 0.0, capacity: int = 4096,
                 attack_pole: float = 0.0, year: int | None = None, sustain_highpass: float = 0.0,
                 direct_dc_rate: float = 0.0, attack_key_tracking: float = 0.0, sustain_limit: float = 0.0,
                 attack_velocity_tracking: float = 0.0, sustain_noise_decay: float = 0.0) -> None:
        self.config, self.sample_rate_hz, self.capacity = config, int(sample_rate_hz), int(capacity)
        floor, emphasis, lowpass = _settings(config)
        template = Schedule.empty(floor, emphasis, lowpass).for_sampling(sustain_innovation, partial_levels,
                                                                         release_innovation, attack_pole,
                                                                         sustain_highpass=sustain_highpass,
                                                                         direct_dc_rate=direct_dc_rate,
                                                                         attack_key_tracking=attack_key_tracking,
                                                                         sustain_limit=sustain_limit,
                                                                         attack_velocity_tracking=attack_velocity_tracking,
                                                                         sustain_noise_decay=sustain_noise_decay,
                                                                         damper=damper_filter(config, sample_rate_hz))
        self.release_pole = release_pole_for(config, year, self.sample_rate_hz)  # the year's room
        self.year = year  # and its tone (`room_level_gain`, in the note tables)
        self._note_tables: dict[int, tuple[dict[str, np.ndarray], dict[str, np.ndarray]]] = {}
        self.tail = max(int(math.ceil(config.release_tail_s * sample_rate_hz)), room_tail_samples(self.release_pole))
        # the undamped top's release, in every room, and its notes' tail (`Schedule.for_sampling`)
        self.undamped = undamped_release(config, self.sample_rate_hz)
        self.undamped_tail = max(self.tail, room_tail_samples(self.undamped[1])) if self.undamped else self.tail
        for name in Schedule.FIELDS:
            setattr(self, name, np.zeros(self.capacity, np.int64 if name in Schedule.TIME_FIELDS else np.float64))
        self.offsets = np.zeros(2, np.int64)  # one stream: oscillators 0 .. offsets[1] - 1
        self.held_until = np.zeros(self.capacity, np.int64)
        self.cos_omega, self.sin_omega = np.zeros(self.capacity), np.zeros(self.capacity)
        self.state = BankState(1, self.capacity)
        self.p, self.g, self.e = np.zeros(1), np.ones(1), np.zeros(1)
        self.arrays = BankArrays(*(getattr(self, f) for f in Schedule.FIELDS), offsets=self.offsets,
                                 held_until=self.held_until, cos_omega=self.cos_omega, sin_omega=self.sin_omega,
                                 gain_on=floor is not None,
                                 gain_floor=float(floor or 0.0), pre_emphasis=emphasis, noise_lowpass=lowpass,
                                 **{name: getattr(template, name) for name in SYNTHESIS_SETTINGS})
        self.streams = self.state.streams(self.p, self.g, self.e)
        self.reset()

    @property
    def size(self) -> int:
        """Oscillators in the schedule (sounding, or stopped but not yet compacted away)."""
        return int(self.offsets[1])

    def reset(self) -> "LiveBank":
        """Silence and no oscillators."""
        self.state.reset()
        self.offsets[1] = 0
        self.ranges: dict[int, list[int]] = {}  # note handle -> its rows [first, end) now
        self.next_handle = 0
        return self

    def note_table(self, pitch: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """The oscillators of a note of this pitch at every velocity 1..MAX_MIDI_VELOCITY, begun at sample 0 and not
        released, from one `oscillators` call: (the fields that depend on the pitch alone, [k] each,
        with the room's release and `cos_omega` / `sin_omega`; `Schedule.VELOCITY_FIELDS`, [127, k]
        each, row v - 1 for velocity v). Kept per pitch: `add_note` then only copies rows, where
        building a note's oscillators in an audio callback cost a chord a large share of the
        period (BENCHMARKS.md "live")."""
        table = self._note_tables.get(pitch)
        if table is None:
            V = MAX_MIDI_VELOCITY
            rows = oscillators(np.full(V, pitch), np.arange(1, V + 1), np.zeros(V, np.int64),
                               np.full(V, NOT_RELEASED, np.int64), self.sample_rate_hz, self.config)
            k = len(rows) // V
            fixed = {}
            for name in Schedule.FIELDS:
                if name not in Schedule.VELOCITY_FIELDS:
                    values = getattr(rows, name).reshape(V, k)
                    if not (values == values[0]).all():  # a copy would give every velocity the softest's
                        raise RuntimeError(f"oscillators(): {name} depends on the velocity; "
                                           f"list it in Schedule.VELOCITY_FIELDS")
                    fixed[name] = values[0].copy()
            fixed["r_release"][:] = self.undamped[1] if self.config.undamped(pitch) else self.release_pole
            fixed["cos_omega"], fixed["sin_omega"] = np.zeros(k), np.zeros(k)
            unit_phasors(fixed["omega"], fixed["cos_omega"], fixed["sin_omega"])
            by_velocity = {name: getattr(rows, name).reshape(V, k).copy() for name in Schedule.VELOCITY_FIELDS}
            gain = room_level_gain(self.config, self.year, fixed["omega"], self.sample_rate_hz)
            if gain is not None:
                by_velocity["level"] *= gain[None, :]
            by_velocity["damper"] *= damper_room_gain(self.config, self.year, self.sample_rate_hz)
            table = self._note_tables[pitch] = (fixed, by_velocity)
        return table

    def prepare(self, pitches: range = range(MIN_MIDI_PITCH, MAX_MIDI_PITCH + 1)) -> "LiveBank":
        """Build the note tables of these pitches now (every key of the piano by default), so that
        no note played later builds one in an audio callback."""
        for pitch in pitches:
            self.note_table(int(pitch))
        return self

    def add_note(self, pitch: int, velocity: int, start: int) -> int | None:
        """The oscillators of a note (velocity 1..127) starting at sample `start` (>= every start so
        far), not yet released; returns a handle for `release_note`, or None when the bank is full and
        the note is not added. Full means: the oscillators still ringing at `start` (stop > start) and
        the new ones would exceed half the capacity; the other half holds those the kernel (which runs
        up to a block behind the events) has not dropped yet. So whether a note is refused depends
        on the notes alone, not on the block sizes. The oscillators are `oscillators`' for the note,
        copied from the pitch's `note_table` (tests/test_live.py compares them field by field)."""
        if not 1 <= velocity <= MAX_MIDI_VELOCITY:
            raise ValueError(f"velocity must be 1..{MAX_MIDI_VELOCITY}, got {velocity}")
        fixed, by_velocity = self.note_table(int(pitch))
        k = len(fixed["omega"])
        n = self.size
        if int(np.count_nonzero(self.stop[:n] > start)) + k > self.capacity // 2:
            return None
        if n + k > self.capacity:
            self.compact()
            n = self.size
            if n + k > self.capacity:  # pragma: no cover - half the capacity covers a block's lag
                return None
        a = n
        for name, values in fixed.items():
            getattr(self, name)[a:a + k] = values
        for name, values in by_velocity.items():
            getattr(self, name)[a:a + k] = values[velocity - 1]
        self.start[a:a + k] += start  # the table's notes begin at sample 0
        self.attack_end[a:a + k] += start
        self.prompt_end[a:a + k] += start
        self.knee[a:a + k] += start
        self.held_until[a:a + k] = NOT_RELEASED
        self.offsets[1] = a + k
        handle = self.next_handle
        self.next_handle += 1
        self.ranges[handle] = [a, a + k]
        return handle

    def release_note(self, handle: int, at: int) -> None:
        """Release the note `handle` at sample `at` (not before the stream's position)."""
        if handle not in self.ranges:  # its oscillators were compacted away: long stopped
            return
        a, b = self.ranges[handle]
        self.release[a:b] = np.minimum(self.release[a:b], at)
        undamped = bool(self.config.undamped(self.pitch[a]))  # a note's rows share its pitch
        self.stop[a:b] = self.release[a:b] + (self.undamped_tail if undamped else self.tail)
        n = self.size
        np.maximum.accumulate(self.release[:n], out=self.held_until[:n])

    def restrike(self, handle: int) -> None:
        """The note `handle`'s release is a re-strike of its key (it was released at the sample its
        key is struck again): it plays no damper noise (`restruck_releases`). Called before the
        stream reaches that release."""
        if handle in self.ranges:
            a, b = self.ranges[handle]
            self.damper[a:b] = 0.0

    def compact(self) -> int:
        """Drop every oscillator the kernel has passed and dropped (admitted before and no longer
        active), wherever it lies: the ones still active keep their slots (the prediction sums them
        in slot order), the rest keep their order. Returns how many were dropped."""
        n = self.size
        s = self.state
        na, nxt = int(s.n_active[0]), int(s.next[0])
        keep = np.zeros(n, bool)
        keep[nxt:] = True
        keep[s.idx[0, :na]] = True
        dropped = n - int(keep.sum())
        if dropped == 0:
            return 0
        new_index = np.cumsum(keep) - 1
        for name in Schedule.FIELDS + ("cos_omega", "sin_omega"):
            array = getattr(self, name)
            array[:n - dropped] = array[:n][keep]
        s.idx[0, :na] = new_index[s.idx[0, :na]]
        s.next[0] = int(keep[:nxt].sum())
        self.offsets[1] = n - dropped
        for handle in list(self.ranges):
            a, b = self.ranges[handle]
            if keep[a]:  # a note's oscillators start together: all kept or all dropped
                self.ranges[handle] = [int(new_index[a]), int(new_index[a]) + (b - a)]
            else:
                del self.ranges[handle]
        np.maximum.accumulate(self.release[:n - dropped], out=self.held_until[:n - dropped])
        return dropped
