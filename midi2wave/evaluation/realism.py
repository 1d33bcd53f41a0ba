"""Does audio sound like a piano playing the MIDI, and not only at the right pitches? Four measures.

Transcription F1 says whether the right notes start at the right times; a model can score well on
it and still render pitched noise. These measures (numpy only, no I/O) look at the rest:

- **Gap noise** (`gap_mask`, `gap_noise_db`): the RMS of the audio where no note sounds relative to
  the RMS where notes sound, in dB. A note "sounds" from its onset to its offset (the sustain pedal
  already applied, as `midi.apply_sustain` does) plus a release margin (0.5 s), so a real piano's
  release tail and a little room reverb fall inside the sounding part and the gap holds what
  should be silence. Real sampled pianos score about -50 to -57 dB; a noise floor shows up as a
  value near -10 dB. An exactly silent gap scores `FLOOR_DB` (-120), not -inf. An excerpt with
  less than `min_gap_seconds` (0.1 s) of gap, or with no sound at all, has no value (None).
- **Tonal purity** (`tonal_purity`): the share of spectral energy that lies near a partial of a
  sounding note. STFT with a 4096-sample Hann window (256 ms at 16 kHz: 3.9 Hz bins, so low notes'
  partials are resolved), hop 256. In each frame where a note sounds (its onset .. offset + release
  margin overlaps the frame's window), every sounding note's partials `k * f0` (equal temperament,
  A4 = 440 Hz; k = 1, 2, ... up to Nyquist) claim the bins within +-40 cents; each band is at least
  +-2 bins wide, the half-width of the Hann main lobe, so a steady partial's whole peak counts even
  where 40 cents is narrower than a bin (below ~330 Hz at 4096/16 kHz). The bands are harmonic.
  Piano strings are stiff: partial k lies at `k f0 sqrt(1 + B k^2)`, above `k f0` (middle C,
  B ~ 4e-4: +34 cents at k = 10, +74 at k = 15). `RealismOptions(stiff_strings=True)` widens each
  band upward to that position, with B from a typical concert-grand curve (`inharmonicity`), so a
  harmonic signal and a stiff string both count. It is off by default: on the demo data's
  recordings (a sampled real piano) it raised the real audio's purity by at most 0.005 (the high
  partials hold little energy) but the bands' share of the spectrum (the purity of white noise,
  below) by up to 0.13, which makes the measure less able to tell noise from partials.
  Energy below 20 Hz (DC, rumble) is ignored. The energies are summed over frames before dividing,
  so loud frames weigh more. +-40 cents of partial k is 4.6 % of k f0 wide, so above the ~20th
  partial the bands of one note merge, and low and middle notes claim most of the upper spectrum:
  `partial_coverage` gives the share of bins inside the bands (0.5-0.98 on 4 s windows of the demo
  data), about the purity white noise would get under the same notes. Purity discriminates
  mainly through the low partials, where the energy is.
- **Log-mel distance** (`log_mel_distance`): the mean absolute difference of two signals'
  natural-log mel spectrograms (|STFT| of a 1024-sample Hann window, hop 256, 80 Slaney mel bands
  0..Nyquist as librosa's default filterbank, floor 1e-5), after scaling each signal to the same
  RMS (`REFERENCE_RMS`), so a level difference alone costs nothing. 0 for identical signals. Two
  renders of the same MIDI by different instruments give the scale of "as close as another piano".
- **Release jumps** (`release_jumps_db`): where the last sounding note is released into a rest,
  the peak 3-8 kHz level in the 250 ms after the release over its level just before, dB. A piano's
  decay gives about 0 or less; a click after the dampers fall gives a positive value. The other
  three hardly see such clicks (they are short), the ear does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..midi import Notes, pitch_to_hz

__all__ = [
    "FLOOR_DB",
    "REFERENCE_RMS",
    "RealismOptions",
    "gap_mask",
    "gap_noise_db",
    "inharmonicity",
    "log_mel",
    "log_mel_distance",
    "mel_filterbank",
    "median_or_none",
    "partial_coverage",
    "partial_masks",
    "release_jumps_db",
    "tonal_purity",
]

FLOOR_DB = -120.0          # gap noise of an exactly silent gap
REFERENCE_RMS = 0.1        # log-mel distance: both signals are scaled to this RMS first
MIN_PITCH, MAX_PITCH = 21, 108


@dataclass(frozen=True)
class RealismOptions:
    """Parameters of the three measures (the defaults are the documented definitions)."""

    release_margin_seconds: float = 0.5  # a note sounds until offset + this
    min_gap_seconds: float = 0.1         # less gap than this in an excerpt: no gap-noise value
    purity_n_fft: int = 4096
    purity_hop: int = 256
    purity_cents: float = 40.0           # band half-width around each partial
    purity_min_bins: float = 2.0         # ... but at least this many bins (Hann main lobe half-width)
    purity_min_hz: float = 20.0          # bins below are ignored (DC, rumble)
    stiff_strings: bool = False          # widen bands upward to the stiff-string partial positions
    mel_n_fft: int = 1024
    mel_hop: int = 256
    n_mels: int = 80
    mel_floor: float = 1e-5
    release_band_hz: tuple[float, float] = (3000.0, 8000.0)  # release jumps: the band looked at
    release_frame_seconds: float = 0.005
    release_after_seconds: tuple[float, float] = (0.01, 0.25)    # the peak in [off + a, off + b)
    release_before_seconds: tuple[float, float] = (0.04, 0.01)   # against the mean in [off - a, off - b)
    release_quiet_seconds: float = 0.3   # no onset from 50 ms before the release to this after it


DEFAULT = RealismOptions()


# -------------------------------------------------------------------------------------- gap noise


def _sounding_samples(notes: Notes, n_samples: int, sample_rate_hz: float, release_margin_seconds: float
                      ) -> np.ndarray:
    """bool [n_samples]: True where some note is between its onset and offset + margin."""
    counts = np.zeros(n_samples + 1, np.int64)
    if len(notes):
        a = np.clip(np.floor(notes.onset_s * sample_rate_hz), 0, n_samples).astype(np.int64)
        b = np.clip(np.ceil((notes.offset_s + release_margin_seconds) * sample_rate_hz), 0, n_samples).astype(np.int64)
        keep = b > a
        np.add.at(counts, a[keep], 1)
        np.add.at(counts, b[keep], -1)
    return np.cumsum(counts[:-1]) > 0


def gap_mask(notes_sustained: Notes, n_samples: int, sample_rate_hz: float,
             release_margin_seconds: float = DEFAULT.release_margin_seconds) -> np.ndarray:
    """bool [n_samples]: True where no note sounds.

    notes_sustained: the notes with the sustain pedal applied (`midi.apply_sustain`), times in
    seconds relative to the audio's first sample. Pass every note whose release reaches the audio
    (offset + margin > 0, e.g. `notes.window(start_s - margin, end_s)` shifted by start_s): onsets
    may be negative. A note sounds over [onset, offset + release_margin_seconds)."""
    return ~_sounding_samples(notes_sustained, int(n_samples), float(sample_rate_hz), float(release_margin_seconds))


def gap_noise_db(audio: np.ndarray, mask: np.ndarray, sample_rate_hz: float,
                 min_gap_seconds: float = DEFAULT.min_gap_seconds) -> float | None:
    """20 log10(RMS of audio[mask] / RMS of audio[~mask]), at least FLOOR_DB.

    audio: float [n]; mask: bool [n] from `gap_mask`. None when the gap is shorter than
    `min_gap_seconds` or nothing sounds (no sounding samples, or they are all zero)."""
    x = np.asarray(audio, np.float64).reshape(-1)
    mask = np.asarray(mask, bool).reshape(-1)
    if x.shape != mask.shape:
        raise ValueError(f"audio has {x.shape[0]} samples, the mask {mask.shape[0]}")
    n_gap = int(mask.sum())
    if n_gap < min_gap_seconds * sample_rate_hz or n_gap == len(x):
        return None
    sound = math.sqrt(float(np.mean(x[~mask] ** 2)))
    if sound == 0.0:
        return None
    gap = math.sqrt(float(np.mean(x[mask] ** 2)))
    if gap == 0.0:
        return FLOOR_DB
    return max(FLOOR_DB, 20.0 * math.log10(gap / sound))


def median_or_none(values: Sequence[float | None]) -> float | None:
    """Median of the values that are not None (None when there are none)."""
    kept = [v for v in values if v is not None]
    return float(np.median(kept)) if kept else None


def release_jumps_db(audio: np.ndarray, notes_sustained: Notes, sample_rate_hz: float,
                     options: RealismOptions = DEFAULT) -> np.ndarray:
    """Clicks after the dampers fall: float64 [k], one value per moment where the last sounding
    note is released (`notes_sustained`: pedal applied, times relative to the audio's first
    sample) and no note is struck from 50 ms before it to `release_quiet_seconds` after it: the
    peak level of the `release_band_hz` band (`release_frame_seconds` frames) in the
    `release_after_seconds` window after the release, minus its mean level in the
    `release_before_seconds` window before it, dB. A recording's decays give about 0 or less (its
    release noise is faint), steady noise about +2 (a peak over ~48 frames against a mean over
    6); a broadband click after the release gives tens of dB. Moments too close to either end of
    the audio are skipped."""
    sr = float(sample_rate_hz)
    frame = max(8, int(round(options.release_frame_seconds * sr)))
    if len(notes_sustained) == 0 or np.size(audio) < frame:
        return np.zeros(0)
    hz = np.fft.rfftfreq(frame, 1.0 / sr)
    band = (hz >= options.release_band_hz[0]) & (hz < options.release_band_hz[1])
    if not band.any():
        raise ValueError(f"release_band_hz {options.release_band_hz}: no bins below Nyquist at {sr:g} Hz")
    level = 10.0 * np.log10(_stft_power(audio, frame, frame)[:, band].sum(axis=1) + 1e-20)  # frame f at f * frame
    n_frames = len(level)
    on, off = np.asarray(notes_sustained.onset_s, np.float64), np.asarray(notes_sustained.offset_s, np.float64)
    frame_s = frame / sr
    out = []
    for t in np.unique(off):
        before = [math.ceil((t - b) / frame_s) for b in options.release_before_seconds]  # frames centred inside
        after = [math.ceil((t + a) / frame_s) for a in options.release_after_seconds]
        if before[0] < 0 or after[1] > n_frames or before[1] <= before[0] or after[1] <= after[0]:
            continue
        if np.any((on <= t) & (off > t)) or np.any((on > t - 0.05) & (on < t + options.release_quiet_seconds)):
            continue  # a note still held, or one struck around the release
        out.append(float(level[after[0]:after[1]].max() - level[before[0]:before[1]].mean()))
    return np.asarray(out, np.float64)


# ---------------------------------------------------------------------------------- tonal purity


def inharmonicity(pitch: np.ndarray | int) -> np.ndarray:
    """Typical inharmonicity coefficient B of a concert grand's strings by MIDI pitch: flat
    ~1.5e-4 through the wound bass (up to A2), then rising a decade per three octaves
    (4e-4 at C4, 1.9e-3 at C6, 8.6e-3 at C8), after the measured curves of Young (1952) and
    Rigaud et al. (2013). Partial k of a stiff string lies at k f0 sqrt(1 + B k^2)."""
    p = np.maximum(np.asarray(pitch, np.float64), 45.0)
    return 10.0 ** (-3.4 + (p - 60.0) / 36.0)


def partial_masks(n_fft: int, sample_rate_hz: float, options: RealismOptions = DEFAULT) -> np.ndarray:
    """bool [88, n_fft // 2 + 1]: row p - 21 marks the rFFT bins near a partial of MIDI pitch p
    (the bands `tonal_purity` describes)."""
    n_bins = n_fft // 2 + 1
    bin_hz = sample_rate_hz / n_fft
    nyquist = sample_rate_hz / 2.0
    freqs = np.arange(n_bins) * bin_hz
    up = 2.0 ** (options.purity_cents / 1200.0)
    masks = np.zeros((MAX_PITCH - MIN_PITCH + 1, n_bins), bool)
    for row, pitch in enumerate(range(MIN_PITCH, MAX_PITCH + 1)):
        f0 = float(pitch_to_hz(pitch))
        k = np.arange(1, int(nyquist // f0) + 2, dtype=np.float64)
        harmonic = k * f0
        stiff = harmonic * np.sqrt(1.0 + inharmonicity(pitch) * k ** 2) if options.stiff_strings else harmonic
        lo = np.minimum(harmonic / up, harmonic - options.purity_min_bins * bin_hz)
        hi = np.maximum(stiff * up, stiff + options.purity_min_bins * bin_hz)
        keep = lo < nyquist
        lo_bin = np.ceil(lo[keep] / bin_hz).astype(np.int64).clip(0, n_bins)
        hi_bin = (np.floor(hi[keep] / bin_hz).astype(np.int64) + 1).clip(0, n_bins)
        edges = np.zeros(n_bins + 1, np.int64)
        np.add.at(edges, lo_bin, 1)
        np.add.at(edges, hi_bin, -1)
        masks[row] = np.cumsum(edges[:-1]) > 0
    masks[:, freqs < options.purity_min_hz] = False
    return masks


def _stft_power(audio: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """float64 [frames, n_fft // 2 + 1]: |rFFT|^2 of Hann-windowed frames centred at t = f * hop
    (zero padding of n_fft // 2 on both sides)."""
    x = np.asarray(audio, np.float64).reshape(-1)
    x = np.pad(x, (n_fft // 2, n_fft // 2))
    if len(x) < n_fft:
        x = np.pad(x, (0, n_fft - len(x)))
    n_frames = 1 + (len(x) - n_fft) // hop
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft)[::hop][:n_frames]
    spec = np.fft.rfft(frames * np.hanning(n_fft + 1)[:-1], axis=1)
    return spec.real ** 2 + spec.imag ** 2


def _active_pitches(notes: Notes, n_frames: int, sample_rate_hz: float, options: RealismOptions) -> np.ndarray:
    """float [frames, 88]: 1 where a note of that pitch sounds (onset .. offset + margin) somewhere
    in the frame's window [c - n_fft/2, c + n_fft/2), c = f * hop."""
    active = np.zeros((n_frames, MAX_PITCH - MIN_PITCH + 1))
    half = options.purity_n_fft / 2
    centres = np.arange(n_frames) * options.purity_hop
    for on, off, pitch in zip(notes.onset_s, notes.offset_s, notes.pitch):
        if not MIN_PITCH <= pitch <= MAX_PITCH:
            continue
        a = on * sample_rate_hz
        b = (off + options.release_margin_seconds) * sample_rate_hz
        active[(centres - half < b) & (centres + half > a), int(pitch) - MIN_PITCH] = 1.0
    return active


def _frame_masks(notes: Notes, n_samples: int, sample_rate_hz: float, options: RealismOptions
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(bool [frames, bins] partial bands of the notes sounding in each frame, bool [frames]
    frames where some note sounds)."""
    n_frames = 1 + (n_samples + 2 * (options.purity_n_fft // 2) - options.purity_n_fft) // options.purity_hop
    n_frames = max(n_frames, 1)
    active = _active_pitches(notes, n_frames, sample_rate_hz, options)
    bands = (active @ partial_masks(options.purity_n_fft, sample_rate_hz, options).astype(np.float64)) > 0
    return bands, active.any(axis=1)


def tonal_purity(audio: np.ndarray, notes_sustained: Notes, sample_rate_hz: float,
                 options: RealismOptions = DEFAULT) -> float | None:
    """Share of the spectral energy (>= 20 Hz) of the frames where notes sound that lies in the
    partial bands of the notes sounding there, energies summed over frames. audio: float [n];
    notes_sustained as for `gap_mask`. None when no note sounds or those frames hold no energy."""
    x = np.asarray(audio, np.float64).reshape(-1)
    power = _stft_power(x, options.purity_n_fft, options.purity_hop)
    bands, sounding = _frame_masks(notes_sustained, len(x), sample_rate_hz, options)
    power, bands = power[sounding], bands[sounding]
    freqs = np.arange(power.shape[1]) * sample_rate_hz / options.purity_n_fft
    total = float(power[:, freqs >= options.purity_min_hz].sum())
    if total <= 0.0:
        return None
    return float(power[bands].sum() / total)


def partial_coverage(notes_sustained: Notes, n_samples: int, sample_rate_hz: float,
                     options: RealismOptions = DEFAULT) -> float | None:
    """Mean share of the bins (>= 20 Hz) inside the partial bands, over the frames where notes
    sound: about the tonal purity white noise would get under these notes (None: no note sounds)."""
    bands, sounding = _frame_masks(notes_sustained, int(n_samples), sample_rate_hz, options)
    if not sounding.any():
        return None
    freqs = np.arange(bands.shape[1]) * sample_rate_hz / options.purity_n_fft
    return float(bands[sounding][:, freqs >= options.purity_min_hz].mean())


# ------------------------------------------------------------------------------- log-mel distance


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale (librosa's default, htk=False): linear below 1 kHz, logarithmic above."""
    hz = np.asarray(hz, np.float64)
    f_sp = 200.0 / 3
    logstep = math.log(6.4) / 27.0
    return np.where(hz >= 1000.0, 15.0 + np.log(np.maximum(hz, 1e-10) / 1000.0) / logstep, hz / f_sp)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, np.float64)
    f_sp = 200.0 / 3
    logstep = math.log(6.4) / 27.0
    return np.where(mel >= 15.0, 1000.0 * np.exp(logstep * (mel - 15.0)), f_sp * mel)


def mel_filterbank(sample_rate_hz: float, n_fft: int, n_mels: int, fmin_hz: float = 0.0,
                   fmax_hz: float | None = None) -> np.ndarray:
    """float64 [n_mels, n_fft // 2 + 1]: triangular Slaney mel filters with Slaney area
    normalisation, as `librosa.filters.mel(sr=..., n_fft=..., n_mels=...)` builds them."""
    fmax_hz = sample_rate_hz / 2.0 if fmax_hz is None else fmax_hz
    fft_hz = np.linspace(0.0, sample_rate_hz / 2.0, n_fft // 2 + 1)
    mel_hz = _mel_to_hz(np.linspace(_hz_to_mel(fmin_hz), _hz_to_mel(fmax_hz), n_mels + 2))
    width = np.diff(mel_hz)
    ramps = mel_hz[:, None] - fft_hz[None, :]
    lower = -ramps[:-2] / width[:-1, None]
    upper = ramps[2:] / width[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    return weights * (2.0 / (mel_hz[2:] - mel_hz[:-2]))[:, None]


def log_mel(audio: np.ndarray, sample_rate_hz: float, options: RealismOptions = DEFAULT) -> np.ndarray:
    """float64 [n_mels, frames]: ln(max(mel filterbank @ |STFT|, floor)) of the audio as given."""
    magnitude = np.sqrt(_stft_power(audio, options.mel_n_fft, options.mel_hop)).T
    mel = mel_filterbank(sample_rate_hz, options.mel_n_fft, options.n_mels) @ magnitude
    return np.log(np.maximum(mel, options.mel_floor))


def _at_reference_rms(audio: np.ndarray) -> np.ndarray:
    x = np.asarray(audio, np.float64).reshape(-1)
    rms = math.sqrt(float(np.mean(x ** 2))) if len(x) else 0.0
    return x * (REFERENCE_RMS / rms) if rms > 0 else x


def log_mel_distance(a: np.ndarray, b: np.ndarray, sample_rate_hz: float,
                     options: RealismOptions = DEFAULT) -> float:
    """Mean |log_mel(a) - log_mel(b)| (nats) after scaling both to RMS `REFERENCE_RMS`.

    a, b: float [n], the same length (ValueError otherwise). A silent signal stays silent (its
    spectrogram is the floor)."""
    a = np.asarray(a).reshape(-1)
    b = np.asarray(b).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"log_mel_distance needs signals of one length, got {a.shape[0]} and {b.shape[0]}")
    la = log_mel(_at_reference_rms(a), sample_rate_hz, options)
    lb = log_mel(_at_reference_rms(b), sample_rate_hz, options)
    return float(np.mean(np.abs(la - lb)))
