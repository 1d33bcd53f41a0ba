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

`ChunkPlan.make(...)` does the rounding from seconds and `plan.join(rows)` the assembly;
`StreamingJoin(plan)` takes the rows one at a time, in order, and hands back each part of the
window once it is final, so a long piece never holds all its rows nor its whole output.

Long pieces (`synthesize`):

- `auto_chunk_seconds`: without an explicit chunk length a piece is cut into chunks once it is
  long enough to gain (at least two chunks of `MIN_AUTO_CHUNK_SECONDS`): about `STREAMS_PER_CORE`
  streams per core (the numba kernel loads each weight once for a block of up to 4 streams), each at
  most `MAX_AUTO_CHUNK_SECONDS` long, so memory stays flat in the piece's length (the chunks are
  generated in rounds of that many streams);
- `sounding_spans`: the piece is cut at long silent spans (no sustained note sounding and every
  note's release tail - the resonator bank's included - over, for longer than the model's receptive
  field plus `MIN_SILENCE_SECONDS`). Only the sounding spans are generated, each starting one
  receptive field (whole frames) before its first note from a silent stream; between them the
  output is exact zeros.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

CROSSFADE_FRACTION = 0.5  # of the overlap: the crossfade is its last half, the first half is warm-up only
CROSSFADES = ("equal_power", "linear")
STREAMS_PER_CORE = 4
MIN_AUTO_CHUNK_SECONDS = 4.0  # shorter chunks would spend too much on their warm-up overlap
MAX_AUTO_CHUNK_SECONDS = 30.0  # longer pieces take more rounds, not longer rows: flat memory
MIN_SILENCE_SECONDS = 1.0  # a silent span shorter than this (beyond the lead-in) is generated anyway


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
        return self.fade_start(1) if self.rows > 1 else self.n_samples

    def fade_start(self, i: int) -> int:
        """Where row i (> 0) starts to count: its crossfade with row i-1 (before it: warm-up only)."""
        return self.starts[i] + self.overlap - self.crossfade

    def join_row(self, out: np.ndarray, i: int, row: np.ndarray, kind: str = "equal_power",
                 out_start: int = 0) -> None:
        """Add row i ([>= length] float32) to `out`, rows taken in order 0, 1, ...: `join` one row at
        a time (row i's crossfade reads what row i-1 wrote). `out` holds samples out_start ..
        out_start + len(out) - 1 of the window (all of it by default) and must cover what row i
        writes: from `fade_start(i)` (row 0: its start) to its end (at most the window's)."""
        s = self.starts[i]
        if self.rows == 1:
            out[:] = row[out_start:out_start + len(out)]
            return
        if i == 0:
            a = s
        else:
            x0, x1 = self.fade_start(i), min(s + self.overlap, self.n_samples)
            if x1 > x0:
                fade_out, fade_in = crossfade_weights(self.crossfade, kind)
                m = x1 - x0
                y0, y1 = x0 - out_start, x1 - out_start
                out[y0:y1] = fade_out[:m] * out[y0:y1] + fade_in[:m] * row[x0 - s:x1 - s]
            a = s + self.overlap
        b = min(s + self.length, self.n_samples)
        if b > a:
            out[a - out_start:b - out_start] = row[a - s:b - s]

    def join(self, rows: np.ndarray, kind: str = "equal_power") -> np.ndarray:
        """Generated rows [K, >= length] -> the window [n_samples] (float32)."""
        rows = np.asarray(rows, dtype=np.float32)
        if self.rows == 1:
            return np.ascontiguousarray(rows[0, :self.n_samples])
        return join_chunks(rows[:, :self.length], list(self.starts), self.n_samples, self.overlap, self.crossfade,
                           kind)


class StreamingJoin:
    """`ChunkPlan.join` for rows that come one at a time, in order, handing back the window's samples
    as soon as they are final: after row i, everything before row i+1's crossfade (the whole window
    after the last row). Holds at most a row and a crossfade; the samples equal `plan.join`'s.

        join = StreamingJoin(plan)
        for row in rows:            # [>= plan.length] float32 each
            final = join.add(row)   # the next samples of the window (float32 [k], k >= 0)
    """

    def __init__(self, plan: ChunkPlan, kind: str = "equal_power") -> None:
        self.plan, self.kind = plan, kind
        self.rows_added = 0
        self.start = 0  # window position of buf[0]: everything before it has been handed back
        self.buf = np.zeros(0, np.float32)

    def add(self, row: np.ndarray) -> np.ndarray:
        p, i = self.plan, self.rows_added
        if i >= p.rows:
            raise ValueError(f"the plan has {p.rows} rows; all were added")
        self.rows_added += 1
        if p.rows == 1:
            self.start = p.n_samples
            return np.array(row[:p.n_samples], np.float32)
        end = min(p.starts[i] + p.length, p.n_samples)
        if end > self.start + len(self.buf):
            self.buf = np.concatenate([self.buf, np.zeros(end - self.start - len(self.buf), np.float32)])
        p.join_row(self.buf, i, row, self.kind, out_start=self.start)
        final = p.n_samples if i + 1 == p.rows else p.fade_start(i + 1)
        done, self.buf = self.buf[:final - self.start].copy(), self.buf[final - self.start:].copy()
        self.start = final
        return done


def auto_chunk_seconds(duration_seconds: float, cores: int, overlap_seconds: float,
                       frame_seconds: float = 0.004) -> float:
    """The chunk length `synthesize` uses by default (0: one stream): about `STREAMS_PER_CORE`
    chunks per core, none shorter than `MIN_AUTO_CHUNK_SECONDS` (nor than 8 overlaps) or longer
    than `MAX_AUTO_CHUNK_SECONDS`; one stream when the piece is too short for two chunks or there
    is one core."""
    shortest = max(MIN_AUTO_CHUNK_SECONDS, 8.0 * overlap_seconds)
    if cores <= 1 or duration_seconds < 2 * shortest + overlap_seconds:
        return 0.0
    chunk = (duration_seconds - overlap_seconds) / (STREAMS_PER_CORE * cores)
    chunk = math.ceil(chunk / frame_seconds - 1e-6) * frame_seconds  # whole frames, rounded up: no extra chunk
    return float(min(max(chunk, shortest), MAX_AUTO_CHUNK_SECONDS))


def sounding_spans(onsets_s: np.ndarray, offsets_s: np.ndarray, start_sample: int, n_samples: int,
                   sample_rate_hz: int, samples_per_frame: int, tail_seconds: float,
                   lead_samples: int) -> list[tuple[int, int]]:
    """The parts of samples start_sample .. start_sample + n_samples - 1 (a frame-aligned window)
    worth generating, as (offset, length) pairs relative to the window, whole frames, in order.

    A note sounds from its onset to its (sustained) offset + `tail_seconds`. A span starts
    `lead_samples` before its first onset (rounded down to a frame) and ends when the last note's
    tail is over (rounded up); spans closer than `MIN_SILENCE_SECONDS` merge. The whole window when
    it has no silent span; [] when nothing sounds in it."""
    spf, sr = samples_per_frame, sample_rate_hz
    end = start_sample + n_samples
    on = np.floor(np.asarray(onsets_s, np.float64) * sr).astype(np.int64) - lead_samples
    off = np.ceil((np.asarray(offsets_s, np.float64) + tail_seconds) * sr).astype(np.int64)
    keep = (off > start_sample) & (on < end)
    on, off = on[keep], off[keep]
    if len(on) == 0:
        return []
    order = np.argsort(on, kind="stable")
    gap = int(round(MIN_SILENCE_SECONDS * sr))
    spans: list[list[int]] = []
    for a, b in zip(on[order], off[order]):
        if spans and a <= spans[-1][1] + gap:
            spans[-1][1] = max(spans[-1][1], int(b))
        else:
            spans.append([int(a), int(b)])
    if spans[0][0] - start_sample <= gap:  # a short silence at either edge is generated as before
        spans[0][0] = start_sample
    if end - spans[-1][1] <= gap:
        spans[-1][1] = end
    out = []
    for a, b in spans:
        a = max(start_sample, (a - start_sample) // spf * spf + start_sample)
        b = min(end, -(-(b - start_sample) // spf) * spf + start_sample)
        if b > a:
            out.append((a - start_sample, b - a))
    return out


__all__ = ["CROSSFADE_FRACTION", "CROSSFADES", "ChunkPlan", "StreamingJoin", "plan_chunks", "crossfade_weights", "join_chunks",
           "auto_chunk_seconds", "sounding_spans", "STREAMS_PER_CORE", "MIN_AUTO_CHUNK_SECONDS",
           "MAX_AUTO_CHUNK_SECONDS", "MIN_SILENCE_SECONDS"]
