"""The note sheet: isolated notes across the keyboard, measured one by one (numpy only, no I/O).

Excerpt measures (realism.py) are taken over dense passages, which mask what a listener hears first
on a note heard alone: noise under its partials, a bright click at its attack, missing upper
partials, a release tail that does not follow the room. A note sheet (`NoteSheet`: every pitch of
`pitches` at every velocity of `velocities`, each held `hold_seconds` and then released into
silence) is rendered by a model and by the training instrument in the same year's room, and each
note is measured (`note_measures`):

- **attack brightness** (`attack_db`): energy above `attack_split_hz` (4 kHz) in the first
  `attack_seconds` (30 ms) after the onset, relative to all of it (bins >= 20 Hz), dB. A recorded
  hammer is short and dark; a white click reads near the white-noise share (about -3 dB).
- **attack-end brightness** (`attack_end_db`): the same share in `attack_end_seconds`
  [0.03, 0.09) s after the onset, where a resonator model's attack ends (50 ms): a burst there
  (every partial's amplitude stepping at once) is a click the first window misses. Checked one way:
  no more than 3 dB above the reference.
- **onset** (`onset_db`): the mean power of the first `attack_seconds` over that of
  `onset_reference_seconds` [0.05, 0.10) s after the onset, dB: a note that swells only where a
  resonator model's attack ends (its partials silent until then) reads low.
- **click** (`click_db`): the most energy above `attack_split_hz` in one `click_frame_seconds`
  (4 ms, Hann, hop 2 ms) frame within `attack_end_seconds` over the median frame there, dB: a click of a few
  samples (the direct path switching filters at the attack's end) that the 60-ms attack-end window
  averages away. Checked one way: no more than 3 dB above the reference.
- **hiss** (`hiss_db`): in `[onset + 0.15, onset + 0.65)` s, the noise between the note's partials
  over the energy at them, dB. The partials are found as spectral peaks near k f0, the expected
  position of each following the stretch of the ones found below it (`find_partials`); each claims
  `band_bins` bins either side. The noise density is the mean energy per bin outside the bands
  (20 Hz .. Nyquist), so the noise under the bands is counted too and subtracted from them: white
  noise 20 dB below a tone reads -20 dB, a pure additive tone below -45 dB. A band counts as a
  partial only where it stands `partial_snr_db` (6 dB) above the noise beside it.
- **hiss as heard** (`hiss_a_db`): the same with the spectrum A-weighted (IEC 61672's A curve,
  `a_weighting`), partials and noise alike: the ear hears little of a rumble under 250 Hz and most
  of a hiss at 1-5 kHz, and a recording's room rumble can fill the unweighted measure while the
  noise a listener hears between the partials stands several dB above the recording's.
- **upper-partial balance** (`upper_db`): the partials' energy above `upper_split_hz` (2 kHz) over
  all their energy, dB (a dull top reads low).
- **partial levels** (`levels_db`, float [16]): partial k's energy relative to all the partials',
  dB (NaN above Nyquist; a partial lost in noise: the noise in its band); two renders compare by the median |difference| (`level_difference_db`).
- **release tail** (`release_db`): RMS in `[offset + 0.10, offset + 0.25)` s over the RMS of the
  last 0.1 s held, dB (the room's reverberation after the dampers fall).
- **fundamental decay** (`decay_db_per_s`): the slope of a line fitted to the fundamental's level
  (its band in 2048-sample frames, hop 256) from onset + 0.1 s to the offset, dB per second.
- **ticks** (`ticks`): how many ticks the note has from its onset to `release_seconds`' end after its
  offset: the click frames' energy above `attack_split_hz`, wherever it stands `tick_db` (15 dB)
  over the median frame of the `tick_context_seconds` (50 ms) around it, at least
  `tick_gap_seconds` (50 ms) apart, and not below `tick_floor_db` (-90 dBFS). A tick is a sample
  or two off the waveform (a draw from the far tail of the network's distribution): a listener
  hears it on a note alone, while `click_db` sees only the attack's end and the hiss measure
  averages it away over half a second. A recorded note has next to none; a sheet is summarised by
  the mean (ticks per note), not the median, since most notes have none either way.

A sheet can also hold a few long notes (`long_pitches`, each at `long_velocity`, held
`long_hold_seconds`; `NoteSheet.long_notes`), rendered and measured apart from the grid
(`long_measures`), so the grid's renders are the same with or without them:

- **aftersound** (`aftersound_db`): the energy at the note's partials (found and counted as for the
  hiss) in `aftersound_late_seconds` [3.0, 3.4) s after the onset over that in
  `aftersound_early_seconds` [0.4, 0.8) s, dB. A piano's held note dies fast for a second or so, then
  slowly (its double decay): a model with one decay reads far lower than the recording.

`summarize` takes medians over the notes (the mean for `ticks`); `compare` sets a model's medians against the reference's
per year, with the differences between years, and the pass/fail checks of the note-sheet bar.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ..midi import Notes, PedalEvents, pitch_to_hz

__all__ = ["LONG_PITCHES", "MEAN_MEASURES", "MEASURES", "NoteMeasureOptions", "NoteSheet", "REGISTERS", "a_weighting",
           "aftersound_db", "by_register", "compare", "find_partials", "level_difference_db", "long_measures",
           "note_measures", "release_tail_db", "sheet_measures", "summarize"]

MEASURES: tuple[str, ...] = ("attack_db", "attack_end_db", "onset_db", "click_db", "hiss_db", "hiss_a_db", "upper_db", "release_db",
                             "decay_db_per_s", "ticks")
MEAN_MEASURES: tuple[str, ...] = ("ticks",)  # counts, summarised by the mean over the notes (the median of a
# rare event is 0)
N_LEVELS = 16
_TINY = 1e-20


@dataclass(frozen=True)
class NoteSheet:
    """Isolated notes: every pitch at every velocity, `spacing_seconds` from onset to onset, each held
    `hold_seconds` (so `spacing_seconds - hold_seconds` of silence follows each release)."""

    pitches: tuple[int, ...] = (24, 30, 36, 42, 48, 54, 60, 66, 72, 78, 84, 90, 96, 102)
    velocities: tuple[int, ...] = (30, 60, 90, 120)
    hold_seconds: float = 0.8
    spacing_seconds: float = 2.0
    lead_seconds: float = 0.5
    # the long notes, a render of their own (none by default; `evaluate --note-sheet` plays `LONG_PITCHES`)
    long_pitches: tuple[int, ...] = ()
    long_velocity: int = 90
    long_hold_seconds: float = 3.5
    long_spacing_seconds: float = 4.5

    def __post_init__(self) -> None:
        object.__setattr__(self, "long_pitches", tuple(self.long_pitches))  # a tuple, from JSON's list too
        if not self.pitches or not self.velocities:
            raise ValueError("a note sheet needs at least one pitch and one velocity")
        if any(not 21 <= p <= 108 for p in (*self.pitches, *self.long_pitches)) or any(
                not 1 <= v <= 127 for v in (*self.velocities, self.long_velocity)):
            raise ValueError("note-sheet pitches must lie in 21..108 and velocities in 1..127")
        if not 0.3 < self.hold_seconds < self.spacing_seconds - 0.4:
            raise ValueError("hold_seconds must exceed 0.3 s and leave at least 0.4 s before the next note")
        if self.long_pitches and not 0.3 < self.long_hold_seconds < self.long_spacing_seconds - 0.4:
            raise ValueError("long_hold_seconds must exceed 0.3 s and leave at least 0.4 s before the next note")

    def notes(self) -> tuple[Notes, PedalEvents]:
        """The grid as (notes, no pedals), times in seconds; order: pitch-major, then velocity."""
        grid = [(p, v) for p in self.pitches for v in self.velocities]
        onset = self.lead_seconds + self.spacing_seconds * np.arange(len(grid), dtype=np.float64)
        notes = Notes(onset_s=onset, offset_s=onset + self.hold_seconds,
                      pitch=np.array([p for p, _ in grid], np.int16), velocity=np.array([v for _, v in grid], np.int16))
        return notes, _no_pedals()

    def long_notes(self) -> tuple[Notes, PedalEvents]:
        """The long notes as (notes, no pedals), a piece of their own from `lead_seconds` (none without
        `long_pitches`)."""
        onset = self.lead_seconds + self.long_spacing_seconds * np.arange(len(self.long_pitches), dtype=np.float64)
        notes = Notes(onset_s=onset, offset_s=onset + self.long_hold_seconds,
                      pitch=np.array(self.long_pitches, np.int16),
                      velocity=np.full(len(self.long_pitches), self.long_velocity, np.int16))
        return notes, _no_pedals()

    @property
    def duration_seconds(self) -> float:
        """The grid's length (s)."""
        return self.lead_seconds + self.spacing_seconds * len(self.pitches) * len(self.velocities)

    @property
    def long_duration_seconds(self) -> float:
        """The long notes' piece's length (s; 0 without them)."""
        return self.lead_seconds + self.long_spacing_seconds * len(self.long_pitches) if self.long_pitches else 0.0


def _no_pedals() -> PedalEvents:
    return PedalEvents(time_s=np.zeros(0, np.float64), controller=np.zeros(0, np.int16), value=np.zeros(0, np.int16))


# The long notes `evaluate --note-sheet` plays after the grid (`NoteSheet.long_pitches`): an octave apart
# from C2 to C7, where a piano's aftersound is clear of the recording's floor through the hold.
LONG_PITCHES: tuple[int, ...] = (36, 48, 60, 72, 84, 96)


@dataclass(frozen=True)
class NoteMeasureOptions:
    """The measures' definitions (the defaults are the documented ones)."""

    attack_seconds: float = 0.030
    attack_split_hz: float = 4000.0
    attack_end_seconds: tuple[float, float] = (0.03, 0.09)  # after the onset: a burst where the bank's attack ends
    onset_reference_seconds: tuple[float, float] = (0.05, 0.10)  # after the onset: the onset's reference
    click_frame_seconds: float = 0.004
    tick_db: float = 15.0              # a tick: a click frame this far above the median frame around it
    tick_context_seconds: float = 0.05  # the frames around it whose median is the reference
    tick_gap_seconds: float = 0.05      # frames above the threshold this close together are one tick
    tick_floor_db: float = -90.0        # and its energy above attack_split_hz at least this (dBFS, RMS)
    min_hz: float = 20.0
    steady_seconds: tuple[float, float] = (0.15, 0.65)   # after the onset: hiss, balance, levels
    n_fft: int = 8192
    band_bins: int = 5            # each partial claims its peak +- this many bins (Hann main lobe: 2)
    search_fraction: float = 0.03  # a partial's peak is looked for within +-3 % of its expected place
    max_partials: int = 400       # enough to reach Nyquist from A0
    partial_snr_db: float = 6.0   # a partial counts where its band stands this far above the noise beside it
    upper_split_hz: float = 2000.0
    release_seconds: tuple[float, float] = (0.10, 0.25)  # after the offset
    held_seconds: float = 0.1                            # the last part held, the release's reference
    decay_frame: int = 2048
    decay_hop: int = 256
    decay_start_seconds: float = 0.1
    aftersound_early_seconds: tuple[float, float] = (0.4, 0.8)  # after the onset: the aftersound's reference
    aftersound_late_seconds: tuple[float, float] = (3.0, 3.4)   # and its late window (a long note's)
    checks: dict[str, float] = field(default_factory=lambda: {
        "attack_db": 3.0, "attack_end_db": 3.0, "onset_db": 3.0, "click_db": 3.0, "hiss_db": 1.0, "hiss_a_db": 1.0, "upper_db": 2.0, "levels_db": 3.0, "release_db": 3.0, "year_difference_db": 3.0,
        "ticks": 0.1, "aftersound_db": 3.0})


DEFAULT = NoteMeasureOptions()


FLOOR_DB = -120.0


def _db(num: float, den: float) -> float:
    """10 log10(num / den), at least FLOOR_DB (nothing at all above a split reads FLOOR_DB)."""
    return float(max(10.0 * math.log10(max(num, _TINY) / max(den, _TINY)), FLOOR_DB))


def release_tail_db(audio: np.ndarray, sample_rate_hz: int, offset: int, options: "NoteMeasureOptions") -> float:
    """The release tail (`release_db`) of a note released at sample `offset`: RMS in
    `options.release_seconds` after it over the RMS of the `options.held_seconds` before it, dB
    (scripts/fit_rooms.py fits the rooms to it)."""
    r0, r1 = (offset + int(round(t * sample_rate_hz)) for t in options.release_seconds)
    held = _segment(audio, offset - int(round(options.held_seconds * sample_rate_hz)), offset)
    tail = _segment(audio, r0, r1)
    return _db(float(np.mean(tail**2)), float(np.mean(held**2)))


def _segment(audio: np.ndarray, start: int, stop: int) -> np.ndarray:
    """audio[start:stop] with zeros outside the signal."""
    out = np.zeros(max(stop - start, 0), np.float64)
    a, b = max(start, 0), min(stop, len(audio))
    if b > a:
        out[a - start:b - start] = audio[a:b]
    return out


def a_weighting(hz: np.ndarray) -> np.ndarray:
    """IEC 61672's A weighting as a power gain at the frequencies `hz` (1 at 1 kHz; 0 at 0 Hz)."""
    f2 = np.asarray(hz, np.float64) ** 2
    ra = 12194.0**2 * f2**2 / ((f2 + 20.6**2) * np.sqrt((f2 + 107.7**2) * (f2 + 737.9**2)) * (f2 + 12194.0**2))
    return (ra * 10.0 ** (2.0 / 20.0)) ** 2  # +2.0 dB: the curve's normalisation to 0 dB at 1 kHz


def _power_spectrum(x: np.ndarray, n_fft: int) -> np.ndarray:
    w = np.hanning(len(x))
    return np.abs(np.fft.rfft(x * w, n=max(n_fft, len(x)))) ** 2


def find_partials(power: np.ndarray, f0_hz: float, bin_hz: float, options: NoteMeasureOptions = DEFAULT
                  ) -> np.ndarray:
    """Peak bins of partials 1, 2, ... below Nyquist (int64 [K]): partial k is the largest bin within
    +-`search_fraction` (at most 0.35 of the spacing) of its expected place, the previous peak plus
    the mean of the last three intervals between peaks (so a stiff string's stretch is followed); the first
    is looked for near f0."""
    n_bins = len(power)
    peaks: list[int] = []
    spacing_hz = f0_hz
    for _ in range(options.max_partials):
        expected = (peaks[-1] * bin_hz + spacing_hz) if peaks else f0_hz
        reach = min(options.search_fraction * expected, 0.35 * spacing_hz)  # never as far as a neighbour
        if expected - reach >= bin_hz * (n_bins - 1):
            break
        lo = int(math.floor((expected - reach) / bin_hz))
        hi = int(math.ceil((expected + reach) / bin_hz)) + 1
        lo = max(lo, 1, peaks[-1] + options.band_bins + 1 if peaks else 1)
        hi = min(hi, n_bins)
        if hi <= lo:
            break
        peaks.append(lo + int(np.argmax(power[lo:hi])))
        # the local spacing: the mean of the last three intervals (a stiff string's widens with k)
        m = min(len(peaks), 4)
        spacing_hz = peaks[0] * bin_hz if m == 1 else (peaks[-1] - peaks[-m]) * bin_hz / (m - 1)
    return np.asarray(peaks, np.int64)


def _partial_energies(power: np.ndarray, peaks: np.ndarray, bin_hz: float, options: NoteMeasureOptions
                      ) -> tuple[np.ndarray, np.ndarray, float]:
    """(energy per partial with the noise under its band taken out, 0 where the band does not stand
    `partial_snr_db` above the noise beside it [K]; each band's whole energy [K]; the noise energy
    over all bins >= min_hz). A peak picked in noise is the largest of its bins, so without the
    test noise alone would read as partials."""
    n_bins = len(power)
    first = int(math.ceil(options.min_hz / bin_hz))
    w = options.band_bins
    in_band = np.zeros(n_bins, bool)
    for p in peaks:
        in_band[max(p - w, 0):p + w + 1] = True
    counted = np.zeros(n_bins, bool)
    counted[first:] = True
    outside = counted & ~in_band
    density = float(power[outside].mean()) if outside.any() else 0.0
    noise = density * int(counted.sum())
    snr = 10.0 ** (options.partial_snr_db / 10.0)
    energies, whole = np.zeros(len(peaks)), np.zeros(len(peaks))
    for i, p in enumerate(peaks):
        lo, hi = max(p - w, first), min(p + w + 1, n_bins)
        band = float(power[lo:hi].sum())
        near = slice(max(p - 8 * w, first), min(p + 8 * w + 1, n_bins))
        beside = power[near][outside[near]]
        local = float(beside.mean()) if len(beside) else density
        whole[i] = band
        if band > snr * local * (hi - lo):
            energies[i] = max(band - density * (hi - lo), 0.0)
    return energies, whole, noise


def _split_share_db(windowed: np.ndarray, n_fft: int, sr: float, options: NoteMeasureOptions) -> float:
    """Energy above `options.attack_split_hz` over all of it above `options.min_hz` (dB) of a
    windowed segment's n_fft-point spectrum: the attack and attack-end brightness."""
    power = np.abs(np.fft.rfft(windowed, n=n_fft)) ** 2
    hz = np.fft.rfftfreq(n_fft, 1.0 / sr)
    return _db(float(power[hz >= options.attack_split_hz].sum()), float(power[hz >= options.min_hz].sum()))


def note_measures(audio: np.ndarray, sample_rate_hz: int, onset_s: float, offset_s: float, pitch: int,
                  options: NoteMeasureOptions = DEFAULT) -> dict[str, Any]:
    """The measures of one isolated note (module docstring): a dict of the `MEASURES` (float dB, or
    dB/s) and `levels_db` (float [16], NaN where a partial lies above Nyquist). audio: float [n] at
    `sample_rate_hz`; onset/offset in seconds of that audio."""
    x = np.asarray(audio, np.float64).reshape(-1)
    sr = float(sample_rate_hz)
    on, off = int(round(onset_s * sr)), int(round(offset_s * sr))
    f0 = float(pitch_to_hz(int(pitch)))
    out: dict[str, Any] = {}

    a = _segment(x, on, on + int(round(options.attack_seconds * sr)))
    taper = np.ones(len(a))
    ramp = max(len(a) // 10, 1)
    taper[-ramp:] = np.linspace(1.0, 0.0, ramp)  # the onset edge kept: the click is what is measured
    out["attack_db"] = _split_share_db(a * taper, 1024, sr, options)
    e0, e1 = (on + int(round(t * sr)) for t in options.attack_end_seconds)
    seg = _segment(x, e0, e1)
    out["attack_end_db"] = _split_share_db(seg * np.hanning(len(seg)), 2048, sr, options)
    o0, o1 = (on + int(round(t * sr)) for t in options.onset_reference_seconds)
    out["onset_db"] = _db(float(np.mean(a**2)), float(np.mean(_segment(x, o0, o1) ** 2)))

    s0, s1 = (on + int(round(t * sr)) for t in options.steady_seconds)
    steady = _segment(x, s0, min(s1, max(off, s0 + 1)) if off > s0 else s1)
    power = _power_spectrum(steady, options.n_fft)
    n_fft = 2 * (len(power) - 1)
    bin_hz = sr / n_fft
    peaks = find_partials(power, f0, bin_hz, options)
    energies, whole, noise = _partial_energies(power, peaks, bin_hz, options)
    total = float(energies.sum())
    out["hiss_db"] = _db(noise, total)
    weighted, _, weighted_noise = _partial_energies(power * a_weighting(np.arange(len(power)) * bin_hz), peaks, bin_hz,
                                                    options)
    out["hiss_a_db"] = _db(weighted_noise, float(weighted.sum()))
    hz = peaks * bin_hz
    out["upper_db"] = _db(float(energies[hz >= options.upper_split_hz].sum()), total)
    levels = np.full(N_LEVELS, np.nan)
    k = min(N_LEVELS, len(energies))
    # a partial lost in noise has the level of the noise in its band (what is heard there)
    levels[:k] = 10.0 * np.log10(np.maximum(np.where(energies[:k] > 0, energies[:k], whole[:k]), _TINY)
                                 / max(total, _TINY))
    out["levels_db"] = levels

    out["click_db"] = _click_db(x, sr, e0, e1, options)
    out["release_db"] = release_tail_db(x, sr, off, options)
    out["ticks"] = float(count_ticks(x, sr, on, off + int(round(options.release_seconds[1] * sr)), options))

    out["decay_db_per_s"] = _fundamental_decay(x, sr, on, off, f0, options)
    return out


def _high_frames(x: np.ndarray, sr: float, a: int, b: int, options: NoteMeasureOptions) -> tuple[np.ndarray, int, float]:
    """(energy above `attack_split_hz` of the Hann frames of `click_frame_seconds` starting every
    half frame in samples [a, b), the hop in samples, the energy of a frame of white noise of RMS 1
    over its whole one-sided spectrum: Parseval, w / 2 x the window's energy)."""
    w = max(4, int(round(options.click_frame_seconds * sr)))
    hop = w // 2
    window = np.hanning(w)
    high = np.fft.rfftfreq(w, 1.0 / sr) >= options.attack_split_hz
    starts = np.arange(a, b, hop)
    frames = np.stack([_segment(x, s, s + w) for s in starts]) if len(starts) else np.zeros((0, w))
    energy = (np.abs(np.fft.rfft(frames * window, axis=1)) ** 2)[:, high].sum(axis=1)
    return energy, hop, float((window**2).sum()) * w / 2


def _click_db(x: np.ndarray, sr: float, a: int, b: int, options: NoteMeasureOptions) -> float:
    """`click_db`: over Hann frames of `click_frame_seconds` (hop: half of it) starting in samples
    [a, b), the largest energy above `attack_split_hz` over the median frame's, dB."""
    energy, _, _ = _high_frames(x, sr, a, b, options)
    return _db(float(energy.max()), float(np.median(energy)))


def count_ticks(x: np.ndarray, sr: float, a: int, b: int, options: NoteMeasureOptions = DEFAULT) -> int:
    """`ticks` in samples [a, b) of `x` (module docstring): runs of click frames over the local
    median by `tick_db` and above `tick_floor_db`, runs less than `tick_gap_seconds` apart counted
    once."""
    energy, hop, unit = _high_frames(x, sr, a, b, options)
    if len(energy) == 0:
        return 0
    half = max(1, int(round(options.tick_context_seconds * sr / hop / 2)))
    padded = np.pad(energy, half, mode="reflect" if len(energy) > half else "edge")
    local = np.median(np.lib.stride_tricks.sliding_window_view(padded, 2 * half + 1), axis=1)
    floor = 10.0 ** (options.tick_floor_db / 10.0) * unit
    over = (energy > local * 10.0 ** (options.tick_db / 10.0)) & (energy >= floor)
    frames = np.flatnonzero(over)
    if len(frames) == 0:
        return 0
    gap = max(1, int(round(options.tick_gap_seconds * sr / hop)))
    return int(1 + np.count_nonzero(np.diff(frames) >= gap))


def _fundamental_decay(x: np.ndarray, sr: float, on: int, off: int, f0: float, options: NoteMeasureOptions
                       ) -> float:
    n, hop = options.decay_frame, options.decay_hop
    start = on + int(round(options.decay_start_seconds * sr))
    if off - start < n + 4 * hop:
        return float("nan")
    w = np.hanning(n)
    n_fft = max(n, 4096)
    bin_hz = sr / n_fft
    centre = int(round(f0 / bin_hz))
    half = max(3, int(round(0.03 * f0 / bin_hz)))
    times, level = [], []
    for s in range(start, off - n + 1, hop):
        p = np.abs(np.fft.rfft(x[s:s + n] * w, n=n_fft)) ** 2
        band = p[max(centre - half, 1):centre + half + 1]
        times.append((s + n / 2 - on) / sr)
        level.append(10.0 * math.log10(max(float(band.sum()), _TINY)))
    slope = np.polyfit(np.asarray(times), np.asarray(level), 1)[0]
    return float(slope)


def level_difference_db(a: np.ndarray, b: np.ndarray) -> float:
    """The median |a - b| over the partials both have (levels_db of two renders of one note)."""
    d = np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))
    d = d[np.isfinite(d)]
    return float(np.median(d)) if len(d) else float("nan")


def sheet_measures(audio: np.ndarray, sample_rate_hz: int, notes: Notes,
                   options: NoteMeasureOptions = DEFAULT) -> list[dict[str, Any]]:
    """`note_measures` of every note of a rendered sheet (notes as `NoteSheet.notes` gives them)."""
    rows = []
    for i in range(len(notes)):
        m = note_measures(audio, sample_rate_hz, float(notes.onset_s[i]), float(notes.offset_s[i]),
                          int(notes.pitch[i]), options)
        m.update(pitch=int(notes.pitch[i]), velocity=int(notes.velocity[i]), onset_s=float(notes.onset_s[i]))
        rows.append(m)
    return rows


def aftersound_db(audio: np.ndarray, sample_rate_hz: int, onset_s: float, pitch: int,
                  options: NoteMeasureOptions = DEFAULT) -> float:
    """The aftersound of a long note (module docstring): the energy at its partials in
    `aftersound_late_seconds` after the onset over that in `aftersound_early_seconds`, dB (the
    partials found in each window as the hiss finds them)."""
    x = np.asarray(audio, np.float64).reshape(-1)
    sr = float(sample_rate_hz)
    on = int(round(onset_s * sr))
    f0 = float(pitch_to_hz(int(pitch)))
    energy = []
    for a, b in (options.aftersound_early_seconds, options.aftersound_late_seconds):
        power = _power_spectrum(_segment(x, on + int(round(a * sr)), on + int(round(b * sr))), options.n_fft)
        bin_hz = sr / (2 * (len(power) - 1))
        energies, _, _ = _partial_energies(power, find_partials(power, f0, bin_hz, options), bin_hz, options)
        energy.append(float(energies.sum()))
    return _db(energy[1], energy[0])


def long_measures(audio: np.ndarray, sample_rate_hz: int, notes: Notes,
                  options: NoteMeasureOptions = DEFAULT) -> list[dict[str, Any]]:
    """`aftersound_db` of each long note of a rendered sheet (`notes`: `NoteSheet.long_notes`, held past
    `aftersound_late_seconds`)."""
    if len(notes) and float(np.min(notes.offset_s - notes.onset_s)) < options.aftersound_late_seconds[1]:
        raise ValueError(f"the long notes must be held {options.aftersound_late_seconds[1]:g} s or more")
    return [{"pitch": int(notes.pitch[i]), "velocity": int(notes.velocity[i]), "onset_s": float(notes.onset_s[i]),
             "aftersound_db": aftersound_db(audio, sample_rate_hz, float(notes.onset_s[i]), int(notes.pitch[i]), options)}
            for i in range(len(notes))]


def _median(values: Sequence[float]) -> float:
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    return float(np.median(v)) if len(v) else float("nan")


def summarize(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Medians over the notes of each measure in `MEASURES` (the mean of `ticks`: ticks per note)."""
    def mean(values: list[float]) -> float:
        return float(np.mean(values)) if values else float("nan")

    return {m: (mean if m in MEAN_MEASURES else _median)([r[m] for r in rows]) for m in MEASURES}


REGISTERS: dict[str, tuple[int, int]] = {"low": (21, 48), "middle": (48, 72), "high": (72, 109)}


def by_register(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """`summarize` of the notes in each of `REGISTERS` (MIDI pitch ranges [a, b)): a median over
    the whole keyboard can hide a register (the bass's missing upper partials, say)."""
    return {name: summarize([r for r in rows if a <= r["pitch"] < b]) for name, (a, b) in REGISTERS.items()}


def by_velocity(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """`summarize` of the notes of each velocity on the sheet (keys: the velocity as text): the
    attack's brightness follows the blow, and a median over every velocity can hide a soft layer
    too bright and a loud one too dark."""
    return {str(v): summarize([r for r in rows if r["velocity"] == v]) for v in sorted({int(r["velocity"]) for r in rows})}


def velocity_attack_db(model_rows: Sequence[dict[str, Any]], reference_rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Per velocity of the sheet, the model's median `attack_db` minus the reference's (dB)."""
    g, r = by_velocity(model_rows), by_velocity(reference_rows)
    return {v: g[v]["attack_db"] - r[v]["attack_db"] for v in r}


def compare(model: dict[int, list[dict[str, Any]]], reference: dict[int, list[dict[str, Any]]],
            options: NoteMeasureOptions = DEFAULT, model_long: dict[int, list[dict[str, Any]]] | None = None,
            reference_long: dict[int, list[dict[str, Any]]] | None = None) -> dict[str, Any]:
    """A model's sheet against the reference's, per year (rows from `sheet_measures` of the same
    sheet): medians of both, their differences, the median partial-level difference, the
    differences between years (each year against the first), and the checks of the bar
    (`options.checks`: |difference| within the tolerance; hiss, attack end, click and ticks only
    upward; the attack's brightness also in every velocity layer, `velocity_attack_db`, within the
    attack's tolerance). With the long notes' rows (`long_measures`, per year, both or neither): the
    aftersound's medians and the median of its note-by-note difference, checked within its tolerance."""
    if (model_long is None) != (reference_long is None):
        raise ValueError("compare: give the long notes of both renders or of neither")
    years = sorted(reference)
    per_year: dict[str, Any] = {}
    checks: dict[str, bool] = {}
    tol = options.checks
    for y in years:
        gm, rm = summarize(model[y]), summarize(reference[y])
        levels = _median([level_difference_db(g["levels_db"], r["levels_db"]) for g, r in zip(model[y], reference[y])])
        diff = {m: gm[m] - rm[m] for m in MEASURES}
        layers = velocity_attack_db(model[y], reference[y])
        per_year[str(y)] = {"model": gm, "reference": rm, "difference": diff, "levels_db": levels,
                            "registers": {"model": by_register(model[y]), "reference": by_register(reference[y])},
                            "velocity_attack_db": layers}
        checks[f"{y} attack_db"] = abs(diff["attack_db"]) <= tol["attack_db"]
        checks[f"{y} attack_db by velocity"] = bool(layers) and all(abs(d) <= tol["attack_db"] for d in layers.values())
        checks[f"{y} attack_end_db"] = diff["attack_end_db"] <= tol["attack_end_db"]
        checks[f"{y} onset_db"] = abs(diff["onset_db"]) <= tol["onset_db"]
        checks[f"{y} click_db"] = diff["click_db"] <= tol["click_db"]
        checks[f"{y} hiss_db"] = diff["hiss_db"] <= tol["hiss_db"]
        checks[f"{y} hiss_a_db"] = diff["hiss_a_db"] <= tol["hiss_a_db"]
        checks[f"{y} upper_db"] = abs(diff["upper_db"]) <= tol["upper_db"]
        checks[f"{y} levels_db"] = levels <= tol["levels_db"]
        checks[f"{y} release_db"] = abs(diff["release_db"]) <= tol["release_db"]
        checks[f"{y} ticks"] = diff["ticks"] <= tol["ticks"]
        if model_long is not None and reference_long is not None and reference_long.get(y):
            g_long, r_long = model_long[y], reference_long[y]
            after = {"model": _median([r["aftersound_db"] for r in g_long]),
                     "reference": _median([r["aftersound_db"] for r in r_long]),
                     "difference": _median([g["aftersound_db"] - r["aftersound_db"] for g, r in zip(g_long, r_long)])}
            per_year[str(y)]["aftersound_db"] = after
            checks[f"{y} aftersound_db"] = abs(after["difference"]) <= tol["aftersound_db"]
    between: dict[str, Any] = {}
    for y in years[1:]:
        g = {m: per_year[str(y)]["model"][m] - per_year[str(years[0])]["model"][m] for m in MEASURES}
        r = {m: per_year[str(y)]["reference"][m] - per_year[str(years[0])]["reference"][m] for m in MEASURES}
        between[f"{y}-{years[0]}"] = {"model": g, "reference": r}
        checks[f"{y}-{years[0]} release_db"] = abs(g["release_db"] - r["release_db"]) <= tol["year_difference_db"]
    return {"years": years, "per_year": per_year, "between_years": between, "checks": checks,
            "passed": bool(all(checks.values()))}
