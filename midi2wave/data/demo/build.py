"""`make_demo_dataset`: the demo dataset in the exact MAESTRO v3 layout (see the package docstring).

Pieces are planned (`plan_pieces`: a coverage study first, then corpus excerpts and studies, about
`GENERATED_SHARE` of the duration generated), their works dealt to splits (`assign_splits`: by
composition, ~80/10/10 by duration, each split non-empty), years round-robin from a shuffled list,
and every piece is rendered by the instrument. The dataset is built in a hidden temporary folder
beside `out` (metadata written last) and moved into place at the end, so `out` is never half-written."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ... import constants as C
from ...files import atomic_write_bytes
from .corpus import CorpusPicker
from .performance import AUDIO_SAMPLE_RATE_HZ, DemoDataError, Performance, midi_bytes
from .render import find_soundfont, shared_renderer, wav_bytes
from .studies import generated_study

METADATA_CSV: str = "maestro-v3.0.0.csv"
METADATA_JSON: str = "maestro-v3.0.0.json"
COLUMNS: tuple[str, ...] = (
    "canonical_composer", "canonical_title", "split", "year", "midi_filename", "audio_filename", "duration",
)
SPLITS: tuple[str, ...] = ("train", "validation", "test")
SPLIT_FRACTIONS: dict[str, float] = {"train": 0.8, "validation": 0.1, "test": 0.1}
GENERATED_SHARE: float = 0.3  # of the total duration
MIN_MINUTES: float = 0.5


def _excerpt_bounds(total_s: float) -> tuple[float, float]:
    """Excerpt lengths: ~20-90 s, shorter for tiny datasets (so that there are >= 3 pieces)."""
    hi = float(np.clip(total_s / 4.0, 12.0, 90.0))
    lo = float(np.clip(total_s / 8.0, 8.0, 20.0))
    return lo, max(hi, lo + 2.0)


def plan_pieces(total_s: float, seed: int, progress: Callable[[float], None] | None = None) -> list[Performance]:
    """The pieces of a dataset of about `total_s` seconds (>= 3 of them): first a generated study
    that opens with the full-range sweep, then corpus excerpts and studies (~GENERATED_SHARE of the
    duration). `progress` is called with each piece's duration."""
    rng = np.random.default_rng([seed, 1])
    lo, hi = _excerpt_bounds(total_s)
    picker = CorpusPicker(np.random.default_rng([seed, 2]))
    perfs: list[Performance] = []
    acc = gen = 0.0
    studies = 0
    while acc < total_s - 0.5 * lo or len(perfs) < 3:
        remaining = total_s - acc
        if remaining <= hi:
            target = max(remaining, lo)
        else:
            target = rng.uniform(lo, min(hi, remaining - lo))
        perf = None
        # generated or corpus: whichever keeps the generated share closer to GENERATED_SHARE
        if perfs and abs(gen / (acc + target) - GENERATED_SHARE) <= abs((gen + target) / (acc + target) - GENERATED_SHARE):
            perf = picker.excerpt(target, len(perfs), seed)
        if perf is None:
            studies += 1
            perf = generated_study(target, seed, studies, coverage=not perfs)
            gen += perf.duration_s
        perfs.append(perf)
        acc += perf.duration_s
        if progress:
            progress(perf.duration_s)
    return perfs


def assign_splits(durations: dict[str, float], rng: np.random.Generator, forced: dict[str, str] | None = None) -> dict[str, str]:
    """Works -> splits, ~SPLIT_FRACTIONS of the duration each, every split non-empty when there
    are >= 3 works. The smallest works seed the empty splits, the rest go largest first to the
    split furthest below its target, then single moves and swaps improve the balance."""
    forced = dict(forced or {})
    total = sum(durations.values()) or 1.0
    keys = sorted(durations)
    keys = [keys[i] for i in rng.permutation(len(keys))]  # a seeded order among equal durations
    free = [k for k in keys if k not in forced]
    split_of = {k: forced[k] for k in keys if k in forced}
    for s, k in zip([s for s in SPLITS[::-1] if s not in split_of.values()], sorted(free, key=lambda k: durations[k])):
        split_of[k] = s  # validation and test first get the smallest works
    cur = {s: sum(durations[k] for k, v in split_of.items() if v == s) for s in SPLITS}
    for k in sorted((k for k in free if k not in split_of), key=lambda k: -durations[k]):
        s = max(SPLITS, key=lambda s: (SPLIT_FRACTIONS[s] * total - cur[s], -SPLITS.index(s)))
        split_of[k] = s
        cur[s] += durations[k]

    def cost(c: dict[str, float]) -> float:
        return sum((c[s] / total - SPLIT_FRACTIONS[s]) ** 2 for s in SPLITS)

    def count(s: str) -> int:
        return sum(v == s for v in split_of.values())

    for _ in range(100):
        best, best_cost = None, cost(cur) - 1e-12
        for k in free:
            a = split_of[k]
            if count(a) > 1:
                for b in SPLITS:
                    if b != a:
                        c = dict(cur)
                        c[a] -= durations[k]
                        c[b] += durations[k]
                        if cost(c) < best_cost:
                            best, best_cost = ((k, b),), cost(c)
            for k2 in free:
                b = split_of[k2]
                if b != a and k < k2:
                    c = dict(cur)
                    d = durations[k] - durations[k2]
                    c[a] -= d
                    c[b] += d
                    if cost(c) < best_cost:
                        best, best_cost = ((k, b), (k2, a)), cost(c)
        if best is None:
            break
        for k, b in best:
            cur[split_of[k]] -= durations[k]
            cur[b] += durations[k]
            split_of[k] = b
    return split_of


_YEAR_NAMES: dict[int, Callable[[int], str]] = {
    2004: lambda i: f"MIDI-Unprocessed_XP_{i // 12 + 1:02d}_R1_2004_{i % 4 + 1:02d}_ORIG_MID--AUDIO_{i // 12 + 1:02d}_R1_2004_{i % 12 + 1:02d}_Track{i % 12 + 1:02d}_wav",
    2006: lambda i: f"MIDI-Unprocessed_{i // 8 + 1:02d}_R1_2006_01-{i % 8 + 2:02d}_ORIG_MID--AUDIO_{i // 8 + 1:02d}_R1_2006_{i % 8 + 1:02d}_Track{i % 8 + 1:02d}_wav",
    2008: lambda i: f"MIDI-Unprocessed_{i // 4 + 1:02d}_R{i % 3 + 1}_2008_01-04_ORIG_MID--AUDIO_{i // 4 + 1:02d}_R{i % 3 + 1}_2008_wav--{i % 4 + 1}",
    2009: lambda i: f"MIDI-Unprocessed_{i // 6 + 1:02d}_R1_2009_01-06_ORIG_MID--AUDIO_{i // 6 + 1:02d}_R1_2009_{i // 6 + 1:02d}_R1_2009_{i % 6 + 1:02d}_WAV",
    2011: lambda i: f"MIDI-Unprocessed_{i // 10 + 1:02d}_R1_2011_MID--AUDIO_R1-D{i // 10 + 1}_{i % 10 + 1:02d}_Track{i % 10 + 1:02d}_wav",
    2013: lambda i: f"ORIG-MIDI_{i // 5 % 3 + 1:02d}_7_{i // 15 + 6}_13_Group__MID--AUDIO_{i // 5 + 1:02d}_R1_2013_wav--{i % 5 + 1}",
    2014: lambda i: f"MIDI-UNPROCESSED_{2 * (i // 6) + 1:02d}-{2 * (i // 6) + 2:02d}_R1_2014_MID--AUDIO_{2 * (i // 6) + 1 + i % 2:02d}_R1_2014_wav--{i // 2 % 3 + 1}",
    2015: lambda i: f"MIDI-Unprocessed_R1_D1-{i // 5 * 2 + 1}-{i // 5 * 2 + 2}_mid--AUDIO-from_mp3_{i // 5 + 1:02d}_R1_2015_wav--{i % 5 + 1}",
    2017: lambda i: f"MIDI-Unprocessed_{i // 4 + 51:03d}_PIANO{i // 4 + 51:03d}_MID--AUDIO-split_07-{i // 12 + 6:02d}-17_Piano-e_{i // 4 % 3 + 1}-{i % 4 + 1:02d}_wav--{i % 4 + 1}",
    2018: lambda i: f"MIDI-Unprocessed_Recital{3 * (i // 4) + 1}-{3 * (i // 4) + 3}_MID--AUDIO_{i // 4 + 1:02d}_R1_2018_wav--{i % 4 + 1}",
}


# ================================================================================= the dataset


@dataclass(frozen=True)
class DemoSummary:
    """What `make_demo_dataset` wrote."""

    out: Path
    n_pieces: int
    total_seconds: float
    seconds_by_split: dict[str, float]
    rows: tuple[dict[str, Any], ...] = field(repr=False)


def _check_out(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise DemoDataError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not force:
            raise DemoDataError(f"{out}: exists and is not empty (pass force=True / --force to replace it)")
        allowed = {METADATA_CSV, METADATA_JSON} | {str(y) for y in C.MAESTRO_YEARS}
        foreign = sorted(e.name for e in out.iterdir() if e.name not in allowed)
        if foreign:
            raise DemoDataError(
                f"{out}: not replaced even with force: it holds {foreign[0]!r}, which a demo dataset "
                "does not (only year folders and maestro-v3.0.0.csv/.json)"
            )


def make_demo_dataset(
    out: str | os.PathLike,
    minutes: float = 60.0,
    seed: int = 0,
    force: bool = False,
    progress: bool = True,
    soundfont: str | os.PathLike | None = None,
    renderer: Callable[[], Any] | None = None,
) -> DemoSummary:
    """Write a synthetic dataset of about `minutes` of piano in the exact MAESTRO v3 layout to
    `out` (see the package docstring). Refuses a non-empty `out` unless `force` (and even then one
    holding anything but a demo dataset's files). Deterministic for a seed.

    `renderer`: a factory, called once the arguments are checked, of the instrument (an object
    with `render(perf, year) -> int16 [n, 2]` at 44.1 kHz, such as `salamander.SalamanderRenderer`;
    `instruments.make_renderer` builds one by name); None: FluidSynth with `soundfont`."""
    out = Path(out)
    if isinstance(minutes, bool) or not isinstance(minutes, (int, float)) or not math.isfinite(minutes):
        raise DemoDataError(f"minutes = {minutes!r}: must be a number")
    if minutes < MIN_MINUTES:
        raise DemoDataError(f"minutes = {minutes!r}: must be >= {MIN_MINUTES}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise DemoDataError(f"seed = {seed!r}: must be an integer >= 0")
    seed = int(seed)
    _check_out(out, force)
    try:
        import mido  # noqa: F401
        import music21  # noqa: F401
    except ImportError as e:
        raise DemoDataError(f"make-demo-data needs {e.name}: pip install 'midi2wave[demo]'") from None
    instrument = renderer() if renderer is not None else shared_renderer(str(find_soundfont(soundfont)))
    from tqdm import tqdm

    total_s = float(minutes) * 60.0
    with tqdm(total=round(total_s), unit="s", desc="composing", disable=not progress, leave=False) as bar:
        perfs = plan_pieces(total_s, seed, progress=lambda s: bar.update(min(s, bar.total - bar.n)))

    rng = np.random.default_rng([seed, 6])
    durations: dict[str, float] = {}
    for p in perfs:
        durations[p.work] = durations.get(p.work, 0.0) + p.duration_s
    split_of = assign_splits(durations, rng, forced={perfs[0].work: "train"})
    years = [int(y) for y in rng.permutation(np.array(C.MAESTRO_YEARS))]
    per_year: dict[int, int] = {}
    plan = []
    for i, p in enumerate(perfs):
        year = years[i % len(years)]
        k = per_year.get(year, 0)
        per_year[year] = k + 1
        stem = _YEAR_NAMES[year](k)
        plan.append((p, year, f"{year}/{stem}.midi", f"{year}/{stem}.wav"))

    out_abs = out.absolute()
    tmp = out_abs.parent / f".{out_abs.name}.tmp-{os.getpid()}"
    old = out_abs.parent / f".{out_abs.name}.old-{os.getpid()}"
    out_abs.parent.mkdir(parents=True, exist_ok=True)
    if tmp.exists():
        shutil.rmtree(tmp)
    rows: list[dict[str, Any]] = []
    try:
        tmp.mkdir()
        with tqdm(total=round(sum(p.duration_s for p in perfs)), unit="s", desc="rendering",
                  disable=not progress) as bar:
            for perf, year, midi_name, audio_name in plan:
                (tmp / str(year)).mkdir(exist_ok=True)
                atomic_write_bytes(tmp / midi_name, midi_bytes(perf), sync=False)
                pcm = instrument.render(perf, year)
                atomic_write_bytes(tmp / audio_name, wav_bytes(pcm, AUDIO_SAMPLE_RATE_HZ), sync=False)
                rows.append({
                    "canonical_composer": perf.composer,
                    "canonical_title": perf.title,
                    "split": split_of[perf.work],
                    "year": year,
                    "midi_filename": midi_name,
                    "audio_filename": audio_name,
                    "duration": float(f"{len(pcm) / AUDIO_SAMPLE_RATE_HZ:.12g}"),
                })
                bar.update(min(round(perf.duration_s), bar.total - bar.n))
        rows.sort(key=lambda r: (r["canonical_composer"], r["canonical_title"], r["midi_filename"]))
        atomic_write_bytes(tmp / METADATA_JSON, _metadata_json(rows).encode("utf-8"), sync=False)
        atomic_write_bytes(tmp / METADATA_CSV, _metadata_csv(rows).encode("utf-8"), sync=False)
        # move into place: out is either absent, empty, or (force) an earlier demo dataset
        _check_out(out_abs, force)  # again: something may have appeared there meanwhile
        if out_abs.exists():
            if any(out_abs.iterdir()):
                os.replace(out_abs, old)
            else:
                out_abs.rmdir()
        os.replace(tmp, out_abs)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        if old.exists():
            shutil.rmtree(old, ignore_errors=True)
    by_split = {s: 0.0 for s in SPLITS}
    for r in rows:
        by_split[r["split"]] += r["duration"]
    return DemoSummary(out=out, n_pieces=len(rows), total_seconds=sum(by_split.values()),
                       seconds_by_split=by_split, rows=tuple(rows))


def _metadata_csv(rows: Sequence[dict[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMNS)
    for r in rows:
        w.writerow([r[c] for c in COLUMNS])
    return buf.getvalue()


def _metadata_json(rows: Sequence[dict[str, Any]]) -> str:
    data = {c: {str(i): r[c] for i, r in enumerate(rows)} for c in COLUMNS}
    return json.dumps(data, indent=4, ensure_ascii=False)
