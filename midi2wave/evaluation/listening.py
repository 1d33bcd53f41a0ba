"""`midi2wave listening-test`: the paper's listening study as a tool — a blind A/B test page, and
the scoring of the ratings people download from it.

Building (`build_test`): each system is the generations of one report folder (`evaluate --report`),
plus optionally the real audio of the same excerpts ("real"); the reports must hold the same
excerpts (source, start and length). Every pair of systems is compared on every excerpt: one trial
shows clip A and clip B and asks the paper's question, which sounds more like a real piano
performance, on a five-point scale (A much more, A somewhat more, no difference, B somewhat more,
B much more). Counterbalancing: for each pair of systems, the excerpts are split in a seeded order
so that each system is A in half of that pair's trials (one more where the count is odd, the extra
going to alternate systems over pairs); the trial order is a seeded shuffle. The clips are copied
under opaque names, so the page does not reveal which system made which clip. Out folder:
`page/` (index.html + clips/, self-contained, for the raters: zip and send it) and `key.json` (for
the experimenter: which clip is which system). The test id is a hash of the design and the clips'
bytes; the page writes it into every ratings file.

Scoring (`score_ratings`): each rating becomes a preference in -2..2 for the first of the pair's
two systems (in the key's system order) over the second, undoing the A/B sides. Per pair: wins,
losses and ties; the win rate with ties left out, with a 95 % Wilson interval
(scipy.stats.binomtest); and the Wilcoxon signed-rank test of the preferences against 0 (the paper's
pairwise test; all raters' ratings pooled, zeros dropped, normal approximation with the tie
correction, no continuity correction), with Holm's correction over the pairs. Per system: wins and
losses over all its comparisons, with the same interval.
"""

from __future__ import annotations

import hashlib
import html
import itertools
import json
import os
import shutil
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from . import report
from ..files import atomic_folder
from ..audio import atomic_path
from ..errors import Midi2WaveError

__all__ = ["KEY_FORMAT", "QUESTION", "RATINGS_FORMAT", "SCALE", "ListeningTestError", "build_test",
           "format_scores", "holm", "listening_test_from_cli", "load_key", "score_ratings", "wilson_interval"]

KEY_FORMAT = "midi2wave-listening-key"
RATINGS_FORMAT = "midi2wave-listening-ratings"
SCORES_FORMAT = "midi2wave-listening-scores"
VERSION = 1
REAL = "real"
QUESTION = "Which of the two clips sounds more like a recording of a real piano performance?"
# preference for clip A: value -> label, in the order shown (left to right)
SCALE = [(2, "A, clearly"), (1, "A, slightly"), (0, "no difference"), (-1, "B, slightly"), (-2, "B, clearly")]
CONFIDENCE = 0.95


class ListeningTestError(Midi2WaveError):
    """A listening test cannot be built or scored (bad reports, ratings of another test, ...)."""


# ------------------------------------------------------------------------------------ building


def _parse_system(text: str) -> tuple[str, Path]:
    name, sep, folder = text.partition("=")
    if not sep:
        return Path(text).name or str(text), Path(text)
    if not name or not folder:
        raise ListeningTestError(f"{text}: expected NAME=REPORT_FOLDER")
    return name, Path(folder)


def _identity(entry: dict[str, Any]) -> tuple:
    ident = entry.get("identity") or {}
    return (ident.get("source"), ident.get("start_frame"), ident.get("n_frames"))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _plan_trials(n_systems: int, n_excerpts: int, rng: np.random.Generator) -> list[dict[str, int]]:
    """Trials {excerpt, first, second, first_is_a} for every pair of systems (first < second) on every
    excerpt, counterbalanced per pair (see the module doc), in a seeded order."""
    trials = []
    for k, (x, y) in enumerate(itertools.combinations(range(n_systems), 2)):
        order = rng.permutation(n_excerpts)
        for rank, e in enumerate(order):
            trials.append({"excerpt": int(e), "first": x, "second": y, "first_is_a": (rank + k) % 2 == 0})
    return [trials[i] for i in rng.permutation(len(trials))]


def build_test(systems: Sequence[tuple[str, str | os.PathLike]], out: str | os.PathLike, include_real: bool = False,
               seed: int = 0, force: bool = False) -> Path:
    """Write the listening test folder `out` (page/index.html, page/clips/*.wav, key.json) comparing
    the generations of the report folders `systems` ((name, folder) pairs) and, with
    `include_real`, the real audio; returns the page's path. One-line errors (ListeningTestError,
    report.ReportError, OutputExistsError) for fewer than two systems, duplicate names, unreadable
    reports, reports of different excerpts, missing clips, or an existing `out` without `force`."""
    out = Path(out)
    names = [name for name, _ in systems] + ([REAL] if include_real else [])
    if not systems:
        raise ListeningTestError(f"{out}: no report folders given (NAME=REPORT, from `midi2wave evaluate --report`)")
    if len(names) < 2:
        raise ListeningTestError(f"{out}: one system only ({names[0]}): give another NAME=REPORT or --real")
    for name in names:
        if names.count(name) > 1:
            raise ListeningTestError(f"{out}: system name {name!r} given twice (name them: NAME=REPORT)")
    report.check_folder(out, force)
    reports = [report.load_report(folder) for _, folder in systems]
    first = [_identity(e) for e in reports[0]["excerpts"]]
    for (name, folder), data in zip(systems, reports):
        if [_identity(e) for e in data["excerpts"]] != first:
            raise ListeningTestError(f"{folder}: its excerpts differ from those of {systems[0][1]} (make the reports "
                                     "with the same --data, --split, --excerpts, --excerpt-seconds and --seed)")
    sources: list[list[Path]] = []  # [system][excerpt] -> clip file
    for (name, folder), data in zip(systems, reports):
        sources.append([Path(folder) / e["clips"]["generated"] for e in data["excerpts"]])
    if include_real:
        sources.append([Path(systems[0][1]) / e["clips"]["real"] for e in reports[0]["excerpts"]])
    for row in sources:
        for path in row:
            if not path.is_file():
                raise ListeningTestError(f"{path}: clip missing from its report folder")
    n_excerpts = len(first)

    rng = np.random.default_rng([seed, 0x6C697374])  # "list"
    tokens: set[str] = set()
    clip_names: list[list[str]] = []
    for row in sources:
        clip_names.append([])
        for _ in row:
            token = rng.bytes(6).hex()
            while token in tokens:
                token = rng.bytes(6).hex()
            tokens.add(token)
            clip_names[-1].append(f"clips/{token}.wav")
    planned = _plan_trials(len(names), n_excerpts, rng)
    trials = []
    for i, t in enumerate(planned):
        a, b = (t["first"], t["second"]) if t["first_is_a"] else (t["second"], t["first"])
        trials.append({"trial": i, "excerpt": t["excerpt"], "a": clip_names[a][t["excerpt"]],
                       "b": clip_names[b][t["excerpt"]], "system_a": names[a], "system_b": names[b]})
    hashes = {clip_names[s][e]: _sha256(sources[s][e]) for s in range(len(names)) for e in range(n_excerpts)}
    fingerprint = json.dumps({"seed": seed, "question": QUESTION, "scale": SCALE,
                              "trials": [(t["a"], t["b"]) for t in trials], "clips": hashes}, sort_keys=True)
    test_id = hashlib.sha256(fingerprint.encode()).hexdigest()[:12]
    key = {
        "format": KEY_FORMAT, "version": VERSION, "test_id": test_id, "seed": int(seed), "question": QUESTION,
        "scale": [{"preference_a": v, "label": label} for v, label in SCALE],
        "systems": [{"name": name, "report": str(folder), "checkpoint": data.get("checkpoint")}
                    for (name, folder), data in zip(systems, reports)]
        + ([{"name": REAL, "report": str(systems[0][1]), "checkpoint": None}] if include_real else []),
        "excerpts": [e["identity"] for e in reports[0]["excerpts"]],
        "clips": {clip_names[s][e]: {"system": names[s], "excerpt": e, "sha256": hashes[clip_names[s][e]]}
                  for s in range(len(names)) for e in range(n_excerpts)},
        "trials": trials,
    }
    page_design = {"test_id": test_id, "seed": int(seed), "question": QUESTION,
                   "scale": [{"value": v, "label": label} for v, label in SCALE],
                   "trials": [{"trial": t["trial"], "a": t["a"], "b": t["b"]} for t in trials]}
    with atomic_folder(out, force) as tmp:
        (tmp / "page" / "clips").mkdir(parents=True)
        for s in range(len(names)):
            for e in range(n_excerpts):
                shutil.copyfile(sources[s][e], tmp / "page" / clip_names[s][e])
        with atomic_path(tmp / "key.json") as path:
            path.write_text(json.dumps(key, indent=1) + "\n")
        with atomic_path(tmp / "page" / "index.html") as path:
            path.write_text(_page(page_design), encoding="utf-8")
    return out / "page" / "index.html"


_CSS = """
body { font-family: system-ui, sans-serif; max-width: 760px; margin: 2em auto; padding: 0 1em; color: #222; }
.pair { display: flex; gap: 2em; margin: 1.2em 0; }
.pair > div { flex: 1; }
.pair audio { width: 100%; }
.question { font-weight: bold; }
#scale { display: flex; gap: 0.4em; flex-wrap: wrap; margin: 0.8em 0 1.2em; }
#scale label { border: 1px solid #bbb; border-radius: 4px; padding: 0.4em 0.7em; cursor: pointer; }
button { font-size: 1em; padding: 0.4em 1.2em; }
.small { color: #666; font-size: 0.85em; }
"""

_SCRIPT = r"""
"use strict";
const design = JSON.parse(document.getElementById("design").textContent);
const $ = (id) => document.getElementById(id);
const state = { rater: "", started: null, finished: null, index: 0, ratings: [], trialStart: 0,
                played: { a: false, b: false } };

// progress survives a reload or a closed tab (per test, in this browser), resumed under the same name
const storageKey = `midi2wave-listening-${design.test_id}`;
function save() {
  try { localStorage.setItem(storageKey, JSON.stringify({ rater: state.rater, started: state.started,
    finished: state.finished, index: state.index, ratings: state.ratings })); } catch (e) { /* private mode */ }
}
function restore() {
  try { return JSON.parse(localStorage.getItem(storageKey) || "null"); } catch (e) { return null; }
}
const saved = restore();
if (saved && Array.isArray(saved.ratings) && saved.ratings.length) {
  $("rater").value = saved.rater;
  $("resume").hidden = false;
  $("resume").textContent = `${saved.ratings.length} of ${design.trials.length} pairs already rated by ` +
    `"${saved.rater}" in this browser: Start continues them (another name starts afresh).`;
}

function show(id) { for (const s of ["intro", "trial", "done"]) $(s).hidden = s !== id; }

function loadTrial() {
  const t = design.trials[state.index];
  $("audio-a").src = t.a;
  $("audio-b").src = t.b;
  state.played = { a: false, b: false };
  for (const r of document.querySelectorAll('input[name="pref"]')) r.checked = false;
  $("next").disabled = true;
  $("progress").textContent = `Pair ${state.index + 1} of ${design.trials.length}`;
  state.trialStart = performance.now();
}

function ratingsJSON() {
  return JSON.stringify({
    format: "midi2wave-listening-ratings", version: 1, test_id: design.test_id, seed: design.seed,
    question: design.question, rater: state.rater, started_utc: state.started, finished_utc: state.finished,
    user_agent: navigator.userAgent, n_trials: design.trials.length, ratings: state.ratings,
  }, null, 1);
}
window.ratingsJSON = ratingsJSON;

function download() {
  const blob = new Blob([ratingsJSON()], { type: "application/json" });
  const url = URL.createObjectURL(blob);
  const link = document.createElement("a");
  link.href = url;
  link.download = `ratings-${design.test_id}-${state.rater.replace(/[^A-Za-z0-9_-]+/g, "_") || "anonymous"}.json`;
  document.body.appendChild(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

$("start").addEventListener("click", () => {
  state.rater = $("rater").value.trim() || "anonymous";
  if (saved && saved.rater === state.rater && Array.isArray(saved.ratings)) {
    Object.assign(state, { started: saved.started, finished: saved.finished, index: saved.ratings.length,
                           ratings: saved.ratings });
  } else {
    state.started = new Date().toISOString();
  }
  save();
  if (state.index >= design.trials.length) {
    show("done");
  } else {
    show("trial");
    loadTrial();
  }
});
for (const side of ["a", "b"]) {
  $(`audio-${side}`).addEventListener("play", () => {
    state.played[side] = true;
    $(`audio-${side === "a" ? "b" : "a"}`).pause();
  });
}
for (const r of document.querySelectorAll('input[name="pref"]')) {
  r.addEventListener("change", () => { $("next").disabled = false; });
}
$("next").addEventListener("click", () => {
  const chosen = document.querySelector('input[name="pref"]:checked');
  if (!chosen) return;
  const t = design.trials[state.index];
  state.ratings.push({ trial: t.trial, a: t.a, b: t.b, preference_a: Number(chosen.value),
                       played_a: state.played.a, played_b: state.played.b,
                       seconds: Math.round(performance.now() - state.trialStart) / 1000 });
  $("audio-a").pause();
  $("audio-b").pause();
  state.index += 1;
  if (state.index < design.trials.length) {
    loadTrial();
  } else {
    state.finished = new Date().toISOString();
    show("done");
  }
  save();
});
$("download").addEventListener("click", download);
"""


def _page(design: dict[str, Any]) -> str:
    n = len(design["trials"])
    question = html.escape(design["question"])
    scale = "".join(f'<label><input type="radio" name="pref" value="{s["value"]}"> {html.escape(s["label"])}</label>'
                    for s in design["scale"])
    embedded = json.dumps(design).replace("</", "<\\/")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Listening test</title><style>{_CSS}</style></head>
<body>
<h1>Listening test</h1>
<div id="intro">
<p>You will hear {n} pairs of short piano clips, A and B. Listen to both clips of each pair, as often as you
like, and answer: <b>{question}</b></p>
<p>Use headphones in a quiet room. Your answers stay in this browser (a reload continues where you
stopped): at the end, download them and send the file back.</p>
<p><label>Your name or initials: <input id="rater" autocomplete="off"></label></p>
<p id="resume" class="small" hidden></p>
<button id="start">Start</button>
</div>
<div id="trial" hidden>
<p id="progress"></p>
<div class="pair"><div><b>A</b><br><audio id="audio-a" controls preload="auto"></audio></div>
<div><b>B</b><br><audio id="audio-b" controls preload="auto"></audio></div></div>
<p class="question">{question}</p>
<div id="scale">{scale}</div>
<button id="next" disabled>Next</button>
</div>
<div id="done" hidden>
<p>Thank you. Download your ratings and send the file to the person who gave you this test.</p>
<button id="download">Download ratings</button>
</div>
<p class="small">test {html.escape(design["test_id"])}</p>
<script type="application/json" id="design">{embedded}</script>
<script>{_SCRIPT}</script>
</body></html>
"""


# ------------------------------------------------------------------------------------- scoring


def load_key(test: str | os.PathLike) -> dict[str, Any]:
    """The key.json of a test folder (or the key file itself), checked for format."""
    path = Path(test)
    if path.is_dir():
        path = path / "key.json"
    try:
        key = json.loads(path.read_text())
    except FileNotFoundError:
        raise ListeningTestError(f"{path}: missing (give the folder written by `midi2wave listening-test --out`)") from None
    except (OSError, ValueError) as e:
        raise ListeningTestError(f"{path}: unreadable ({e})") from None
    if not isinstance(key, dict) or key.get("format") != KEY_FORMAT:
        raise ListeningTestError(f"{path}: not a listening-test key")
    return key


def _load_ratings(path: Path, key: dict[str, Any], key_path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ListeningTestError(f"{path}: no such ratings file") from None
    except (OSError, ValueError) as e:
        raise ListeningTestError(f"{path}: unreadable ratings file ({e})") from None
    if not isinstance(data, dict) or data.get("format") != RATINGS_FORMAT:
        raise ListeningTestError(f"{path}: not a ratings file of a midi2wave listening test")
    if data.get("test_id") != key["test_id"]:
        raise ListeningTestError(f"{path}: ratings of test {data.get('test_id')}, not of test {key['test_id']} "
                                 f"({key_path})")
    ratings = data.get("ratings")
    if not isinstance(ratings, list) or not ratings:
        raise ListeningTestError(f"{path}: holds no ratings")
    seen = set()
    trials = key["trials"]
    values = {v for v, _ in SCALE}
    for r in ratings:
        i = r.get("trial") if isinstance(r, dict) else None
        if not isinstance(i, int) or not 0 <= i < len(trials):
            raise ListeningTestError(f"{path}: rating of unknown trial {i!r}")
        if (r.get("a"), r.get("b")) != (trials[i]["a"], trials[i]["b"]):
            raise ListeningTestError(f"{path}: trial {i} names other clips than the test's key")
        if r.get("preference_a") not in values or isinstance(r.get("preference_a"), bool):
            raise ListeningTestError(f"{path}: trial {i}: preference_a {r.get('preference_a')!r} is not one of "
                                     f"{sorted(values)}")
        if i in seen:
            raise ListeningTestError(f"{path}: trial {i} rated twice")
        seen.add(i)
    return data


def wilson_interval(successes: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float] | None:
    """Wilson score interval of a binomial proportion (scipy.stats.binomtest); None for n = 0."""
    from scipy.stats import binomtest

    if n == 0:
        return None
    ci = binomtest(int(successes), int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjustment of the p-values (None entries are skipped and stay None)."""
    index = [i for i, p in enumerate(p_values) if p is not None]
    order = sorted(index, key=lambda i: p_values[i])
    m = len(order)
    adjusted: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * float(p_values[i])))
        adjusted[i] = running
    return adjusted


def _wilcoxon(preferences: Sequence[int]) -> dict[str, Any]:
    from scipy.stats import wilcoxon

    nonzero = [p for p in preferences if p != 0]
    if not nonzero:
        return {"statistic": None, "p": None, "n_nonzero": 0}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "sample size too small for normal approximation"
        result = wilcoxon(preferences, zero_method="wilcox", correction=False, method="approx")
    return {"statistic": float(result.statistic), "p": float(result.pvalue), "n_nonzero": len(nonzero)}


def score_ratings(ratings_paths: Sequence[str | os.PathLike], test: str | os.PathLike) -> dict[str, Any]:
    """Pool the raters' files of the test `test` (folder or key.json) into win rates and pairwise
    tests (see the module doc). One-line ListeningTestError for a file that is not a ratings file,
    belongs to another test, names trials or clips the key does not have, or is given twice."""
    key_path = Path(test) / "key.json" if Path(test).is_dir() else Path(test)
    key = load_key(test)
    if not ratings_paths:
        raise ListeningTestError(f"{key_path}: no ratings files given")
    resolved = [Path(p).resolve() for p in ratings_paths]
    for p, r in zip(ratings_paths, resolved):
        if resolved.count(r) > 1:
            raise ListeningTestError(f"{p}: given twice")
    files = [_load_ratings(Path(p), key, key_path) for p in ratings_paths]
    names = [s["name"] for s in key["systems"]]
    order = {name: k for k, name in enumerate(names)}
    prefs: dict[tuple[str, str], list[int]] = {pair: [] for pair in itertools.combinations(names, 2)}
    for data in files:
        for r in data["ratings"]:
            t = key["trials"][r["trial"]]
            a, b, p = t["system_a"], t["system_b"], int(r["preference_a"])
            pair, sign = ((a, b), 1) if order[a] < order[b] else ((b, a), -1)
            prefs[pair].append(sign * p)
    pairs = []
    for (x, y), values in prefs.items():
        wins, losses = sum(v > 0 for v in values), sum(v < 0 for v in values)
        decided = wins + losses
        pairs.append({"systems": [x, y], "n": len(values), "wins": {x: wins, y: losses},
                      "ties": len(values) - decided, "win_rate": wins / decided if decided else None,
                      "ci95": wilson_interval(wins, decided),
                      "mean_preference": float(np.mean(values)) if values else None,
                      "wilcoxon": _wilcoxon(values) if values else {"statistic": None, "p": None, "n_nonzero": 0}})
    for pair, p_holm in zip(pairs, holm([p["wilcoxon"]["p"] for p in pairs])):
        pair["wilcoxon"]["p_holm"] = p_holm
    systems = []
    for name in names:
        wins = sum(p["wins"][name] for p in pairs if name in p["systems"])
        losses = sum(p["wins"][other] for p in pairs if name in p["systems"] for other in p["systems"] if other != name)
        ties = sum(p["ties"] for p in pairs if name in p["systems"])
        systems.append({"name": name, "wins": wins, "losses": losses, "ties": ties,
                        "win_rate": wins / (wins + losses) if wins + losses else None,
                        "ci95": wilson_interval(wins, wins + losses)})
    return {
        "format": SCORES_FORMAT, "version": VERSION, "test_id": key["test_id"], "question": key["question"],
        "raters": [{"file": str(p), "rater": d.get("rater"), "ratings": len(d["ratings"]),
                    "complete": len(d["ratings"]) == len(key["trials"])} for p, d in zip(ratings_paths, files)],
        "n_ratings": sum(len(d["ratings"]) for d in files),
        "pairs": pairs, "systems": systems,
        "method": "preference in -2..2 for the first system of each pair; win rate = wins / (wins + losses), "
                  "ties left out, 95% Wilson interval; Wilcoxon signed-rank of the pooled preferences against 0 "
                  "(scipy, zeros dropped, normal approximation with tie correction, no continuity correction), "
                  "Holm-corrected over the pairs",
    }


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"


def _ci(ci: Sequence[float] | None) -> str:
    return "-" if ci is None else f"[{100 * ci[0]:.0f}, {100 * ci[1]:.0f}]%"


def _p(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def format_scores(scores: dict[str, Any]) -> str:
    """The scores as a short table."""
    raters = scores["raters"]
    lines = [f"test {scores['test_id']}: {scores['n_ratings']} ratings from {len(raters)} rater file(s)"
             + ("" if all(r["complete"] for r in raters) else " (some incomplete)"), "",
             f"{'pair (X vs Y)':<32}{'n':>5}{'X wins':>8}{'Y wins':>8}{'ties':>6}{'X win rate':>12}"
             f"{'95% CI':>14}{'p':>9}{'p Holm':>9}"]
    for p in scores["pairs"]:
        x, y = p["systems"]
        lines.append(f"{x + ' vs ' + y:<32}{p['n']:>5}{p['wins'][x]:>8}{p['wins'][y]:>8}{p['ties']:>6}"
                     f"{_pct(p['win_rate']):>12}{_ci(p['ci95']):>14}{_p(p['wilcoxon']['p']):>9}"
                     f"{_p(p['wilcoxon']['p_holm']):>9}")
    lines += ["", f"{'system':<32}{'wins':>8}{'losses':>8}{'ties':>6}{'win rate':>12}{'95% CI':>14}"]
    for s in scores["systems"]:
        lines.append(f"{s['name']:<32}{s['wins']:>8}{s['losses']:>8}{s['ties']:>6}{_pct(s['win_rate']):>12}"
                     f"{_ci(s['ci95']):>14}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ CLI


def listening_test_from_cli(args: Any) -> int:
    """`midi2wave listening-test`: build a test (NAME=REPORT ... --out DIR) or score ratings (--score)."""
    if args.score is not None:
        if args.systems or args.out is not None or args.real:
            raise ListeningTestError("--score takes ratings files and --test DIR only (no reports, --out or --real)")
        if args.test is None:
            raise ListeningTestError("--score needs --test DIR (the folder written when the test was built)")
        if args.json is not None and Path(args.json).exists() and not args.force:
            raise ListeningTestError(f"{args.json}: already exists (use --force to overwrite)")
        scores = score_ratings(args.score, args.test)
        print(format_scores(scores))
        if args.json is not None:
            if not Path(args.json).parent.is_dir():
                raise ListeningTestError(f"{args.json}: folder {Path(args.json).parent} does not exist")
            with atomic_path(args.json, force=args.force) as tmp:
                tmp.write_text(json.dumps(scores, indent=1) + "\n")
        return 0
    if args.out is None:
        raise ListeningTestError("give --out DIR to build a test (or --score RATINGS.json ... --test DIR to score one)")
    if args.test is not None or args.json is not None:
        raise ListeningTestError("--test and --json go with --score")
    page = build_test([_parse_system(s) for s in args.systems], args.out, include_real=args.real, seed=args.seed,
                      force=args.force)
    key = load_key(args.out)
    print(f"wrote {page} ({len(key['trials'])} trials, test {key['test_id']}): send the folder {page.parent} to "
          f"the raters; keep {Path(args.out) / 'key.json'} to score their ratings")
    return 0
