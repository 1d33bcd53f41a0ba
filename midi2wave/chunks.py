"""Chunk planning for long generations: where the streams of a batch start and how they are joined.

`synthesize` and `evaluate` both cut a window of `n_samples` into chunks generated as one batch
(the engines spread the streams over the cores) and join them with a crossfade:

- every chunk generates `chunk + overlap` samples and they start `chunk` apart, so chunk i > 0
  starts `overlap` before the end of chunk i-1 (`plan_chunks`);
- of that overlap, the first `overlap - crossfade` samples are warm-up only (generated and
  discarded: the new stream settles into the music), the last `crossfade` samples
  (`CROSSFADE_FRACTION` of the overlap) are crossfaded with the previous chunk, equal-power by
  default or linear (`crossfade_weights`), and from there on the chunk stands alone (`join_chunks`);
- chunk and overlap lengths are whole conditioning frames, so every stream starts on a frame.

`ChunkPlan.make(...)` does the rounding from seconds and `plan.join(rows)` the assembly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

CROSSFADE_FRACTION = 0.5  # of the overlap: the crossfade is its last half, the first half is warm-up only
CROSSFADES = ("equal_power", "linear")


def plan_chunks(n_samples: int, chunk_samples: int, overlap_samples: int) -> list[int]:
    """Start offsets of the chunks covering `n_samples`: every chunk is `chunk_samples +
    overlap_samples` long and they start `chunk_samples` apart, so chunk i+1 begins
    `overlap_samples` before chunk i ends. One chunk ([0]) when a single one covers everything."""
    if chunk_samples <= 0 or overlap_samples < 0:
        raise ValueError(f"need chunk_samples > 0 and overlap_samples >= 0, got {chunk_samples}, {overlap_samples}")
    if n_samples <= chunk_samples + overlap_samples:
        return [0]
    k = -(-(n_samples - overlap_samples) // chunk_samples)
    return [i * chunk_samples for i in range(k)]


def crossfade_weights(n: int, kind: str = "equal_power") -> tuple[np.ndarray, np.ndarray]:
    """(fade-out, fade-in) weights over n samples: equal power (cos/sin, squares sum to 1: keeps the
    power of uncorrelated signals) or linear (sum to 1: exact for identical signals)."""
    if kind not in CROSSFADES:
        raise ValueError(f"crossfade must be one of {CROSSFADES}, got {kind!r}")
    r = (np.arange(n, dtype=np.float64) + 0.5) / max(n, 1)
    if kind == "linear":
        return (1.0 - r).astype(np.float32), r.astype(np.float32)
    return np.cos(0.5 * np.pi * r).astype(np.float32), np.sin(0.5 * np.pi * r).astype(np.float32)


def join_chunks(chunks: np.ndarray, starts: Sequence[int], n_samples: int, overlap_samples: int,
                crossfade_samples: int, kind: str = "equal_power") -> np.ndarray:
    """Assemble chunks [K, Lc] generated at `starts` into [n_samples].

    Chunk i > 0 (starting at s_i, within `overlap_samples` of chunk i-1's end) contributes nothing
    during its warm-up `s_i .. s_i + overlap - crossfade`, is crossfaded with chunk i-1 over the
    next `crossfade_samples`, and stands alone from `s_i + overlap` on.
    """
    chunks = np.asarray(chunks, dtype=np.float32)
    K, Lc = chunks.shape
    if not 0 <= crossfade_samples <= overlap_samples:
        raise ValueError(f"crossfade ({crossfade_samples}) must be within the overlap ({overlap_samples})")
    out = np.zeros(n_samples, np.float32)
    fade_out, fade_in = crossfade_weights(crossfade_samples, kind)
    for i, s in enumerate(starts):
        if i == 0:
            a = s
        else:
            if s + overlap_samples > starts[i - 1] + Lc:
                raise ValueError(f"chunk {i} starts at {s}: its warm-up must overlap chunk {i - 1} "
                                 f"(which ends at {starts[i - 1] + Lc})")
            x0 = s + overlap_samples - crossfade_samples
            x1 = min(s + overlap_samples, n_samples)
            if x1 > x0:
                m = x1 - x0
                out[x0:x1] = fade_out[:m] * out[x0:x1] + fade_in[:m] * chunks[i, x0 - s:x1 - s]
            a = s + overlap_samples
        b = min(s + Lc, n_samples)
        if b > a:
            out[a:b] = chunks[i, a - s:b - s]
    return out


@dataclass(frozen=True)
class ChunkPlan:
    """How a window of `n_samples` is generated: rows starting at `starts` (offsets in the window),
    each `length` samples long, joined over `overlap` samples of which the last `crossfade` fade."""

    n_samples: int
    starts: tuple[int, ...]
    length: int
    overlap: int
    crossfade: int

    @classmethod
    def make(cls, n_samples: int, chunk_seconds: float, overlap_seconds: float, sample_rate_hz: int,
             samples_per_frame: int) -> "ChunkPlan":
        """Chunks of `chunk_seconds` (0: one row for the whole window) with `overlap_seconds` of
        warm-up + crossfade, both rounded to whole frames of `samples_per_frame`."""
        if chunk_seconds <= 0:
            return cls(int(n_samples), (0,), int(n_samples), 0, 0)
        spf = samples_per_frame
        chunk = max(1, int(round(chunk_seconds * sample_rate_hz / spf))) * spf
        overlap = int(round(overlap_seconds * sample_rate_hz / spf)) * spf
        starts = plan_chunks(n_samples, chunk, overlap)
        if len(starts) == 1:
            return cls(int(n_samples), (0,), int(n_samples), 0, 0)
        return cls(int(n_samples), tuple(starts), chunk + overlap, overlap, int(round(overlap * CROSSFADE_FRACTION)))

    @property
    def rows(self) -> int:
        return len(self.starts)

    @property
    def fade_in_start(self) -> int:
        """Where the second row starts to count (the first row alone covers everything before)."""
        return self.starts[1] + self.overlap - self.crossfade if self.rows > 1 else self.n_samples

    def join(self, rows: np.ndarray, kind: str = "equal_power") -> np.ndarray:
        """Generated rows [K, >= length] -> the window [n_samples] (float32)."""
        rows = np.asarray(rows, dtype=np.float32)
        if self.rows == 1:
            return np.ascontiguousarray(rows[0, :self.n_samples])
        return join_chunks(rows[:, :self.length], list(self.starts), self.n_samples, self.overlap, self.crossfade,
                           kind)


__all__ = ["CROSSFADE_FRACTION", "CROSSFADES", "ChunkPlan", "plan_chunks", "crossfade_weights", "join_chunks"]
