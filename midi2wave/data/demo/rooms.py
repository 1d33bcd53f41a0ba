"""The recording "rooms" of the demo data's years (`ROOMS`), so that the year conditioning has
something to learn: each a deterministic synthetic stereo reverb impulse response, low/high shelving
EQ, stereo width and gain, applied in numpy (`apply_room`) with one fixed output gain for every piece
(`OUTPUT_GAIN`: no normalisation, so velocity stays audible), then clipped to int16 (`to_pcm16`).
A year's room also carries that year's piano tuning and velocity curve, which the Salamander
instrument uses (FluidSynth ignores them)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ... import constants as C
from .performance import AUDIO_SAMPLE_RATE_HZ

OUTPUT_GAIN: float = 5.0  # fixed for every piece (no normalisation): a lone fff note peaks ~0.23-0.31
PCM_MAX: float = 32767.0


@dataclass(frozen=True)
class Room:
    """The recording "room" of one MAESTRO year: reverb, EQ, width and level."""

    rt60_s: float  # reverb decay time (-60 dB)
    predelay_s: float
    wet: float  # reverb level relative to the dry signal
    damping_hz: float  # cut-off of the reverb tail's one-pole low-pass (darker rooms lower)
    low_shelf_db: float  # at 250 Hz
    high_shelf_db: float  # at 4 kHz
    width: float  # side (L-R) gain
    gain_db: float
    # the piano of the year (used by the Salamander instrument, salamander.py; FluidSynth ignores them)
    tuning_cents: float = 0.0  # the whole piano sharp (+) or flat (-)
    velocity_gamma: float = 1.0  # key velocity v is played as 127 * (v / 127) ** gamma (regulation)


ROOMS: dict[int, Room] = {
    2004: Room(1.45, 0.014, 0.26, 4200.0, +2.0, -3.5, 0.80, -1.5, -4.0, 1.08),
    2006: Room(1.20, 0.010, 0.20, 5500.0, +1.0, -2.0, 0.90, -0.5, +2.0, 0.94),
    2008: Room(0.95, 0.008, 0.16, 7000.0, +0.5, -1.0, 1.00, 0.0, -1.0, 1.00),
    2009: Room(1.10, 0.012, 0.22, 6000.0, -0.5, -1.5, 0.95, -1.0, +3.0, 1.05),
    2011: Room(0.80, 0.006, 0.12, 8000.0, +1.5, +0.5, 1.05, +0.5, 0.0, 0.92),
    2013: Room(1.35, 0.016, 0.24, 5000.0, -1.0, +1.0, 1.10, -0.5, -2.5, 1.10),
    2014: Room(0.70, 0.005, 0.10, 9000.0, +0.0, +1.5, 1.00, +1.0, +1.5, 0.97),
    2015: Room(1.00, 0.009, 0.18, 6500.0, +2.5, -0.5, 0.85, 0.0, -3.0, 1.03),
    2017: Room(1.25, 0.011, 0.20, 7500.0, -1.5, +2.0, 1.15, +0.5, +4.0, 0.96),
    2018: Room(0.90, 0.007, 0.14, 8500.0, +1.0, +1.0, 1.00, +1.5, +1.0, 1.06),
}
assert tuple(sorted(ROOMS)) == C.MAESTRO_YEARS


@lru_cache(maxsize=len(ROOMS) + 1)
def _impulse_response(year: int, sample_rate: int) -> np.ndarray:
    """Stereo reverb of a year's room (float64 [n, 2], unit energy per channel): early reflections
    and a decaying, low-passed noise tail, decorrelated between the channels."""
    room = ROOMS[year]
    rng = np.random.default_rng([year, 0x5EED])
    n = int(room.rt60_s * sample_rate)
    t = np.arange(n) / sample_rate
    noise = rng.standard_normal((n, 2))
    f = np.fft.rfftfreq(n, 1.0 / sample_rate)
    noise = np.fft.irfft(np.fft.rfft(noise, axis=0) / (1.0 + 1j * f / room.damping_hz)[:, None], n, axis=0)
    tail = noise * (10.0 ** (-3.0 * t / room.rt60_s))[:, None]
    fade = int(0.004 * sample_rate)
    tail[:fade] *= np.linspace(0.0, 1.0, fade)[:, None]
    for k in range(6):  # early reflections
        d = int(rng.uniform(0.003, 0.035) * sample_rate)
        tail[d] += rng.uniform(0.5, 2.0) * (0.8**k) * np.sign(rng.standard_normal(2)) * 4.0
    tail /= np.sqrt((tail**2).sum(axis=0, keepdims=True))
    pre = int(room.predelay_s * sample_rate)
    return np.concatenate([np.zeros((pre, 2)), tail])


def _shelf_response(kind: str, freq: float, gain_db: float, w: np.ndarray, sample_rate: int) -> np.ndarray:
    """Frequency response at `w` (rad/sample) of an RBJ audio-EQ-cookbook shelving biquad (slope 1)."""
    a = 10.0 ** (gain_db / 40.0)
    w0 = 2.0 * math.pi * freq / sample_rate
    cw, sw = math.cos(w0), math.sin(w0)
    sa = 2.0 * math.sqrt(a) * sw / 2.0 * math.sqrt(2.0)
    if kind == "low":
        b = (a * ((a + 1) - (a - 1) * cw + sa), 2 * a * ((a - 1) - (a + 1) * cw), a * ((a + 1) - (a - 1) * cw - sa))
        den = ((a + 1) + (a - 1) * cw + sa, -2 * ((a - 1) + (a + 1) * cw), (a + 1) + (a - 1) * cw - sa)
    else:
        b = (a * ((a + 1) + (a - 1) * cw + sa), -2 * a * ((a - 1) + (a + 1) * cw), a * ((a + 1) + (a - 1) * cw - sa))
        den = ((a + 1) - (a - 1) * cw + sa, 2 * ((a - 1) - (a + 1) * cw), (a + 1) - (a - 1) * cw - sa)
    z1 = np.exp(-1j * w)
    return (b[0] + b[1] * z1 + b[2] * z1 * z1) / (den[0] + den[1] * z1 + den[2] * z1 * z1)


@lru_cache(maxsize=len(ROOMS) + 1)
def _room_filter(year: int, sample_rate: int) -> tuple[int, int, np.ndarray]:
    """(FFT size, filter length, rfft of the room's stereo filter [bins, 2]): the dry signal plus
    the reverb, through the shelving EQ."""
    room = ROOMS[year]
    ir = _impulse_response(year, sample_rate)
    h = room.wet * ir
    h[0] += 1.0
    m = len(h)
    nfft = 1 << max(16, math.ceil(math.log2(4 * m)))
    w = np.linspace(0.0, math.pi, nfft // 2 + 1)
    eq = _shelf_response("low", 250.0, room.low_shelf_db, w, sample_rate) * _shelf_response(
        "high", 4000.0, room.high_shelf_db, w, sample_rate)
    return nfft, m, np.fft.rfft(h, nfft, axis=0) * eq[:, None]


def _fft_filter(x: np.ndarray, spectrum: np.ndarray, nfft: int, m: int) -> np.ndarray:
    """Linear convolution (overlap-add) of x [n] with the filter whose rfft is `spectrum`,
    truncated to n samples."""
    n = len(x)
    step = nfft - m + 1
    y = np.zeros(n + nfft)
    for s in range(0, n, step):
        y[s: s + nfft] += np.fft.irfft(np.fft.rfft(x[s: s + step], nfft) * spectrum, nfft)
    return y[:n]


def apply_room(dry: np.ndarray, year: int | None, sample_rate: int = AUDIO_SAMPLE_RATE_HZ) -> np.ndarray:
    """Dry stereo float [n, 2] -> the year's room (same length), times OUTPUT_GAIN. year None: dry."""
    x = np.asarray(dry, dtype=np.float64)
    if year is None:
        return x * OUTPUT_GAIN
    room = ROOMS[year]
    nfft, m, spec = _room_filter(year, sample_rate)
    y = np.stack([_fft_filter(x[:, c], spec[:, c], nfft, m) for c in range(2)], axis=1)
    mid, side = (y[:, 0] + y[:, 1]) / 2.0, (y[:, 0] - y[:, 1]) / 2.0 * room.width
    return np.stack([mid + side, mid - side], axis=1) * (OUTPUT_GAIN * 10.0 ** (room.gain_db / 20.0))


def to_pcm16(x: np.ndarray) -> np.ndarray:
    """Float in [-1, 1] -> int16, clipping what lies outside."""
    return np.clip(np.rint(np.asarray(x) * PCM_MAX), -32768, 32767).astype(np.int16)
