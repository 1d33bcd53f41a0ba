"""`evaluate --report DIR`: a self-contained static page to listen to an evaluation.

A researcher judging a model wants to press play on the generation and the real audio of the same
excerpt side by side and see where they differ. The page `DIR/index.html` holds, for each excerpt,
audio players for every clip (the generation, the real audio as ceiling, the generation from
another excerpt's MIDI as floor, and any further clips given, e.g. another instrument's render),
one spectrogram per clip on one colour scale, and the excerpt's notes above them on the same time
axis (`plots.excerpt_strips`); then whatever per-excerpt measurements the results hold, a summary
table at the top, and the settings, config, checkpoint and command that made it. Audio is 16-bit
WAV (soundfile, `audio.save_wav`), images PNG; nothing is loaded from the network, so the folder
opens from disk and can be zipped and shared. `DIR/report.json` lists the clips of each excerpt
(read by `listening.build_test`) beside the full results.

The folder is written under a temporary name beside DIR and renamed into place at the end; an
existing non-empty DIR is refused unless `force` (then replaced whole).
"""

from __future__ import annotations

import html
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .. import plots
from ..audio import save_wav
from .. import files
from ..files import atomic_folder, atomic_path
from ..errors import Midi2WaveError

__all__ = ["REPORT_FORMAT", "ReportError", "ReportExcerpt", "ReportOptions", "check_folder",
           "clip_label", "load_report", "write_report"]

REPORT_FORMAT = "midi2wave-report"
REPORT_VERSION = 1
REPORT_JSON = "report.json"

# Display names of the clip keys `evaluate` gives; any other key is shown as it is.
CLIP_LABELS = {
    "generated": "generation (model)",
    "real": "real audio (ceiling)",
    "floor": "generation from another excerpt's MIDI (floor)",
    "other_instrument": "real audio, other instrument",
}
# Display names of the kinds under results[...] (transcription: whose audio was transcribed).
KIND_LABELS = {
    "ground_truth": "real audio (ceiling)",
    "generated": "generation (model)",
    "generated_other_midi": "generation from other MIDI (floor)",
    "ground_truth_other_midi": "real audio of other MIDI (chance)",
}
# Top-level results keys that are not measurements (shown elsewhere on the page, or not at all).
_NOT_MEASUREMENTS = {"format", "version", "settings", "config", "excerpts", "timing_seconds", "environment",
                     "plots", "report"}


class ReportError(Midi2WaveError):
    """A report cannot be written (no excerpts, clips of unequal length, output folder exists...)."""


@dataclass(frozen=True)
class ReportOptions:
    """Where and how to write the page. command: the command line that made it (shown on the page);
    checkpoint: the model's checkpoint path, or "bundled"."""

    folder: Path
    force: bool = False
    command: str | None = None
    checkpoint: str | None = None


@dataclass
class ReportExcerpt:
    """One excerpt on the page. clips: key -> float audio [n] in [-1, 1) at `sample_rate_hz`, in page
    order (keys of CLIP_LABELS or any other name); notes: the reference notes (`midi.Notes`, times
    relative to the excerpt's start); transcribed: notes transcribed from the generation (or None);
    identity: what identifies the excerpt (`evaluate.Excerpt.describe()`: source, start_frame, ...)."""

    title: str
    identity: dict
    notes: Any
    clips: dict
    sample_rate_hz: int
    seconds: float
    transcribed: Any = None


def clip_label(key: str) -> str:
    return CLIP_LABELS.get(key, key.replace("_", " "))


# ------------------------------------------------------------------------------------- folders


def check_folder(folder: str | os.PathLike, force: bool = False) -> None:
    """Refuse (before any costly work) an output folder that exists and is not empty, unless `force`
    (`files.check_folder`), and one whose parent folder does not exist."""
    folder = Path(folder)
    files.check_folder(folder, force)
    if not folder.parent.is_dir():
        raise ReportError(f"{folder}: folder {folder.parent} does not exist")


def load_report(folder: str | os.PathLike) -> dict[str, Any]:
    """The `report.json` of a report folder, checked for format; ReportError naming the file otherwise."""
    path = Path(folder) / REPORT_JSON
    if not Path(folder).is_dir():
        raise ReportError(f"{folder}: no such report folder (make one with `midi2wave evaluate --report`)")
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ReportError(f"{path}: missing (not a folder written by `midi2wave evaluate --report`)") from None
    except (OSError, ValueError) as e:
        raise ReportError(f"{path}: unreadable ({e})") from None
    if not isinstance(data, dict) or data.get("format") != REPORT_FORMAT:
        raise ReportError(f"{path}: not a midi2wave report (format {data.get('format') if isinstance(data, dict) else None!r})")
    if not data.get("excerpts"):
        raise ReportError(f"{path}: the report has no excerpts")
    return data


# -------------------------------------------------------------------------------------- tables


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.3f}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"
    return str(value)


def _rows(value: Any) -> list[tuple[str, dict[str, Any]]]:
    """A measurement as table rows (label, {column: scalar}): a scalar is one row with column
    "value"; a dict's scalars one row, and each of its sub-dicts of scalars one row of its own."""
    if _is_scalar(value):
        return [("", {"value": value})]
    if not isinstance(value, dict):
        return []
    rows: list[tuple[str, dict[str, Any]]] = []
    own = {k: v for k, v in value.items() if _is_scalar(v) and k != "per_excerpt"}
    if own:
        rows.append(("", own))
    for key, sub in value.items():
        if key != "per_excerpt" and isinstance(sub, dict):
            scalars = {k: v for k, v in sub.items() if _is_scalar(v)}
            if scalars:
                rows.append((KIND_LABELS.get(key, key), scalars))
    return rows


def _table(sections: Sequence[tuple[str, Any]], css_class: str = "metrics") -> str:
    """One HTML table per named measurement, with the union of its rows' columns."""
    out = []
    groups: list[tuple[str, list[tuple[str, dict[str, Any]]]]] = []
    for name, value in sections:
        rows = _rows(value)
        named = [r for r in rows if r[0]]
        if named and len(named) < len(rows):  # a dict's own scalars beside its kinds: a table of their own
            groups += [(name, named), (f"{name} (other)", [r for r in rows if not r[0]])]
        elif rows:
            groups.append((name, rows))
    for name, rows in groups:
        columns: list[str] = []
        for _, row in rows:
            columns += [c for c in row if c not in columns]
        head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
        body = "".join(
            f"<tr><th>{html.escape(label)}</th>"
            + "".join(f"<td>{html.escape(_fmt(row.get(c)))}</td>" for c in columns) + "</tr>"
            for label, row in rows)
        out.append(f'<table class="{css_class}" data-measure="{html.escape(name)}"><caption>{html.escape(name)}'
                   f"</caption><tr><th></th>{head}</tr>{body}</table>")
    return "\n".join(out)


def _summary_sections(results: dict[str, Any]) -> list[tuple[str, Any]]:
    return [(k, v) for k, v in results.items() if k not in _NOT_MEASUREMENTS and v is not None]


def _excerpt_sections(results: dict[str, Any], i: int, n: int) -> list[tuple[str, Any]]:
    """Every measurement that has a per-excerpt list of n entries: its entry i (so measurements added
    to `evaluate` later appear without edits here)."""
    out = []
    for key, value in _summary_sections(results):
        per = value.get("per_excerpt") if isinstance(value, dict) else None
        if isinstance(per, list) and len(per) == n:
            out.append((key, per[i]))
    return out


def _kv_table(items: dict[str, Any]) -> str:
    rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(_fmt(v) if _is_scalar(v) else json.dumps(v))}"
                   f"</td></tr>" for k, v in items.items())
    return f'<table class="kv">{rows}</table>'


# ---------------------------------------------------------------------------------------- page

_CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1120px; color: #222; padding: 0 1em; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; }
h2 { font-size: 1.15em; margin-top: 2em; border-bottom: 1px solid #ccc; padding-bottom: 0.2em; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.85em; }
caption { text-align: left; font-weight: bold; padding: 0.2em 0; }
th, td { border: 1px solid #ddd; padding: 0.15em 0.5em; text-align: right; }
th:first-child, table.kv td { text-align: left; }
.row { display: flex; align-items: center; gap: 0.8em; margin: 0; }
.row .side { width: 250px; flex: none; font-size: 0.85em; }
.row .side audio { width: 250px; margin-top: 0.2em; }
.row img { width: 800px; max-width: calc(100% - 260px); display: block; }
.metrics-row { display: flex; flex-wrap: wrap; gap: 1.2em; }
pre { background: #f6f6f6; padding: 0.6em; overflow-x: auto; font-size: 0.8em; }
.note { color: #555; font-size: 0.85em; }
"""


def _excerpt_html(i: int, ex: ReportExcerpt, files: dict[str, Any], results: dict[str, Any], n: int) -> str:
    parts = [f'<section class="excerpt" id="excerpt-{i:02d}">',
             f"<h2>Excerpt {i + 1}: {html.escape(ex.title)}</h2>",
             '<div class="row"><div class="side">notes (bars: the MIDI'
             + ("; red dots: onsets transcribed from the generation" if ex.transcribed is not None else "")
             + f')</div><img src="{files["images"]["notes"]}" alt="notes of excerpt {i + 1}"></div>']
    for key in ex.clips:
        parts.append(f'<div class="row"><div class="side"><b>{html.escape(clip_label(key))}</b><br>'
                     f'<audio controls preload="auto" src="{files["clips"][key]}" data-clip="{html.escape(key)}">'
                     f'</audio></div><img src="{files["images"][key]}" alt="spectrogram: {html.escape(clip_label(key))}">'
                     f"</div>")
    metrics = _excerpt_sections(results, i, n)
    parts.append('<div class="metrics-row">' + _kv_table(ex.identity) + _table(metrics) + "</div>")
    parts.append("</section>")
    return "\n".join(parts)


def _page(options: ReportOptions, results: dict[str, Any], excerpts: Sequence[ReportExcerpt],
          files: Sequence[dict[str, Any]]) -> str:
    settings = dict(results.get("settings") or {})
    if options.checkpoint is not None:
        settings["checkpoint"] = options.checkpoint
    checkpoint = options.checkpoint or settings.get("checkpoint") or "–"
    n = len(excerpts)
    sr = excerpts[0].sample_rate_hz
    body = [
        "<h1>midi2wave evaluation</h1>",
        f'<p class="note">checkpoint <code>{html.escape(str(checkpoint))}</code> · {n} excerpts × '
        f"{excerpts[0].seconds:g} s · {sr} Hz. Every excerpt: its notes, then each clip with its "
        "spectrogram on one time axis and one colour scale (dB, 0 = full-scale sine).</p>",
        "<h2>Summary</h2>",
        _table(_summary_sections(results), "metrics summary"),
        "<h2>Command</h2>",
        f'<pre id="command">{html.escape(options.command or "(called from Python)")}</pre>',
    ]
    body += [_excerpt_html(i, ex, f, results, n) for i, (ex, f) in enumerate(zip(excerpts, files))]
    body += ["<h2>Settings</h2>", _kv_table(settings)]
    if results.get("environment"):
        body.append(_kv_table(results["environment"]))
    if results.get("config") is not None:
        body.append('<details open><summary>model config</summary><pre id="config">'
                    + html.escape(json.dumps(results["config"], indent=1)) + "</pre></details>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>midi2wave evaluation ({n} excerpts)</title><style>{_CSS}</style></head>\n<body>\n"
            + "\n".join(body) + "\n</body></html>\n")


def _json_safe(value: Any) -> Any:
    """Replace non-finite floats by None (report.json is read by browsers and strict parsers)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def write_report(options: ReportOptions, results: dict[str, Any], excerpts: Sequence[ReportExcerpt]) -> Path:
    """Write the report folder `options.folder` (index.html, audio/*.wav, img/*.png, report.json) for
    `results` (the evaluation's JSON-able dict) and the excerpts' clips; returns index.html's path.
    Raises ReportError for no excerpts or clips of the wrong length, OutputExistsError for an
    existing non-empty folder without `force`."""
    folder = Path(options.folder)
    if not excerpts:
        raise ReportError(f"{folder}: no excerpts to report")
    for i, ex in enumerate(excerpts):
        if not ex.clips:
            raise ReportError(f"{folder}: excerpt {i} has no clips")
        n = int(round(ex.seconds * ex.sample_rate_hz))
        for key, audio in ex.clips.items():
            if np.asarray(audio).shape != (n,):
                raise ReportError(f"{folder}: clip {key!r} of excerpt {i} has shape {np.asarray(audio).shape}, "
                                  f"expected ({n},) ({ex.seconds:g} s at {ex.sample_rate_hz} Hz)")
    check_folder(folder, options.force)
    with atomic_folder(folder, options.force) as tmp:
        (tmp / "audio").mkdir()
        (tmp / "img").mkdir()
        files = []
        for i, ex in enumerate(excerpts):
            entry: dict[str, Any] = {"clips": {}, "images": {}}
            for key, audio in ex.clips.items():
                name = f"audio/e{i:02d}_{key}.wav"
                save_wav(tmp / name, np.asarray(audio, np.float32), ex.sample_rate_hz)
                entry["clips"][key] = name
            panels = [(clip_label(key), np.asarray(audio, np.float32)) for key, audio in ex.clips.items()]
            figures = plots.excerpt_strips(ex.notes, panels, ex.sample_rate_hz, ex.seconds, ex.transcribed)
            for key, fig in zip(["notes", *ex.clips], figures):
                name = f"img/e{i:02d}_{key}.png"
                plots.save_figure(tmp / name, fig)
                entry["images"][key] = name
            files.append(entry)
        manifest = {
            "format": REPORT_FORMAT, "version": REPORT_VERSION, "command": options.command,
            "checkpoint": options.checkpoint, "sample_rate_hz": int(excerpts[0].sample_rate_hz),
            "excerpt_seconds": float(excerpts[0].seconds),
            "excerpts": [{"title": ex.title, "identity": ex.identity, **f} for ex, f in zip(excerpts, files)],
            "results": results,
        }
        with atomic_path(tmp / REPORT_JSON) as path:
            path.write_text(json.dumps(_json_safe(manifest), indent=1) + "\n")
        with atomic_path(tmp / "index.html") as path:
            path.write_text(_page(options, results, excerpts, files), encoding="utf-8")
    return folder / "index.html"
