"""Realism in evaluation: gap noise, tonal purity and log-mel distance (`realism.py`) of each
excerpt's real audio, generation, a second instrument's render of its notes (the scale) and another
excerpt's audio (chance); the plot helpers and the table rows of these measures."""

from __future__ import annotations

import functools
from typing import Any, Sequence

import numpy as np

from . import realism
from ..errors import EvaluationError, Midi2WaveError
from .excerpts import Excerpt
from ..midi import Notes, PedalEvents

def fmt_value(value: Any, spec: str = ".3f") -> str:
    """A table cell: '-' for a missing value."""
    return "-" if value is None else format(value, spec)


__all__ = ["OTHER_INSTRUMENTS", "REALISM_KINDS", "check_other_instrument", "fmt_value", "level_db", "mask_spans",
           "other_instrument_renders", "realism_label", "realism_scores", "realism_table", "render_excerpt_notes"]

_MAX_PREROLL_SECONDS = 4.0


def render_excerpt_notes(render: Any, notes: Notes, n_samples: int, sample_rate_hz: int) -> np.ndarray:
    """float32 [n_samples]: `notes` (sustained; times relative to the first sample, onsets may be
    negative, as `Excerpt.sounding`) rendered by `render(notes, sample_rate_hz) -> float32 [n]`
    (a renderer of notes at times >= 0, no pedal events: the notes already hold the pedal). Notes
    from before the start are rendered from a pre-roll of up to 4 s (earlier onsets move to its
    start), which is then cut off; offsets past the end are cut to it; the result is trimmed or
    zero-padded to `n_samples`."""
    seconds = n_samples / sample_rate_hz
    preroll = min(max(0.0, -float(notes.onset_s.min())) if len(notes) else 0.0, _MAX_PREROLL_SECONDS)
    onset = np.maximum(notes.onset_s, -preroll) + preroll
    offset = np.maximum(np.minimum(notes.offset_s, seconds) + preroll, onset + 1e-3)
    audio = np.asarray(render(Notes(onset, offset, notes.pitch, notes.velocity), sample_rate_hz), np.float32)
    first = int(round(preroll * sample_rate_hz))
    out = np.zeros(n_samples, np.float32)
    piece = audio[first:first + n_samples]
    out[:len(piece)] = piece
    return out


def _instrument_notes(instrument: str):
    """render(notes, sample_rate_hz) -> float32 [n]: notes (times >= 0, no pedal) played by one of the
    demo data's pianos (`data.instruments`: "musescore" = FluidSynth, "salamander" = sfizz), dry."""
    def render(notes: Notes, sample_rate_hz: int) -> np.ndarray:
        from ..data import instruments

        return instruments.render_notes(notes, PedalEvents.empty(), instrument, sample_rate_hz, tail_seconds=0.1)
    return render


# A second instrument renders each excerpt's notes: the scale of the log-mel distance (how far
# another piano is from the real audio). name -> render(notes, n_samples, sample_rate_hz) -> float32
# [n_samples] (notes sustained, relative to the excerpt's start, as `Excerpt.sounding`); a renderer
# raises a Midi2WaveError when it cannot run (the scale is then skipped with a one-line note). On
# data of one of the demo pianos, the other one is the scale.
OTHER_INSTRUMENTS: dict[str, Any] = {
    name: functools.partial(render_excerpt_notes, _instrument_notes(name)) for name in ("musescore", "salamander")
}


def check_other_instrument(name: str) -> None:
    if name != "none" and name not in OTHER_INSTRUMENTS:
        raise EvaluationError(f"--other-instrument {name}: not one of {', '.join(list(OTHER_INSTRUMENTS) + ['none'])}")


REALISM_KINDS = ("ground_truth", "generated", "other_instrument", "ground_truth_other_midi")


def _realism_of(audio: np.ndarray, excerpt: Excerpt, mask: np.ndarray, reference: np.ndarray | None,
                gap: bool = True) -> dict[str, Any]:
    sr = excerpt.sample_rate_hz
    out: dict[str, Any] = {}
    if gap:
        out["gap_noise_db"] = realism.gap_noise_db(audio, mask, sr)
    out["tonal_purity"] = realism.tonal_purity(audio, excerpt.sounding, sr)
    if reference is not None:
        out["log_mel_distance"] = realism.log_mel_distance(audio, reference, sr)
    return out


def _realism_summary(per: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Median gap noise (over the excerpts that have a value), mean purity and mean distance."""
    out: dict[str, Any] = {}
    if "gap_noise_db" in per[0]:
        gaps = [p["gap_noise_db"] for p in per]
        out["gap_noise_db_median"] = realism.median_or_none(gaps)
        out["gap_excerpts"] = sum(g is not None for g in gaps)
    purity = [p["tonal_purity"] for p in per if p["tonal_purity"] is not None]
    out["tonal_purity_mean"] = float(np.mean(purity)) if purity else None
    if "log_mel_distance" in per[0]:
        out["log_mel_distance_mean"] = float(np.mean([p["log_mel_distance"] for p in per]))
    return out


def other_instrument_renders(excerpts: Sequence[Excerpt], other_instrument: str, say: Any = None
                              ) -> tuple[list[np.ndarray] | None, str | None]:
    """(renders of each excerpt's sounding notes by `other_instrument`, None) or (None, why not)."""
    say = say if say is not None else (lambda _msg: None)
    if other_instrument == "none":
        return None, "--other-instrument none"
    render = OTHER_INSTRUMENTS[other_instrument]
    sr = excerpts[0].sample_rate_hz
    try:
        return [render(e.sounding, len(e.audio), sr) for e in excerpts], None
    except Midi2WaveError as err:
        skipped = f"{other_instrument} unavailable ({err})"
        say(f"realism: no second-instrument scale: {skipped}")
        return None, skipped


def realism_scores(excerpts: Sequence[Excerpt], generated: Sequence[np.ndarray], donors: Sequence[int],
                    other_instrument: str = "musescore", say: Any = None,
                    renders: tuple[list[np.ndarray] | None, str | None] | None = None) -> dict[str, Any]:
    """Gap noise, tonal purity and log-mel distance (`realism.py`) of each excerpt's audio:

    - ground_truth: the real audio (the ceiling; the distance is to itself, so not given);
    - generated: the generation from the excerpt's MIDI; distance to the real audio;
    - other_instrument: a render of the excerpt's (sounding, sustained) notes by a second
      instrument (`OTHER_INSTRUMENTS`); its distance to the real audio is the scale of the
      generation's ("as far as another piano"); None when `other_instrument` is "none" or the
      renderer cannot run (`other_instrument_skipped` says why);
    - ground_truth_other_midi: another excerpt's real audio (the donor's) measured against this
      excerpt's notes: the purity of piano audio at the wrong pitches and the distance between
      unrelated excerpts (chance levels; no gap noise, its gaps are elsewhere).
    The floor generation (the donor's generation) is not scored again: against its own notes it is
    the donor's `generated` row, against this excerpt's notes `ground_truth_other_midi` covers it.
    `renders`: `other_instrument_renders`' result when the caller made it already.
    Returns the per-excerpt values and summaries (`_realism_summary`) per kind."""
    sr = excerpts[0].sample_rate_hz
    others, skipped = renders if renders is not None else other_instrument_renders(excerpts, other_instrument, say)
    per: list[dict[str, Any]] = []
    for i, e in enumerate(excerpts):
        mask = realism.gap_mask(e.sounding, len(e.audio), sr)
        row: dict[str, Any] = {
            "gap_seconds": float(mask.sum() / sr),
            "partial_coverage": realism.partial_coverage(e.sounding, len(e.audio), sr),
            "ground_truth": _realism_of(e.audio, e, mask, None),
            "generated": _realism_of(generated[i], e, mask, e.audio),
            "other_instrument": _realism_of(others[i], e, mask, e.audio) if others is not None else None,
        }
        if len(excerpts) >= 2:
            row["ground_truth_other_midi"] = _realism_of(excerpts[donors[i]].audio, e, mask, e.audio, gap=False)
        per.append(row)
    result: dict[str, Any] = {
        kind: _realism_summary([p[kind] for p in per])
        for kind in REALISM_KINDS if kind in per[0] and per[0][kind] is not None
    }
    coverage = [p["partial_coverage"] for p in per if p["partial_coverage"] is not None]
    result["partial_coverage_mean"] = float(np.mean(coverage)) if coverage else None
    result["other_instrument_name"] = other_instrument if others is not None else None
    result["other_instrument_skipped"] = skipped
    result["per_excerpt"] = per
    return result


def mask_spans(mask: np.ndarray, sample_rate_hz: int) -> list[tuple[float, float]]:
    """[(start_s, end_s)] of the runs of True in a bool [n] mask."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    return [(a / sample_rate_hz, b / sample_rate_hz) for a, b in zip(edges[::2], edges[1::2])]


def level_db(audio: np.ndarray, sample_rate_hz: int, seconds: float = 0.02) -> tuple[np.ndarray, np.ndarray]:
    """(times_s [k], RMS level in dBFS [k]) of consecutive `seconds` blocks (floor -120 dB)."""
    block = max(1, int(round(seconds * sample_rate_hz)))
    k = len(audio) // block
    x = np.asarray(audio[: k * block], np.float64).reshape(k, block)
    level = 10.0 * np.log10(np.maximum(np.mean(x ** 2, axis=1), 1e-12))
    return (np.arange(k) + 0.5) * block / sample_rate_hz, level


def realism_label(name: str, values: dict[str, Any] | None) -> str:
    if not values:
        return name
    parts = []
    if values.get("gap_noise_db") is not None:
        parts.append(f"gap {values['gap_noise_db']:.1f} dB")
    if values.get("tonal_purity") is not None:
        parts.append(f"purity {values['tonal_purity']:.3f}")
    if values.get("log_mel_distance") is not None:
        parts.append(f"log-mel dist. {values['log_mel_distance']:.2f}")
    return f"{name}: " + ", ".join(parts) if parts else name


def realism_table(re_: dict[str, Any] | None) -> list[str]:
    if re_ is None:
        return []
    other = re_.get("other_instrument_name")
    names = [("ground_truth", "ground truth (ceiling)"), ("generated", "generated (model)"),
             ("other_instrument", f"{other} render of the MIDI (scale)"),
             ("ground_truth_other_midi", "ground truth of other MIDI (chance)")]
    lines = ["", f"{'realism':<38}{'gap dB':>8}{'purity':>8}{'log-mel':>9}"]
    for key, label in names:
        r = re_.get(key)
        if r is None:
            continue
        dist = r.get("log_mel_distance_mean")
        lines.append(f"{'  ' + label:<38}{fmt_value(r.get('gap_noise_db_median'), '.1f'):>8}"
                     f"{fmt_value(r.get('tonal_purity_mean')):>8}{fmt_value(dist, '.2f'):>9}")
    if re_.get("other_instrument_skipped"):
        lines.append(f"  (no second-instrument scale: {re_['other_instrument_skipped']})")
    n = len(re_.get("per_excerpt", []))
    gap_n = re_["ground_truth"].get("gap_excerpts", 0)
    lines.append(f"  gap dB: median over the {gap_n} of {n} excerpts with a gap (no note sounding, "
                 f"{realism.DEFAULT.release_margin_seconds:g} s release margin)")
    lines.append(f"  purity: +-{realism.DEFAULT.purity_cents:g} cents of the sounding notes' partials; "
                 f"white noise would get ~{fmt_value(re_.get('partial_coverage_mean'), '.2f')}")
    lines.append("  log-mel: distance to the real audio of the excerpt (equal RMS)")
    return lines
