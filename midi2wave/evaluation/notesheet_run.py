"""`midi2wave evaluate --note-sheet`: render the note sheet with a model and with the training
instrument in the same years' rooms, measure every note (notesheet.py) and write the results.

The folder written (`NoteSheetOptions.out`, atomically: built beside and renamed):
    note_sheet.json        {"format": "midi2wave-note-sheet", sheet, sampling, per_note (the grid's notes),
                            long_notes (the long notes'), comparison}
    audio/<who>_<year>.wav 16-bit renders of the grid (who: model | reference)
    audio/<who>_<year>_long.wav  and of the long notes, a render of their own
    img/<year>.png         both spectrograms of the year side by side
    img/octaves.png        one note per octave (the loudest-but-one velocity), model against reference
    img/long.png           the long notes (their aftersound), model against reference
    index.html             the figures with players
"""

from __future__ import annotations

import html
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..errors import InputError
from ..files import atomic_folder, check_folder
from . import notesheet as ns

log = logging.getLogger(__name__)

__all__ = ["NoteSheetOptions", "note_sheet_results", "run_note_sheet", "write_note_sheet"]

FORMAT = "midi2wave-note-sheet"


@dataclass(frozen=True)
class NoteSheetOptions:
    """What `evaluate --note-sheet` renders and where it writes."""

    out: Path
    years: tuple[int, ...] = (2004, 2018)
    instrument: str = "salamander"
    sheet: ns.NoteSheet = field(default_factory=lambda: ns.NoteSheet(long_pitches=ns.LONG_PITCHES))
    measures: ns.NoteMeasureOptions = field(default_factory=ns.NoteMeasureOptions)
    force: bool = False

    def check(self) -> "NoteSheetOptions":
        from ..data import demo
        from ..data.instruments import INSTRUMENTS

        if self.instrument not in INSTRUMENTS:
            raise InputError(f"--instrument {self.instrument!r}: must be one of {', '.join(INSTRUMENTS)}")
        bad = [y for y in self.years if y not in demo.ROOMS]
        if not self.years or bad:
            raise InputError(f"--years {' '.join(map(str, bad or ['(none)']))}: the training instrument's rooms are "
                             f"{', '.join(map(str, demo.ROOMS))}")
        out = Path(self.out)
        if out.exists() and not out.is_dir():
            raise InputError(f"{out}: exists and is not a folder")
        if out.exists() and not self.force:
            raise InputError(f"{out}: exists (use --force to replace it)")
        if not out.parent.is_dir():
            raise InputError(f"{out}: its folder {out.parent} does not exist")
        if self.sheet.long_pitches and self.sheet.long_hold_seconds < self.measures.aftersound_late_seconds[1]:
            raise InputError(f"the note sheet's long notes are held {self.sheet.long_hold_seconds:g} s: the aftersound "
                             f"is measured to {self.measures.aftersound_late_seconds[1]:g} s after the onset")
        check_folder(out, self.force)
        return self


def note_sheet_results(render_model: Callable[[Any, Any, int], np.ndarray],
                       render_reference: Callable[[Any, Any, int], np.ndarray], options: NoteSheetOptions,
                       sample_rate_hz: int) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Render and measure. render_model / render_reference: (notes, pedals, year) -> float32 [n] at
    `sample_rate_hz`, from time 0. Returns (the JSON-able results, {"model_2004": audio, ...})."""
    notes, pedals = options.sheet.notes()
    long_notes, long_pedals = options.sheet.long_notes()
    audio: dict[str, np.ndarray] = {}
    rows: dict[str, dict[int, list[dict[str, Any]]]] = {"model": {}, "reference": {}}
    long_rows: dict[str, dict[int, list[dict[str, Any]]]] = {"model": {}, "reference": {}}
    for year in options.years:
        for who, render in (("reference", render_reference), ("model", render_model)):
            log.info("note sheet: %s, year %d (%d notes, %.0f s)", who, year, len(notes), options.sheet.duration_seconds)
            x = np.asarray(render(notes, pedals, year), np.float32).reshape(-1)
            audio[f"{who}_{year}"] = x
            rows[who][year] = ns.sheet_measures(x, sample_rate_hz, notes, options.measures)
            if len(long_notes):  # a render of their own: the grid's is the same with or without them
                log.info("note sheet: %s, year %d, long notes (%d notes, %.0f s)", who, year, len(long_notes),
                         options.sheet.long_duration_seconds)
                x = np.asarray(render(long_notes, long_pedals, year), np.float32).reshape(-1)
                audio[f"{who}_{year}_long"] = x
                long_rows[who][year] = ns.long_measures(x, sample_rate_hz, long_notes, options.measures)
    comparison = ns.compare(rows["model"], rows["reference"], options.measures,
                            *((long_rows["model"], long_rows["reference"]) if len(long_notes) else ()))

    def plain(r: dict[str, Any]) -> dict[str, Any]:
        return {k: (np.round(v, 3).tolist() if isinstance(v, np.ndarray) else v) for k, v in r.items()}

    results = {"format": FORMAT, "version": 1, "sheet": asdict(options.sheet), "instrument": options.instrument,
               "measures": {k: v for k, v in asdict(options.measures).items()},
               "per_note": {who: {str(y): [plain(r) for r in rs] for y, rs in by_year.items()}
                            for who, by_year in rows.items()},
               "long_notes": {who: {str(y): rs for y, rs in by_year.items()} for who, by_year in long_rows.items()},
               "comparison": comparison}
    return results, audio


def _spectrogram_pair(path: Path, a: np.ndarray, b: np.ndarray, sr: int, title: str,
                      segments: list[tuple[float, float, str]] | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..plots import draw_spectrogram, log_spectrogram, shared_range_db

    pieces: list[tuple[str, np.ndarray]] = []
    if segments is None:
        pieces = [("model", a), ("training audio (reference)", b)]
    else:  # one note per octave: the segments of each signal laid end to end
        cut = [(int(s * sr), int(e * sr)) for s, e, _ in segments]
        pieces = [("model", np.concatenate([a[s:e] for s, e in cut])),
                  ("training audio (reference)", np.concatenate([b[s:e] for s, e in cut]))]
    vmin, vmax = shared_range_db([log_spectrogram(x) for _, x in pieces])
    fig, axes = plt.subplots(1, 2, figsize=(14, 4.2), sharey=True)
    for ax, (label, x) in zip(axes, pieces):
        draw_spectrogram(ax, x, sr, vmin=vmin, vmax=vmax)
        ax.set_title(f"{label}: {title}", fontsize=9)
        if segments is not None:
            t = 0.0
            for s, e, name in segments:
                ax.text(t + 0.02, sr / 2 * 0.93, name, color="w", fontsize=7)
                t += e - s
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _value(value: float, measure: str) -> str:
    """A summary as printed: dB with a sign, ticks per note as a plain mean."""
    return f"{value:.2f}" if measure in ns.MEAN_MEASURES else f"{value:+.1f}"


def _page(results: dict[str, Any], years: tuple[int, ...]) -> str:
    comp = results["comparison"]
    rows = []
    for y in comp["years"]:
        py = comp["per_year"][str(y)]
        cells = "".join(f"<td>{_value(py['model'][m], m)}</td><td>{_value(py['reference'][m], m)}</td>"
                        for m in ns.MEASURES)
        after = py.get("aftersound_db")
        cell = f"{after['model']:+.1f} / {after['reference']:+.1f}" if after else "-"
        rows.append(f"<tr><th>{y}</th>{cells}<td>{py['levels_db']:.1f}</td><td>{cell}</td></tr>")
    head = "".join(f"<th colspan=2>{html.escape(m)}<br>model / reference</th>" for m in ns.MEASURES)
    checks = "".join(f"<li>{html.escape(k)}: {'pass' if v else '<b>FAIL</b>'}</li>" for k, v in comp["checks"].items())
    long_players = "".join(
        f"<p>{y}: model <audio controls src='audio/model_{y}_long.wav'></audio> reference "
        f"<audio controls src='audio/reference_{y}_long.wav'></audio></p>"
        for y in years if results.get("long_notes", {}).get("model", {}).get(str(y)))
    figs = "".join(
        f"<h2>{y}</h2><img src='img/{y}.png' width=1100><p>model <audio controls src='audio/model_{y}.wav'></audio> "
        f"reference <audio controls src='audio/reference_{y}.wav'></audio></p>" for y in years)
    return ("<!doctype html><meta charset=utf-8><title>midi2wave note sheet</title>"
            "<style>body{font-family:sans-serif;margin:2em}td,th{padding:2px 8px;text-align:right}</style>"
            f"<h1>Note sheet: model against the training audio ({html.escape(results['instrument'])})</h1>"
            "<p>Medians over the notes (dB; decay in dB/s; levels: median |difference| of partials 1-16).</p>"
            f"<table><tr><th>year</th>{head}<th>levels_db</th><th>aftersound_db<br>model / reference</th></tr>"
            f"{''.join(rows)}</table>"
            f"<ul>{checks}</ul><h2>One note per octave</h2><img src='img/octaves.png' width=1100>"
            + (f"<h2>Long notes</h2><img src='img/long.png' width=1100>{long_players}" if long_players else "")
            + figs)


def write_note_sheet(results: dict[str, Any], audio: dict[str, np.ndarray], options: NoteSheetOptions,
                     sample_rate_hz: int) -> Path:
    """Write the folder (module docstring): filled under a temporary name beside it and renamed
    (`files.atomic_folder`)."""
    out = Path(options.out)
    with atomic_folder(out, force=options.force) as tmp:
        _fill(tmp, results, audio, options, sample_rate_hz)
    return out


def _fill(tmp: Path, results: dict[str, Any], audio: dict[str, np.ndarray], options: NoteSheetOptions,
          sample_rate_hz: int) -> None:
    from ..audio import save_wav

    (tmp / "audio").mkdir()
    (tmp / "img").mkdir()
    for name, x in audio.items():
        save_wav(tmp / "audio" / f"{name}.wav", x, sample_rate_hz, force=True)
    sheet = options.sheet
    notes, _ = sheet.notes()
    for y in options.years:  # the grid's
        _spectrogram_pair(tmp / "img" / f"{y}.png", audio[f"model_{y}"], audio[f"reference_{y}"], sample_rate_hz,
                          f"note sheet, year {y}")
    velocity = sorted(sheet.velocities)[-2] if len(sheet.velocities) > 1 else sheet.velocities[0]
    segments = []
    for octave_start in range(21, 109, 12):
        pick = [i for i in range(len(notes)) if octave_start <= notes.pitch[i] < octave_start + 12
                and notes.velocity[i] == velocity]
        if pick:
            i = pick[0]
            segments.append((float(notes.onset_s[i]) - 0.05, float(notes.offset_s[i]) + 0.45, f"MIDI {int(notes.pitch[i])}"))
    y0 = options.years[-1]
    _spectrogram_pair(tmp / "img" / "octaves.png", audio[f"model_{y0}"], audio[f"reference_{y0}"], sample_rate_hz,
                      f"one note per octave, velocity {velocity}, year {y0}", segments)
    if sheet.long_pitches:
        long, _ = sheet.long_notes()
        long_segments = [(float(long.onset_s[i]) - 0.05, float(long.offset_s[i]) + 0.45, f"MIDI {int(long.pitch[i])}")
                         for i in range(len(long))]
        _spectrogram_pair(tmp / "img" / "long.png", audio[f"model_{y0}_long"], audio[f"reference_{y0}_long"],
                          sample_rate_hz, f"long notes, velocity {sheet.long_velocity}, year {y0}", long_segments)
    (tmp / "note_sheet.json").write_text(json.dumps(results, indent=1, allow_nan=True))
    (tmp / "index.html").write_text(_page(results, options.years))


def run_note_sheet(checkpoint: Any, options: NoteSheetOptions, sampling: Any, *, json_path: Path | None = None,
                   device: str | None = None, quiet: bool = False) -> int:
    """`evaluate --note-sheet`: check, load the model, render, measure, write; prints the medians.
    Returns 0 (the checks of the bar are reported, not an exit status)."""
    from ..checkpoint import load_model
    from ..data.instruments import render_notes as instrument_notes
    from ..midi import apply_sustain
    from ..render.synthesize import render_notes

    from ..devices import check_device

    torch_device = check_device(device if device is not None else "cpu")  # before any work; CPU: the numba kernel
    options.check()
    if json_path is not None:
        json_path = Path(json_path)
        if json_path.exists() and (json_path.is_dir() or not options.force):
            raise InputError(f"{json_path}: already exists (use --force to overwrite)" if not json_path.is_dir()
                             else f"{json_path}: is a folder")
        if not json_path.parent.is_dir():
            raise InputError(f"{json_path}: its folder {json_path.parent} does not exist")
    model, config = load_model(checkpoint, device=torch_device)
    model.eval()
    sampling = sampling.resolve(config)
    sr = int(model.data_config.sample_rate_hz)
    threshold = model.data_config.sustain_threshold

    def by_model(notes: Any, pedals: Any, year: int) -> np.ndarray:
        return render_notes(model, apply_sustain(notes, pedals, threshold), pedals, sampling, year=year,
                            progress=not quiet, label=f"note sheet {year}")

    def by_instrument(notes: Any, pedals: Any, year: int) -> np.ndarray:
        return instrument_notes(notes, pedals, options.instrument, sample_rate_hz=sr, year=year)

    results, audio = note_sheet_results(by_model, by_instrument, options, sr)
    results["checkpoint"] = str(checkpoint) if checkpoint else "bundled"
    results["sampling"] = {k: v for k, v in asdict(sampling).items() if isinstance(v, (int, float, str, type(None)))}
    out = write_note_sheet(results, audio, options, sr)
    if json_path is not None:
        from ..files import atomic_write_bytes

        atomic_write_bytes(json_path, json.dumps(results, indent=1).encode(), force=options.force)
    comp = results["comparison"]
    lines = [f"note sheet ({len(options.sheet.pitches) * len(options.sheet.velocities)} notes; medians (ticks: per "
             f"note), model / {options.instrument}):"]
    for y in comp["years"]:
        py = comp["per_year"][str(y)]
        cells = ", ".join(f"{m} {_value(py['model'][m], m)} / {_value(py['reference'][m], m)}" for m in ns.MEASURES)
        layers = ", ".join(f"v{v} {d:+.1f}" for v, d in py["velocity_attack_db"].items())
        lines.append(f"  {y}: {cells}, partial levels |diff| {py['levels_db']:.1f} dB, attack_db by velocity "
                     f"(model - {options.instrument}) {layers}")
        if "aftersound_db" in py:
            a = py["aftersound_db"]
            lines.append(f"  {y}: aftersound_db {a['model']:+.1f} / {a['reference']:+.1f} ({len(options.sheet.long_pitches)} "
                         f"long notes; median difference {a['difference']:+.1f})")
    for k, v in comp["between_years"].items():
        lines.append(f"  {k}: release_db {v['model']['release_db']:+.1f} / {v['reference']['release_db']:+.1f}")
    failed = [k for k, v in comp["checks"].items() if not v]
    lines.append(f"  checks: {len(comp['checks']) - len(failed)} of {len(comp['checks'])} met"
                 + (f" (not: {', '.join(failed)})" if failed else ""))
    lines.append(f"wrote {out}")
    print("\n".join(lines))
    return 0
