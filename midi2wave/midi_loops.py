"""The inner loops of `midi.py`'s conditioning builders, in numba: the excitation's notes, and the
note and pedal rows of a window of frames.

`midi.excitation_signal` and `midi.frame_rolls` own what they compute (their docstrings); they
choose the notes near the window and call these loops. Why loops: the live engine builds one frame
and 64 samples at a time, where numpy's cost per call, not the arithmetic, was most of their time
(BENCHMARKS.md "live"). The data pipeline, the offline engines and the live engine call the same
loops, so they see the same bits.

A module of jitted functions (`jit._JIT_MODULES`): imported only when first called, after a
process has chosen between numba's JIT and the kernels built ahead of time.
"""

from __future__ import annotations

import math

import numpy as np

from . import jit

# IEEE arithmetic as written (no fastmath: no reassociation or fused multiply-adds), so the loops'
# sums are numpy's expression order and any window equals the same slice of the whole piece
_njit = jit.njit(cache=True, nogil=True, error_model="numpy", boundscheck=False)


@_njit
def excitation_notes(out, start_sample, rows, partials, on, first, stop, f0, tau, onset_s, offset_s, velocity,
                     harmonic, norm, sample_rate_hz, release_tau_s):
    """Add the excitation of notes `rows` (in order) to out[i] = piece sample start_sample + i.

    rows int64 [R]; partials int64 [R]: each row's partial count (>= 1); per note (indexed by row):
    on float64 (onset in samples), first / stop int64 (its samples [first, stop)), f0, tau float64,
    onset_s / offset_s float64, velocity int16; harmonic float64 [>= max partials] (1 / m);
    norm = EXCITATION_GAIN / sum(harmonic). Per sample: t = (s - on) / sr; env = exp(-t / tau)
    before the offset, else exp(-d / tau) * exp(-(t - d) / release_tau_s) (d the duration); the
    partials by the Chebyshev recurrence sin((m+1)x) = 2 cos(x) sin(mx) - sin((m-1)x); the note's
    sample ((norm * velocity) / 127) * env * wave added to out (notes in row order at each sample).
    """
    n = out.shape[0]
    stop_sample = start_sample + n
    for j in range(rows.shape[0]):
        r = rows[j]
        a = max(first[r], start_sample)
        b = min(stop[r], stop_sample)
        if b <= a:
            continue
        kr = partials[j]
        duration = offset_s[r] - onset_s[r]
        held_end = math.exp(-duration / tau[r])
        omega = 2.0 * math.pi * f0[r]
        gain = norm * float(velocity[r]) / 127.0
        for s in range(a, b):
            t = (float(s) - on[r]) / sample_rate_hz
            if t >= duration:
                env = held_end * math.exp(-(t - duration) / release_tau_s)
            else:
                env = math.exp(-t / tau[r])
            phase = omega * t
            s_cur = math.sin(phase)
            two_cos = 2.0 * math.cos(phase)
            s_prev = 0.0
            wave = s_cur
            for m in range(2, kr + 1):
                s_next = two_cos * s_cur - s_prev
                s_prev = s_cur
                s_cur = s_next
                wave += harmonic[m - 1] * s_cur
            out[s - start_sample] += gain * env * wave


@_njit
def note_rows(out, kinds, first_rows, onset, end, offset, key, level, start_frame):
    """Fill a window's rows of the note channels (out float32 [C, n_frames], frame start_frame
    first; channel c's 88 rows begin at out row first_rows[c], key k at first_rows[c] + k) from the
    notes given (per note: onset, end, offset frame int64, key 0..87 int64, level float32), each
    cell the largest value any note puts there. kinds[c]: 0 `onset_velocity` (level at the onset
    frame), 1 `onset` (1 there), 2 `offset` (1 at the offset frame), 3 `frame` (level in frames
    onset .. end - 1). One call for every channel: a call costs more than a frame's rows."""
    n_frames = out.shape[1]
    stop_frame = start_frame + n_frames
    for c in range(kinds.shape[0]):
        kind = kinds[c]
        for j in range(onset.shape[0]):
            row = first_rows[c] + key[j]
            if kind == 3:
                a = max(onset[j], start_frame)
                b = min(end[j], stop_frame)
                value = level[j]
                for f in range(a, b):
                    if out[row, f - start_frame] < value:
                        out[row, f - start_frame] = value
            else:
                at = offset[j] if kind == 2 else onset[j]
                if start_frame <= at < stop_frame:
                    value = level[j] if kind == 0 else 1.0
                    if out[row, at - start_frame] < value:
                        out[row, at - start_frame] = value


@_njit
def held_values(rows, first, values, bounds, lo, hi, start_frame):
    """rows[r, f - start_frame] for frames f in lo .. hi - 1: the value of the last event of
    controller r in force at f, 0 before its first. Controller r's events are first[bounds[r] ..
    bounds[r + 1] - 1] (int64, sorted: the first frame each is in force at) and values[...] (float32)."""
    for r in range(rows.shape[0]):
        a, b = bounds[r], bounds[r + 1]
        if b == a:
            continue
        j = a + np.searchsorted(first[a:b], lo, side="right") - 1
        for f in range(lo, hi):
            while j + 1 < b and first[j + 1] <= f:
                j += 1
            rows[r, f - start_frame] = values[j] if j >= a else 0.0


__all__ = ["excitation_notes", "held_values", "note_rows"]
