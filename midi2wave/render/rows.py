"""From resolved sampling options to the engines' rows: the steps every render shares.

A render (`synthesize.stream_notes`, behind `midi2wave synthesize` and `midi2wave.render`) and an
evaluation's generations (`evaluation/evaluate.py`) turn `SamplingOptions` into what the engines
take in the same way, here:

- `row_temperatures` (`temperature_track` per row): the temperature after each onset's attack;
- `sampled_schedules`: the resonator bank's shares of the innovation and the partial levels;
- `render_batch`: items whose conditioning is already built (evaluation's excerpts), each cut into
  chunks as a render cuts a span (`chunks.ChunkPlan`), generated as one batch seeded by
  `options.seed`, joined, and passed through the output's DC blocker (`audio.DCBlocker`).

Every function here takes options already resolved (`SamplingOptions.resolve`, once at the entry).
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

if TYPE_CHECKING:  # torch is imported where it is used: the live engine reads this module without it
    import torch

from .. import constants as C
from ..audio import DCBlocker
from ..config import SamplingOptions
from .chunks import ChunkPlan

__all__ = ["ModelInputs", "render_batch", "row_temperatures", "sampled_schedules", "temperature_track"]


@dataclass
class ModelInputs:
    """What the model is conditioned on for a batch of streams (rows) of equal length.

    rolls: [B, C, n_samples / spf + 2 * margin] or None; excitation: [B, n_samples] or None;
    year: [B] long or None; start_sample: the first sample of row 0 (piece time, frame aligned).
    """

    rolls: torch.Tensor | None
    excitation: torch.Tensor | None
    year: torch.Tensor | None
    start_sample: int
    n_samples: int
    resonators: list | None = None  # one resonators.Schedule per row (models with the bank)


def _check_resolved(options: SamplingOptions) -> None:
    if not options.is_resolved:
        raise ValueError("sampling options with settings left None: resolve them first (SamplingOptions.resolve)")


def temperature_track(onsets_s: np.ndarray, start_sample: int, n_samples: int, sample_rate_hz: int,
                      options: SamplingOptions) -> np.ndarray | None:
    """Per-sample temperatures (float32 [n_samples]) of samples start_sample .. start_sample +
    n_samples - 1 of a piece whose note onsets are `onsets_s` (piece seconds): `options.temperature`
    within `options.attack_seconds` after an onset, `options.sustain_temperature` elsewhere. None
    when the sustain temperature is off (0) or equal to the temperature. `options` resolved."""
    _check_resolved(options)
    if options.sustain_temperature <= 0 or options.sustain_temperature == options.temperature:
        return None
    track = np.full(n_samples, options.sustain_temperature, np.float32)
    attack = int(round(options.attack_seconds * sample_rate_hz))
    first = np.ceil(np.asarray(onsets_s, np.float64) * sample_rate_hz).astype(np.int64) - start_sample
    for a in first[(first + attack > 0) & (first < n_samples)]:
        track[max(0, a):max(0, a + attack)] = options.temperature
    return track


def row_temperatures(onsets_s: Sequence[np.ndarray], starts: Sequence[int], length: int, sample_rate_hz: int,
                     options: SamplingOptions) -> Any:
    """The engines' `temperature` for rows of `length` samples, row i starting at sample `starts[i]`
    of a timeline with note onsets `onsets_s[i]` (seconds): float32 [B, length] (`temperature_track`
    per row), or the one temperature (a float) when no row needs a track."""
    import torch

    tracks = [temperature_track(on, s, length, sample_rate_hz, options) for on, s in zip(onsets_s, starts)]
    return torch.from_numpy(np.stack(tracks)) if tracks[0] is not None else options.temperature


def bank_sampling(options: SamplingOptions, sample_rate_hz: int) -> dict[str, float]:
    """The bank's synthesis settings of resolved sampling options, as `Schedule.for_sampling` and
    `resonators.LiveBank` take them (keyword arguments: the shares, the direct path's filter poles
    and rates, the attacks' tracking, the sustain limit and the noise decay per sample): the one
    translation of the options' units into the bank's, for offline rows (`sampled_schedules`) and the
    live engine alike."""
    from ..conditioning import resonators

    _check_resolved(options)
    pole = resonators.attack_lowpass_pole(float(options.attack_lowpass_hz or 0.0), sample_rate_hz)
    highpass = resonators.highpass_rate(float(options.sustain_highpass_hz or 0.0), sample_rate_hz)
    return dict(
        sustain_innovation=float(options.sustain_innovation), release_innovation=float(options.release_innovation),
        partial_levels=float(options.partial_levels), attack_pole=pole, sustain_highpass=highpass,
        direct_dc_rate=resonators.highpass_rate(resonators.DIRECT_DC_HZ, sample_rate_hz) if pole or highpass else 0.0,
        attack_key_tracking=float(options.attack_lowpass_key_tracking or 0.0),
        sustain_limit=float(options.sustain_limit or 0.0),
        attack_velocity_tracking=float(options.attack_lowpass_velocity_tracking or 0.0),
        sustain_noise_decay=resonators.noise_decay_rate(float(options.sustain_noise_decay_db_per_s or 0.0),
                                                        sample_rate_hz))


def sampled_schedules(schedules: Sequence | None, options: SamplingOptions, bank: Any = None,
                      sample_rate_hz: int = C.SAMPLE_RATE_HZ, years: Sequence[int | None] | None = None) -> list | None:
    """The rows' resonator schedules (`resonators.Schedule`, None: no bank) as the options sample
    them: the innovation's direct share past the attacks and once every note is released, the
    attacks' low-pass and the high-pass past them, the pull towards the fitted partial levels
    (`Schedule.for_sampling`), and with `bank` (the model's `ResonatorConfig`) each row's room: its
    partials' decay after the releases in recordings of `years[i]` (None: unknown;
    `ResonatorConfig.release_tau_for`) and its tone on their levels (`resonators.room_level_gain`), and
    the undamped top's release (`resonators.sampling_release`)."""
    if schedules is None:
        return None
    from ..conditioning import resonators

    settings = bank_sampling(options, sample_rate_hz)
    years = list(years) if years is not None else [None] * len(schedules)
    rooms = bank is not None and bool(bank.room_years)
    return [s.for_sampling(**settings, **(resonators.sampling_release(bank, year, sample_rate_hz) if bank is not None else {}),
                           level_gain=resonators.room_level_gain(bank, year, s.omega, sample_rate_hz) if rooms else None)
            for s, year in zip(schedules, years)]


def row_years(year_index: Any) -> list[int | None] | None:
    """Recording years (None: unknown) of rows whose year indices (`constants.year_index`) are
    `year_index` (a [B] tensor; None: the model reads no year)."""
    if year_index is None:
        return None
    return [C.MAESTRO_YEARS[i - 1] if 0 < i <= len(C.MAESTRO_YEARS) else None for i in year_index.tolist()]


def _chunk_inputs(inputs: ModelInputs, starts: Sequence[int], length: int, samples_per_frame: int,
                  margin_frames: int) -> ModelInputs:
    """Every chunk of every row as a row (row-major): rolls sliced with the context margins (zero
    beyond the rows' rolls), excitation sliced (zero beyond), schedules shifted to the chunk's start."""
    import torch

    spf = samples_per_frame
    n_frames = length // spf
    rows: dict[str, list] = {"rolls": [], "year": [], "excitation": [], "resonators": []}
    padded = None
    if inputs.rolls is not None:
        F = inputs.rolls.shape[-1]
        padded = torch.nn.functional.pad(inputs.rolls, (0, max(0, (starts[-1] + length) // spf + 2 * margin_frames - F)))
    B = next(t.shape[0] for t in (inputs.rolls, inputs.year, inputs.excitation) if t is not None)
    for b in range(B):
        for s in starts:
            f = s // spf
            if padded is not None:
                rows["rolls"].append(padded[b, :, f:f + n_frames + 2 * margin_frames])
            if inputs.year is not None:
                rows["year"].append(inputs.year[b])
            if inputs.excitation is not None:
                exc = inputs.excitation[b, s:s + length]
                rows["excitation"].append(torch.nn.functional.pad(exc, (0, length - exc.shape[0])))
            if inputs.resonators is not None:
                rows["resonators"].append(inputs.resonators[b].shifted(-s))

    def stacked(name: str) -> torch.Tensor | None:
        return torch.stack(rows[name]) if rows[name] else None

    return ModelInputs(stacked("rolls"), stacked("excitation"), stacked("year"), inputs.start_sample, length,
                       rows["resonators"] if inputs.resonators is not None else None)


def render_batch(model: Any, inputs: ModelInputs, onsets_s: Sequence[np.ndarray], options: SamplingOptions, *,
                 progress: bool = False) -> list[np.ndarray]:
    """Render items whose conditioning is built (`inputs`: one row per item, `inputs.n_samples` long,
    each generated from silence; `onsets_s`: each item's note onsets in seconds from its start)
    as a render renders a span: each item cut into chunks (`options.chunk_seconds`, 0: one stream;
    `ChunkPlan`), every chunk of every item one stream of a single engine call whose uniforms are
    drawn from `options.seed`, each item's chunks joined (`options.crossfade`) and passed through
    the output's DC blocker. Returns float32 [n_samples] per item (not clipped to 16 bits: nothing
    is written). `options` resolved (`SamplingOptions.resolve`)."""
    import torch

    from .generate import generate

    _check_resolved(options)
    data = model.data_config
    sr, spf = data.sample_rate_hz, data.samples_per_frame
    n = inputs.n_samples
    plan = ChunkPlan.make(n, float(options.chunk_seconds or 0.0), options.overlap_seconds, sr, spf)
    starts, length = list(plan.starts), plan.length
    rows = dataclasses.replace(inputs, resonators=sampled_schedules(
        inputs.resonators, options, data.resonators, sr,
        row_years(inputs.year) if inputs.resonators is not None and inputs.year is not None else None))
    if options.chunk_seconds:
        rows = _chunk_inputs(rows, starts, length, spf, model.context_margin_frames)
    temperatures = row_temperatures([on for on in onsets_s for _ in starts], [s for _ in onsets_s for s in starts],
                                    length, sr, options)
    try:
        device = next(model.parameters()).device
    except StopIteration:
        device = torch.device("cpu")
    bar = callback = None
    if progress:
        from tqdm import tqdm

        n_rows = len(onsets_s) * plan.rows
        bar = tqdm(total=length, unit="sample", unit_scale=True, desc=f"generate {n_rows} x", leave=False,
                   file=sys.stderr)

        def callback(done: int, total: int) -> None:
            bar.update(done - bar.n)
    try:
        audio = generate(model, length, conditioning=rows.rolls.to(device) if rows.rolls is not None else None,
                         year=rows.year.to(device) if rows.year is not None else None,
                         excitation=rows.excitation.to(device) if rows.excitation is not None else None,
                         seed=options.seed, temperature=temperatures, min_p=options.min_p, engine=options.engine,
                         threads=options.threads or None, precision=options.precision, progress=callback,
                         resonators=rows.resonators)
    finally:
        if bar is not None:
            bar.close()
    audio = audio.float().cpu().numpy()
    K = plan.rows
    return [DCBlocker(sr)(plan.join(audio[i * K:(i + 1) * K], options.crossfade)) for i in range(len(onsets_s))]
