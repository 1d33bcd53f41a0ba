"""render/chunks.py: where the streams of a long render start, how they are joined, and which
spans of a piece are worth generating (no model, no engine: plans and joins of known signals)."""

from __future__ import annotations

import numpy as np
import pytest

from midi2wave import constants as C
from midi2wave.render import chunks as chunking

SR = C.SAMPLE_RATE_HZ


def test_plan_chunks_cover_the_window_with_equal_overlaps():
    for n, chunk, overlap in [(1000, 100, 30), (130, 100, 30), (131, 100, 30), (1000, 64, 0), (5, 100, 30)]:
        starts = chunking.plan_chunks(n, chunk, overlap)
        assert starts[0] == 0
        assert starts[-1] + chunk + overlap >= n or starts == [0]
        assert all(b - a == chunk for a, b in zip(starts, starts[1:]))
        if len(starts) > 1:
            assert starts[-2] + chunk + overlap < n  # no chunk more than needed


def test_join_chunks_linear_is_exact_for_consistent_chunks():
    signal = np.random.default_rng(0).standard_normal(1000).astype(np.float32)
    chunk, overlap, xf = 128, 48, 20
    starts = chunking.plan_chunks(len(signal), chunk, overlap)
    padded = np.concatenate([signal, np.zeros(chunk + overlap, np.float32)])
    chunks = np.stack([padded[s:s + chunk + overlap] for s in starts])
    joined = chunking.join_chunks(chunks, starts, len(signal), overlap, xf, "linear")
    np.testing.assert_allclose(joined, signal, rtol=0, atol=1e-6)
    # the warm-up is discarded: corrupting it changes nothing
    chunks[1:, :overlap - xf] = 99.0
    np.testing.assert_allclose(chunking.join_chunks(chunks, starts, len(signal), overlap, xf, "linear"), signal, atol=1e-6)


def test_chunk_plan_rounds_to_frames_and_joins_like_join_chunks():
    plan = chunking.ChunkPlan.make(5000, 0.1, 0.04, SR, 64)
    assert plan.length == 1600 + 640 and plan.overlap == 640 and plan.crossfade == 320
    assert all(s % 64 == 0 for s in plan.starts) and plan.starts[-1] + plan.length >= 5000
    assert plan.fade_in_start == 1600 + 640 - 320
    rows = np.random.default_rng(0).standard_normal((plan.rows, plan.length)).astype(np.float32)
    np.testing.assert_array_equal(plan.join(rows), chunking.join_chunks(rows, list(plan.starts), 5000, 640, 320))
    one = chunking.ChunkPlan.make(5000, 0.0, 0.5, SR, 64)  # 0: one stream
    assert one.starts == (0,) and one.length == 5000 and one.rows == 1
    np.testing.assert_array_equal(one.join(np.arange(6000, dtype=np.float32)[None]), np.arange(5000))


def test_sounding_spans_cut_long_silences_only():
    sr, spf = SR, 64
    # notes at 0-1 s and 20-21 s, tail 1 s, lead 0.1 s: silent from 2 s to 19.9 s
    n = int(22.5 * sr)
    spans = chunking.sounding_spans(np.array([0.0, 20.0]), np.array([1.0, 21.0]), 0, n, sr, spf, 1.0, 1600)
    assert len(spans) == 2 and spans[0][0] == 0
    (a0, n0), (a1, n1) = spans
    assert a0 + n0 >= 2 * sr and a0 + n0 < 2 * sr + spf  # to the end of the first tail
    assert a1 <= 20 * sr - 1600 and a1 > 20 * sr - 1600 - spf and a1 % spf == 0
    assert a1 + n1 == n  # a silence shorter than MIN_SILENCE_SECONDS at the end is generated
    # a longer one is not: the span ends with the tail
    last = chunking.sounding_spans(np.array([0.0, 20.0]), np.array([1.0, 21.0]), 0, 25 * sr, sr, spf, 1.0, 1600)[-1]
    assert 22 * sr <= last[0] + last[1] < 22 * sr + spf
    # gaps below MIN_SILENCE_SECONDS merge: one span, the whole window
    assert chunking.sounding_spans(np.array([0.0, 2.5]), np.array([1.0, 3.0]), 0, 5 * sr, sr, spf, 1.0, 0) == \
        [(0, 5 * sr)]
    assert chunking.sounding_spans(np.array([0.0]), np.array([1.0]), 10 * sr, 5 * sr, sr, spf, 1.0, 0) == []


def test_auto_chunks_only_when_long_enough_and_several_cores():
    assert chunking.auto_chunk_seconds(5.0, 8, 0.5) == 0.0  # too short to gain
    assert chunking.auto_chunk_seconds(120.0, 1, 0.5) == 0.0  # one core: one stream
    c = chunking.auto_chunk_seconds(120.0, 2, 0.5)
    assert c == pytest.approx((120.0 - 0.5) / (chunking.STREAMS_PER_CORE * 2), abs=0.004)
    assert len(chunking.plan_chunks(120 * SR, round(c * SR / 64) * 64, 8000)) == chunking.STREAMS_PER_CORE * 2
    assert chunking.auto_chunk_seconds(3600.0, 2, 0.5) == chunking.MAX_AUTO_CHUNK_SECONDS  # rounds, not longer rows


@pytest.mark.parametrize("n,chunk_s,overlap_s", [(5000, 0.1, 0.04), (1601, 0.1, 0.04), (20000, 0.05, 0.0),
                                                  (3000, 0.0, 0.5)])
def test_streaming_join_equals_join_and_holds_at_most_a_crossfade(n, chunk_s, overlap_s):
    plan = chunking.ChunkPlan.make(n, chunk_s, overlap_s, SR, 64)
    rows = np.random.default_rng(1).standard_normal((plan.rows, plan.length)).astype(np.float32)
    for kind in chunking.CROSSFADES:
        join = chunking.StreamingJoin(plan, kind)
        pieces = []
        for row in rows:
            pieces.append(join.add(row))
            assert len(join.buf) <= plan.crossfade  # the pending tail: row i+1's crossfade, nothing more
        np.testing.assert_array_equal(np.concatenate(pieces), plan.join(rows, kind))
        with pytest.raises(ValueError, match="all were added"):
            join.add(rows[0])


@pytest.mark.parametrize("kind", chunking.CROSSFADES)
def test_crossfade_weights_keep_power_or_sum(kind):
    fade_out, fade_in = chunking.crossfade_weights(64, kind)
    assert fade_out.dtype == fade_in.dtype == np.float32 and len(fade_out) == len(fade_in) == 64
    assert np.all(np.diff(fade_out) < 0) and np.all(np.diff(fade_in) > 0)  # one fades out as the other fades in
    np.testing.assert_allclose(fade_out, fade_in[::-1], atol=1e-6)  # symmetric
    total = fade_out**2 + fade_in**2 if kind == "equal_power" else fade_out + fade_in
    np.testing.assert_allclose(total, 1.0, atol=1e-6)
    with pytest.raises(ValueError, match="crossfade must be one of"):
        chunking.crossfade_weights(64, "cubic")


def test_join_row_by_row_equals_join():
    plan = chunking.ChunkPlan.make(7000, 0.1, 0.04, SR, 64)
    assert plan.rows > 2
    rows = np.random.default_rng(2).standard_normal((plan.rows, plan.length)).astype(np.float32)
    for kind in chunking.CROSSFADES:
        out = np.zeros(plan.n_samples, np.float32)
        for i, row in enumerate(rows):
            plan.join_row(out, i, row, kind)
        np.testing.assert_array_equal(out, plan.join(rows, kind))


def test_a_chunk_whose_warm_up_misses_the_previous_one_is_refused():
    rows = np.ones((2, 100), np.float32)
    with pytest.raises(ValueError, match="its warm-up must overlap chunk 0"):
        chunking.join_chunks(rows, [0, 90], 190, 20, 10)  # chunk 1's warm-up starts at 110, chunk 0 ends at 100
    with pytest.raises(ValueError, match="within the overlap"):
        chunking.join_chunks(rows, [0, 80], 180, 20, 30)


def test_one_row_plans_pass_the_row_through():
    plan = chunking.ChunkPlan.make(1000, 0.5, 0.1, SR, 64)  # one chunk covers the window
    assert (plan.rows, plan.length, plan.fade_in_start) == (1, 1000, 1000)
    row = np.arange(1200, dtype=np.float32)
    np.testing.assert_array_equal(plan.join(row[None]), row[:1000])
    join = chunking.StreamingJoin(plan)
    np.testing.assert_array_equal(join.add(row), row[:1000])
