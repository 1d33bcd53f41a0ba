"""midi2wave.audio: decoding, mono, resampling, int16, atomic WAV writing."""

from __future__ import annotations

import os

import numpy as np
import pytest
import soundfile as sf
import soxr

from midi2wave import audio as A
from midi2wave.errors import AudioError, Midi2WaveError


def _stereo_int16(n: int = 4410, seed: int = 0) -> np.ndarray:
    """[n, 2] int16 test signal (two sines + noise), full range."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 44100
    x = np.stack([0.6 * np.sin(2 * np.pi * 440 * t), 0.4 * np.sin(2 * np.pi * 1000 * t)], 1)
    x += rng.normal(0, 0.05, x.shape)
    pcm = np.clip(np.round(x * 32768), -32768, 32767).astype(np.int16)
    pcm[0] = (-32768, 32767)  # extremes survive the round trip
    return pcm


@pytest.mark.parametrize("fmt", ["WAV", "FLAC"])
def test_load_audio_is_exact_channels_first(tmp_path, fmt):
    pcm = _stereo_int16()
    path = tmp_path / f"x.{fmt.lower()}"
    sf.write(path, pcm, 44100, format=fmt, subtype="PCM_16")
    audio, rate = A.load_audio(path)
    assert rate == 44100
    assert audio.dtype == np.float32 and audio.shape == (2, len(pcm))
    np.testing.assert_array_equal(audio, pcm.T.astype(np.float32) / 32768)


def test_to_mono():
    pcm = _stereo_int16()
    x = pcm.T.astype(np.float32) / 32768
    np.testing.assert_allclose(A.to_mono(x), x.mean(axis=0), atol=1e-7)
    np.testing.assert_allclose(A.to_mono(pcm.T), x.mean(axis=0), atol=1e-7)  # int16 scaled to [-1, 1)
    assert A.to_mono(x[0]).shape == (len(pcm),)  # already mono
    np.testing.assert_array_equal(A.to_mono(x[:1]), x[0])
    three = np.stack([x[0], x[1], -x[0]])
    np.testing.assert_allclose(A.to_mono(three), three.mean(axis=0), atol=1e-7)


def test_resample_sine_and_lengths():
    t = np.arange(44100) / 44100
    x = np.sin(2 * np.pi * 1000 * t).astype(np.float32)
    y = A.resample(x, 44100, 16000)
    assert y.dtype == np.float32 and len(y) == 16000
    expected = np.sin(2 * np.pi * 1000 * np.arange(16000) / 16000)
    # soxr is linear phase with the delay compensated: the middle matches the analytic sine
    assert np.abs(y[1000:-1000] - expected[1000:-1000]).max() < 1e-3
    # channels-first multichannel input is resampled per channel
    both = A.resample(np.stack([x, -x]), 44100, 16000)
    assert both.shape == (2, 16000)
    np.testing.assert_allclose(both[0], y, atol=1e-6)
    np.testing.assert_allclose(both[1], -y, atol=1e-6)
    same = A.resample(x, 16000, 16000)
    np.testing.assert_array_equal(same, x)
    assert same is not x


def test_resample_is_soxr_hq():
    x = np.random.default_rng(1).normal(0, 0.1, 48000).astype(np.float32)
    np.testing.assert_array_equal(A.resample(x, 48000, 16000), soxr.resample(x, 48000, 16000, quality="HQ"))


def test_float_to_int16_rounds_and_clips():
    k = np.arange(-32768, 32768, 7)
    np.testing.assert_array_equal(A.float_to_int16(k / 32768), k)
    x = np.array([-2.0, -1.0, 1.0, 2.0, 0.4 / 32768, 0.6 / 32768, np.float32(32767.4 / 32768)])
    np.testing.assert_array_equal(A.float_to_int16(x), [-32768, -32768, 32767, 32767, 0, 1, 32767])
    assert A.float_to_int16(x).dtype == np.int16
    kept = x.copy()
    A.float_to_int16(x)
    np.testing.assert_array_equal(x, kept)  # input untouched
    np.testing.assert_array_equal(A.float_to_int16(A.int16_to_float(k.astype(np.int16))), k)


@pytest.mark.parametrize("subtype,fmt", [("PCM_16", "WAV"), ("PCM_16", "FLAC"), ("PCM_24", "WAV"), ("FLOAT", "WAV")])
def test_decode_mono_int16_matches_the_reference_path(tmp_path, subtype, fmt):
    pcm = _stereo_int16(44100 * 2)
    path = tmp_path / f"x.{fmt.lower()}"
    sf.write(path, pcm.astype(np.float32) / 32768, 44100, format=fmt, subtype=subtype)
    got, rate = A.decode_mono_int16(path, 16000)
    assert rate == 44100 and got.dtype == np.int16 and len(got) == 32000
    data, _ = sf.read(path, dtype="float64")
    ref = soxr.resample(data.mean(axis=1), 44100, 16000, quality="HQ")
    ref = np.clip(np.rint(ref * 32768), -32768, 32767)
    assert np.abs(got.astype(np.int64) - ref).max() <= 1
    np.testing.assert_array_equal(got, A.float_to_int16(A.resample(A.to_mono(A.load_audio(path)[0]), 44100, 16000)))


def test_decode_mono_int16_same_rate_mono(tmp_path):
    pcm = _stereo_int16(1600)[:, 0]
    sf.write(tmp_path / "m.wav", pcm, 16000, subtype="PCM_16")
    got, rate = A.decode_mono_int16(tmp_path / "m.wav", 16000)
    assert rate == 16000
    np.testing.assert_array_equal(got, pcm)  # lossless when nothing to do


def test_bad_audio_is_one_line_naming_the_file(tmp_path):
    missing = tmp_path / "missing.wav"
    with pytest.raises(AudioError, match=r"missing\.wav: file not found"):
        A.load_audio(missing)
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"RIFF not really a wave file" * 10)
    with pytest.raises(AudioError) as e:
        A.decode_mono_int16(garbage)
    assert str(e.value).startswith(f"{garbage}: cannot decode audio") and "\n" not in str(e.value)
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros((0, 2), np.int16), 44100, subtype="PCM_16")
    for fn in (A.load_audio, A.decode_mono_int16):
        with pytest.raises(AudioError, match=r"empty\.wav: no audio \(0 samples\)"):
            fn(empty)
    zero_bytes = tmp_path / "zero.flac"
    zero_bytes.touch()
    with pytest.raises(AudioError, match=r"zero\.flac: empty file \(0 bytes\)"):
        A.decode_mono_int16(zero_bytes)
    with pytest.raises(AudioError, match="is a folder"):
        A.load_audio(tmp_path)
    with pytest.raises(AudioError, match="garbage.wav"):
        A.audio_info(garbage)


def test_save_wav_round_trip_and_refuses_overwrite(tmp_path):
    path = tmp_path / "out.wav"
    pcm = _stereo_int16(1000)
    A.save_wav(path, pcm.T, 22050)
    back, rate = sf.read(path, dtype="int16")
    assert rate == 22050 and sf.info(path).subtype == "PCM_16"
    np.testing.assert_array_equal(back, pcm)
    before = path.read_bytes()
    with pytest.raises(A.OutputExistsError, match="already exists") as e:
        A.save_wav(path, np.zeros(10), 16000)
    assert isinstance(e.value, Midi2WaveError) and isinstance(e.value, FileExistsError)
    assert path.read_bytes() == before
    A.save_wav(path, np.array([0.5, -1.5, 2.0]), 16000, force=True)  # float: scaled and clipped
    np.testing.assert_array_equal(sf.read(path, dtype="int16")[0], [16384, -32768, 32767])
    assert sorted(os.listdir(tmp_path)) == ["out.wav"]  # no temporaries left


def test_save_wav_is_atomic_when_writing_fails(tmp_path, monkeypatch):
    path = tmp_path / "out.wav"
    existing = tmp_path.parent / f"{tmp_path.name}-existing.wav"
    sf.write(existing, np.zeros(10, np.int16), 16000, subtype="PCM_16")
    real_write = sf.SoundFile.write

    def failing_write(self, data, *args, **kwargs):
        real_write(self, data[: len(data) // 2], *args, **kwargs)  # half written, then a crash
        raise RuntimeError("disk full")

    monkeypatch.setattr(sf.SoundFile, "write", failing_write)
    with pytest.raises(RuntimeError, match="disk full"):
        A.save_wav(path, np.zeros(1000), 16000)
    assert os.listdir(tmp_path) == []  # neither the target nor a temporary
    path.write_bytes(existing.read_bytes())  # an existing file survives
    before = path.read_bytes()
    with pytest.raises(RuntimeError):
        A.save_wav(path, np.ones(1000) * 0.1, 16000, force=True)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["out.wav"]


def test_atomic_path_no_clobber_race(tmp_path):
    path = tmp_path / "f.txt"
    with pytest.raises(A.OutputExistsError):
        with A.atomic_path(path) as tmp:
            tmp.write_text("mine")
            path.write_text("someone else's")  # appears while we write
    assert path.read_text() == "someone else's" and os.listdir(tmp_path) == ["f.txt"]


def test_the_dc_blocker_removes_an_offset_keeps_the_lowest_piano_partial_and_streams():
    sr = 16000
    t = np.arange(3 * sr) / sr  # the last 2 s hold 55 whole periods of 27.5 Hz
    offset = np.full(2 * sr, 5 / 32768)
    y = A.DCBlocker(sr)(offset)
    assert y[0] == pytest.approx(5 / 32768, rel=0.01) and np.abs(y[sr:]).max() < 1e-9  # a step, then nothing
    a0 = np.sin(2 * np.pi * 27.5 * t)  # A0's fundamental
    kept = A.DCBlocker(sr)(a0 + 0.01)[sr:]
    assert abs(20 * np.log10(np.sqrt(2 * np.mean(kept ** 2)))) < 0.2 and abs(kept.mean()) < 1e-3
    blocker = A.DCBlocker(sr)
    pieces = np.concatenate([blocker(part) for part in np.array_split(a0 + 0.01, [1, 700, 701, 20000])])
    np.testing.assert_allclose(pieces, A.DCBlocker(sr)(a0 + 0.01), atol=1e-7)
    with pytest.raises(ValueError, match="cutoff"):
        A.DCBlocker(sr, cutoff_hz=0.0)
    # a high cutoff (short steps keep the running sums finite) against the direct recursion
    x = np.random.default_rng(1).standard_normal(3000)
    fast = A.DCBlocker(sr, cutoff_hz=2000.0)
    mean, slow = 0.0, np.empty(len(x))
    for i, v in enumerate(x):
        mean += fast.rate * (v - mean)
        slow[i] = v - mean
    np.testing.assert_allclose(fast(x), slow, atol=1e-5)
