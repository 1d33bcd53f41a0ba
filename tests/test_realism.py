"""Realism measures (gap noise, tonal purity, log-mel distance, release jumps) on synthetic signals with known
answers."""

from __future__ import annotations

import numpy as np
import pytest

from midi2wave.midi import Notes, pitch_to_hz
from midi2wave.evaluation.realism import (
    FLOOR_DB,
    RealismOptions,
    gap_mask,
    gap_noise_db,
    log_mel_distance,
    median_or_none,
    mel_filterbank,
    partial_coverage,
    partial_masks,
    release_jumps_db,
    tonal_purity,
)

SR = 16000


def _notes(rows) -> Notes:
    """rows: (onset_s, offset_s, pitch)."""
    on, off, pitch = (np.array(c, float) for c in zip(*rows)) if rows else (np.zeros(0),) * 3
    return Notes(on, off, pitch.astype(np.int16), np.full(len(on), 80, np.int16))


def _harmonic_tone(pitch: int, seconds: float, partials: int = 12, seed: int = 0) -> np.ndarray:
    """A steady tone at the exact harmonics of `pitch` (decaying amplitudes, random phases)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    f0 = float(pitch_to_hz(pitch))
    ks = [k for k in range(1, partials + 1) if k * f0 < SR / 2]
    return sum(np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 2 * np.pi)) / k for k in ks) * 0.1


# ---------------------------------------------------------------------------------------- gap


def test_gap_mask_counts_each_note_until_its_offset_plus_the_margin():
    notes = _notes([(0.0, 0.5, 60), (2.0, 2.5, 64)])
    mask = gap_mask(notes, 4 * SR, SR, release_margin_seconds=0.5)
    assert not mask[: SR].any()               # 0 .. 1.0 s: note 1 plus its release margin
    assert mask[SR: 2 * SR].all()             # 1.0 .. 2.0 s: nothing sounds
    assert not mask[2 * SR: 3 * SR].any()     # 2.0 .. 3.0 s: note 2 plus margin
    assert mask[3 * SR:].all()
    assert gap_mask(notes, 4 * SR, SR, release_margin_seconds=0.0)[int(0.6 * SR)]


def test_gap_mask_counts_notes_held_from_before_the_excerpt():
    # a note that started before the audio and ends at -0.2 s still rings for 0.3 s of margin
    mask = gap_mask(_notes([(-3.0, -0.2, 40)]), SR, SR)
    assert not mask[: int(0.3 * SR) - 1].any() and mask[int(0.3 * SR) + 1:].all()
    assert gap_mask(_notes([]), 100, SR).all()


def test_noise_in_a_gap_scores_high_and_silence_the_floor():
    rng = np.random.default_rng(0)
    notes = _notes([(0.0, 1.0, 69)])
    n = 3 * SR
    mask = gap_mask(notes, n, SR)                      # gap from 1.5 s
    tone = np.zeros(n)
    tone[: SR] = _harmonic_tone(69, 1.0)
    noisy = tone + 0.01 * rng.standard_normal(n)
    rms_sound = np.sqrt(np.mean(noisy[~mask] ** 2))
    expected = 20 * np.log10(np.sqrt(np.mean(noisy[mask] ** 2)) / rms_sound)
    assert gap_noise_db(noisy, mask, SR) == pytest.approx(expected)
    assert -25 < gap_noise_db(noisy, mask, SR) < -10   # a noise floor 20 dB under the tone
    assert gap_noise_db(tone, mask, SR) == FLOOR_DB     # exact silence: the floor, not -inf
    quiet = tone + 1e-5 * rng.standard_normal(n)
    assert -90 < gap_noise_db(quiet, mask, SR) < -60


def test_gap_noise_needs_a_gap_and_some_sound():
    n = 2 * SR
    notes = _notes([(0.0, 1.45, 60)])                   # sounds until 1.95 s: 0.05 s of gap
    x = np.random.default_rng(1).standard_normal(n)
    mask = gap_mask(notes, n, SR)
    assert 0 < mask.sum() < 0.1 * SR
    assert gap_noise_db(x, mask, SR) is None
    assert gap_noise_db(x, mask, SR, min_gap_seconds=0.01) is not None
    long_gap = gap_mask(_notes([(0.0, 0.5, 60)]), n, SR)
    assert gap_noise_db(np.zeros(n), long_gap, SR) is None           # nothing sounds
    assert gap_noise_db(x, np.ones(n, bool), SR) is None             # no note at all
    with pytest.raises(ValueError):
        gap_noise_db(x, long_gap[:-1], SR)
    assert median_or_none([None, -10.0, -30.0, None, -20.0]) == -20.0 and median_or_none([None]) is None


def test_a_gap_in_the_notes_with_sound_everywhere_is_detected():
    """Notes with a 1.5 s hole, but the audio keeps ringing through it (a noise floor that holds
    the pitch): the gap scores near 0 dB, far above a clean render of the same notes."""
    notes = _notes([(0.0, 1.0, 60), (3.0, 4.0, 60)])
    n = 4 * SR
    mask = gap_mask(notes, n, SR)
    assert mask.sum() == pytest.approx(1.5 * SR, abs=2)
    everywhere = _harmonic_tone(60, 4.0)
    assert gap_noise_db(everywhere, mask, SR) == pytest.approx(0.0, abs=0.5)
    clean = everywhere * ~mask
    assert gap_noise_db(clean, mask, SR) == FLOOR_DB


# ------------------------------------------------------------------------------------- purity


@pytest.mark.parametrize("pitch", [28, 45, 60, 76, 96])
def test_a_harmonic_tone_is_pure_and_white_noise_is_not(pitch):
    notes = _notes([(0.0, 2.0, pitch)])
    tone = _harmonic_tone(pitch, 2.0, partials=40)
    purity = tonal_purity(tone, notes, SR)
    assert purity > 0.99, purity
    noise = np.random.default_rng(pitch).standard_normal(2 * SR) * 0.1
    noise_purity = tonal_purity(noise, notes, SR)
    coverage = partial_coverage(notes, 2 * SR, SR)
    # white noise fills the bands in proportion to their share of the bins
    assert noise_purity == pytest.approx(coverage, abs=0.03)
    assert noise_purity < purity - 0.01


def test_purity_of_the_wrong_pitch_is_low_and_noise_lowers_it():
    notes = _notes([(0.0, 2.0, 72)])
    tone = _harmonic_tone(72, 2.0)
    assert tonal_purity(_harmonic_tone(73, 2.0), notes, SR) < 0.4       # a semitone off
    assert tonal_purity(_harmonic_tone(72, 2.0) * 0 + _harmonic_tone(78, 2.0), notes, SR) < 0.4
    rng = np.random.default_rng(3)
    noisy = tone + 0.03 * rng.standard_normal(len(tone))
    assert tonal_purity(noisy, notes, SR) < tonal_purity(tone, notes, SR) - 0.05


def test_purity_counts_only_frames_where_notes_sound():
    # the noise is in a gap (no note within 0.5 s) and does not count; None without notes/energy
    notes = _notes([(0.0, 1.0, 64)])
    x = np.zeros(4 * SR)
    x[: SR] = _harmonic_tone(64, 1.0)
    x[3 * SR:] = np.random.default_rng(4).standard_normal(SR)
    assert tonal_purity(x, notes, SR) > 0.98
    assert tonal_purity(x, _notes([]), SR) is None
    assert tonal_purity(np.zeros(SR), notes, SR) is None
    assert partial_coverage(_notes([]), SR, SR) is None


def test_partial_bands_are_at_least_two_bins_and_40_cents_wide():
    options = RealismOptions()
    n_fft = options.purity_n_fft
    masks = partial_masks(n_fft, SR, options)
    bin_hz = SR / n_fft
    # A0 (27.5 Hz): 40 cents is 0.6 Hz, less than a bin; the band is +-2 bins around 27.5 Hz
    a0 = np.flatnonzero(masks[0]) * bin_hz
    expected = [k * bin_hz for k in range(n_fft // 2) if abs(k * bin_hz - 27.5) <= 2 * bin_hz and k * bin_hz >= 20]
    assert len(expected) == 4 and np.allclose(a0[a0 < 40], expected)
    # A6 (1760 Hz): +-40 cents is +-41 Hz, wider than 2 bins
    a6 = np.flatnonzero(masks[93 - 21]) * bin_hz
    first = a6[a6 < 2500]
    assert first.min() == pytest.approx(1760 / 2 ** (40 / 1200), abs=bin_hz)
    assert first.max() == pytest.approx(1760 * 2 ** (40 / 1200), abs=bin_hz)
    assert not masks[:, : int(20 / bin_hz) + 1].any()   # nothing below 20 Hz
    # the stiff-string option only widens the bands upward
    stiff = partial_masks(n_fft, SR, RealismOptions(stiff_strings=True))
    assert (stiff >= masks).all() and stiff.sum() > masks.sum()


# ----------------------------------------------------------------------------------- log-mel


def test_log_mel_distance_zero_for_identical_and_level_scaled_signals():
    rng = np.random.default_rng(5)
    a = _harmonic_tone(60, 1.0) + 0.001 * rng.standard_normal(SR)
    assert log_mel_distance(a, a, SR) == 0.0
    assert log_mel_distance(a, 0.1 * a, SR) == pytest.approx(0.0, abs=1e-9)
    assert log_mel_distance(a, -3.0 * a, SR) == pytest.approx(0.0, abs=1e-9)


def test_log_mel_distance_grows_with_the_difference():
    rng = np.random.default_rng(6)
    a = _harmonic_tone(60, 1.0)
    noise = rng.standard_normal(SR)
    slightly = log_mel_distance(a, a + 0.001 * noise, SR)
    more = log_mel_distance(a, a + 0.03 * noise, SR)
    other = log_mel_distance(a, _harmonic_tone(67, 1.0), SR)
    assert 0 < slightly < more
    assert other > slightly
    assert log_mel_distance(a, noise, SR) == pytest.approx(log_mel_distance(noise, a, SR))
    with pytest.raises(ValueError):
        log_mel_distance(a, a[:-1], SR)


def test_mel_filterbank_matches_librosa():
    librosa = pytest.importorskip("librosa")
    ours = mel_filterbank(SR, 1024, 80)
    theirs = librosa.filters.mel(sr=SR, n_fft=1024, n_mels=80)
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-7)


# ---------------------------------------------------------------------------------- release jumps


def _released_tone(click_at_s: float | None = None) -> np.ndarray:
    """A tone with a 5 kHz partial struck at 0.2 s, held to 1.0 s, then damped (30 ms), optionally
    with a 5 ms broadband burst at click_at_s; 2 s long."""
    rng = np.random.default_rng(0)
    t = np.arange(2 * SR) / SR
    envelope = np.where(t < 0.2, 0.0, np.exp(-(t - 0.2) / 1.0))
    envelope = np.where(t < 1.0, envelope, envelope * np.exp(-(t - 1.0) / 0.03))
    x = envelope * (0.1 * np.sin(2 * np.pi * 440 * t) + 0.02 * np.sin(2 * np.pi * 5000 * t))
    if click_at_s is not None:
        i = int(click_at_s * SR)
        x[i:i + 80] += 0.1 * rng.standard_normal(80)
    return x


def test_release_jumps_see_a_click_after_the_dampers_and_not_a_decay():
    notes = _notes([(0.2, 1.0, 69)])
    clean = release_jumps_db(_released_tone(), notes, SR)
    click = release_jumps_db(_released_tone(click_at_s=1.08), notes, SR)
    assert clean.shape == click.shape == (1,)
    assert clean[0] <= 0.5, clean
    assert click[0] > 10.0, click


def test_release_jumps_skip_releases_that_are_not_into_a_rest():
    x = _released_tone(click_at_s=1.08)
    held = _notes([(0.2, 1.0, 69), (0.5, 1.5, 72)])      # another note still sounds: its release counts
    assert len(release_jumps_db(x, held, SR)) == 1
    struck = _notes([(0.2, 1.0, 69), (1.2, 1.5, 72)])    # a note struck 200 ms after the release
    assert len(release_jumps_db(x, struck, SR)) == 1     # only the later release (1.5 s) is measured
    near_end = _notes([(0.2, 1.9, 69)])                  # its window would run past the audio
    assert len(release_jumps_db(x, near_end, SR)) == 0
    assert len(release_jumps_db(x, _notes([]), SR)) == 0
