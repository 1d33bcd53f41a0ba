"""Training examples read from a dataset store (layout in data/store.py) without loading whole pieces.

Audio is memory-mapped per piece (`np.load(mmap_mode="r")`), opened lazily in the process that reads
it, so a `SegmentDataset` pickles small and works with `DataLoader` worker processes and with
`DistributedSampler`. Conditioning is rendered per example from the piece's note list
(`midi.frame_rolls`), with the sustain pedal applied once per piece and cached (LRU, bounded by notes).

Example `i` of epoch `e` depends only on `(seed, e, i)`: the piece is drawn with probability
proportional to its number of segments, and the start is a uniformly drawn whole frame.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from .. import constants as C
from ..config import DataConfig
from ..errors import InputError
from ..conditioning.inputs import window_inputs
from ..midi import Notes, PedalEvents, apply_sustain
from .store import (MANIFEST, STORE_FORMAT, STORE_VERSION, load_piece_audio, load_store_manifest, load_store_notes,
                    read_manifest)

# The store's names and readers live in data/store.py; re-exported here for existing callers.
__all__ = ["STORE_FORMAT", "STORE_VERSION", "load_store_manifest", "load_store_notes", "SegmentDataset"]

_SEED_MASK = (1 << 64) - 1


class SegmentDataset(Dataset):
    """Random fixed-length training examples from one split of a dataset store.

    Each item is a dict of tensors:

    - `audio`: float32 [segment_samples], int16 / 32768;
    - `conditioning`: float32 [C, segment_frames + 2 * margin_frames], the `data_config.conditioning`
      rows (`midi.frame_rolls` of the sustained notes) for frames `start - margin .. start +
      segment_frames + margin - 1`, where the audio starts at sample `start * samples_per_frame`;
    - `year`: int64 scalar, `constants.year_index(record year)` (0 when `data_config.use_year` is false);
    - `excitation`: float32 [segment_samples] (`midi.excitation_signal`), only when
      `data_config.excitation_partials > 0`.
    - `target`: float32 [segment_samples], only when `data_config.resonators.partials > 0`: the
      innovation of `audio` under the MIDI-driven resonator bank (`inputs.window_inputs`),
      which is what the network predicts (the audio stays its input).

    `len()` is `examples_per_epoch`, or by default the number of whole segments in the split. Item `i`
    is a deterministic function of (seed, epoch, i); `set_epoch` selects the epoch. DataLoader workers
    get a copy of the dataset when an iterator is created, so call `set_epoch` before iterating (with
    `persistent_workers=True` the workers would keep the epoch they started with).
    Pieces shorter than one segment are skipped. `max_cached_notes` bounds the per-process cache of
    sustained note lists (least recently used pieces are dropped).
    """

    def __init__(self, store: str | os.PathLike, split: str, data_config: DataConfig, margin_frames: int = 0,
                 seed: int = 0, examples_per_epoch: int | None = None, max_cached_notes: int = 2_000_000):
        self.store = Path(store)
        self.split = split
        self.data_config = data_config
        self.margin_frames = int(margin_frames)
        self.seed = int(seed)
        self.epoch = 0
        self.max_cached_notes = int(max_cached_notes)
        if self.margin_frames < 0:
            raise ValueError(f"margin_frames must be >= 0, got {margin_frames}")
        if examples_per_epoch is not None and examples_per_epoch < 1:
            raise ValueError(f"examples_per_epoch must be >= 1, got {examples_per_epoch}")

        manifest = read_manifest(self.store)
        store_rate = manifest.get("sample_rate_hz")
        if store_rate != data_config.sample_rate_hz:
            raise InputError(f"{self.store / MANIFEST}: the store holds {store_rate} Hz audio but the config "
                             f"wants data.sample_rate_hz = {data_config.sample_rate_hz}")
        in_split = [r for r in manifest["pieces"] if r["split"] == split]
        segment = data_config.segment_samples
        self.pieces: list[dict[str, Any]] = [r for r in in_split if int(r["n_samples"]) >= segment]
        if not self.pieces:
            if in_split:
                raise InputError(f"{self.store}: no piece of split {split!r} is at least one segment "
                                 f"({data_config.segment_seconds:g} s) long")
            splits = sorted({str(r["split"]) for r in manifest["pieces"]})
            raise InputError(f"{self.store}: no pieces in split {split!r} (the store has: "
                             f"{', '.join(splits) if splits else 'no pieces'})")
        n_samples = np.array([int(r["n_samples"]) for r in self.pieces], np.int64)
        self.piece_segments = n_samples // segment
        self._cumulative_segments = np.cumsum(self.piece_segments)
        self.total_segments = int(self._cumulative_segments[-1])
        # Latest start frame of each piece such that the whole segment lies inside the audio.
        self.max_start_frames = (n_samples - segment) // data_config.samples_per_frame
        self.examples_per_epoch = examples_per_epoch
        # the recording year of each piece (None where unknown)
        self.piece_years = [_as_year(r.get("year")) for r in self.pieces]
        self._reset_cache()

    # -------------------------------------------------------------------------------- sampling

    def __len__(self) -> int:
        return self.examples_per_epoch if self.examples_per_epoch is not None else self.total_segments

    def set_epoch(self, epoch: int) -> None:
        """Draw the examples of this epoch (call before creating the DataLoader iterator)."""
        self.epoch = int(epoch)

    def locate(self, index: int) -> tuple[int, int]:
        """(piece index into `self.pieces`, start frame) of item `index` in the current epoch."""
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for {n} examples")
        index %= n
        rng = np.random.default_rng([self.seed & _SEED_MASK, self.epoch & _SEED_MASK, index])
        draw = int(rng.integers(self.total_segments))
        piece = int(np.searchsorted(self._cumulative_segments, draw, side="right"))
        start_frame = int(rng.integers(0, int(self.max_start_frames[piece]) + 1))
        return piece, start_frame

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        piece, start_frame = self.locate(int(index))
        return self.example(piece, start_frame)

    # -------------------------------------------------------------------------------- examples

    def example(self, piece: int, start_frame: int) -> dict[str, torch.Tensor]:
        """The example of piece `self.pieces[piece]` whose audio starts at frame `start_frame`."""
        cfg = self.data_config
        spf = cfg.samples_per_frame
        start_sample = start_frame * spf
        audio_map = self.piece_audio(piece)
        if not 0 <= start_sample <= len(audio_map) - cfg.segment_samples:
            raise IndexError(f"segment at frame {start_frame} is outside piece {self.pieces[piece]['id']!r}")
        audio = np.asarray(audio_map[start_sample:start_sample + cfg.segment_samples], dtype=np.float32)
        audio *= 1.0 / C.PCM_SCALE
        notes, pedals = self.piece_notes(piece)
        window = window_inputs(cfg, notes, pedals, start_sample, cfg.segment_samples, self.margin_frames,
                               self.piece_years[piece], audio=audio_map, audio_scale=1.0 / C.PCM_SCALE)
        item = {
            "audio": torch.from_numpy(audio),
            "conditioning": torch.from_numpy(window.rolls),
            "year": torch.tensor(window.year, dtype=torch.int64),
        }
        if window.excitation is not None:
            item["excitation"] = torch.from_numpy(window.excitation)
        if window.target is not None:
            item["target"] = torch.from_numpy(window.target)
        return item

    # ------------------------------------------------------------------- per-process file cache

    def _reset_cache(self) -> None:
        self._pid = os.getpid()
        self._audio_maps: dict[int, np.ndarray] = {}
        self._notes_cache: OrderedDict[int, tuple[Notes, PedalEvents]] = OrderedDict()
        self._cached_notes = 0

    def _check_process(self) -> None:
        if self._pid != os.getpid():  # a forked worker: open its own files
            self._reset_cache()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for key in ("_audio_maps", "_notes_cache", "_cached_notes", "_pid"):
            state.pop(key, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._reset_cache()

    def _path(self, piece: int, key: str) -> Path:
        return self.store / self.pieces[piece][key]

    def piece_audio(self, piece: int) -> np.ndarray:
        """Piece `piece`'s int16 audio `[n_samples]`, memory-mapped (opened once per process)."""
        self._check_process()
        audio = self._audio_maps.get(piece)
        if audio is None:
            audio = load_piece_audio(self._path(piece, "audio"), int(self.pieces[piece]["n_samples"]))
            self._audio_maps[piece] = audio
        return audio

    def piece_notes(self, piece: int) -> tuple[Notes, PedalEvents]:
        """Piece `piece`'s notes with the sustain pedal applied (`data_config.sustain_threshold`) and
        its raw pedal events; cached per process (LRU, bounded by `max_cached_notes` notes)."""
        self._check_process()
        cached = self._notes_cache.get(piece)
        if cached is not None:
            self._notes_cache.move_to_end(piece)
            return cached
        notes, pedals = load_store_notes(self._path(piece, "notes"))
        notes = apply_sustain(notes, pedals, threshold=self.data_config.sustain_threshold)
        self._notes_cache[piece] = (notes, pedals)
        self._cached_notes += len(notes)
        while self._cached_notes > self.max_cached_notes and len(self._notes_cache) > 1:
            _, (old, _) = self._notes_cache.popitem(last=False)
            self._cached_notes -= len(old)
        return notes, pedals


def _as_year(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None
