"""Corpus excerpts of the demo data: humanised performances of music21 corpus pieces (solo piano,
songs and chamber music with piano, string quartets, Bach chorales, Monteverdi madrigals), all
played on one piano: a tempo per piece with rubato, phrase-end and final ritardandos and fermatas;
onset jitter and melody lead; velocities from the score's dynamics with phrase arcs, metric accents
and voicing; legato pedalling (CC64 lifted at harmony / bass changes and pressed again ~0.1 s later,
as continuous ramps) and una corda (CC67) in some soft passages.

The notes music21 gives for a corpus file are cached on disk (`CACHE_ENV`, default
~/.cache/midi2wave; "off" disables it). The cache holds exactly what parsing gives, so it only saves
time."""

from __future__ import annotations

import io
import os
import re
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ... import constants as C
from ...files import atomic_write_bytes
from .performance import Builder, Performance


@dataclass(frozen=True)
class Piece:
    path: str  # music21 corpus path
    title: str
    qpm: tuple[float, float]  # quarter notes per minute


@dataclass(frozen=True)
class Work:
    key: str  # the composition (split unit)
    composer: str
    category: str
    pieces: tuple[Piece, ...]
    pedal: str  # "legato" | "light" | "sparse"


def _quartet(key: str, composer: str, name: str, folder: str, movements: Sequence[int], fast: tuple[float, float] = (104, 132),
             slow: tuple[float, float] = (56, 80)) -> Work:
    ordinal = {1: "First", 2: "Second", 3: "Third", 4: "Fourth", 5: "Fifth"}
    pieces = tuple(
        Piece(f"{folder}/movement{m}.mxl", f"{name}, {ordinal[m]} Movement", slow if m == 2 else fast) for m in movements
    )
    return Work(key, composer, "quartet", pieces, "sparse")


_MOZART = "Wolfgang Amadeus Mozart"
_HAYDN = "Joseph Haydn"
_BEETHOVEN = "Ludwig van Beethoven"
_CATALOG: tuple[Work, ...] = (
    # solo piano
    Work("joplin/maple_leaf_rag", "Scott Joplin", "piano",
          (Piece("joplin/maple_leaf_rag.mxl", "Maple Leaf Rag", (76, 92)),), "light"),
    Work("chopin/op6no2", "Frédéric Chopin", "piano",
          (Piece("chopin/mazurka06-2.krn", "Mazurka in C-sharp Minor, Op. 6, No. 2", (120, 150)),), "legato"),
    Work("mozart/k545", _MOZART, "piano",
          (Piece("mozart/k545/movement1_exposition.mxl", "Sonata in C Major, K. 545, First Movement", (112, 132)),), "light"),
    Work("schumann_clara/op1", "Clara Schumann", "piano", tuple(
        Piece(f"schumann_clara/polonaise_op1n{i}.mxl", f"Polonaise, Op. 1, No. {i}", (88, 108)) for i in range(1, 5)), "legato"),
    Work("schoenberg/op19", "Arnold Schoenberg", "piano", (
        Piece("schoenberg/opus19/movement2.mxl", "Six Little Piano Pieces, Op. 19, No. 2", (54, 66)),
        Piece("schoenberg/opus19/movement6.mxl", "Six Little Piano Pieces, Op. 19, No. 6", (44, 56)),
    ), "legato"),
    Work("cpebach/h186", "Carl Philipp Emanuel Bach", "piano",
          (Piece("cpebach/h186.mxl", "Sonata, H. 186", (84, 104)),), "sparse"),
    Work("bach/bwv846", "Johann Sebastian Bach", "piano",
          (Piece("bach/bwv846.mxl", "Prelude in C Major, BWV 846", (60, 76)),), "legato"),
    # songs and chamber music with piano
    Work("schumann_clara/op17", "Clara Schumann", "chamber",
          (Piece("schumann_clara/opus17/movement3.xml", "Piano Trio in G Minor, Op. 17, Third Movement", (60, 72)),), "legato"),
    Work("beach/op75no4", "Amy Beach", "chamber",
          (Piece("beach/prayer_of_a_tired_child.musicxml", "A Prayer of a Tired Child, Op. 75, No. 4", (60, 76)),), "legato"),
    Work("schubert/d911", "Franz Schubert", "chamber",
          (Piece("schubert/Lindenbaum.xml", "Der Lindenbaum, D. 911, No. 5", (84, 100)),), "legato"),
    Work("schumann_robert/op48", "Robert Schumann", "chamber",
          (Piece("schumann_robert/dichterliebe_no2.xml", "Dichterliebe, Op. 48, No. 2", (56, 68)),), "legato"),
    Work("handel/hwv7", "George Frideric Handel", "chamber",
          (Piece("handel/rinaldo/Lascia_chio_pianga.mxl", "Lascia ch'io pianga, HWV 7", (54, 66)),), "light"),
    Work("verdi/rigoletto", "Giuseppe Verdi", "chamber",
          (Piece("verdi/laDonnaEMobile.mxl", "La donna è mobile", (120, 140)),), "light"),
    Work("corelli/op3no1", "Arcangelo Corelli", "chamber",
          (Piece("corelli/opus3no1/1grave.xml", "Trio Sonata, Op. 3, No. 1, First Movement", (50, 60)),), "light"),
    # string quartets, played on the piano
    _quartet("mozart/k155", _MOZART, "String Quartet in D Major, K. 155", "mozart/k155", (1, 2, 3)),
    _quartet("mozart/k156", _MOZART, "String Quartet in G Major, K. 156", "mozart/k156", (1, 2, 3, 4)),
    _quartet("mozart/k458", _MOZART, "String Quartet in B-flat Major, K. 458", "mozart/k458", (1, 2, 3, 4)),
    _quartet("mozart/k80", _MOZART, "String Quartet in G Major, K. 80", "mozart/k80", (1, 2, 3, 4)),
    _quartet("haydn/op1no1", _HAYDN, "String Quartet in B-flat Major, Op. 1, No. 1", "haydn/opus1no1", (1, 2, 3, 4, 5)),
    _quartet("haydn/op74no1", _HAYDN, "String Quartet in C Major, Op. 74, No. 1", "haydn/opus74no1", (1, 2, 3, 4)),
    _quartet("beethoven/op18no1", _BEETHOVEN, "String Quartet in F Major, Op. 18, No. 1", "beethoven/opus18no1", (1, 2, 3, 4)),
    _quartet("beethoven/op59no1", _BEETHOVEN, "String Quartet in F Major, Op. 59, No. 1", "beethoven/opus59no1", (1, 2, 3, 4)),
    _quartet("beethoven/op59no2", _BEETHOVEN, "String Quartet in E Minor, Op. 59, No. 2", "beethoven/opus59no2", (1, 2, 3, 4)),
    _quartet("beethoven/op59no3", _BEETHOVEN, "String Quartet in C Major, Op. 59, No. 3", "beethoven/opus59no3", (1, 2, 3, 4)),
    _quartet("schumann_robert/op41no1", "Robert Schumann", "String Quartet in A Minor, Op. 41, No. 1",
             "schumann_robert/opus41no1", (1, 2, 3, 4, 5)),
)
_CATEGORY_WEIGHTS: dict[str, float] = {"piano": 0.34, "chamber": 0.14, "quartet": 0.24, "chorale": 0.22, "madrigal": 0.06}


@lru_cache(maxsize=1)
def catalog_works() -> dict[str, tuple[Work, ...]]:
    """The catalog by category, with the Bach chorales and Monteverdi madrigals that the installed
    music21 corpus lists (sorted, so the choice is deterministic for a corpus)."""
    from music21 import corpus

    def rel(p: Any) -> str:
        s = str(p).replace("\\", "/")
        return s.split("/corpus/", 1)[1] if "/corpus/" in s else s

    chorales = []
    for p in sorted(rel(p) for p in corpus.getComposer("bach")):
        m = re.fullmatch(r"bach/bwv(\d+)(?:\.(\d+))?\.mxl", p)
        if not m or (m.group(2) is None and not 250 <= int(m.group(1)) <= 438):
            continue
        number = m.group(1) + (f".{m.group(2)}" if m.group(2) else "")
        chorales.append(Work(f"bach/bwv{number}", "Johann Sebastian Bach", "chorale",
                              (Piece(p, f"Chorale, BWV {number}", (60, 80)),), "legato"))
    madrigals = []
    for p in sorted(rel(p) for p in corpus.getComposer("monteverdi")):
        m = re.fullmatch(r"monteverdi/madrigal\.(\d+)\.(\d+)\.mxl", p)
        if m:
            madrigals.append(Work(f"monteverdi/{m.group(1)}.{m.group(2)}", "Claudio Monteverdi", "madrigal",
                                   (Piece(p, f"Madrigal, Book {m.group(1)}, No. {m.group(2)}", (88, 112)),), "light"))
    by: dict[str, list[Work]] = {c: [] for c in _CATEGORY_WEIGHTS}
    for w in _CATALOG:
        by[w.category].append(w)
    by["chorale"] = chorales
    by["madrigal"] = madrigals
    return {c: tuple(ws) for c, ws in by.items() if ws}


@dataclass
class _Score:
    """The notes of a corpus file in quarter notes (ql), all parts merged."""

    on: np.ndarray  # ql
    dur: np.ndarray  # ql (0 for grace notes)
    pitch: np.ndarray
    part: np.ndarray
    grace: np.ndarray  # bool
    fermata: np.ndarray  # bool
    n_parts: int
    bar_on: np.ndarray  # ql of each bar line
    bar_len: np.ndarray
    bar_beat: np.ndarray  # ql per beat in each bar
    dyn_on: np.ndarray  # ql of dynamic markings
    dyn_level: np.ndarray  # velocity level, NaN for accents only
    dyn_accent: np.ndarray  # bool: sf, fz, ...


_DYNAMIC_LEVELS = {"pppp": 20, "ppp": 28, "pp": 38, "p": 50, "mp": 62, "mf": 72, "f": 86, "ff": 98, "fff": 108, "ffff": 116,
                   "fp": 50, "sfp": 50, "fzp": 50}
_DYNAMIC_ACCENTS = {"sf", "sfz", "fz", "rf", "rfz", "sffz", "fp", "sfp", "fzp"}


CACHE_ENV: str = "MIDI2WAVE_CACHE_DIR"
_SCORE_CACHE_VERSION = 1


def _score_cache_file(path: str) -> Path | None:
    """Where the parsed notes of a corpus file are kept between runs: $MIDI2WAVE_CACHE_DIR (or
    $XDG_CACHE_HOME/midi2wave, ~/.cache/midi2wave)/demo-scores-v1/music21-<version>/. None if
    MIDI2WAVE_CACHE_DIR is "off"."""
    root = os.environ.get(CACHE_ENV)
    if root and root.lower() in ("0", "off", "none", "false"):
        return None
    if not root:
        root = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "midi2wave")
    import music21

    name = re.sub(r"[^A-Za-z0-9._-]", "_", path) + ".npz"
    return Path(root) / f"demo-scores-v{_SCORE_CACHE_VERSION}" / f"music21-{music21.__version__}" / name


@lru_cache(maxsize=64)
def _load_score(path: str) -> _Score:
    """The merged notes of a corpus file: from the disk cache, else parsed with music21 (0.05-3 s
    a file) and cached. The cache holds exactly what parsing gives, so it never changes a dataset."""
    cache = _score_cache_file(path)
    if cache is not None and cache.is_file():
        try:
            with np.load(cache, allow_pickle=False) as z:
                fields = {k: z[k] for k in z.files}
            fields["n_parts"] = int(fields["n_parts"])
            return _Score(**fields)
        except Exception:  # unreadable or from another layout: parse again
            pass
    score = _parse_score(path)
    if cache is not None:
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            buf = io.BytesIO()
            np.savez(buf, **{k: np.asarray(v) for k, v in score.__dict__.items()})
            atomic_write_bytes(cache, buf.getvalue(), sync=False)
        except OSError:
            pass  # a read-only home: no cache
    return score


def _parse_score(path: str) -> _Score:
    """Parse a corpus file with music21 and merge its parts."""
    from music21 import corpus, dynamics, expressions, stream

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s = corpus.parse(path, forceSource=True)
        parts = list(s.parts) or [s]
        rows: list[tuple[float, float, int, int, bool, bool]] = []
        for k, part in enumerate(parts):
            for el in part.stripTies().flatten().notes:
                try:
                    pitches = [int(p.midi) for p in el.pitches]
                except AttributeError:
                    continue
                ferm = any(isinstance(e, expressions.Fermata) for e in el.expressions)
                grace = bool(el.duration.isGrace)
                q, d = float(el.offset), float(el.duration.quarterLength)
                rows.extend((q, d, p, k, grace, ferm) for p in pitches)
        measures = list(parts[0].getElementsByClass(stream.Measure))
        end = float(s.highestTime)
        bar_on, bar_beat = [], []
        beat = 1.0
        for m in measures:
            if m.timeSignature is not None:
                beat = float(m.timeSignature.beatDuration.quarterLength)
            bar_on.append(float(m.offset))
            bar_beat.append(beat)
        if len(bar_on) < 2:
            bar_on = list(np.arange(0.0, max(end, 4.0), 4.0))
            bar_beat = [1.0] * len(bar_on)
        dyn = []
        for d in s.flatten().getElementsByClass(dynamics.Dynamic):
            v = str(d.value)
            if v in _DYNAMIC_LEVELS or v in _DYNAMIC_ACCENTS:
                dyn.append((float(d.offset), float(_DYNAMIC_LEVELS.get(v, np.nan)), v in _DYNAMIC_ACCENTS))
    rows.sort(key=lambda r: (r[0], r[2], r[3]))
    a = np.array(rows, dtype=np.float64).reshape(-1, 6)
    bar_on_a = np.array(bar_on, dtype=np.float64)
    bar_len = np.diff(np.append(bar_on_a, max(end, bar_on_a[-1] + bar_beat[-1])))
    dyn.sort()
    da = np.array(dyn, dtype=np.float64).reshape(-1, 3)
    return _Score(
        on=a[:, 0], dur=a[:, 1], pitch=a[:, 2].astype(np.int64), part=a[:, 3].astype(np.int64),
        grace=a[:, 4].astype(bool), fermata=a[:, 5].astype(bool), n_parts=len(parts),
        bar_on=bar_on_a, bar_len=np.maximum(bar_len, 1e-3), bar_beat=np.array(bar_beat, dtype=np.float64),
        dyn_on=da[:, 0], dyn_level=da[:, 1], dyn_accent=da[:, 2].astype(bool),
    )


def _choose_qpm(score: _Score, piece: Piece, rng: np.random.Generator) -> float:
    """A tempo in the piece's range, slowed down where its fastest common notes would exceed
    ~13 onsets per second."""
    qpm = rng.uniform(*piece.qpm)
    u = np.unique(score.on[~score.grace])
    if len(u) > 8:
        fast_ql = float(np.percentile(np.diff(u), 10))
        if fast_ql > 0:
            qpm = min(qpm, fast_ql * 60.0 * 13.0)
    return max(qpm, 30.0)


def _perform(score: _Score, bar0: int, bar1: int, qpm: float, pedal_style: str, rng: np.random.Generator,
             lead_s: float, ring_s: float, **meta: Any) -> Performance:
    """Humanised performance of bars [bar0, bar1) of a score."""
    q0 = float(score.bar_on[bar0])
    q1 = float(score.bar_on[bar1 - 1] + score.bar_len[bar1 - 1])
    sel = (score.on >= q0 - 1e-9) & (score.on < q1 - 1e-9)
    on_q, dur_q, pitch = score.on[sel], score.dur[sel], score.pitch[sel]
    part, grace, ferm = score.part[sel], score.grace[sel], score.fermata[sel]
    bars_on = score.bar_on[bar0:bar1]
    bars_len = score.bar_len[bar0:bar1]
    bars_beat = score.bar_beat[bar0:bar1]

    # --- tempo map: t(q) on a fine grid
    dq = 1.0 / 48.0
    grid = np.arange(q0, q1 + 16.0 + dq, dq)
    bar_ql = float(np.median(bars_len))
    factor = np.ones_like(grid)
    amp = rng.uniform(0.02, 0.05)
    wobble = np.zeros_like(grid)
    for period_bars in (2.0, 4.0, 8.0):
        wobble += rng.uniform(0.3, 1.0) * np.sin(2 * np.pi * (grid - q0) / (period_bars * bar_ql) + rng.uniform(0, 2 * np.pi))
    factor *= 1.0 + amp * wobble / 2.0
    phrase_bars = 4 if bar_ql <= 3.0 else 2
    phrase_bars = phrase_bars * 2 if bar_ql <= 1.5 else phrase_bars
    bar_idx = np.clip(np.searchsorted(bars_on, grid, side="right") - 1, 0, len(bars_on) - 1)
    pos_in_bar = np.clip((grid - bars_on[bar_idx]) / bars_len[bar_idx], 0.0, 1.0)
    phrase_end = ((bar_idx + 1) % phrase_bars == 0) & (grid < q1)
    rit = rng.uniform(0.04, 0.12)
    factor *= np.where(phrase_end, 1.0 - rit * pos_in_bar**2, 1.0)
    last = (bar_idx == len(bars_on) - 1) | (grid >= q1)
    final_rit = rng.uniform(0.12, 0.3)
    factor *= np.where(last, 1.0 - final_rit * np.clip((grid - bars_on[-1]) / bars_len[-1], 0.0, 1.0) ** 1.5, 1.0)
    for q, d in zip(on_q[ferm], dur_q[ferm]):
        factor[(grid >= q) & (grid < q + max(d, 0.5))] = np.minimum(
            factor[(grid >= q) & (grid < q + max(d, 0.5))], 1.0 / rng.uniform(1.6, 2.4))
    seconds = dq * 60.0 / (qpm * np.maximum(factor, 0.3))
    tcum = np.concatenate([[0.0], np.cumsum(seconds)[:-1]])

    def t_of(q: np.ndarray) -> np.ndarray:
        return np.interp(q, grid, tcum)

    # --- voices: melody (top of the first part), bass (bottom of the last part)
    n = len(on_q)
    melody = np.zeros(n, dtype=bool)
    bass = np.zeros(n, dtype=bool)
    first, lastp = part.min(initial=0), part.max(initial=0)
    key = np.round(on_q * 48).astype(np.int64)
    for grp in np.unique(key):
        idx = np.nonzero((key == grp) & ~grace)[0]
        top = idx[part[idx] == first]
        if len(top):
            melody[top[np.argmax(pitch[top])]] = True
        bot = idx[part[idx] == lastp]
        if len(bot) and lastp != first:
            bass[bot[np.argmin(pitch[bot])]] = True

    # --- velocities
    base = rng.uniform(58, 78)
    if len(score.dyn_on) and np.isfinite(score.dyn_level).any():
        lv_on = score.dyn_on[np.isfinite(score.dyn_level)]
        lv = score.dyn_level[np.isfinite(score.dyn_level)]
        i = np.searchsorted(lv_on, on_q, side="right") - 1
        level = np.where(i >= 0, lv[np.clip(i, 0, len(lv) - 1)], base)
        level = 0.8 * level + 0.2 * base
    else:
        level = np.full(n, base)
        # no markings: terraced dynamics per phrase
        nb = max(1, len(bars_on) // phrase_bars + 1)
        terr = rng.normal(0.0, 9.0, size=nb)
        level = level + terr[np.clip(np.searchsorted(bars_on, on_q, side="right") - 1, 0, len(bars_on) - 1) // phrase_bars]
    note_bar = np.clip(np.searchsorted(bars_on, on_q, side="right") - 1, 0, len(bars_on) - 1)
    phrase_pos = ((note_bar % phrase_bars) + (on_q - bars_on[note_bar]) / bars_len[note_bar]) / phrase_bars
    arcs = rng.uniform(6.0, 18.0, size=len(bars_on) // phrase_bars + 2)
    peak = rng.uniform(0.5, 0.75)
    shape = np.where(phrase_pos < peak, phrase_pos / peak, (1 - phrase_pos) / (1 - peak))
    vel = level + arcs[note_bar // phrase_bars] * (shape - 0.5)
    vel += rng.uniform(-8.0, 8.0) * (on_q - q0) / max(q1 - q0, 1e-6)  # a long crescendo or diminuendo
    beat_pos = (on_q - bars_on[note_bar]) / bars_beat[note_bar]
    vel += np.where(np.abs(beat_pos) < 1e-6, 4.0, np.where(np.abs(beat_pos - np.round(beat_pos)) < 1e-6, 1.5, 0.0))
    vel += np.where(melody, rng.uniform(5.0, 10.0), np.where(bass, 3.0, -3.0 if score.n_parts > 1 else 0.0))
    if len(score.dyn_on) and score.dyn_accent.any():
        acc_on = score.dyn_on[score.dyn_accent]
        near = np.abs(on_q[:, None] - acc_on[None, :]).min(axis=1) < 1e-3
        vel += np.where(near, 14.0, 0.0)
    vel += rng.normal(0.0, 4.5, size=n)
    vel = np.where(grace, vel - 8.0, vel)

    # --- timing and articulation
    onset = t_of(on_q) + rng.normal(0.0, rng.uniform(0.004, 0.011), size=n)
    onset -= np.where(melody, rng.uniform(0.004, 0.014), 0.0)
    legato = rng.uniform(0.9, 1.02)
    staccato_p = {"legato": 0.05, "light": 0.25, "sparse": 0.3}[pedal_style]
    short = (dur_q <= 0.5) & (rng.random(n) < staccato_p)
    artic = np.where(short, rng.uniform(0.45, 0.65, size=n), legato + rng.normal(0.0, 0.03, size=n))
    offset = t_of(on_q + dur_q * artic) + rng.normal(0.0, 0.008, size=n)
    # grace notes: just before their main note, the last one closest
    gidx = np.nonzero(grace)[0]
    for i in gidx:
        k = int(np.sum(grace & (key == key[i]) & (part == part[i]) & (np.arange(n) > i)))
        onset[i] = t_of(on_q[i]) - 0.065 * (k + 1) + rng.normal(0.0, 0.006)
        offset[i] = onset[i] + 0.06
    t_end = float(t_of(np.array([q1]))[0])
    offset = np.where(offset > t_end, t_end + ring_s * rng.uniform(0.7, 1.0, size=n), offset)
    offset = np.maximum(offset, onset + 0.04)

    shift = lead_s - float(onset.min()) if n else lead_s
    b = Builder(rng)
    for o, f, p, v in zip(onset + shift, offset + shift, pitch, vel):
        b.note(o, f, int(p), v)
    b.notes.extend(_octave_doubling(score, pitch, bass, onset + shift, offset + shift, vel, rng))

    # --- sustain pedal
    groups = np.unique(key[~grace]) if n else np.zeros(0, dtype=np.int64)
    group_t = {g: float(np.min(onset[(key == g) & ~grace]) + shift) for g in groups}
    group_q = {g: g / 48.0 for g in groups}
    style = pedal_style
    if style == "sparse" and rng.random() < 0.35:
        style = "none"
    if style == "legato" or (style == "light" and rng.random() < 0.5):
        min_gap = rng.uniform(0.3, 0.6) if style == "legato" else rng.uniform(0.6, 1.2)
        prev_bass: int | None = None
        last_change = -10.0
        for g in groups:
            gq = group_q[g]
            gb = int(np.clip(np.searchsorted(bars_on, gq, side="right") - 1, 0, len(bars_on) - 1))
            bp = (gq - bars_on[gb]) / bars_beat[gb]
            on_beat = abs(bp - round(bp)) < 1e-6
            idx = np.nonzero((key == g) & ~grace)[0]
            low = int(pitch[idx].min())
            downbeat = abs(bp) < 1e-6
            if on_beat and (low != prev_bass or downbeat) and group_t[g] - last_change >= min_gap:
                b.change(group_t[g])
                last_change = group_t[g]
            if on_beat:
                prev_bass = low
    elif style in ("light", "sparse"):
        for k in range(len(bars_on)):
            if rng.random() < (0.35 if style == "light" else 0.15):
                gs = [g for g in groups if bars_on[k] - 1e-9 <= group_q[g] < bars_on[k] + bars_len[k] - 1e-9]
                if len(gs) < 2:
                    continue
                t0 = group_t[gs[0]] + rng.uniform(0.05, 0.15)
                t1 = group_t[gs[-1]] + rng.uniform(0.05, 0.2)
                if t1 - t0 > 0.4:
                    b.press(t0)
                    b.release(t1)
    t_final = t_end + shift + ring_s
    if b.down(C.SUSTAIN_CC):
        b.release(t_final - rng.uniform(0.0, 0.2))

    # --- una corda in soft passages
    if n and (np.median(level) < 60 or rng.random() < 0.15) and rng.random() < 0.6:
        t_soft0 = max(0.05, lead_s - rng.uniform(0.1, 0.4))
        b.press(t_soft0, C.SOFT_CC, int(rng.integers(70, 128)))
        if rng.random() < 0.5:
            b.release(t_soft0 + (t_final - t_soft0) * rng.uniform(0.4, 0.9), C.SOFT_CC)
        else:
            b.release(t_final, C.SOFT_CC)
    return b.performance(source="corpus", **meta)


def _octave_doubling(score: _Score, pitch: np.ndarray, bass: np.ndarray, onset: np.ndarray, offset: np.ndarray,
                     vel: np.ndarray, rng: np.random.Generator) -> list[tuple[float, float, int, int]]:
    """Pianists often double a chorale's or quartet's bass an octave lower."""
    if score.n_parts < 3 or rng.random() > 0.35:
        return []
    out = []
    for o, f, p, v, is_bass in zip(onset, offset, pitch, vel, bass):
        if is_bass and p - 12 >= C.MIN_MIDI_PITCH:
            out.append((float(o + rng.normal(0.0, 0.004)), float(f), int(p - 12), int(np.clip(round(v - 6), 1, 127))))
    return out


class CorpusPicker:
    """Chooses corpus excerpts: a work by category weight (unused works first), a piece, and a run
    of bars not used before."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.works = catalog_works()
        self.used: dict[str, set[int]] = {}  # path -> bars used
        self.exhausted: set[str] = set()
        self.used_works: set[str] = set()

    def excerpt(self, target_s: float, index: int, seed: int) -> Performance | None:
        rng = self.rng
        cats = [c for c in _CATEGORY_WEIGHTS if c in self.works]
        for _ in range(40):
            w = np.array([_CATEGORY_WEIGHTS[c] for c in cats])
            cat = cats[int(rng.choice(len(cats), p=w / w.sum()))]
            works = [wk for wk in self.works[cat] if any(p.path not in self.exhausted for p in wk.pieces)]
            if not works:
                cats.remove(cat)
                if not cats:
                    return None
                continue
            fresh = [wk for wk in works if wk.key not in self.used_works]
            pool = fresh if fresh and rng.random() < 0.85 else works
            work = pool[int(rng.integers(len(pool)))]
            pieces = [p for p in work.pieces if p.path not in self.exhausted]
            piece = pieces[int(rng.integers(len(pieces)))]
            perf = self._try(work, piece, target_s, np.random.default_rng([seed, 3, index]))
            if perf is not None:
                self.used_works.add(work.key)
                return perf
        return None

    def _try(self, work: Work, piece: Piece, target_s: float, rng: np.random.Generator) -> Performance | None:
        try:
            score = _load_score(piece.path)
        except Exception:  # a corpus file this music21 cannot read: skip it
            self.exhausted.add(piece.path)
            return None
        if len(score.on) == 0 or (work.category == "chorale" and score.n_parts != 4):
            self.exhausted.add(piece.path)
            return None
        qpm = _choose_qpm(score, piece, rng)
        lead = rng.uniform(0.3, 1.0)
        ring = rng.uniform(0.8, 1.6)
        tail = rng.uniform(1.4, 2.0)
        music_s = max(target_s - lead - ring - tail, 2.0)
        bar_s = score.bar_len * 60.0 / qpm * 1.06
        used = self.used.setdefault(piece.path, set())
        nb = len(score.bar_on)
        # candidate runs of unused bars long enough for music_s (within 25 %)
        starts = []
        for s0 in range(nb):
            if s0 in used:
                continue
            acc, e = 0.0, s0
            while e < nb and e not in used and acc < music_s:
                acc += bar_s[e]
                e += 1
            if acc >= 0.8 * music_s:
                starts.append((s0, e))
        if not starts:
            if not used:
                starts = [(0, nb)]  # a short piece: all of it
            else:
                self.exhausted.add(piece.path)
                return None
        # prefer phrase beginnings (bar 0 or every 4th bar)
        good = [s for s in starts if s[0] % 4 == 0] or starts
        s0, e = good[int(rng.integers(len(good)))]
        used.update(range(s0, e))
        if len(used) >= nb - 2:
            self.exhausted.add(piece.path)
        return _perform(score, s0, e, qpm, work.pedal, rng, lead, ring,
                        composer=work.composer, title=piece.title, work=work.key, tail_s=tail)


def corpus_excerpt(path: str, seconds: float = 15.0, seed: int = 0, start_bar: int = 0,
                   composer: str = "", title: str = "") -> Performance:
    """A humanised performance of about `seconds` from bar `start_bar` of a music21 corpus file
    (e.g. "chopin/mazurka06-2.krn"); catalog pieces get their tempo range and pedalling."""
    rng = np.random.default_rng([seed, 4])
    work = next((w for ws in catalog_works().values() for w in ws if any(p.path == path for p in w.pieces)), None)
    piece = next((p for p in work.pieces if p.path == path), None) if work else Piece(path, title or path, (72, 100))
    score = _load_score(path)
    qpm = _choose_qpm(score, piece, rng)
    lead, ring, tail = 0.5, 1.2, 1.5
    music_s = max(seconds - lead - ring, 1.0)
    bar_s = score.bar_len * 60.0 / qpm * 1.06
    start_bar = int(np.clip(start_bar, 0, len(score.bar_on) - 1))
    acc, e = 0.0, start_bar
    while e < len(score.bar_on) and acc < music_s:
        acc += bar_s[e]
        e += 1
    return _perform(score, start_bar, e, qpm, work.pedal if work else "legato", rng, lead, ring,
                    composer=composer or (work.composer if work else ""), title=title or piece.title,
                    work=work.key if work else path, tail_s=tail)
