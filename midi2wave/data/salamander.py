"""The Salamander grand (Yamaha C5, Alexander Holm, CC-BY 3.0) played by sfizz.

Two layers:

- `sfz_text` / `write_sfz`: the project's own SFZ over the cached OGG samples (`samples.py`):
  the velocity layers fetched (each covering the velocities nearest its own recorded range in
  Salamander's original 16-layer map `SALAMANDER_VELOCITIES`), every sample on its key +-1
  semitone, strings above `UNDAMPED_FROM_KEY` without dampers (long release), release samples
  (`trigger=release`, one per key) and the sustain (CC64) and sostenuto (CC66) pedals down at
  value >= 64, as MAESTRO's conditioning reads them. Loudness follows one curve over the whole
  velocity range (`LOUDNESS_DB`, the measured mean level of each layer at its range's centre,
  interpolated, down to `SOFTEST_DB` at velocity 1) through each layer's `amp_velcurve_N`, so a
  dataset with fewer layers changes timbre in fewer steps but has the same loudness curve.
- `aligned_samples`: mono-compatible copies of the note samples. Salamander was recorded with a
  spaced pair of microphones, and each note reaches them with its own phase difference, so the
  channel mean (what `prepare` stores and what a transcriber hears) loses on average ~40% of a
  note's fundamental energy, and some notes nearly all of it (F#3: the octave 20+ dB above the
  fundamental in mono, below it in each channel). Each copy advances one channel by the lag
  (at most half a period of the fundamental and `ALIGN_MAX_LAG_SECONDS`) that puts the two
  channels' fundamentals in phase; written once as FLAC under ROOT/`ALIGNED_SUBDIR`, derived
  from the checked OGGs, rewritten when damaged. The SFZ plays these copies.
- `SfizzPiano`: one persistent sfizz synth (pysfizz) with that SFZ. `render_events(events,
  n_samples)` plays MIDI events given at exact sample positions (within sfizz blocks, by their
  sample offset) and returns the dry stereo float output.
- `SalamanderRenderer`: the demo data's renderer interface (`render(perf, year) -> int16
  [n, 2]` at 44.1 kHz, like `demo.PianoRenderer`): a performance's MIDI events exactly as
  `demo.midi_events` writes them, the year's velocity curve and tuning (`demo.ROOMS`), una corda
  as a softer stroke, then the year's room.

sfizz runs in freewheeling mode (it waits for streamed sample data instead of dropping it), so a
render is the same from run to run; the synth is reset (all sound off, pedals up, pitch bend 0)
after every piece.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from .. import constants as C
from ..files import atomic_path, atomic_write_bytes
from . import demo
from .samples import ALL_LAYERS, SampleError, SampleSet, ensure_samples

__all__ = [
    "CC",
    "NOTE_OFF",
    "NOTE_ON",
    "SALAMANDER_VELOCITIES",
    "SalamanderRenderer",
    "SfizzPiano",
    "align_channels",
    "aligned_samples",
    "fundamental_lag_frames",
    "played_velocity",
    "sfz_text",
    "velocity_layout",
    "write_sfz",
]

NOTE_OFF, CC, NOTE_ON = demo.NOTE_OFF_EVENT, demo.CC_EVENT, demo.NOTE_ON_EVENT

# Salamander V3's own velocity ranges of its 16 layers (from its SFZ).
SALAMANDER_VELOCITIES: tuple[tuple[int, int], ...] = (
    (1, 26), (27, 34), (35, 36), (37, 43), (44, 46), (47, 50), (51, 56), (57, 64),
    (65, 72), (73, 80), (81, 88), (89, 96), (97, 104), (105, 112), (113, 120), (121, 127),
)
# Mean level (dB re layer 16) of each layer's first second, geometric mean over its 30 pitches,
# measured on the OGG packages.
LAYER_LEVEL_DB: tuple[float, ...] = (
    -21.62, -17.25, -14.77, -12.93, -11.68, -10.69, -9.65, -8.81,
    -7.94, -7.08, -6.16, -5.20, -4.00, -2.82, -1.41, 0.0,
)
SOFTEST_DB: float = -36.0  # loudness at velocity 1 (a real pianissimo is ~35 dB below fortissimo)
SAMPLE_KEYS: tuple[int, ...] = tuple(range(C.MIN_MIDI_PITCH, C.MAX_MIDI_PITCH + 1, 3))  # A0, C1, ... C8
NOTE_NAMES: tuple[str, ...] = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
UNDAMPED_FROM_KEY: int = 90  # F#6: the strings above have no dampers
DAMPED_RELEASE_SECONDS: float = 0.35
UNDAMPED_RELEASE_SECONDS: float = 3.0
RELEASE_VOLUME_DB: float = -26.0  # the release recordings are at full level; the damper noise is faint
RELEASE_VELTRACK_PERCENT: float = 82.0
RELEASE_DECAY_DB_PER_SECOND: float = 2.0  # rt_decay: quieter the longer the key was held
NOTE_ONSET_THRESHOLD: float = 0.02  # of the peak of the first 0.1 s
RELEASE_ONSET_THRESHOLD: float = 0.05  # of the peak
LEAD_MARGIN_SECONDS: float = 0.002  # kept before that
BEND_RANGE_CENTS: int = 200
MASTER_VOLUME_DB: float = -13.5  # a lone fff note then peaks ~0.25 after demo.OUTPUT_GAIN, as with FluidSynth
SAMPLE_QUALITY: int = 2  # sfizz's resampler (0..10): 2 is polynomial; the sinc ones (3+) are slower
SFIZZ_BLOCK: int = 512
SFIZZ_VOICES: int = 256
PITCH_WHEEL_MAX: int = 8191
ALIGNED_SUBDIR: str = "aligned-v1"  # ROOT/aligned-v1/piano-velocityK/<name>.flac + aligned.json
ALIGNED_MANIFEST: str = "aligned.json"
ALIGN_WINDOW_SECONDS: tuple[float, float] = (0.05, 0.6)  # of each note sample, where the lag is measured
ALIGN_BAND_RATIO: float = 1.3  # the fundamental's band: f0 / 1.3 .. f0 * 1.3
ALIGN_MAX_LAG_SECONDS: float = 0.006  # a spaced pair's path differences stay within this


def played_velocity(velocity: int, year: int | None = None, una_corda: bool = False) -> int:
    """The velocity the sampler plays for a key struck at `velocity` in `year`'s room: the room's
    regulation, 127 * (v / 127) ** `Room.velocity_gamma` (None: dry, as struck), scaled by
    `demo.UNA_CORDA_VELOCITY_SCALE` under the soft pedal; it picks the velocity layer."""
    gamma = demo.ROOMS[year].velocity_gamma if year is not None else 1.0
    v = 127.0 * (velocity / 127.0) ** gamma
    if una_corda:
        v *= demo.UNA_CORDA_VELOCITY_SCALE
    return int(np.clip(round(v), 1, 127))


def _sample_name(key: int, layer: int) -> str:
    return f"{NOTE_NAMES[key % 12]}{key // 12 - 1}v{layer}.ogg"


def _loudness_db(velocity: np.ndarray) -> np.ndarray:
    """The target loudness (dB re the loudest layer) of each velocity 1..127."""
    centres = [(lo + hi) / 2.0 for lo, hi in SALAMANDER_VELOCITIES]
    return np.interp(velocity, [1.0] + centres + [127.0], [SOFTEST_DB] + list(LAYER_LEVEL_DB) + [LAYER_LEVEL_DB[-1]])


def velocity_layout(layers: tuple[int, ...]) -> list[tuple[int, int, int]]:
    """(layer, lovel, hivel) for the given layers (1..16): each of Salamander's 16 velocity ranges
    goes to the nearest kept layer (ties: the softer), so all 16 reproduce the original map and
    fewer cover 1..127 without gaps."""
    layers = tuple(sorted(set(int(k) for k in layers)))
    if not layers or not all(1 <= k <= 16 for k in layers):
        raise SampleError(f"velocity layers {layers!r}: need at least one of 1..16")
    out: list[tuple[int, int, int]] = []
    for j, (lo, hi) in enumerate(SALAMANDER_VELOCITIES, start=1):
        k = min(layers, key=lambda k: (abs(k - j), k))
        if out and out[-1][0] == k:
            out[-1] = (k, out[-1][1], hi)
        else:
            out.append((k, lo, hi))
    return out


def _lead_in_frames(path: Path, read_seconds: float | None, threshold: float) -> int:
    """Frames of near-silence before a recording starts: up to `LEAD_MARGIN_SECONDS` before the
    first frame above `threshold` x the peak of its first `read_seconds` (None: all of it)."""
    import soundfile as sf

    with sf.SoundFile(str(path)) as f:
        x = f.read(frames=-1 if read_seconds is None else int(read_seconds * f.samplerate), dtype="float32")
        rate = f.samplerate
    env = np.abs(x).max(axis=1) if x.ndim == 2 else np.abs(x)
    if not len(env) or env.max() <= 0:
        return 0
    first = int(np.argmax(env >= threshold * env.max()))
    return max(0, first - int(LEAD_MARGIN_SECONDS * rate))


def fundamental_lag_frames(stereo: np.ndarray, sample_rate_hz: int, key: int) -> int:
    """The lag (frames) of the left channel's fundamental behind the right's in a stereo note
    recording `stereo` [n, 2] of MIDI `key`: the argmax of the two channels' cross-correlation
    within the fundamental's band over `ALIGN_WINDOW_SECONDS`, searched within half a period of
    the fundamental (every phase difference is reachable) and `ALIGN_MAX_LAG_SECONDS`. Positive:
    the left channel is later."""
    x = np.asarray(stereo, np.float64)
    if x.ndim != 2 or x.shape[1] != 2:
        raise ValueError(f"expected stereo audio [n, 2], got shape {x.shape}")
    f0_hz = 440.0 * 2.0 ** ((key - 69) / 12.0)
    seg = x[int(ALIGN_WINDOW_SECONDS[0] * sample_rate_hz): int(ALIGN_WINDOW_SECONDS[1] * sample_rate_hz)]
    n = 2 * len(seg)  # zero-padded: the circular correlation equals the linear one at small lags
    if len(seg) < 2:
        return 0
    spec = np.fft.rfft(seg, n, axis=0)
    f = np.fft.rfftfreq(n, 1.0 / sample_rate_hz)
    band = (f >= f0_hz / ALIGN_BAND_RATIO) & (f <= f0_hz * ALIGN_BAND_RATIO)
    cross = np.fft.irfft(spec[:, 0] * np.conj(spec[:, 1]) * band, n)  # [k]: sum_m L[m + k] R[m]
    max_lag = int(min(ALIGN_MAX_LAG_SECONDS, 0.5 / f0_hz) * sample_rate_hz)
    lags = np.arange(-max_lag, max_lag + 1)
    return int(lags[np.argmax(cross[lags % n])])


def align_channels(stereo: np.ndarray, lag_frames: int) -> np.ndarray:
    """`stereo` [n, 2] with the later channel advanced by `lag_frames` (positive: the left one,
    as `fundamental_lag_frames` measures it), zeros appended; same shape and dtype."""
    y = np.array(stereo, copy=True)
    lag = int(lag_frames)
    channel = 0 if lag > 0 else 1
    lag = abs(lag)
    if lag:
        y[: len(y) - lag, channel] = stereo[lag:, channel]
        y[len(y) - lag:, channel] = 0
    return y


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def aligned_samples(samples: SampleSet) -> dict[Path, Path]:
    """{OGG note sample: its mono-compatible FLAC copy} for every layer of `samples` (see the
    module docstring). A copy is made where it is missing or does not match the hash its folder's
    `ALIGNED_MANIFEST` recorded (written last, through temporary names), so an interrupted or
    damaged run heals itself; the copies are derived from the checked OGGs alone."""
    import soundfile as sf

    out: dict[Path, Path] = {}
    for layer, folder in samples.layer_dirs.items():
        target_dir = samples.root / ALIGNED_SUBDIR / folder.name
        manifest_path = target_dir / ALIGNED_MANIFEST
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
            if not isinstance(manifest, dict):
                manifest = {}
        except (OSError, ValueError):
            manifest = {}
        changed = False
        for key in SAMPLE_KEYS:
            source = folder / _sample_name(key, layer)
            target = target_dir / (source.stem + ".flac")
            entry = manifest.get(target.name)
            if not (isinstance(entry, dict) and target.is_file() and entry.get("sha256") == _sha256(target)):
                x, rate = sf.read(str(source), dtype="float32", always_2d=True)
                if x.shape[1] != 2:
                    raise SampleError(f"{source}: expected a stereo recording, found {x.shape[1]} channel(s); "
                                      f"delete {folder} and run again to fetch it anew")
                lag = fundamental_lag_frames(x, rate, key)
                target_dir.mkdir(parents=True, exist_ok=True)
                with atomic_path(target, force=True) as tmp:
                    sf.write(str(tmp), align_channels(x, lag), rate, subtype="PCM_24", format="FLAC")
                manifest[target.name] = {"lag_frames": lag, "sha256": _sha256(target)}
                changed = True
            out[source] = target
        if changed:
            atomic_write_bytes(manifest_path, (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode(),
                               force=True)
    return out


def sample_offsets(samples: SampleSet, note_paths: dict[Path, Path] | None = None) -> dict[Path, int]:
    """`offset` (frames) of every sample of the set: its lead-in silence, so the note sounds at
    its MIDI onset and the damper noise at its key's release (the release recordings start with
    30-150 ms of silence, the notes with ~10 ms). `note_paths` ({OGG: file played instead}, as
    from `aligned_samples`): the note samples' offsets are those of the files played, by their
    OGG's path."""
    note_paths = note_paths or {}
    offsets = {}
    for layer, folder in samples.layer_dirs.items():
        for key in SAMPLE_KEYS:
            path = folder / _sample_name(key, layer)
            offsets[path] = _lead_in_frames(note_paths.get(path, path), 0.1, NOTE_ONSET_THRESHOLD)
    if samples.release_dir is not None:
        for key in range(C.MIN_MIDI_PITCH, C.MAX_MIDI_PITCH + 1):
            path = samples.release_dir / f"rel{key - C.MIN_MIDI_PITCH + 1}.ogg"
            offsets[path] = _lead_in_frames(path, None, RELEASE_ONSET_THRESHOLD)
    return offsets


def sfz_text(samples: SampleSet, offsets: dict[Path, int] | None = None,
             note_paths: dict[Path, Path] | None = None) -> str:
    """The SFZ of a sample set, sample paths absolute (see the module docstring); `offsets`:
    frames to skip at the start of each sample, by OGG path (`sample_offsets`; None: none);
    `note_paths`: {OGG note sample: the file to play instead} (`aligned_samples`; None: the OGGs)."""
    offsets = offsets or {}
    note_paths = note_paths or {}
    lines = [
        "// written by midi2wave (midi2wave/data/salamander.py); samples: Salamander Grand Piano V3,",
        "// Alexander Holm, CC-BY 3.0",
        "<control> hint_ram_based=1",  # sfizz: whole samples in memory (streamed ones render differently)
        f"<global> bend_up={BEND_RANGE_CENTS} bend_down=-{BEND_RANGE_CENTS}",
        f" sustain_cc={C.SUSTAIN_CC} sustain_lo={C.PEDAL_ON_THRESHOLD}"
        f" sostenuto_cc={C.SOSTENUTO_CC} sostenuto_lo={C.PEDAL_ON_THRESHOLD}",
    ]
    for layer, lo, hi in velocity_layout(samples.layers):
        folder = samples.layer_dirs[layer]
        v = np.arange(lo, hi + 1)
        gain_db = _loudness_db(v) - LAYER_LEVEL_DB[layer - 1]
        top_db = float(gain_db.max())
        curve = " ".join(f"amp_velcurve_{int(x)}={10.0 ** ((g - top_db) / 20.0):.5f}" for x, g in zip(v, gain_db))
        lines.append(f"<group> lovel={lo} hivel={hi} volume={top_db + MASTER_VOLUME_DB:.3f} amp_veltrack=100 {curve}")
        for key in SAMPLE_KEYS:
            lokey = max(C.MIN_MIDI_PITCH, key - 1)
            hikey = C.MAX_MIDI_PITCH if key == SAMPLE_KEYS[-1] else key + 1
            release = UNDAMPED_RELEASE_SECONDS if key >= UNDAMPED_FROM_KEY else DAMPED_RELEASE_SECONDS
            path = folder / _sample_name(key, layer)
            lines.append(f"<region> sample={note_paths.get(path, path)} lokey={lokey} hikey={hikey} pitch_keycenter={key} "
                         f"ampeg_release={release:g} offset={offsets.get(path, 0)}")
    if samples.release_dir is not None:
        lines.append(f"<group> trigger=release volume={RELEASE_VOLUME_DB + MASTER_VOLUME_DB:g} amp_veltrack={RELEASE_VELTRACK_PERCENT:g} "
                     f"rt_decay={RELEASE_DECAY_DB_PER_SECOND:g}")
        for key in range(C.MIN_MIDI_PITCH, UNDAMPED_FROM_KEY):  # a key without a damper makes no release noise
            path = samples.release_dir / f"rel{key - C.MIN_MIDI_PITCH + 1}.ogg"
            lines.append(f"<region> sample={path} key={key} offset={offsets.get(path, 0)}")
    return "\n".join(lines) + "\n"


def write_sfz(samples: SampleSet, path: str | os.PathLike | None = None, aligned: bool = True) -> Path:
    """Write the SFZ of `samples` (default: ROOT/midi2wave-layers-<k,...>[-release][-aligned].sfz),
    through a temporary name; returns the path. `aligned`: the note samples are the
    mono-compatible copies (`aligned_samples`, made where missing); else the OGGs as published."""
    if path is None:
        tag = "-".join(str(k) for k in samples.layers) + ("-release" if samples.release_dir is not None else "")
        path = samples.root / f"midi2wave-layers-{tag}{'-aligned' if aligned else ''}.sfz"
    path = Path(path)
    note_paths = aligned_samples(samples) if aligned else None
    text = sfz_text(samples, sample_offsets(samples, note_paths), note_paths)
    if not (path.is_file() and path.read_text(encoding="utf-8") == text):
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        try:
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()
    return path


def _import_pysfizz():
    try:
        import pysfizz
        import pysfizz._sfizz  # noqa: F401
    except ImportError as e:
        raise demo.DemoDataError(f"the Salamander instrument needs pysfizz ({e}): pip install pysfizz==0.1.3 "
                                 "(or pip install 'midi2wave[demo]'), or use --instrument musescore") from None
    return pysfizz


class SfizzPiano:
    """One persistent sfizz synth playing `write_sfz(samples)`.

    `render_events(events, n_samples, tuning_cents)` -> float32 [n_samples, 2]: events int64
    [n, 4] rows `(sample, kind, a, b)` sorted by sample, kind NOTE_ON (a key, b velocity 1..127),
    NOTE_OFF (a key) or CC (a controller, b value); each applied at its exact sample. The synth
    is reset afterwards."""

    def __init__(self, samples: SampleSet, sample_rate_hz: int = demo.AUDIO_SAMPLE_RATE_HZ):
        pysfizz = _import_pysfizz()
        self.samples = samples
        self.sample_rate_hz = int(sample_rate_hz)
        self.sfz = write_sfz(samples)
        # the binding itself: pysfizz.Synth wraps only loading and single-note rendering
        self._raw = pysfizz._sfizz.Synth(self.sample_rate_hz, SFIZZ_BLOCK)
        self._raw.enable_freewheeling()  # wait for streamed sample data instead of dropping it
        if not self._raw.load_sfz_file(str(self.sfz)) or self._raw.get_num_regions() == 0:
            raise demo.DemoDataError(f"{self.sfz}: sfizz cannot load this SFZ (delete it and the sample cache "
                                     f"{samples.root} and run again)")
        self._raw.set_num_voices(SFIZZ_VOICES)
        self._raw.set_sample_quality(SAMPLE_QUALITY)
        self._reset()

    def _reset(self) -> None:
        raw = self._raw
        raw.all_sound_off()
        for cc in C.PEDAL_CONTROLLERS:
            raw.cc(0, cc, 0)
        raw.pitch_wheel(0, 0)
        for _ in range(2):
            raw.render_block()

    def render_events(self, events: np.ndarray, n_samples: int, tuning_cents: float = 0.0) -> np.ndarray:
        events = np.asarray(events, dtype=np.int64).reshape(-1, 4)
        if len(events) and np.any(np.diff(events[:, 0]) < 0):
            raise ValueError("events must be sorted by sample")
        n_blocks = -(-int(n_samples) // SFIZZ_BLOCK)
        out = np.zeros((n_blocks * SFIZZ_BLOCK, 2), dtype=np.float32)
        raw = self._raw
        bend = int(round(np.clip(tuning_cents / BEND_RANGE_CENTS, -1.0, 1.0) * PITCH_WHEEL_MAX))
        starts = np.searchsorted(events[:, 0], np.arange(n_blocks + 1) * SFIZZ_BLOCK) if len(events) else None
        try:
            raw.pitch_wheel(0, bend)
            for blk in range(n_blocks):
                b0 = blk * SFIZZ_BLOCK
                if starts is not None:
                    for s, kind, a, b in events[starts[blk]: starts[blk + 1]].tolist():
                        if kind == NOTE_ON:
                            raw.note_on(s - b0, a, b)
                        elif kind == NOTE_OFF:
                            raw.note_off(s - b0, a, 0)
                        else:
                            raw.cc(s - b0, a, b)
                left, right = raw.render_block()
                out[b0: b0 + SFIZZ_BLOCK, 0] = left
                out[b0: b0 + SFIZZ_BLOCK, 1] = right
        finally:
            self._reset()
        return out[:n_samples]


class SalamanderRenderer:
    """The demo data's Salamander instrument, the interface of `demo.PianoRenderer`.

    `render(perf, year)` -> int16 [n_samples, 2] at 44.1 kHz: the MIDI events of `perf` exactly
    as `demo.midi_bytes` writes them, velocities through the year's curve
    (`127 * (v / 127) ** Room.velocity_gamma`), notes struck while CC67 >= 64 at
    `demo.UNA_CORDA_VELOCITY_SCALE` of their velocity (all pedals are also passed to sfizz), the
    piano tuned by the year's `Room.tuning_cents`, then the year's room. `year` None: none of the
    year's changes, no room."""

    def __init__(self, samples_dir: str | os.PathLike | None = None, layers: tuple[int, ...] = ALL_LAYERS,
                 release: bool = True, sample_rate_hz: int = demo.AUDIO_SAMPLE_RATE_HZ):
        self.samples = ensure_samples(samples_dir, layers=layers, release=release)
        self.sample_rate_hz = int(sample_rate_hz)
        self._piano = SfizzPiano(self.samples, self.sample_rate_hz)

    def events(self, perf: demo.Performance, year: int | None = None) -> np.ndarray:
        """int64 [n, 4] `(sample, kind, a, b)`: what `render_dry` plays."""
        ev = demo.midi_events(perf).copy()
        ev[:, 0] = [demo.tick_to_sample(int(t), self.sample_rate_hz) for t in ev[:, 0]]
        soft = 0
        for row in ev:
            if row[1] == CC and row[2] == C.SOFT_CC:
                soft = int(row[3])
            elif row[1] == NOTE_ON:
                row[3] = played_velocity(int(row[3]), year, una_corda=soft >= C.PEDAL_ON_THRESHOLD)
        return ev

    def render_dry(self, perf: demo.Performance, year: int | None = None) -> np.ndarray:
        """sfizz's own output, float32 [n_samples, 2], before the room and the output gain."""
        tuning = demo.ROOMS[year].tuning_cents if year is not None else 0.0
        n = perf.n_samples if self.sample_rate_hz == demo.AUDIO_SAMPLE_RATE_HZ else \
            int(round(perf.n_samples * self.sample_rate_hz / demo.AUDIO_SAMPLE_RATE_HZ))
        return self._piano.render_events(self.events(perf, year), n, tuning)

    def render(self, perf: demo.Performance, year: int | None = None) -> np.ndarray:
        """int16 [n_samples, 2]: the performance in the room of `year` (None: no room)."""
        return demo.to_pcm16(demo.apply_room(self.render_dry(perf, year), year, self.sample_rate_hz))

    def close(self) -> None:
        self._piano = None
