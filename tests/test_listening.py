"""`midi2wave listening-test`: the blind A/B page, simulated raters clicking through it in headless
Chromium, and the scores of their downloaded ratings against numbers computed by hand."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import pytest

import browser
from midi2wave.cli import main
from midi2wave.evaluation.listening import build_test, load_key, score_ratings
from midi2wave.evaluation.report import ReportOptions, write_report
from test_report import needs_browser, synthetic_excerpts, synthetic_results

SYSTEMS = ["alpha", "beta", "real"]


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    """Two report folders of the same two excerpts (generations differ), as `evaluate --report` writes."""
    root = tmp_path_factory.mktemp("reports")
    folders = []
    for k, name in enumerate(["alpha", "beta"]):
        excerpts = synthetic_excerpts(n=2, seconds=1.0, extra_clip=False)
        for ex in excerpts:
            ex.clips["generated"] = ex.clips["generated"] * (0.5 + k)
        write_report(ReportOptions(root / name), synthetic_results(2), excerpts)
        folders.append(root / name)
    return folders


@pytest.fixture(scope="module")
def test_folder(reports, tmp_path_factory):
    out = tmp_path_factory.mktemp("lt") / "test"
    assert main(["listening-test", f"alpha={reports[0]}", f"beta={reports[1]}", "--real", "--out", str(out),
                 "--seed", "5"]) == 0
    return out


def preference(x: str, y: str, excerpt: int, rater: int) -> int:
    """The simulated raters' taste: how much (-2..2) rater 1 or 2 prefers system x over system y.

    Rater 1: real over anything by 2, alpha over beta by 1.
    Rater 2: real over alpha by 1 on excerpt 0 and no difference on excerpt 1; real over beta by 2;
             beta over alpha by 1 on excerpt 0, alpha over beta by 1 on excerpt 1.
    """
    if x == y:
        raise ValueError(x)
    if SYSTEMS.index(x) > SYSTEMS.index(y):
        return -preference(y, x, excerpt, rater)
    if rater == 1:
        return -2 if y == "real" else 1
    if (x, y) == ("alpha", "real"):
        return -1 if excerpt == 0 else 0
    if (x, y) == ("beta", "real"):
        return -2
    return -1 if excerpt == 0 else 1  # alpha vs beta


def check_hand_computed_scores(scores: dict) -> None:
    """The scores of raters 1 + 2 (2 excerpts x 3 pairs each), computed by hand.

    Preferences for the first system of each pair, pooled over both raters:
      alpha vs beta: R1 +1 +1, R2 -1 +1 -> [1, 1, -1, 1]: alpha wins 3, beta 1, ties 0.
        win rate 3/4; Wilson 95% (z = 1.959964): centre (0.75 + z²/8) / (1 + z²/4) = 0.62740,
        half width z sqrt(0.75 * 0.25 / 4 + z² / 64) / (1 + z²/4) = 0.32677 -> [0.30064, 0.95441].
        Wilcoxon: |d| all 1, ranks 2.5 each; W+ = 7.5, W- = 2.5, statistic min = 2.5;
        mean n(n+1)/4 = 5; variance n(n+1)(2n+1)/24 - sum(t³ - t)/48 = 7.5 - 60/48 = 6.25;
        z = (2.5 - 5) / 2.5 = -1 -> p = 2 Φ(-1) = 0.317311.
      alpha vs real: R1 -2 -2, R2 -1 0 -> [-2, -2, -1, 0]: alpha 0, real 3, ties 1.
        win rate 0/3; Wilson [0, z² / (3 + z²)] = [0, 0.56150].
        Wilcoxon (zero dropped, n = 3): ranks 1 (for 1), 2.5, 2.5 (for the 2s); W+ = 0 = statistic;
        mean 3; variance 3 * 4 * 7 / 24 - (8 - 2)/48 = 3.375; z = -3 / 1.837117 = -1.632993 -> p = 0.102470.
      beta vs real: [-2, -2, -2, -2]: beta 0, real 4; statistic 0; mean 5, variance 6.25, z = -2 -> p = 0.045500.
      Holm over the three: 0.045500 * 3 = 0.136501, 0.102470 * 2 = 0.204941, 0.317311 * 1 = 0.317311.
    Per system (ties left out): alpha 3 wins / 7 decided, Wilson [0.15822, 0.74954]; beta 1 / 8,
    [0.02242, 0.47089]; real 7 / 7, [n / (n + z²) = 0.64567, 1].
    """
    assert scores["n_ratings"] == 12 and [r["ratings"] for r in scores["raters"]] == [6, 6]
    pairs = {tuple(p["systems"]): p for p in scores["pairs"]}
    assert list(pairs) == [("alpha", "beta"), ("alpha", "real"), ("beta", "real")]
    ab, ar, br = pairs[("alpha", "beta")], pairs[("alpha", "real")], pairs[("beta", "real")]
    assert (ab["wins"], ab["ties"], ab["n"]) == ({"alpha": 3, "beta": 1}, 0, 4)
    assert (ar["wins"], ar["ties"], ar["n"]) == ({"alpha": 0, "real": 3}, 1, 4)
    assert (br["wins"], br["ties"], br["n"]) == ({"beta": 0, "real": 4}, 0, 4)
    assert ab["win_rate"] == 0.75 and ar["win_rate"] == 0.0 and br["win_rate"] == 0.0
    assert ab["ci95"] == pytest.approx([0.30064, 0.95441], abs=1e-5)
    assert ar["ci95"] == pytest.approx([0.0, 0.56150], abs=1e-5)
    assert ab["mean_preference"] == 0.5 and ar["mean_preference"] == -1.25 and br["mean_preference"] == -2.0
    expected = {("alpha", "beta"): (2.5, 0.317311, 0.317311, 4), ("alpha", "real"): (0.0, 0.102470, 0.204941, 3),
                ("beta", "real"): (0.0, 0.045500, 0.136501, 4)}
    for pair, (statistic, p, p_holm, n_nonzero) in expected.items():
        w = pairs[pair]["wilcoxon"]
        assert w["statistic"] == statistic and w["n_nonzero"] == n_nonzero
        assert w["p"] == pytest.approx(p, abs=1e-6) and w["p_holm"] == pytest.approx(p_holm, abs=1e-6)
    systems = {s["name"]: s for s in scores["systems"]}
    assert [(systems[n]["wins"], systems[n]["losses"], systems[n]["ties"]) for n in SYSTEMS] == \
        [(3, 4, 1), (1, 7, 0), (7, 0, 1)]
    assert systems["alpha"]["ci95"] == pytest.approx([0.15822, 0.74954], abs=1e-5)
    assert systems["beta"]["ci95"] == pytest.approx([0.02242, 0.47089], abs=1e-5)
    assert systems["real"]["ci95"] == pytest.approx([0.64567, 1.0], abs=1e-5)


def ratings_file(path: Path, key: dict, rater: int) -> Path:
    """The JSON the page would download for a rater with `preference`'s taste (written directly)."""
    ratings = [{"trial": t["trial"], "a": t["a"], "b": t["b"], "played_a": True, "played_b": True, "seconds": 3.0,
                "preference_a": preference(t["system_a"], t["system_b"], t["excerpt"], rater)} for t in key["trials"]]
    path.write_text(json.dumps({"format": "midi2wave-listening-ratings", "version": 1, "test_id": key["test_id"],
                                "seed": key["seed"], "rater": f"r{rater}", "ratings": ratings}))
    return path


# ------------------------------------------------------------------------------------ building


def test_the_test_is_blind_counterbalanced_and_seeded(test_folder, reports, tmp_path):
    key = load_key(test_folder)
    page = (test_folder / "page" / "index.html").read_text()
    assert [s["name"] for s in key["systems"]] == SYSTEMS and len(key["trials"]) == 3 * 2
    # every pair on every excerpt once; each system of a pair is A once and B once (2 excerpts)
    assert Counter((frozenset((t["system_a"], t["system_b"])), t["excerpt"]) for t in key["trials"]) == \
        {(frozenset(p), e): 1 for p in [("alpha", "beta"), ("alpha", "real"), ("beta", "real")] for e in (0, 1)}
    assert Counter(t["system_a"] for t in key["trials"]) == {"alpha": 2, "beta": 2, "real": 2}
    # blind: the page names no system or report, the clips have opaque names
    for word in ("alpha", "beta", "system_a", "report.json", str(reports[0])):
        assert word not in page
    clips = sorted(p.name for p in (test_folder / "page" / "clips").iterdir())
    assert len(clips) == 3 * 2 and clips == sorted(Path(c).name for c in key["clips"])
    assert all(key["clips"][t["a"]]["excerpt"] == key["clips"][t["b"]]["excerpt"] == t["excerpt"] for t in key["trials"])
    assert key["test_id"] in page and f'"seed": {key["seed"]}' in page
    # the clip of the real audio is the report's real audio, byte for byte
    real_clip = next(c for c, v in key["clips"].items() if v["system"] == "real" and v["excerpt"] == 1)
    manifest = json.loads((reports[0] / "report.json").read_text())
    assert (test_folder / "page" / real_clip).read_bytes() == (reports[0] / manifest["excerpts"][1]["clips"]["real"]).read_bytes()
    # the same seed gives the same test; another seed another order and id
    same = build_test([("alpha", reports[0]), ("beta", reports[1])], tmp_path / "same", include_real=True, seed=5)
    other = build_test([("alpha", reports[0]), ("beta", reports[1])], tmp_path / "other", include_real=True, seed=6)
    assert load_key(same.parent.parent) == key
    key6 = load_key(other.parent.parent)
    assert key6["test_id"] != key["test_id"] and key6["trials"] != key["trials"]


def test_build_errors_are_one_line(reports, test_folder, tmp_path, capsys):
    def error(args) -> str:
        assert main(["listening-test", *args]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("midi2wave: error: "), err
        return err

    assert "one system only" in error([str(reports[0]), "--out", str(tmp_path / "t")])
    assert "no report folders" in error(["--real", "--out", str(tmp_path / "t")])
    assert "no such report folder" in error([f"a={tmp_path / 'missing'}", "--real", "--out", str(tmp_path / "t")])
    assert "given twice" in error([f"a={reports[0]}", f"a={reports[1]}", "--out", str(tmp_path / "t")])
    assert "already exists" in error([f"a={reports[0]}", f"b={reports[1]}", "--out", str(test_folder)])
    other = tmp_path / "other"  # a report of other excerpts
    write_report(ReportOptions(other), synthetic_results(3), synthetic_excerpts(n=3, extra_clip=False))
    assert "differ" in error([f"a={reports[0]}", f"b={other}", "--out", str(tmp_path / "t")])
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "report.json").write_text(json.dumps({"format": "midi2wave-report", "excerpts": []}))
    assert "no excerpts" in error([f"a={empty}", "--real", "--out", str(tmp_path / "t")])
    assert not (tmp_path / "t").exists()


# ------------------------------------------------------------------------------------- scoring


def test_scores_of_two_raters_match_the_hand_computation(test_folder, tmp_path, capsys):
    key = load_key(test_folder)
    files = [ratings_file(tmp_path / f"r{k}.json", key, k) for k in (1, 2)]
    check_hand_computed_scores(score_ratings(files, test_folder))
    out = tmp_path / "scores.json"
    assert main(["listening-test", "--score", *map(str, files), "--test", str(test_folder), "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "alpha vs beta" in printed and "75%" in printed and "0.317" in printed
    check_hand_computed_scores(json.loads(out.read_text()))
    assert main(["listening-test", "--score", *map(str, files), "--test", str(test_folder), "--json", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err


def test_scoring_refuses_ratings_of_another_test_and_bad_files(test_folder, reports, tmp_path, capsys):
    key = load_key(test_folder)
    good = ratings_file(tmp_path / "good.json", key, 1)
    other_test = build_test([("alpha", reports[0]), ("beta", reports[1])], tmp_path / "other", seed=1).parent.parent
    foreign = ratings_file(tmp_path / "foreign.json", load_key(other_test), 1)

    def error(args) -> str:
        assert main(["listening-test", "--score", *args]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("midi2wave: error: "), err
        return err

    err = error([str(good), str(foreign), "--test", str(test_folder)])
    assert str(foreign) in err and "not of test" in err and key["test_id"] in err
    assert "needs --test" in error([str(good)])
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert "unreadable" in error([str(bad), "--test", str(test_folder)])
    data = json.loads(good.read_text())
    for change, message in [(lambda d: d.update(ratings=[]), "no ratings"),
                            (lambda d: d["ratings"][0].update(preference_a=3), "preference_a"),
                            (lambda d: d["ratings"][1].update(a=d["ratings"][1]["b"]), "other clips"),
                            (lambda d: d["ratings"].append(dict(d["ratings"][0])), "rated twice"),
                            (lambda d: d.update(format="something"), "not a ratings file")]:
        changed = json.loads(json.dumps(data))
        change(changed)
        bad.write_text(json.dumps(changed))
        assert message in error([str(bad), "--test", str(test_folder)])
    assert "given twice" in error([str(good), str(good), "--test", str(test_folder)])
    assert "missing" in error([str(good), "--test", str(tmp_path)])


def test_holm_and_wilson_edge_cases():
    from midi2wave.evaluation.listening import holm, wilson_interval

    adjusted = holm([0.01, None, 0.04, 0.03])
    assert adjusted[1] is None and adjusted[0] == pytest.approx(0.03) and adjusted[3] == pytest.approx(0.06)
    assert adjusted[2] == pytest.approx(0.06)  # 1 * 0.04 raised to the running maximum 0.06
    assert wilson_interval(0, 0) is None
    lo, hi = wilson_interval(5, 10)
    assert lo == pytest.approx(1 - hi) and 0.23 < lo < 0.24  # symmetric around 1/2: 0.2366


# ------------------------------------------------------------------------------------- browser


def _rate_in_browser(page, key: dict, rater: int, name: str, downloads: Path, reload_after: int | None = None) -> Path:
    """Click through the whole test as `preference`'s rater `rater` would (reloading the page after
    `reload_after` trials and continuing); return the downloaded file."""
    clips = key["clips"]
    page.fill("#rater", name)
    page.click("#start")
    for i in range(len(key["trials"])):
        if i == reload_after:
            # the page saved every rating so far before it reloads, and shows that it can resume after
            # (one CI run under load read the resume line hidden at once after the reload)
            saved = (f"(JSON.parse(localStorage.getItem('midi2wave-listening-{key['test_id']}') || 'null')"
                     " || {ratings: []}).ratings.length")
            page.wait_for_function(f"{saved} === {i}", timeout=10000)
            page.reload()
            try:
                page.wait_for_selector("#resume", state="visible", timeout=10000)
            except Exception:  # noqa: BLE001 - say what the page holds
                raise AssertionError(f"no resume line after the reload; saved ratings: {page.evaluate(saved)}") from None
            assert f"{i} of {len(key['trials'])}" in page.inner_text("#resume")
            assert page.input_value("#rater") == name
            page.click("#start")
        assert page.inner_text("#progress") == f"Pair {i + 1} of {len(key['trials'])}"
        a, b = page.get_attribute("#audio-a", "src"), page.get_attribute("#audio-b", "src")
        if i == 0:  # both players load and play
            for selector in ("#audio-a", "#audio-b"):
                played = browser.play(page, selector)
                assert not played["paused"] and played["currentTime"] > played["startTime"], played
            state = browser.media_state(page)
            assert [m["readyState"] for m in state["audios"]] == [4, 4]
            assert [round(m["duration"], 3) for m in state["audios"]] == [1.0, 1.0]
        assert page.is_disabled("#next")
        value = preference(clips[a]["system"], clips[b]["system"], clips[a]["excerpt"], rater)
        page.check(f'input[name="pref"][value="{value}"]')
        page.click("#next")
    assert page.is_visible("#download")
    with page.expect_download() as info:
        page.click("#download")
    download = info.value
    path = downloads / download.suggested_filename
    download.save_as(path)
    return path


@pytest.mark.browser
def test_simulated_raters_click_through_the_page_and_their_downloads_score_correctly(test_folder, tmp_path, capsys):
    needs_browser()
    key = load_key(test_folder)
    files = []
    for rater in (1, 2):
        with browser.browser_page(downloads=tmp_path) as page:
            page.goto((test_folder / "page" / "index.html").resolve().as_uri())
            files.append(_rate_in_browser(page, key, rater, f"rater {rater}", tmp_path,
                                          reload_after=3 if rater == 2 else None))
            assert page.errors == []
    assert [f.name for f in files] == [f"ratings-{key['test_id']}-rater_1.json", f"ratings-{key['test_id']}-rater_2.json"]
    data = json.loads(files[0].read_text())
    assert data["test_id"] == key["test_id"] and data["rater"] == "rater 1" and data["seed"] == 5
    assert [r["trial"] for r in data["ratings"]] == list(range(6))
    assert data["ratings"][0]["played_a"] and data["ratings"][0]["played_b"] and not data["ratings"][1]["played_a"]
    out = tmp_path / "scores.json"
    assert main(["listening-test", "--score", *map(str, files), "--test", str(test_folder), "--json", str(out)]) == 0
    check_hand_computed_scores(json.loads(out.read_text()))
    assert math.isclose(json.loads(out.read_text())["pairs"][2]["wilcoxon"]["p"], 0.0455003, abs_tol=1e-6)
