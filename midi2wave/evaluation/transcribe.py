"""Piano transcription of audio with basic-pitch (Bittner et al., ICASSP 2022), run through onnxruntime.

basic-pitch's ONNX model ships inside its wheel, so transcription needs no download. The package
declares TensorFlow as a dependency, which is not needed for the ONNX model; install it with::

    pip install --no-deps basic-pitch==0.4.0
    pip install onnxruntime==1.31.1 librosa==0.11.0 scikit-learn resampy==0.4.3 mir_eval==0.8.2

(`scripts/setup-dev.sh` does this.) Only the model and basic-pitch's note decoding
(`note_creation.output_to_notes_polyphonic`) are used: audio is passed as an array and resampled here
with soxr to basic-pitch's 22050 Hz (what `librosa.load` would do), so no file is written, and no
pretty_midi object or pitch bends are built. The windowing and the unwrapping of the model's output
follow `basic_pitch.inference.run_inference` (2 s windows, 30 overlapping frames), but all windows
of a clip go through the model as one batch.

Transcribing a FluidSynth render of a MIDI file gives an onset note-F1 of about 0.8-0.9 against that
MIDI (mir_eval, 50 ms onset tolerance, offsets ignored); that is the ceiling of `evaluate`'s
transcription F1.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import Midi2WaveError
from ..midi import Notes

__all__ = [
    "INSTALL_HINT",
    "TranscriptionUnavailable",
    "Transcriber",
    "basic_pitch_available",
    "require_basic_pitch",
    "get_transcriber",
    "transcribe",
]

INSTALL_HINT = ("pip install --no-deps basic-pitch==0.4.0 && pip install onnxruntime==1.31.1 librosa==0.11.0 "
                "scikit-learn resampy==0.4.3 mir_eval==0.8.2 (or run scripts/setup-dev.sh)")

# basic-pitch's own defaults (basic_pitch.inference.predict)
ONSET_THRESHOLD = 0.5
FRAME_THRESHOLD = 0.3
MINIMUM_NOTE_LENGTH_MS = 127.70
N_OVERLAPPING_FRAMES = 30


class TranscriptionUnavailable(Midi2WaveError):
    """basic-pitch or onnxruntime is not installed (the message says how to install them)."""


@contextlib.contextmanager
def _quiet_import():
    """basic-pitch logs a warning at import for each backend it lacks (TF, CoreML, TFLite): hide them."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(previous)


@functools.lru_cache(maxsize=1)
def _modules() -> tuple[Any, Any, Any, Path]:
    """(onnxruntime, basic_pitch.constants, basic_pitch.note_creation, model path); raises
    TranscriptionUnavailable with install instructions."""
    try:
        import onnxruntime
    except ImportError as e:
        raise TranscriptionUnavailable(f"transcription needs onnxruntime ({e}); install: {INSTALL_HINT}") from None
    try:
        with _quiet_import():
            import basic_pitch
            import basic_pitch.constants as bp_constants
            import basic_pitch.note_creation as bp_notes
    except ImportError as e:
        raise TranscriptionUnavailable(f"transcription needs basic-pitch ({e}); install: {INSTALL_HINT}") from None
    model_path = Path(basic_pitch.__file__).parent / "saved_models" / "icassp_2022" / "nmp.onnx"
    if not model_path.is_file():
        raise TranscriptionUnavailable(f"{model_path}: basic-pitch's ONNX model is missing; reinstall: {INSTALL_HINT}")
    return onnxruntime, bp_constants, bp_notes, model_path


def require_basic_pitch() -> None:
    """Raise TranscriptionUnavailable (with install instructions) unless basic-pitch, onnxruntime
    and the ONNX model are there: callers check before costly work whose result they transcribe."""
    _modules()


def basic_pitch_available() -> bool:
    """True when basic-pitch and onnxruntime import and the ONNX model is present."""
    try:
        _modules()
    except TranscriptionUnavailable:
        return False
    return True


class Transcriber:
    """basic-pitch's ONNX model in an onnxruntime CPU session (load once, transcribe many clips).

    threads: onnxruntime intra-op threads (0: onnxruntime's default, all cores).
    """

    def __init__(self, threads: int = 0, onset_threshold: float = ONSET_THRESHOLD,
                 frame_threshold: float = FRAME_THRESHOLD, minimum_note_length_ms: float = MINIMUM_NOTE_LENGTH_MS):
        ort, bp_constants, bp_notes, model_path = _modules()
        options = ort.SessionOptions()
        if threads > 0:
            options.intra_op_num_threads = int(threads)
            options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(model_path), sess_options=options,
                                            providers=["CPUExecutionProvider"])
        self._c = bp_constants
        self._notes = bp_notes
        self.sample_rate_hz: int = int(bp_constants.AUDIO_SAMPLE_RATE)
        self.onset_threshold = float(onset_threshold)
        self.frame_threshold = float(frame_threshold)
        self.minimum_note_length_ms = float(minimum_note_length_ms)
        self._input = self.session.get_inputs()[0].name
        # output names in basic_pitch.inference.Model.predict's order: note, onset, contour
        self._outputs = ["StatefulPartitionedCall:1", "StatefulPartitionedCall:2", "StatefulPartitionedCall:0"]

    def activations(self, audio: np.ndarray, sample_rate_hz: int) -> dict[str, np.ndarray]:
        """Frame-wise model output {'note': [n, 88], 'onset': [n, 88], 'contour': [n, 264]} at
        basic-pitch's 86 frames/s, for mono float audio `[n]` in [-1, 1] at `sample_rate_hz`."""
        from ..audio import resample

        c = self._c
        x = np.asarray(audio, dtype=np.float32)
        if x.ndim != 1:
            raise ValueError(f"expected mono audio [n], got shape {x.shape}")
        x = resample(x, int(sample_rate_hz), self.sample_rate_hz)
        original_length = len(x)
        overlap_len = N_OVERLAPPING_FRAMES * c.FFT_HOP
        hop = c.AUDIO_N_SAMPLES - overlap_len
        x = np.concatenate([np.zeros(overlap_len // 2, np.float32), x])
        starts = range(0, len(x), hop)
        windows = np.zeros((len(starts), c.AUDIO_N_SAMPLES, 1), np.float32)
        for i, s in enumerate(starts):
            chunk = x[s: s + c.AUDIO_N_SAMPLES]
            windows[i, : len(chunk), 0] = chunk
        outputs = {k: [] for k in ("note", "onset", "contour")}
        batch = 16  # bounds memory for long clips
        for i in range(0, len(windows), batch):
            for key, value in zip(outputs, self.session.run(self._outputs, {self._input: windows[i: i + batch]})):
                outputs[key].append(value)
        n_olap = N_OVERLAPPING_FRAMES // 2
        n_frames = int(np.floor(original_length * (c.ANNOTATIONS_FPS / self.sample_rate_hz)))
        result = {}
        for key, parts in outputs.items():
            out = np.concatenate(parts)[:, n_olap:-n_olap, :]
            result[key] = out.reshape(-1, out.shape[-1])[:n_frames]
        return result

    def __call__(self, audio: np.ndarray, sample_rate_hz: int) -> Notes:
        """Transcribe mono float audio `[n]`; returns `Notes` (times in seconds from the clip's start,
        velocity = basic-pitch's amplitude x 127, at least 1)."""
        if np.asarray(audio).size < 2:
            return Notes.empty()
        out = self.activations(audio, sample_rate_hz)
        c, bp = self._c, self._notes
        frames, onsets = out["note"], out["onset"]
        if frames.shape[0] < 2:
            return Notes.empty()
        min_note_len = int(np.round(self.minimum_note_length_ms / 1000 * (self.sample_rate_hz / c.FFT_HOP)))
        # get_infered_onsets rescales by the largest frame difference, 0 for silence: keep numpy quiet
        with np.errstate(divide="ignore", invalid="ignore"):
            events = bp.output_to_notes_polyphonic(
                frames.copy(), onsets.copy(), onset_thresh=self.onset_threshold, frame_thresh=self.frame_threshold,
                min_note_len=min_note_len, infer_onsets=True, max_freq=None, min_freq=None, melodia_trick=True)
        if not events:
            return Notes.empty()
        times = bp.model_frames_to_time(frames.shape[0])
        start = np.array([times[e[0]] for e in events], np.float64)
        end = np.array([times[e[1]] for e in events], np.float64)
        pitch = np.array([e[2] for e in events], np.int16)
        amplitude = np.nan_to_num(np.array([e[3] for e in events], np.float64))
        velocity = np.clip(np.round(amplitude * 127), 1, 127).astype(np.int16)
        end = np.maximum(end, start + 1.0 / c.ANNOTATIONS_FPS)
        return Notes(start, end, pitch, velocity)


@functools.lru_cache(maxsize=4)
def get_transcriber(threads: int = 0) -> Transcriber:
    """A shared `Transcriber` (the ONNX session is loaded once per process and thread setting)."""
    return Transcriber(threads=threads)


def transcribe(audio: np.ndarray, sample_rate_hz: int, threads: int | None = None) -> Notes:
    """Transcribe mono float audio `[n]` with basic-pitch; returns the estimated `Notes`.

    threads None: `MIDI2WAVE_TRANSCRIBE_THREADS` from the environment, else onnxruntime's default.
    Raises TranscriptionUnavailable when basic-pitch or onnxruntime is not installed.
    """
    if threads is None:
        threads = int(os.environ.get("MIDI2WAVE_TRANSCRIBE_THREADS", "0") or 0)
    return get_transcriber(int(threads))(audio, sample_rate_hz)
