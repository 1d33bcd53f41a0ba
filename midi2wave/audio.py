"""Audio I/O and sample-level transforms: decode (WAV, FLAC, anything libsndfile reads), mono mix,
soxr resampling, int16 conversion, and atomic WAV writing (through files.atomic_path), whole
(`save_wav`) or piece by piece (`wav_writer`).

Arrays are channels-first: `load_audio` returns float32 `[channels, n]`; functions that take audio
accept `[n]` (mono) or `[channels, n]`. Every problem with an input file is an
`AudioError("<path>: <problem>")`.

`decode_mono_int16` is the dataset-preparation hot path: it reads 16-bit PCM as int16 (half the
memory traffic of float), mixes the channels straight into float32, resamples the mono signal with
soxr 'HQ' and rounds to int16, so preparing MAESTRO is bound by reading the files, not by decoding
(measurements in BENCHMARKS.md).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

import numpy as np

from . import constants as C
from .errors import AudioError, Midi2WaveError, OutputExistsError
from .files import atomic_path, remove_stale_temps  # atomic_path re-exported: callers import the writer beside save_wav

__all__ = [
    "OutputExistsError",
    "atomic_path",
    "audio_info",
    "decode_mono_int16",
    "float_to_int16",
    "int16_to_float",
    "load_audio",
    "resample",
    "save_wav",
    "to_mono",
    "wav_writer",
    "WavStream",
    "pcm16_wav_problem",
]

RESAMPLE_QUALITY = "HQ"  # soxr 'HQ': 20-bit precision, well below the 16-bit noise floor of the store

# Subtypes read losslessly as int16 (the common case: MAESTRO is 16-bit PCM WAV).
_INT16_SUBTYPES = frozenset({"PCM_16", "PCM_S8", "PCM_U8"})


# ------------------------------------------------------------------------------------------ reading


def _soundfile():
    import soundfile

    return soundfile


def _open_error(path: Path, err: Exception) -> AudioError:
    if not path.exists():
        return AudioError(f"{path}: file not found")
    if path.is_dir():
        return AudioError(f"{path}: is a folder, not an audio file")
    try:
        if path.stat().st_size == 0:
            return AudioError(f"{path}: empty file (0 bytes)")
    except OSError:
        pass
    text = getattr(err, "error_string", None) or str(err)
    text = " ".join(str(text).split())  # one line
    return AudioError(f"{path}: cannot decode audio ({text})")


def audio_info(path: str | os.PathLike) -> tuple[int, int, int]:
    """(sample rate, channels, frames) from the file header, without decoding. Raises AudioError."""
    sf = _soundfile()
    path = Path(path)
    try:
        info = sf.info(str(path))
    except Exception as e:  # noqa: BLE001 - soundfile raises LibsndfileError, RuntimeError, TypeError...
        raise _open_error(path, e) from None
    return int(info.samplerate), int(info.channels), int(info.frames)


def _read(path: Path, prefer_int16: bool) -> tuple[np.ndarray, int]:
    """Decoded frames `[n, channels]` (int16 for 16-bit PCM when asked, else float32) and the rate."""
    sf = _soundfile()
    try:
        with sf.SoundFile(str(path)) as f:
            dtype = "int16" if prefer_int16 and f.subtype in _INT16_SUBTYPES else "float32"
            data = f.read(dtype=dtype, always_2d=True)
            rate = int(f.samplerate)
    except Exception as e:  # noqa: BLE001
        raise _open_error(path, e) from None
    if data.shape[0] == 0:
        raise AudioError(f"{path}: no audio (0 samples)")
    return data, rate


def load_audio(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Decode a file to float32 `[channels, n]` in [-1, 1] and its sample rate. Raises AudioError."""
    data, rate = _read(Path(path), prefer_int16=False)
    return np.ascontiguousarray(data.T), rate


def decode_mono_int16(path: str | os.PathLike, sample_rate_hz: int = C.SAMPLE_RATE_HZ) -> tuple[np.ndarray, int]:
    """Decode, mix to mono, resample (soxr HQ) and round: int16 `[n]` at `sample_rate_hz`, and the
    file's own rate. Equal (to float rounding) to
    `float_to_int16(resample(to_mono(load_audio(path)[0]), rate, sample_rate_hz))`."""
    path = Path(path)
    data, rate = _read(path, prefer_int16=True)
    mono = _mix_frames(data)
    del data
    y = resample(mono, rate, sample_rate_hz)
    del mono
    if y.shape[0] == 0:
        raise AudioError(f"{path}: too short to resample to {sample_rate_hz} Hz ({rate} Hz source)")
    return _float_to_int16_inplace(y), rate


def _mix_frames(data: np.ndarray) -> np.ndarray:
    """`[n, channels]` int16 or float32 frames -> float32 mono `[n]` in [-1, 1] (channel mean)."""
    n_channels = data.shape[1]
    scale = 1.0 / n_channels
    if data.dtype == np.int16:
        scale /= C.PCM_SCALE
    if n_channels == 1:
        mono = data[:, 0].astype(np.float32)
    else:
        # Column adds straight into float32: one pass per channel, no [n, C] float temporary.
        mono = np.add(data[:, 0], data[:, 1], dtype=np.float32)
        for c in range(2, n_channels):
            mono += data[:, c]
    if scale != 1.0:
        mono *= np.float32(scale)
    return mono


# --------------------------------------------------------------------------------------- transforms


def to_mono(audio: np.ndarray) -> np.ndarray:
    """Channel mean of `[channels, n]` (or `[n]`, already mono) as float32 `[n]`; int16 input is
    scaled to [-1, 1) like `int16_to_float`."""
    audio = np.asarray(audio)
    if audio.ndim == 1:
        return int16_to_float(audio) if audio.dtype == np.int16 else audio.astype(np.float32)
    if audio.ndim != 2:
        raise ValueError(f"expected [n] or [channels, n] audio, got shape {audio.shape}")
    if audio.shape[0] == 0:
        raise ValueError("audio has 0 channels")
    if audio.dtype != np.int16:
        audio = audio.astype(np.float32, copy=False)
    return _mix_frames(audio.T)


def resample(audio: np.ndarray, from_hz: int, to_hz: int) -> np.ndarray:
    """soxr 'HQ' resampling of float32 `[n]` or `[channels, n]`; returns float32 (a copy when the
    rates are equal)."""
    import soxr

    audio = np.asarray(audio, dtype=np.float32)
    if from_hz <= 0 or to_hz <= 0:
        raise ValueError(f"sample rates must be > 0, got {from_hz} -> {to_hz}")
    if from_hz == to_hz:
        return audio.copy()
    if audio.ndim == 1:
        return soxr.resample(audio, from_hz, to_hz, quality=RESAMPLE_QUALITY)
    if audio.ndim != 2:
        raise ValueError(f"expected [n] or [channels, n] audio, got shape {audio.shape}")
    out = soxr.resample(np.ascontiguousarray(audio.T), from_hz, to_hz, quality=RESAMPLE_QUALITY)
    return np.ascontiguousarray(out.T)


DC_CUTOFF_HZ = 5.0


class DCBlocker:
    """Subtracts a running mean, `y_t = x_t - m_t`, `m_t = m_{t-1} + a (x_t - m_{t-1})`,
    `a = 2 pi cutoff_hz / sr`: a one-pole high-pass, over consecutive blocks of one signal (the
    state carries across calls; a fresh blocker starts with m = 0, so it can take over mid-signal
    without a step). Why: a generated render can settle on a constant (the model's innovation
    stuck at one value in silence gives a DC offset; docs/conditioning-study.md); recordings have
    none. At the 5 Hz default the lowest piano partial (27.5 Hz) passes within 0.2 dB."""

    MAX_STEP = 2048  # samples per vectorised step, fewer where d^-step would grow past e^30

    def __init__(self, sample_rate_hz: int, cutoff_hz: float = DC_CUTOFF_HZ) -> None:
        if not 0 < cutoff_hz < sample_rate_hz / (2 * np.pi):
            raise ValueError(f"cutoff {cutoff_hz} Hz: must be in (0, {sample_rate_hz / (2 * np.pi):.0f}) Hz")
        self.rate = 2.0 * np.pi * cutoff_hz / sample_rate_hz
        self.mean = 0.0
        self.step = max(1, min(self.MAX_STEP, int(30.0 / -np.log1p(-self.rate))))
        # m_{t0+i} = d^i (m_{t0} + a sum_{j<=i} x_{t0+j} d^-j), d = 1 - a, i = 1..step
        i = np.arange(1, self.step + 1, dtype=np.float64)
        self._decay = (1.0 - self.rate) ** i
        self._growth = self.rate * (1.0 - self.rate) ** -i

    def __call__(self, block: np.ndarray) -> np.ndarray:
        """float32 [n]: the next `block` (float [n]) of the signal less its running mean."""
        x = np.asarray(block, np.float64).reshape(-1)
        out = np.empty(len(x), np.float32)
        for at in range(0, len(x), self.step):
            part = x[at:at + self.step]
            k = len(part)
            mean = self._decay[:k] * (self.mean + np.cumsum(part * self._growth[:k]))
            out[at:at + k] = part - mean
            self.mean = float(mean[-1])
        return out


def float_to_int16(audio: np.ndarray) -> np.ndarray:
    """[-1, 1) float -> int16 by `round(x * 32768)`, clipped to [-32768, 32767] (the input is kept)."""
    return _float_to_int16_inplace(np.array(audio, dtype=np.float32, copy=True))


def _float_to_int16_inplace(y: np.ndarray) -> np.ndarray:
    y *= np.float32(C.PCM_SCALE)
    np.rint(y, out=y)
    np.clip(y, -C.PCM_SCALE, C.PCM_SCALE - 1, out=y)
    return y.astype(np.int16)


def int16_to_float(audio: np.ndarray) -> np.ndarray:
    """int16 -> float32 `x / 32768` in [-1, 1) (the models' view of the store)."""
    return np.asarray(audio).astype(np.float32) * np.float32(1.0 / C.PCM_SCALE)


# ------------------------------------------------------------------------------------------ writing


def save_wav(path: str | os.PathLike, audio: np.ndarray, sample_rate: int, force: bool = False) -> Path:
    """Write 16-bit PCM WAV atomically. `audio`: int16 or float in [-1, 1) (clipped), `[n]` or
    `[channels, n]`. Refuses to overwrite an existing file unless `force` (OutputExistsError).
    (`wav_writer` with one write: the same bytes.)"""
    audio = np.asarray(audio)
    if audio.ndim not in (1, 2):
        raise ValueError(f"expected [n] or [channels, n] audio, got shape {audio.shape}")
    with wav_writer(path, sample_rate, channels=1 if audio.ndim == 1 else audio.shape[0], force=force) as wav:
        wav.write(audio)
    return Path(path)


class WavStream:
    """A 16-bit PCM WAV being written piece by piece (see `wav_writer`)."""

    def __init__(self, file, channels: int) -> None:
        self._file, self.channels = file, channels
        self.frames = 0  # samples per channel written so far

    def write(self, audio: np.ndarray) -> None:
        """Append `audio`: int16 or float in [-1, 1) (clipped), `[n]` (mono) or `[channels, n]`."""
        audio = np.asarray(audio)
        if audio.ndim not in (1, 2) or (audio.ndim == 1 and self.channels != 1) or \
                (audio.ndim == 2 and audio.shape[0] != self.channels):
            raise ValueError(f"expected {'[n]' if self.channels == 1 else f'[{self.channels}, n]'} audio, "
                             f"got shape {audio.shape}")
        pcm = audio if audio.dtype == np.int16 else float_to_int16(audio)
        if pcm.ndim == 2:
            pcm = np.ascontiguousarray(pcm.T)
        self._file.write(pcm)
        self.frames += pcm.shape[0]


@contextlib.contextmanager
def wav_writer(path: str | os.PathLike, sample_rate: int, channels: int = 1,
               force: bool = False) -> Iterator[WavStream]:
    """Write a 16-bit PCM WAV in pieces (`WavStream.write`), atomically (`files.atomic_path`: under
    a temporary name, renamed when the body ends; nothing is left at `path` if it raises): a long
    render never holds its whole output. Refuses an existing `path` unless `force`
    (OutputExistsError, before anything is written). Temporaries that killed runs left in the folder
    are removed first (`files.remove_stale_temps`)."""
    sf = _soundfile()
    path = Path(path)
    if not path.parent.is_dir():
        raise Midi2WaveError(f"{path}: folder {path.parent} does not exist")
    remove_stale_temps(path.parent, path.name)
    with atomic_path(path, force=force) as tmp:
        with sf.SoundFile(str(tmp), "w", samplerate=int(sample_rate), channels=int(channels), format="WAV",
                          subtype="PCM_16") as file:
            yield WavStream(file, int(channels))


# ------------------------------------------------------------------------------------------ checking


def pcm16_wav_problem(path: str | os.PathLike, sample_rate_hz: int, frames: int | None = None,
                      channels: int = 1) -> str | None:
    """Why `path` is not a complete 16-bit PCM WAV as `wav_writer` writes it (None: it is): the
    RIFF and data chunk sizes must match the file's size (libsndfile reads a truncated file without
    a word, so its frame count alone proves nothing), the format must be `channels` x PCM_16 at
    `sample_rate_hz`, it must hold `frames` frames (when given) and its last frame must be readable.
    For resuming batch renders: an output that fails this is rendered again."""
    import struct

    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return "not a RIFF/WAVE file"
            if struct.unpack("<I", head[4:8])[0] + 8 != size:
                return f"RIFF size {struct.unpack('<I', head[4:8])[0] + 8} bytes, file {size} bytes (truncated?)"
            fmt = None
            while True:
                chunk = f.read(8)
                if len(chunk) < 8:
                    return "no data chunk"
                name, length = chunk[:4], struct.unpack("<I", chunk[4:])[0]
                if name == b"data":
                    data_at = f.tell()
                    break
                body = f.read(length + (length & 1))
                if name == b"fmt ":
                    fmt = body[:16]
        if fmt is None or len(fmt) < 16:
            return "no format chunk before the data"
        tag, n_channels, rate, _, block, bits = struct.unpack("<HHIIHH", fmt)
        if tag not in (1, 0xFFFE) or bits != 16 or n_channels != channels or rate != sample_rate_hz:
            return (f"format {n_channels} channel(s) x {bits} bit (tag {tag}) at {rate} Hz, expected {channels} x "
                    f"16-bit PCM at {sample_rate_hz} Hz")
        if data_at + length > size:
            return f"data chunk of {length} bytes runs past the end of the file ({size - data_at} bytes)"
        n = length // block
        if length % block or (frames is not None and n != frames):
            return f"{n} frames, expected {frames}"
        sf = _soundfile()
        with sf.SoundFile(str(path)) as file:
            if file.frames != n:
                return f"soundfile reads {file.frames} frames, the header says {n}"
            if n:
                file.seek(n - 1)
                if len(file.read(1, dtype="int16")) != 1:
                    return "its last frame cannot be read"
    except (OSError, RuntimeError, struct.error) as e:  # soundfile's LibsndfileError is a RuntimeError
        return f"unreadable ({type(e).__name__}: {e})"
    return None
