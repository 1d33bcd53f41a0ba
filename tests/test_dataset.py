"""Tests of midi2wave.data.dataset on tiny synthetic stores (tests/store_fixture.py)."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, DistributedSampler

from midi2wave import constants as C
from midi2wave.config import DataConfig
from midi2wave.data.dataset import SegmentDataset, load_store_manifest
from midi2wave.errors import InputError
from midi2wave.midi import PedalEvents, apply_sustain, excitation_signal, frame_rolls, notes_from_arrays
from store_fixture import make_store, separated_notes, synthetic_piece, write_store

ALL_CHANNELS = ("onset_velocity", "frame", "onset", "offset", "pedals")
SPF = C.SAMPLES_PER_FRAME


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("store")
    make_store(root, {"train": 3, "validation": 1, "test": 1}, seconds=2.0, seed=0)
    return root


def cfg(**kw) -> DataConfig:
    return DataConfig(**{"segment_seconds": 0.5, "conditioning": ALL_CHANNELS, **kw})


def assert_items_equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def piece_audio(store: Path, ds: SegmentDataset, piece: int) -> np.ndarray:
    return np.load(store / ds.pieces[piece]["audio"])


def sustained_notes(store: Path, ds: SegmentDataset, piece: int, threshold: int = 64):
    with np.load(store / ds.pieces[piece]["notes"]) as arrays:
        notes, pedals = notes_from_arrays(arrays)
    return apply_sustain(notes, pedals, threshold), pedals


# -------------------------------------------------------------------------------------- manifest


def test_load_store_manifest(store):
    records = load_store_manifest(store)
    assert [r["id"] for r in records] == sorted(r["id"] for r in records)
    assert {r["split"] for r in records} == {"train", "validation", "test"}
    assert all((store / r["audio"]).is_file() and (store / r["notes"]).is_file() for r in records)


@pytest.mark.parametrize("problem", ["missing", "file", "no_manifest", "bad_json", "format", "version", "record"])
def test_bad_store_errors_name_the_path(tmp_path, store, problem):
    root = tmp_path / "s"
    if problem == "file":
        root.write_text("x")
    elif problem != "missing":
        root.mkdir()
        manifest = json.loads((store / "manifest.json").read_text())
        if problem == "bad_json":
            (root / "manifest.json").write_text("{not json")
        elif problem == "format":
            (root / "manifest.json").write_text(json.dumps({**manifest, "format": "other"}))
        elif problem == "version":
            (root / "manifest.json").write_text(json.dumps({**manifest, "version": 99}))
        elif problem == "record":
            del manifest["pieces"][0]["audio"]
            (root / "manifest.json").write_text(json.dumps(manifest))
    for make in (lambda: load_store_manifest(root), lambda: SegmentDataset(root, "train", cfg())):
        with pytest.raises(InputError) as info:
            make()
        assert str(info.value).startswith(str(root))


def test_empty_split_short_pieces_and_rate_mismatch(tmp_path, store):
    with pytest.raises(InputError, match="no pieces in split 'nope'"):
        SegmentDataset(store, "nope", cfg())
    rng = np.random.default_rng(0)
    short = synthetic_piece("short", "train", separated_notes(rng, 0.4), seconds=0.4)
    write_store(tmp_path / "short", [short])
    with pytest.raises(InputError, match="at least one segment") as info:
        SegmentDataset(tmp_path / "short", "train", cfg())
    assert str(info.value).startswith(str(tmp_path / "short"))
    SegmentDataset(tmp_path / "short", "train", cfg(segment_seconds=0.2))  # fits a shorter segment
    with pytest.raises(InputError, match="holds 16000 Hz.*22050"):
        SegmentDataset(store, "train", cfg(sample_rate_hz=22050, frame_rate_hz=225))


def test_missing_piece_file_is_an_input_error(tmp_path):
    rng = np.random.default_rng(0)
    write_store(tmp_path, [synthetic_piece("a", "train", separated_notes(rng, 1.0), seconds=1.0)])
    ds = SegmentDataset(tmp_path, "train", cfg())
    (tmp_path / "pieces" / "a.notes.npz").unlink()
    with pytest.raises(InputError, match="a.notes.npz: missing"):
        ds[0]
    (tmp_path / "pieces" / "a.npy").unlink()
    with pytest.raises(InputError, match="a.npy: missing"):
        SegmentDataset(tmp_path, "train", cfg())[0]


# -------------------------------------------------------------------------------------- examples


def test_shapes_dtypes_and_year(store):
    data = cfg(excitation_partials=4)
    ds = SegmentDataset(store, "train", data, margin_frames=3)
    assert len(ds) == 3 * 4  # three 2 s pieces of four 0.5 s segments
    item = ds[0]
    assert set(item) == {"audio", "conditioning", "year", "excitation"}
    assert item["audio"].shape == (data.segment_samples,) == (8000,) and item["audio"].dtype == torch.float32
    assert item["conditioning"].shape == (4 * 88 + 3, 125 + 6) and item["conditioning"].dtype == torch.float32
    assert item["excitation"].shape == (8000,) and item["excitation"].dtype == torch.float32
    assert item["year"].shape == () and item["year"].dtype == torch.int64
    piece, _ = ds.locate(0)
    assert int(item["year"]) == C.year_index(ds.pieces[piece]["year"]) > 0
    assert "excitation" not in SegmentDataset(store, "train", cfg())[0]
    no_year = SegmentDataset(store, "train", cfg(use_year=False))
    assert all(int(no_year[i]["year"]) == 0 for i in range(len(no_year)))
    only_onsets = SegmentDataset(store, "validation", cfg(conditioning=("onset_velocity",)), examples_per_epoch=7)
    assert len(only_onsets) == 7 and only_onsets[6]["conditioning"].shape == (88, 125)
    with pytest.raises(IndexError):
        only_onsets[7]


def test_items_match_store_audio_and_sustained_rolls(store):
    data = cfg(excitation_partials=3)
    ds = SegmentDataset(store, "train", data, margin_frames=5)
    for i in range(len(ds)):
        piece, start = ds.locate(i)
        assert 0 <= start <= (ds.pieces[piece]["n_samples"] - data.segment_samples) // SPF
        item = ds[i]
        audio = piece_audio(store, ds, piece)[start * SPF:start * SPF + data.segment_samples]
        np.testing.assert_array_equal(item["audio"].numpy(), audio.astype(np.float32) / 32768)
        notes, pedals = sustained_notes(store, ds, piece)
        expect = frame_rolls(notes, pedals, ALL_CHANNELS, start - 5, 125 + 10, 250)
        np.testing.assert_array_equal(item["conditioning"].numpy(), expect)
        np.testing.assert_array_equal(item["excitation"].numpy(),
                                      excitation_signal(notes, start * SPF, data.segment_samples, 16000, 3))


def test_piece_audio_and_notes_are_public(store):
    ds = SegmentDataset(store, "train", cfg(sustain_threshold=64))
    for piece in range(len(ds.pieces)):
        np.testing.assert_array_equal(ds.piece_audio(piece), piece_audio(store, ds, piece))
        notes, pedals = ds.piece_notes(piece)
        want, want_pedals = sustained_notes(store, ds, piece, 64)
        np.testing.assert_array_equal(notes.offset_s, want.offset_s)
        np.testing.assert_array_equal(pedals.time_s, want_pedals.time_s)
        assert ds.piece_notes(piece)[0] is notes  # cached


def test_sustained_frames_line_up_with_audio(store):
    # The fixture audio sounds exactly while the *sustained* notes sound, so the frames holding nonzero
    # audio are the frames of the `frame` channel; a dataset that ignored the pedal would come up short.
    ds = SegmentDataset(store, "train", cfg(conditioning=("frame",)), examples_per_epoch=40)
    longer_than_raw = 0
    for i in range(len(ds)):
        piece, start = ds.locate(i)
        item = ds[i]
        audio_frames = (item["audio"].numpy().reshape(-1, SPF) != 0).any(axis=1)
        np.testing.assert_array_equal(item["conditioning"].numpy().any(axis=0), audio_frames)
        with np.load(store / ds.pieces[piece]["notes"]) as arrays:
            raw, pedals = notes_from_arrays(arrays)
        raw_frames = frame_rolls(raw, pedals, ("frame",), start, 125, 250).any(axis=0)
        longer_than_raw += int(audio_frames.sum() > raw_frames.sum())
    assert longer_than_raw > 0


def test_onsets_line_up_with_audio_including_margins(tmp_path):
    rng = np.random.default_rng(5)
    pieces = [synthetic_piece(f"p{i}", "train", separated_notes(rng, 3.0), seconds=3.0, year=2009) for i in range(2)]
    write_store(tmp_path, pieces)
    margin = 4
    ds = SegmentDataset(tmp_path, "train", cfg(conditioning=("onset", "frame")), margin_frames=margin,
                        examples_per_epoch=30)
    for i in range(len(ds)):
        piece, start = ds.locate(i)
        item = ds[i]
        whole = piece_audio(tmp_path, ds, piece)
        # Audio-derived expectation over frames start - margin .. start + 125 + margin - 1.
        padded = np.zeros((125 + 2 * margin) * SPF, np.int16)
        a = (start - margin) * SPF
        lo, hi = max(a, 0), min(a + len(padded), len(whole))
        padded[lo - a:hi - a] = whole[lo:hi]
        nonzero = padded != 0
        rising = nonzero & ~np.concatenate([[False], nonzero[:-1]])
        if lo - a == 0 and a > 0 and whole[a - 1] != 0:
            rising[0] = False  # a note already sounding when the window opens
        onset_frames = np.flatnonzero(rising) // SPF
        cond = item["conditioning"].numpy()
        assert sorted(set(np.flatnonzero(cond[:88].any(axis=0)))) == sorted(set(onset_frames))
        np.testing.assert_array_equal(cond[88:].any(axis=0), nonzero.reshape(-1, SPF).any(axis=1))
        # The audio itself is the middle of the padded window.
        np.testing.assert_array_equal(item["audio"].numpy() * 32768, padded[margin * SPF:(margin + 125) * SPF])


# ------------------------------------------------------------------------------------- sampling


def test_deterministic_per_seed_and_different_across_epochs(store):
    a = SegmentDataset(store, "train", cfg(), seed=1)
    b = SegmentDataset(store, "train", cfg(), seed=1)
    c = SegmentDataset(store, "train", cfg(), seed=2)
    locations = [a.locate(i) for i in range(len(a))]
    assert locations == [b.locate(i) for i in range(len(b))]
    for i in range(3):
        assert_items_equal(a[i], b[i])
    assert locations != [c.locate(i) for i in range(len(c))]
    a.set_epoch(1)
    epoch1 = [a.locate(i) for i in range(len(a))]
    assert epoch1 != locations
    a.set_epoch(0)
    assert [a.locate(i) for i in range(len(a))] == locations
    assert len(set(locations)) > len(locations) // 2  # not the same segment over and over


def test_pieces_drawn_in_proportion_to_segments(tmp_path):
    rng = np.random.default_rng(0)
    pieces = [synthetic_piece("long", "train", separated_notes(rng, 4.0), seconds=4.0),
              synthetic_piece("short", "train", separated_notes(rng, 1.0), seconds=1.0),
              synthetic_piece("tiny", "train", separated_notes(rng, 0.3), seconds=0.3)]  # < one segment: skipped
    write_store(tmp_path, pieces)
    ds = SegmentDataset(tmp_path, "train", cfg(), examples_per_epoch=4000)
    assert [p["id"] for p in ds.pieces] == ["long", "short"] and ds.total_segments == 8 + 2
    counts = np.bincount([ds.locate(i)[0] for i in range(len(ds))], minlength=2)
    assert abs(counts[0] / len(ds) - 0.8) < 0.03
    # Starts cover the whole range of frames (not only multiples of a segment), the last one included.
    starts = {ds.locate(i)[1] for i in range(len(ds)) if ds.locate(i)[0] == 1}
    assert min(starts) == 0 and max(starts) == (16000 - 8000) // SPF and len(starts) > 100


def test_dataloader_workers_match_in_process(store):
    ds = SegmentDataset(store, "train", cfg(excitation_partials=2), margin_frames=2, seed=3, examples_per_epoch=8)
    for epoch in (0, 1):
        ds.set_epoch(epoch)
        expect = [ds[i] for i in range(len(ds))]
        loader = DataLoader(ds, batch_size=4, num_workers=2, shuffle=False)
        batches = list(loader)
        assert len(batches) == 2
        for b, batch in enumerate(batches):
            for j in range(4):
                for key in expect[0]:
                    assert torch.equal(batch[key][j], expect[4 * b + j][key]), (epoch, key)
        if epoch == 0:
            first_epoch = batches
    assert not torch.equal(first_epoch[0]["audio"], batches[0]["audio"])


def test_distributed_sampler_splits_examples(store):
    ds = SegmentDataset(store, "train", cfg(), seed=0, examples_per_epoch=10)
    seen = []
    for rank in range(2):
        sampler = DistributedSampler(ds, num_replicas=2, rank=rank, shuffle=True, seed=0)
        sampler.set_epoch(1)
        ds.set_epoch(1)
        indices = list(sampler)
        assert len(indices) == 5
        seen += indices
        loader = DataLoader(ds, batch_size=5, sampler=sampler, num_workers=0)
        (batch,) = list(loader)
        for j, index in enumerate(indices):
            assert torch.equal(batch["audio"][j], ds[index]["audio"])
            assert torch.equal(batch["conditioning"][j], ds[index]["conditioning"])
    assert sorted(seen) == list(range(10))


def test_pickles_without_open_files(store):
    ds = SegmentDataset(store, "train", cfg(), examples_per_epoch=4)
    before = [ds[i] for i in range(4)]
    assert ds._audio_maps and ds._notes_cache
    blob = pickle.dumps(ds)
    assert len(blob) < 20_000  # no audio or note arrays travel with it
    clone = pickle.loads(blob)
    assert not clone._audio_maps and not clone._notes_cache
    for i in range(4):
        assert_items_equal(clone[i], before[i])


def test_notes_cache_is_bounded(store):
    ds = SegmentDataset(store, "train", cfg(), max_cached_notes=1)
    for piece in range(3):
        ds.example(piece, 0)
    assert len(ds._notes_cache) == 1
    fresh = SegmentDataset(store, "train", cfg())
    assert_items_equal(ds.example(0, 3), fresh.example(0, 3))


def test_pedal_free_store_and_threshold(tmp_path):
    # A custom sustain threshold is used for the conditioning.
    rng = np.random.default_rng(2)
    notes = separated_notes(rng, 2.0)
    pedals = PedalEvents(np.array([0.0, 1.9]), np.array([64, 64]), np.array([70, 0]))
    write_store(tmp_path, [synthetic_piece("a", "train", notes, pedals, seconds=2.0)])
    low = SegmentDataset(tmp_path, "train", cfg(conditioning=("frame",), sustain_threshold=64)).example(0, 100)
    high = SegmentDataset(tmp_path, "train", cfg(conditioning=("frame",), sustain_threshold=71)).example(0, 100)
    assert low["conditioning"].sum() > high["conditioning"].sum()
    raw = frame_rolls(notes, pedals, ("frame",), 100, 125, 250)
    np.testing.assert_array_equal(high["conditioning"].numpy(), raw)
