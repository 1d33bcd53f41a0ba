"""evaluation/notesheet.py: the per-note measures read known synthetic notes correctly."""

import math

import numpy as np
import pytest

from midi2wave.evaluation import notesheet as ns

SR = 16000


def tone(pitch, *, stiffness=0.0, seconds=1.6, hold_s=0.8, amplitudes=None, decay_s=1.0, release_s=None,
         noise_db=None, attack_noise_db=None, burst_at_s=None, seed=0):
    """An additive note: partial k at k f0 sqrt(1 + B k^2), amplitude 0.5 / k (or `amplitudes`),
    decaying with time constant decay_s; after hold_s it decays with release_s (None: no release).
    noise_db: white noise that many dB below the tone's power in [0.15, 0.65) s, following the same
    envelope; attack_noise_db: a white burst in the first 30 ms (or 4 ms from `burst_at_s`), that many
    dB relative to the tone there."""
    f0 = 440.0 * 2 ** ((pitch - 69) / 12)
    t = np.arange(int(seconds * SR)) / SR
    x = np.zeros_like(t)
    for k in range(1, 200):
        f = k * f0 * math.sqrt(1 + stiffness * k * k)
        if f > 7800 or (amplitudes is not None and k > len(amplitudes)):
            break
        a = (0.5 / k) if amplitudes is None else amplitudes[k - 1]
        x += a * np.sin(2 * np.pi * f * t + 0.7 * k)
    env = np.exp(-t / decay_s)
    if release_s is not None:
        env = np.where(t < hold_s, env, env * np.exp(-(t - hold_s) / release_s))
    x = x * env
    rng = np.random.default_rng(seed)
    if noise_db is not None:
        seg = slice(int(0.15 * SR), int(0.65 * SR))
        n = rng.standard_normal(len(t)) * env
        x = x + n * math.sqrt(np.mean(x[seg] ** 2) / np.mean(n[seg] ** 2) * 10 ** (noise_db / 10))
    if attack_noise_db is not None:
        a = slice(0, int(0.03 * SR)) if burst_at_s is None else slice(int(burst_at_s * SR), int((burst_at_s + 0.004) * SR))
        n = rng.standard_normal(a.stop - a.start)
        x[a] += n * math.sqrt(np.mean(x[a] ** 2) * 10 ** (attack_noise_db / 10))
    return x


@pytest.mark.parametrize("pitch", [24, 45, 60, 81, 100])
@pytest.mark.parametrize("stiffness", [0.0, 4e-4])
def test_a_pure_additive_tone_has_no_hiss(pitch, stiffness):
    m = ns.note_measures(tone(pitch, stiffness=stiffness), SR, 0.0, 0.8, pitch)
    assert m["hiss_db"] < -45.0


@pytest.mark.parametrize("pitch", [33, 60, 90])
@pytest.mark.parametrize("noise_db", [-10.0, -20.0, -30.0])
def test_white_noise_under_a_tone_reads_its_level(pitch, noise_db):
    m = ns.note_measures(tone(pitch, stiffness=3e-4, noise_db=noise_db), SR, 0.0, 0.8, pitch)
    assert m["hiss_db"] == pytest.approx(noise_db, abs=1.0)


def test_partials_are_found_on_a_stretched_string():
    pitch, b = 40, 8e-4
    x = tone(pitch, stiffness=b)[int(0.15 * SR):int(0.65 * SR)]
    power = np.abs(np.fft.rfft(x * np.hanning(len(x)), n=8192)) ** 2
    bin_hz = SR / 8192
    peaks = ns.find_partials(power, 440.0 * 2 ** ((pitch - 69) / 12), bin_hz)
    f0 = 440.0 * 2 ** ((pitch - 69) / 12)
    want = np.array([k * f0 * math.sqrt(1 + b * k * k) for k in range(1, 31)])
    assert len(peaks) >= 30
    assert np.max(np.abs(peaks[:30] * bin_hz - want)) < 2 * bin_hz


def test_attack_brightness_tells_a_dark_attack_from_a_white_click():
    dark_partials = [0.5 / k**2 for k in range(1, 21)]  # C3: all below 2.7 kHz
    dark = ns.note_measures(tone(48, amplitudes=dark_partials), SR, 0.0, 0.8, 48)["attack_db"]
    click = ns.note_measures(tone(48, amplitudes=dark_partials, attack_noise_db=+20.0), SR, 0.0, 0.8, 48)["attack_db"]
    white_share = 10 * math.log10((8000 - 4000) / (8000 - 20))  # white noise's energy above 4 kHz
    assert dark < -30.0
    assert click == pytest.approx(white_share, abs=1.0)


def test_upper_partial_balance_and_levels_match_the_partials_amplitudes():
    pitch = 60
    f0 = 440.0 * 2 ** ((pitch - 69) / 12)
    amps = np.array([1.0, 0.5, 0.3, 0.2, 0.15, 0.1, 0.08, 0.05, 0.04, 0.03, 0.02, 0.02])
    m = ns.note_measures(tone(pitch, amplitudes=amps), SR, 0.0, 0.8, pitch)
    power = amps**2
    above = (np.arange(1, len(amps) + 1) * f0) >= 2000.0
    assert m["upper_db"] == pytest.approx(10 * math.log10(power[above].sum() / power.sum()), abs=0.3)
    want = 10 * np.log10(power / power.sum())
    assert np.max(np.abs(m["levels_db"][:len(amps)] - want)) < 0.5
    quieter = amps.copy()
    quieter[2::2] *= 10 ** (-6 / 20)  # every other upper partial 6 dB down: half the levels differ by ~6
    other = ns.note_measures(tone(pitch, amplitudes=quieter), SR, 0.0, 0.8, pitch)
    d = np.abs(other["levels_db"][:len(amps)] - m["levels_db"][:len(amps)])
    assert ns.level_difference_db(m["levels_db"], m["levels_db"]) == 0.0
    assert 4.0 < np.max(d) < 7.0


def test_the_release_tail_and_the_decay_read_their_envelopes():
    x = tone(57, decay_s=2.0, release_s=0.05)
    m = ns.note_measures(x, SR, 0.0, 0.8, 57)
    # after the offset the envelope falls as exp(-t / 0.05): RMS over [0.10, 0.25) s against the
    # last 0.1 s held (decaying slowly meanwhile)
    t = np.arange(int(1.6 * SR)) / SR
    env = np.exp(-t / 2.0) * np.where(t < 0.8, 1.0, np.exp(-(t - 0.8) / 0.05))
    want = 10 * math.log10(np.mean(env[int(0.9 * SR):int(1.05 * SR)] ** 2) / np.mean(env[int(0.7 * SR):int(0.8 * SR)] ** 2))
    assert m["release_db"] == pytest.approx(want, abs=0.5)
    assert m["decay_db_per_s"] == pytest.approx(-20 * math.log10(math.e) / 2.0, abs=0.3)


def test_the_sheet_holds_isolated_notes_across_the_keyboard():
    sheet = ns.NoteSheet()
    notes, pedals = sheet.notes()
    assert len(notes) == 56 and len(pedals) == 0
    assert notes.pitch.min() <= 24 and notes.pitch.max() >= 102
    assert np.all(notes.onset_s[1:] - notes.offset_s[:-1] >= 1.0)  # silence after every release
    with pytest.raises(ValueError):
        ns.NoteSheet(hold_seconds=1.9)


def test_the_attack_end_sees_a_burst_that_the_attack_window_misses():
    """A 4-ms white burst 50 ms after the onset (a resonator bank's attack end): the first 30 ms
    read the same, the attack end reads it (over 20 dB brighter), and the check fails it."""
    dark_partials = [0.5 / k**2 for k in range(1, 21)]
    clean = ns.note_measures(tone(48, amplitudes=dark_partials), SR, 0.0, 0.8, 48)
    burst = ns.note_measures(tone(48, amplitudes=dark_partials, attack_noise_db=0.0, burst_at_s=0.05), SR, 0.0, 0.8, 48)
    assert burst["attack_db"] == pytest.approx(clean["attack_db"], abs=0.5)
    assert clean["attack_end_db"] < -40.0 and burst["attack_end_db"] > clean["attack_end_db"] + 20.0
    rows = {2004: [dict(burst, pitch=48, velocity=60)]}
    ref = {2004: [dict(clean, pitch=48, velocity=60)]}
    assert not ns.compare(rows, ref)["checks"]["2004 attack_end_db"]
    assert ns.compare(ref, rows)["checks"]["2004 attack_end_db"]  # darker than the reference: not a burst


def test_a_click_of_a_few_samples_is_read_more_sharply_than_by_the_attack_end_window():
    """A 0.5-ms click 50 ms after the onset, 20 dB below the tone there: the 60-ms attack-end share
    moves by a few dB (averaged over the window), the click measure by over 10 dB, twice as much;
    the check fails it one way."""
    dark_partials = [0.5 / k**2 for k in range(1, 21)]
    x = tone(60, amplitudes=dark_partials)
    clean = ns.note_measures(x, SR, 0.0, 0.8, 60)
    y = x.copy()
    at = int(0.05 * SR)
    y[at:at + 8] += np.sqrt(np.mean(x[at - 400:at + 400] ** 2) * 10 ** (-20 / 10)) * np.array([1, -1] * 4)
    click = ns.note_measures(y, SR, 0.0, 0.8, 60)
    rise, share_rise = click["click_db"] - clean["click_db"], click["attack_end_db"] - clean["attack_end_db"]
    assert clean["click_db"] < 8.0 and rise > 10.0 and rise > 2 * share_rise, (clean["click_db"], rise, share_rise)
    rows, ref = {2004: [dict(click, pitch=60, velocity=60)]}, {2004: [dict(clean, pitch=60, velocity=60)]}
    assert not ns.compare(rows, ref)["checks"]["2004 click_db"] and ns.compare(ref, rows)["checks"]["2004 click_db"]


def test_the_onset_reads_a_note_that_swells_late():
    """A note whose partials stay 20 dB down until 45 ms and then step to their level (a bank's
    attack left to the sampled innovation) reads an onset over 10 dB below a struck one's."""
    x = tone(60)
    late = x.copy()
    late[:int(0.045 * SR)] *= 0.1
    struck, swell = ns.note_measures(x, SR, 0.0, 0.8, 60), ns.note_measures(late, SR, 0.0, 0.8, 60)
    assert abs(struck["onset_db"]) < 1.5 and swell["onset_db"] < struck["onset_db"] - 10.0
    rows, ref = {2004: [dict(swell, pitch=60, velocity=60)]}, {2004: [dict(struck, pitch=60, velocity=60)]}
    assert not ns.compare(rows, ref)["checks"]["2004 onset_db"] and ns.compare(ref, ref)["checks"]["2004 onset_db"]


def test_compare_checks_the_bar():
    sheet = ns.NoteSheet(pitches=(48, 72), velocities=(60,))
    notes, _ = sheet.notes()
    clean = np.zeros(int(sheet.duration_seconds * SR) + SR)
    hissy = clean.copy()
    for i, p in enumerate(notes.pitch):
        s = int(notes.onset_s[i] * SR)
        clean[s:s + int(1.6 * SR)] += tone(int(p), release_s=0.05)
        hissy[s:s + int(1.6 * SR)] += tone(int(p), release_s=0.05, noise_db=-15.0, seed=i)
    ref = {2004: ns.sheet_measures(clean, SR, notes), 2018: ns.sheet_measures(clean, SR, notes)}
    same = ns.compare(ref, ref)
    assert same["passed"] and all(same["checks"].values())
    worse = ns.compare({y: ns.sheet_measures(hissy, SR, notes) for y in ref}, ref)
    assert not worse["checks"]["2004 hiss_db"] and not worse["passed"]
    assert worse["per_year"]["2004"]["difference"]["hiss_db"] > 20


def _band_noise(n, lo_hz, hi_hz, seed):
    """White noise band-limited to [lo_hz, hi_hz) (zeroed FFT bins), unit RMS."""
    spec = np.fft.rfft(np.random.default_rng(seed).standard_normal(n))
    hz = np.fft.rfftfreq(n, 1.0 / SR)
    spec[(hz < lo_hz) | (hz >= hi_hz)] = 0.0
    x = np.fft.irfft(spec, n)
    return x / np.sqrt(np.mean(x**2))


def test_a_weighting_follows_the_standard_curve():
    db = 10 * np.log10(ns.a_weighting(np.array([100.0, 250.0, 500.0, 1000.0, 2000.0, 4000.0, 8000.0])))
    assert db == pytest.approx([-19.1, -8.6, -3.2, 0.0, 1.2, 1.0, -1.1], abs=0.1)


def test_a_hiss_between_the_partials_fails_where_a_rumble_in_the_reference_fills_the_flat_measure():
    """The reference carries a room rumble under 200 Hz, the model as much noise at 1-3 kHz between
    the same partials (C5: its partials stand 523 Hz apart): the flat hiss reads them alike (within
    1 dB) and passes, and only the A-weighted measure (`hiss_a_db`) sees the hiss a listener hears
    (broken once: the weighting dropped, and the check passed)."""
    sheet = ns.NoteSheet(pitches=(72,), velocities=(60,))
    notes, _ = sheet.notes()
    seg = slice(int(0.15 * SR), int(0.65 * SR))
    x = tone(72)
    noise_rms = math.sqrt(np.mean(x[seg] ** 2) * 10 ** (-20.0 / 10))

    def render(lo, hi):
        out = np.zeros(int(sheet.duration_seconds * SR) + SR)
        s = int(notes.onset_s[0] * SR)
        out[s:s + len(x)] += x + noise_rms * _band_noise(len(x), lo, hi, seed=3)
        return out

    ref = {2004: ns.sheet_measures(render(30.0, 200.0), SR, notes)}
    model = {2004: ns.sheet_measures(render(1000.0, 3000.0), SR, notes)}
    result = ns.compare(model, ref)
    diff = result["per_year"]["2004"]["difference"]
    assert abs(diff["hiss_db"]) < 1.0 and result["checks"]["2004 hiss_db"]
    assert diff["hiss_a_db"] > 10.0 and not result["checks"]["2004 hiss_a_db"] and not result["passed"]
    assert ns.compare(ref, ref)["checks"]["2004 hiss_a_db"]


def test_a_soft_layer_too_bright_and_a_loud_one_too_dark_fail_though_the_median_holds():
    """The attack's brightness is checked in every velocity layer too (`velocity_attack_db`): soft
    notes 6 dB too bright and loud ones 6 dB too dark leave the median over the sheet where it was,
    and only the layers' check sees them (broken once: a check that looked at the median alone)."""
    import copy

    sheet = ns.NoteSheet(pitches=(48, 72), velocities=(30, 120))
    notes, _ = sheet.notes()
    clean = np.zeros(int(sheet.duration_seconds * SR) + SR)
    for i, p in enumerate(notes.pitch):
        s = int(notes.onset_s[i] * SR)
        clean[s:s + int(1.6 * SR)] += tone(int(p), release_s=0.05)
    rows = ns.sheet_measures(clean, SR, notes)
    for r in rows:
        r["attack_db"] = -40.0
    model = copy.deepcopy(rows)
    for r in model:
        r["attack_db"] += 6.0 if r["velocity"] == 30 else -6.0
    same = ns.compare({2004: rows}, {2004: rows})
    assert same["checks"]["2004 attack_db by velocity"] and same["per_year"]["2004"]["velocity_attack_db"] == {
        "30": 0.0, "120": 0.0}
    split = ns.compare({2004: model}, {2004: rows})
    assert split["per_year"]["2004"]["difference"]["attack_db"] == 0.0 and split["checks"]["2004 attack_db"]
    assert split["per_year"]["2004"]["velocity_attack_db"] == {"30": 6.0, "120": -6.0}
    assert not split["checks"]["2004 attack_db by velocity"] and not split["passed"]


def test_noise_alone_is_not_read_as_upper_partials():
    low_only = [0.5 / k for k in range(1, 8)]  # C4: partials below 1.9 kHz
    noisy = ns.note_measures(tone(60, amplitudes=low_only, noise_db=-20.0), SR, 0.0, 0.8, 60)
    assert noisy["upper_db"] == ns.FLOOR_DB
    assert noisy["hiss_db"] == pytest.approx(-20.0, abs=1.0)
    with_top = ns.note_measures(tone(60, amplitudes=low_only + [0.05] * 6, noise_db=-30.0), SR, 0.0, 0.8, 60)
    assert -30.0 < with_top["upper_db"] < -5.0


def test_the_note_sheet_folder_holds_json_audio_figures_and_page(tmp_path):
    import json

    from midi2wave.evaluation.notesheet_run import NoteSheetOptions, note_sheet_results, write_note_sheet

    sheet = ns.NoteSheet(pitches=(48, 72), velocities=(60, 100))

    def render(noise_db):
        def f(notes, pedals, year):
            x = np.zeros(int(sheet.duration_seconds * SR) + SR)
            for i, p in enumerate(notes.pitch):
                s = int(notes.onset_s[i] * SR)
                x[s:s + int(1.6 * SR)] += tone(int(p), release_s=0.05 if year == 2004 else 0.2, noise_db=noise_db, seed=i)
            return x * 0.3
        return f

    options = NoteSheetOptions(out=tmp_path / "sheet", years=(2004, 2018), instrument="salamander", sheet=sheet)
    options.check()
    results, audio = note_sheet_results(render(-15.0), render(None), options, SR)
    out = write_note_sheet(results, audio, options, SR)
    saved = json.loads((out / "note_sheet.json").read_text())
    assert saved["format"] == "midi2wave-note-sheet" and saved["comparison"]["years"] == [2004, 2018]
    assert len(saved["per_note"]["model"]["2004"]) == 4
    assert not saved["comparison"]["checks"]["2004 hiss_db"] and saved["comparison"]["checks"]["2004 release_db"]
    for name in ("audio/model_2004.wav", "audio/reference_2018.wav", "img/2004.png", "img/octaves.png", "index.html"):
        assert (out / name).is_file(), name
    assert "model_2018.wav" in (out / "index.html").read_text()
    with pytest.raises(Exception, match="exists"):
        NoteSheetOptions(out=out).check()


def test_ticks_are_counted_where_a_sample_leaves_the_waveform_and_nowhere_else():
    """A note with a 30-ms hammer of white noise and hiss under it (neither is a tick: the reference
    is the median around each frame), then single-sample spikes of half the
    tone's RMS (the size of the model's) at 0.3, 0.6 and 0.9 s (after the release) and a pair
    10 ms apart (one tick): 3 ticks;
    a spike under the floor is none; the sheet's summary is the mean and the check fails it one way
    (broken once each: the note's median for the local one, the hammer counted; no floor, the
    quiet spike counted; every frame over the threshold counted, 4 ticks)."""
    dark_partials = [0.5 / k**2 for k in range(1, 21)]
    x = tone(60, amplitudes=dark_partials, noise_db=-45.0, release_s=0.05, attack_noise_db=0.0)
    clean = ns.note_measures(x, SR, 0.0, 0.8, 60)
    assert clean["ticks"] == 0.0
    y = x.copy()
    level = np.sqrt(np.mean(x[int(0.15 * SR):int(0.65 * SR)] ** 2))
    for at_s in (0.3, 0.6, 0.61, 0.9):
        y[int(at_s * SR)] += level / 2
    ticked = ns.note_measures(y, SR, 0.0, 0.8, 60)
    assert ticked["ticks"] == 3.0
    quiet = x * 1e-4  # the same note 80 dB down: the spikes fall under the floor
    quiet[int(0.3 * SR)] += 1e-4 * level / 2
    assert ns.count_ticks(quiet, SR, 0, int(1.05 * SR)) == 0
    rows, ref = {2004: [dict(ticked, pitch=60, velocity=60), dict(clean, pitch=60, velocity=60)]}, {2004: [dict(clean, pitch=60, velocity=60)] * 2}
    assert ns.summarize(rows[2004])["ticks"] == 1.5
    assert not ns.compare(rows, ref)["checks"]["2004 ticks"] and ns.compare(ref, rows)["checks"]["2004 ticks"]


def double_decay(pitch, *, seconds=4.0, first_db_per_s=20.0, knee_s=1.0, after_db_per_s=5.0):
    """An additive note (partials 0.5 / k below 7.8 kHz) falling `first_db_per_s` to `knee_s`, then
    `after_db_per_s` (a piano's double decay; `after_db_per_s` = `first_db_per_s`: one decay)."""
    t = np.arange(int(seconds * SR)) / SR
    db = -first_db_per_s * np.minimum(t, knee_s) - after_db_per_s * np.maximum(t - knee_s, 0.0)
    return tone(pitch, seconds=seconds, decay_s=1e9) * 10 ** (db / 20)


@pytest.mark.parametrize("pitch", [36, 60, 84])
def test_the_aftersound_reads_a_known_double_decay(pitch):
    """From the windows' centres (0.6 and 3.2 s): 20 dB/s for 0.4 s, then 5 dB/s for 2.2 s, -19 dB;
    one decay of 20 dB/s reads -52 dB."""
    assert ns.aftersound_db(double_decay(pitch), SR, 0.0, pitch) == pytest.approx(-19.0, abs=0.5)
    one = double_decay(pitch, after_db_per_s=20.0)
    assert ns.aftersound_db(one, SR, 0.0, pitch) == pytest.approx(-52.0, abs=0.5)


def test_a_sheet_plays_its_long_notes_apart_and_leaves_the_grid_as_it_was(tmp_path):
    """The long notes are a piece of their own, each at the long velocity, held long; the grid's
    renders, rows and checks are those of the same sheet without them; the aftersound check fails a
    model with one decay (broken once: the check compared the model with itself)."""
    import dataclasses
    import json

    from midi2wave.evaluation.notesheet_run import NoteSheetOptions, note_sheet_results, write_note_sheet

    sheet = ns.NoteSheet(pitches=(48, 72), velocities=(60,), long_pitches=(48, 84))
    grid, _ = sheet.notes()
    long, _ = sheet.long_notes()
    assert list(grid.pitch) == [48, 72] and list(long.pitch) == [48, 84] and list(long.velocity) == [90, 90]
    np.testing.assert_allclose(long.onset_s, [0.5, 5.0])
    np.testing.assert_allclose(long.offset_s - long.onset_s, [3.5, 3.5])
    assert sheet.duration_seconds == pytest.approx(4.5) and sheet.long_duration_seconds == pytest.approx(9.5)
    with pytest.raises(ValueError, match="long_hold_seconds"):
        ns.NoteSheet(long_pitches=(60,), long_hold_seconds=4.3)
    assert len(ns.NoteSheet().long_notes()[0]) == 0  # none by default (the level corpus's layout)
    assert NoteSheetOptions(out=tmp_path / "x").sheet.long_pitches == ns.LONG_PITCHES
    with pytest.raises(Exception, match="held 3 s"):
        NoteSheetOptions(out=tmp_path / "x", sheet=dataclasses.replace(sheet, long_hold_seconds=3.0)).check()

    def render(after_db_per_s):
        def f(notes, pedals, year):
            x = np.zeros(int(notes.offset_s.max() * SR) + 2 * SR)
            for i, p in enumerate(notes.pitch):
                s = int(notes.onset_s[i] * SR)
                long_note = notes.offset_s[i] - notes.onset_s[i] > 1.0
                note = double_decay(int(p), after_db_per_s=after_db_per_s) if long_note else tone(int(p), release_s=0.1)
                x[s:s + len(note)] += note
            return x * 0.3
        return f

    options = NoteSheetOptions(out=tmp_path / "sheet", years=(2018,), sheet=sheet)
    results, audio = note_sheet_results(render(20.0), render(5.0), options, SR)
    after = results["comparison"]["per_year"]["2018"]["aftersound_db"]
    assert after["model"] == pytest.approx(-52.0, abs=0.5) and after["reference"] == pytest.approx(-19.0, abs=0.5)
    assert after["difference"] == pytest.approx(-33.0, abs=0.7)
    assert not results["comparison"]["checks"]["2018 aftersound_db"]
    assert len(results["per_note"]["model"]["2018"]) == 2 and len(results["long_notes"]["model"]["2018"]) == 2
    same, _ = note_sheet_results(render(5.0), render(5.0), options, SR)
    assert same["comparison"]["checks"]["2018 aftersound_db"]
    plain_options = dataclasses.replace(options, sheet=dataclasses.replace(sheet, long_pitches=()))
    plain, plain_audio = note_sheet_results(render(20.0), render(5.0), plain_options, SR)
    assert "2018 aftersound_db" not in plain["comparison"]["checks"] and not plain["long_notes"]["model"]
    np.testing.assert_array_equal(plain_audio["model_2018"], audio["model_2018"])
    assert json.dumps(plain["per_note"]) == json.dumps(results["per_note"])  # (NaN levels above Nyquist)
    assert {k: v for k, v in results["comparison"]["checks"].items() if "aftersound" not in k} == plain["comparison"]["checks"]
    out = write_note_sheet(results, audio, options, SR)
    for name in ("audio/model_2018_long.wav", "audio/reference_2018_long.wav", "img/long.png"):
        assert (out / name).is_file(), name
    assert "model_2018_long.wav" in (out / "index.html").read_text()
    with pytest.raises(ValueError, match="both"):
        ns.compare({2018: []}, {2018: []}, model_long={2018: []})
    with pytest.raises(ValueError, match="held"):
        ns.long_measures(np.zeros(SR), SR, grid)
