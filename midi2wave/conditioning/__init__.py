"""What a model reads besides its own past: the MIDI turned into model inputs (conditioning/).

Owns: the one builder of a window's inputs (`inputs.py`), the MIDI resonator bank and its
innovation gain, noise shaping, shares and fitted partial levels (`resonators.py`), and the
log-mel target of the auxiliary mel head (`features.py`). Imports only the core (config, midi,
constants); `data/`, `render/`, `evaluation/` and `training/` call it. Units: audio at the store's
rate (16 kHz), frames at 250 Hz (audio sample t belongs to frame t // 64), times inside a window in
samples relative to the window's first sample.

Entry points (`__all__`, imported on first use: this package imports nothing heavy; resonators.py
needs numba, features.py torch):
- `window_inputs(data_config, notes, pedals, start_sample, n_samples, margin_frames, year,
  audio=None, audio_scale) -> WindowInputs` (inputs.py);
- `Schedule`, `schedule(...)`, `BankState`, `BankBatch`, `analyze`, `synthesize`, `gain_track`
  (resonators.py);
- `log_mel_spectrogram` (features.py).

Model inputs (inputs.py)
------------------------
`window_inputs(...)` -> `WindowInputs(rolls [C, F + 2 margin], excitation [n] | None, year index,
schedule, analysis_schedule, warmup_audio, target)`: everything a model reads for one window (notes
sustained, piece times, `start_sample` on the frame grid). `schedule` has times relative to the
window (what generation runs); with `audio` (teacher forcing) the analysis starts `resonator
warmup_s` earlier: `analysis_schedule` (times relative to the warm-up), `warmup_audio` and `target`
(innovation / gain, clipped to [-1, 1)). `data.dataset.SegmentDataset.example`,
`evaluation.excerpts.store_excerpts` / `midi_excerpts` and `render.synthesize.model_inputs` all
call it (tests/test_inputs.py shows they agree).

MIDI resonator bank (resonators.py; `data.resonators.partials` > 0)
-------------------------------------------------------------------
LPCNet-style linear prediction whose frequencies come from the MIDI. For every sounding (sustained)
note and each partial below `max_hz`, one damped complex oscillator `z_s`; partial k of pitch p
lies at `resonators.partial_hz`: `k f0 2^(c(p)/1200) sqrt(1 + B(p) k^2)`, a stretch tuning
`tuning_cents` (polynomial in octaves from middle C) and stiff strings `inharmonicity` (log10 B
linear in octaves, flat below A2), both empty (equal temperament, harmonic) unless fitted to a store
by `scripts/fit_partials.py` (a resonator tracks its partial only within ~kappa sr / 2 pi Hz); the
synthesis-only partials (k > `partials`) take log10 B from `synthesis_inharmonicity_log10` over pitch
where a config has that table (`resonators.bank_partial_hz`, where every engine and fit reads a
partial's position);
partial k takes `kappa / k^kappa_exponent` of the innovation (the hammer drives upper partials
less);
`p_t = sum_s Re z_s` predicts `x_t`, the network models the innovation `e_t = x_t - p_t`, and
`z_s <- r_s exp(i w_s) (z_s + g kappa e_t)` (`g` keeps the active gains' sum <= 0.5, which keeps the
analysis stable with coinciding partials). `r_s` gives the note's decay while held and a fast
release after its offset; an oscillator lives until `5 * release_tau` after the offset; kappa
drops to `sustain_kappa` once the note is `attack_s` old (so sampled innovation
barely moves ringing partials). `input = "innovation"`: the network reads its past
innovations instead of the audio (training feeds it `target`), so the bank's output never feeds
back into it. The settings are one section, `config.ResonatorConfig` = `DataConfig.resonators`
(JSON `"data": {"resonators": {"partials": 6, "kappa": 0.02, ...}}`), validated once; configs and
checkpoints written before it named them `data.resonator_<name>` (flat) and still load
(`config.migrate_flat_resonator_keys`).

**Innovation gain** (`data.resonators.gain` > 0): the network samples `u` in [-1, 1) and the
innovation is `e_t = g_t u_t`, where `g_t = floor + sqrt(sum_n a_n(t)^2)` comes from the notes
alone (per note: a fast hammer component and a slower one decaying with the pitch's decay time,
both scaled by velocity, then a release after the sustained offset; `config.ResonatorConfig`).
Where nothing sounds `g_t` is the floor, so nothing can sound where nothing plays, whatever the
network samples; the teacher-forced target is `u = e / g`, about equally loud everywhere, and the
network reads `(x - p) / g` on the 16-bit grid (training and generation alike). Each note's
fundamental oscillator carries its envelope (`Schedule.gain_*`), so the gain travels with the
schedules (windows, chunks, shifts) and is a function of time alone (`resonators.gain_track`). The
settings are fitted to a store's teacher-forced innovation by `scripts/fit_innovation_gain.py`.

**Noise shaping** (`data.resonators.pre_emphasis` a, `noise_lowpass` c): with `n_t = e_t / g_t`,
the network samples `u` and synthesis shapes it, `n = D(z) u`,
`D(z) = (1 + c z^-1) / ((1 + c)(1 - a z^-1))` (`resonators.shape_noise`; analysis applies the
inverse, `unshape_noise`). White samples then make a dark innovation, as the piano's is. The pole
a is LPCNet's pre-emphasis; it also lifts the lowest frequencies (DC gain 1 / (1 - a)), so `n` is
bounded to [-1, 1] when a > 0 and `|e| <= g` still holds (unbounded, the gaps' floor rose: measured
-31 dB instead of -52). The zero c rolls off only the top (unity at DC), and keeps `|n| <= 1` by
itself. The state is `n_{t-1}, u_{t-1}` per stream (`BankState.n_prev`, `u_prev`, reset with the
bank); the numba kernel (`render/kernel.py`), the torch engine and `_run` (analysis/synthesis) call
the same two functions, and the network reads `u` (teacher-forced: the target; generating: the
unshaped `(x - p) / g` on the 16-bit grid).

**Sustain innovation share** (`sampling.sustain_innovation` s, synthesis only; a model's config
carries its default): while some note sounds (an active oscillator, held or releasing) and none is
in its attack (before `attack_end`), the audio sample is `p + s g n` (r, below, once every note is
released), and the bank and the network get all of the innovation `g n`; in attacks and in silence
s is 1 (`resonators.direct_share`, in the numba kernel and the torch engine; `Schedule.sustain_innovation`,
set by `render.synthesize` and `evaluation.evaluate` from the sampling options). The recording's
innovation under sounding notes is mostly the bank's tracking error at the partials, which sampling
cannot reproduce; so the sampled noise is heard through the resonators. **Release share**
(`sampling.release_innovation` r, None: s): once every sounding note is released (no admitted
oscillator's note still held: `BankBatch.held_until`, the running latest release in start order,
so one look decides) the share is r. After the dampers the network's low-temperature samples settle
on a level and then jump, which the direct path played as a broadband click ~60 ms after each
release; the recording's residual there is the partials' reverberation, which the bank (still
driven by all of the innovation) makes.

**The direct path's filters** (synthesis only, `resonators.bank_step`; a model's config carries
the defaults): with `sampling.attack_lowpass_hz` or `sustain_highpass_hz` set, the innovation heard
directly is `d = H(g n)`, H a one-pole high-pass at `resonators.DIRECT_DC_HZ` (40 Hz); the
network reads all of `g n`, and so does the bank except in attacks with the low-pass on. While a note is in its attack (`resonators.in_attack`) the
output hears `L(d)`, L the two-pole low-pass at `attack_lowpass_hz` (`Schedule.attack_pole`; with
`attack_lowpass_key_tracking` its cut-off follows the newest note's key, with
`attack_lowpass_velocity_tracking` the newest notes' velocity, `resonators.tracked_pole`), which
also drives the oscillators then (a dark hammer); past the attacks `s · Hs(d)`, Hs two one-pole
high-passes at `sustain_highpass_hz` (`Schedule.sustain_highpass`; 0: none). Why: in silence the
network's samples sit on a rail, inaudible at the gain's floor; the onset's gain turned the stuck
sample into a step, the white click on every attack; and the noise under held notes lies below
1 kHz (docs/evaluation.md, the note sheet). The states (`BankState.dc`, `lp1`, `lp2`, `lf1`, `lf2`)
follow the innovation at every sample and reset with the bank.

**The sustain limit** (`sampling.sustain_limit` k, synthesis only, with a direct-path filter on):
the sustain's direct path over the gain it hears the innovation at is held within k times its
running RMS (`resonators.limit_sustain`; a 10-ms mean square, `LIMIT_WINDOW_SAMPLES`, moved by the
samples as passed and restarted at each attack; state `BankState.limit_ms`). Why: the network's
low-temperature samples under a held note sit near a level and now and then jump, and through the
high-pass a jump is a sample far off the waveform, a tick; the noise between the partials stays
within the bound. The network and the bank still get all of the innovation.

**The sustain noise's decay** (`sampling.sustain_noise_decay_db_per_s`, synthesis only, with a
direct-path filter on): past the attacks the sustain's direct path hears the innovation at the
direct gain, the innovation gain's sum with each note's share also dying that many dB per second
from its own attack end (`resonators.bank_gain`, `BankState.g_direct`, `Schedule.sustain_noise_decay`;
a note struck later keeps its own). Why: the gain follows the partials' decay (it is fitted to the
teacher-forced innovation, mostly the bank's tracking error at the partials), while the recorded
noise between a held note's partials dies faster than they do (docs/evaluation.md, "The hiss as
heard"). The network and the bank still get all of the innovation.

**Rooms** (`data.resonators.room_years`, `room_release_tau_s`, fitted to a store by
`scripts/fit_rooms.py`; synthesis only): after its release a partial decays with
`ResonatorConfig.release_tau_for(year)` in a render of that year (the undamped top excepted, below;
`Schedule.for_sampling(release_pole=)`,
set per row by `render.rows.sampled_schedules` and by the live bank), so each year rings after its
dampers fall as its recordings do, and rings until 5 of its time constants have passed (the
oscillator's stop is extended; `ResonatorConfig.room_tail_s` is how long renders keep going, an
undamped key's notes `undamped_tail_s`); the
analysis keeps `release_tau_s` and `release_tail_s`. With `room_tone_hz` / `room_tone_db`
(`scripts/fit_rooms.py --tone`) each year's room also sets its partials' fitted levels by its tone
at each partial's frequency (`resonators.room_level_gain`, `Schedule.for_sampling(level_gain=)`,
set in the same places): the years differ in level and treble as their recordings do.

**Synthesis-only partials** (`data.resonators.synthesis_partials`): every note gets that many
partials in synthesis (below `max_hz`, locked to their fitted levels like the others), the analysis keeps `partials`:
`oscillators` flags the extra ones (`Schedule.synthesis_only`) and `analyze` leaves them out
(`Schedule.for_analysis`), so the network's training target does not change.

**Fitted partial levels** (`data.resonators.level_pitches`, `levels_db`, `level_velocity_slope_table`
or `level_velocity_slopes`, fitted to a store by `scripts/fit_partials.py`; `sampling.partial_levels`
w, synthesis only): the amplitude of partial k of a note `attack_s` after its onset, a table over
pitch (every 3 semitones, linear between) and partial plus a slope in dB per dB of velocity per
grid pitch and partial (or per partial) (`resonators.fitted_levels`, per oscillator
`Schedule.level`), plus the velocity tone (`velocity_tone_velocities`, `velocity_tone_hz`,
`velocity_tone_db`, the prompt sound's `prompt_velocity_tone_db`; `scripts/fit_partials.py
--velocity-tone`): dB by the note's velocity and the partial's frequency where the table's straight
line in dB of velocity misses the piano's (`resonators.velocity_tone_db`), in every year, offline and
live alike (the live bank's note tables come from the same `oscillators`). Through each oscillator's attack synthesis pulls its amplitude onto A(t) = rise *
L(t) (held there with w = 1; below 1 each sample closes the fraction w of the log distance), keeping
its phase: rise is a raised cosine over the first `resonators.LOCK_RISE_SAMPLES` (30 ms), so the
partials sound from the onset, and L(t) the level at the attack end carried back along the decay and
past a release inside the attack (`resonators.locked_amplitude`); an oscillator admitted after its
attack ended (a chunk row or excerpt window begun mid-note, which starts it from silence) gets
`w L` carried to then, at a spread phase (`bank_update`, in the kernel, the torch engine and
`_run`; `Schedule.partial_levels`). The analysis and a teacher-forced prime pass 0 and so never do.
**The prompt sound** (`data.resonators.prompt_levels_db`, `prompt_velocity_slope_table`,
`prompt_seconds`; `fit_partials.py --prompt-delay`): a struck string's upper partials die fast first,
then ring on (a piano's double decay), where the level table is measured 0.3 s into the note and
carried back along one decay. Where a partial's prompt level is above the table's, it leaves its
attack there (`Schedule.level`) and, with the lock on, decays by `Schedule.r_prompt` until
`Schedule.prompt_end`, a straight line in dB onto the table's decay `prompt_seconds` after the attack
end, then by `r_hold` (`resonators.prompt_decay`, `bank_update`, `locked_amplitude`). **The
aftersound** (`data.resonators.aftersound_pitches`, `aftersound_knee_s`, `aftersound_decay_db_per_s`;
`scripts/fit_aftersound.py` on the instrument's long notes): the rest of that double decay, a held
note's partials dying slowly after the first second or so. With the lock on, from `Schedule.knee` (its
pitch's knee after the onset, not before `prompt_end`) until its release each oscillator decays by
`Schedule.r_after` instead of `r_hold` (`resonators.aftersound`, `bank_update`, `locked_amplitude`);
without one the knee never comes. From `prompt_end` to the knee it decays by `Schedule.r_hold_locked`:
its pitch's `aftersound_hold_decay_db_per_s` where the config has one (`resonators.aftersound_hold`:
the training piano's top dies at half the rate of the bank's law of pitch), else `r_hold`; the
prompt sound still falls onto the level table's line at `r_hold`, as the table was measured.
**The undamped top** (`data.resonators.undamped_from_pitch`, `undamped_release_db_per_s`;
`scripts/fit_undamped.py`): a piano's keys from about F#6 up have no dampers, so in synthesis the
oscillators of notes from that pitch up decay after their release by that rate in every room instead
of the room's release, and ring 5 of its time constants (`resonators.undamped_release`,
`Schedule.for_sampling(undamped=)`, the live bank's rows); those notes' tails alone grow
(`ResonatorConfig.undamped_tail_s`: the schedule's window, the offline spans, the live silence).
**The dampers' noise** (`data.resonators.damper_level_db`, `damper_velocity_slope`,
`damper_pitch_db_per_octave`, `damper_hz`, `damper_q`, `damper_lowpass_hz`, `damper_rise_s`;
`scripts/fit_dampers.py`): a damped key's release drops its damper on the strings, a low thump. In
synthesis every note of a damped key plays from its release white noise through a resonance and a
one-pole low-pass (`resonators.damper_filter`, scaled to unit RMS), rising as a raised cosine over
`damper_rise_s` while it decays by the note's release (its room's pole), at its level
(`resonators.damper_levels`: velocity and pitch; times the room's tone at the resonance,
`damper_room_gain`) carried on the note's first oscillator (`Schedule.damper`; `damper_gain` sums
the notes' squares); a note whose release is its key's next onset (struck again while it sounded,
or released and struck in one sample: `restruck_releases`, the live engine's `LiveBank.restrike`)
drops no damper and plays none. The source is a hash of the stream's sample (`damper_noise`: no state, so
both offline engines and the live engine in any blocks hear the same sample at the same t; an offline
render's chunk rows and spans each count t from their start); the filter's state is
`BankState.damper_state`. `bank_step` adds it (`damper_sample`, one call per sample with the noise
on) to the output alone: the bank and the network never get it (their innovation is the sample
rounded without it; the config asks for `input` "innovation"), so a render is the same to the bit
up to its first damped release.
Free-running, a partial's level is otherwise whatever the few sampled innovations of its attack
made it. `midi2wave export --sampling-from CONFIG` gives a released model the settings that
change synthesis only, found after training: the `sampling` section and the partial levels
(`Config.with_synthesis_settings_from`, which refuses a config whose other settings differ from the
model's). The numba kernel inlines these jitted helpers, so a change here drops its cache
(`render.kernel.drop_stale_kernel_cache`).

Evaluation's NLL of a gain model is in bits of `u`, the target under each condition's MIDI: other
MIDI changes the target's scale too, so the conditioning gain says how much worse the real audio
fits under other MIDI, not a likelihood ratio of the same samples (a change of variables, bits +
log2 g, fails because under the wrong MIDI most of the target is clipped). Teacher-forced, the
network also reads that rescaled target, so under zeroed MIDI it reads clipped +-1 and predicts it
well: for gain models the teacher-forced conditioning gain is not a meaningful measure (it comes
out negative); the transcription floor (F1 of generation from other MIDI) is.

Analysis (teacher forcing: `e` from the true audio) and synthesis (generation: `x = p + e`, e
sampled) are the same recursion, so they invert each other exactly. Training targets
(`SegmentDataset` item `target`) are analysed from silence 50 ms before each segment (the
analysis re-locks within ~2/kappa samples). In generation the audio sample is `p_t + e_t`
rounded down to the 16-bit grid and the bank is fed `x_t - p_t`; the per-stream state is a
`resonators.BankBatch` held by the `render.generate.GenerationCache` (`generate(...,
resonators=[Schedule per stream])`, times relative to the stream's sample 0), run inside the numba
kernel or stepped from Python by the torch engine. Evaluation scores the innovation under each
conditioning (true, another excerpt's notes, no notes), i.e. the likelihood of the same audio under
different MIDI.

Auxiliary mel target (features.py)
----------------------------------
`log_mel_spectrogram(audio [B, T], n_mels, hop, sample_rate_hz, n_fft=1024) -> [B, n_mels, T // hop]`
(natural log of the mel magnitude, floor 1e-5) on the conditioning frame grid: frame f's Hann window
is centred on samples [f * hop, (f + 1) * hop); `valid_frames` says which windows lie wholly inside
the segment.
"""

from __future__ import annotations

from ..lazy import entry_points

# entry point -> the module that defines it (never a submodule's own name, so that
# `from midi2wave.conditioning import resonators` still imports the module)
_ENTRY_POINTS = {
    "WindowInputs": "inputs", "window_inputs": "inputs",
    "Schedule": "resonators", "schedule": "resonators", "BankState": "resonators",
    "BankBatch": "resonators", "analyze": "resonators", "synthesize": "resonators",
    "gain_track": "resonators",
    "log_mel_spectrogram": "features",
}

__all__ = list(_ENTRY_POINTS)


__getattr__, __dir__ = entry_points(__name__, _ENTRY_POINTS)
