"""`evaluate --report`: the page's files, its refusals, and the page itself in headless Chromium."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import soundfile as sf
import torch

import browser
from midi2wave import constants as C
from midi2wave.config import Config, DataConfig, ModelConfig, TrainConfig
from midi2wave.errors import OutputExistsError
from midi2wave.midi import Notes
from midi2wave.model import Midi2Wave
from midi2wave.evaluation.report import ReportError, ReportExcerpt, ReportOptions, write_report
from midi2wave.evaluation.transcribe import basic_pitch_available
from helpers import missing
from store_fixture import make_store

SR = C.SAMPLE_RATE_HZ

needs_basic_pitch = pytest.mark.skipif(not basic_pitch_available(), reason="basic-pitch / onnxruntime not installed")


def needs_browser():
    """Skip where Chromium or Playwright is missing, except in CI (CI=true), where that is a failure."""
    why = browser.missing()
    if why is not None:
        missing(f"browser tests: {why}")


def _tone(hz: float, seconds: float, level: float) -> np.ndarray:
    t = np.arange(int(round(seconds * SR))) / SR
    return (level * np.sin(2 * np.pi * hz * t) * np.exp(-2 * t)).astype(np.float32)


def synthetic_excerpts(n: int = 2, seconds: float = 1.0, extra_clip: bool = True) -> list[ReportExcerpt]:
    """Excerpts whose clips are decaying tones at their note's pitch (real), an octave up (generated)..."""
    out = []
    for i in range(n):
        pitch = 60 + 4 * i
        hz = 440.0 * 2 ** ((pitch - 69) / 12)
        clips = {"generated": _tone(2 * hz, seconds, 0.3), "real": _tone(hz, seconds, 0.5),
                 "floor": _tone(3 * hz, seconds, 0.1)}
        if extra_clip:
            clips["other_instrument"] = _tone(hz, seconds, 0.2)
        notes = Notes(np.array([0.1]), np.array([0.8]), np.array([pitch], np.int16), np.array([90], np.int16))
        out.append(ReportExcerpt(title=f"piece-{i} from {i:.2f} s",
                                 identity={"source": f"piece-{i}", "start_frame": 10 * i, "n_frames": 250},
                                 notes=notes, clips=clips, sample_rate_hz=SR, seconds=seconds))
    return out


def synthetic_results(n: int = 2) -> dict:
    """A results dict as `evaluate` returns, plus a measurement the page has never heard of."""
    return {
        "format": "midi2wave-evaluation", "settings": {"data": "store", "excerpts": n, "seed": 0},
        "config": {"model": {"residual_channels": 8}},
        "nll": {"bits_per_sample": 3.25, "per_excerpt": [3.0 + i for i in range(n)]},
        "conditioning_gain": {"nll_true": 3.25, "gain_zeroed": 0.5,
                              "per_excerpt": [{"nll_true": 3.0 + i, "donor": 1 - i} for i in range(n)]},
        "realism": {"gap_noise_db": -41.5, "per_excerpt": [{"gap_noise_db": -40.125 - i, "tonal_purity": 0.875}
                                                           for i in range(n)]},
        "transcription": None,
    }


def test_write_report_writes_a_self_contained_page(tmp_path):
    folder = tmp_path / "report"
    options = ReportOptions(folder, command="midi2wave evaluate --report report", checkpoint="runs/x/last.pt")
    page = write_report(options, synthetic_results(), synthetic_excerpts())
    assert page == folder / "index.html"
    text = page.read_text()
    sources = re.findall(r'(?:src|href)="([^"]+)"', text)
    assert len([s for s in sources if s.endswith(".wav")]) == 8 and len([s for s in sources if s.endswith(".png")]) == 10
    for src in sources:  # everything the page loads is in the folder: no network, no server
        assert not re.match(r"[a-z]+:", src) and (folder / src).is_file(), src
    assert "http://" not in text and "https://" not in text  # no CDN
    for wav in folder.glob("audio/*.wav"):
        info = sf.info(str(wav))
        assert info.subtype == "PCM_16" and info.samplerate == SR and info.frames == SR
    manifest = json.loads((folder / "report.json").read_text())
    assert manifest["format"] == "midi2wave-report" and len(manifest["excerpts"]) == 2
    assert list(manifest["excerpts"][1]["clips"]) == ["generated", "real", "floor", "other_instrument"]
    real = sf.read(str(folder / manifest["excerpts"][1]["clips"]["real"]))[0]
    np.testing.assert_allclose(real, synthetic_excerpts()[1].clips["real"], atol=1 / 32767)
    # the command, the checkpoint and the config are on the page
    assert "midi2wave evaluate --report report" in text and "runs/x/last.pt" in text and "residual_channels" in text
    # per-excerpt measurements appear generically, including ones the page does not know
    second = text[text.index('id="excerpt-01"'):]
    assert "gap_noise_db" in second and "-41.125" in second and "tonal_purity" in second
    assert "-40.125" in text[text.index('id="excerpt-00"'):text.index('id="excerpt-01"')]
    summary = text[:text.index('id="excerpt-00"')]
    assert "-41.500" in summary and "3.250" in summary
    assert not list(tmp_path.glob(".report*"))  # no temporary folder left


def test_strips_line_up_in_time_and_share_one_colour_scale():
    from midi2wave import plots

    ex = synthetic_excerpts(n=1)[0]
    panels = [(key, audio) for key, audio in ex.clips.items()]
    figures = plots.excerpt_strips(ex.notes, panels, SR, ex.seconds)
    assert len(figures) == 1 + 4
    widths = {fig.get_size_inches()[0] for fig in figures}
    spans = {(round(fig.axes[0].get_position().x0, 6), round(fig.axes[0].get_position().x1, 6)) for fig in figures}
    limits = {tuple(fig.axes[0].get_xlim()) for fig in figures}
    assert len(widths) == 1 and len(spans) == 1 and limits == {(0.0, ex.seconds)}
    scales = {fig.axes[0].images[0].get_clim() for fig in figures[1:]}
    loudest = max(float(plots.log_spectrogram(audio).max()) for _, audio in panels)
    assert scales == {(loudest - plots.RANGE_DB, loudest)}  # the real audio (0.5) sets it for all four
    assert max(float(plots.log_spectrogram(ex.clips["floor"]).max()), -200) < loudest - 10


def test_write_report_refuses_existing_output_and_bad_input(tmp_path):
    folder = tmp_path / "report"
    folder.mkdir()
    (folder / "keep.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match="already exists"):
        write_report(ReportOptions(folder), synthetic_results(), synthetic_excerpts())
    assert [p.name for p in folder.iterdir()] == ["keep.txt"]
    write_report(ReportOptions(folder, force=True), synthetic_results(), synthetic_excerpts())
    assert not (folder / "keep.txt").exists() and (folder / "index.html").is_file()
    with pytest.raises(ReportError, match="no excerpts"):
        write_report(ReportOptions(tmp_path / "empty"), synthetic_results(), [])
    short = synthetic_excerpts()
    short[1].clips["floor"] = short[1].clips["floor"][:100]
    with pytest.raises(ReportError, match="floor"):
        write_report(ReportOptions(tmp_path / "short"), synthetic_results(), short)
    with pytest.raises(ReportError, match="does not exist"):
        write_report(ReportOptions(tmp_path / "no" / "such"), synthetic_results(), synthetic_excerpts())
    assert not (tmp_path / "empty").exists() and not (tmp_path / "short").exists()
    assert not list(tmp_path.glob(".*"))


# --------------------------------------------------------------------------- evaluate --report


TINY = ModelConfig(residual_channels=8, gate_channels=16, skip_channels=8, n_stacks=1, layers_per_stack=4,
                   n_mixtures=2, context_channels=8, context_stacks=1, context_layers_per_stack=2)
TINY_DATA = DataConfig(conditioning=("onset_velocity", "pedals"), segment_seconds=0.25, excitation_partials=2)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("store") / "store"
    make_store(path, {"train": 1, "test": 3}, seconds=1.5, seed=3)
    return path


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    from midi2wave.checkpoint import save_checkpoint

    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    torch.manual_seed(1)
    save_checkpoint(path, Config(data=TINY_DATA, model=TINY, train=TrainConfig()), Midi2Wave(TINY, TINY_DATA).eval())
    return path


@pytest.fixture(scope="module")
def cli_report(store, tiny_checkpoint, tmp_path_factory):
    """`midi2wave evaluate --report` of the tiny model on 3 excerpts of 0.5 s: (folder, argv)."""
    if not basic_pitch_available():
        pytest.skip("basic-pitch / onnxruntime not installed")
    from midi2wave.cli import main

    folder = tmp_path_factory.mktemp("out") / "report"
    argv = ["evaluate", "--checkpoint", str(tiny_checkpoint), "--data", str(store), "--excerpts", "3",
            "--excerpt-seconds", "0.5", "--report", str(folder), "-q"]
    assert main(argv) == 0
    return folder, argv


@needs_basic_pitch
def test_cli_evaluate_report(cli_report, tiny_checkpoint):
    folder, argv = cli_report
    text = (folder / "index.html").read_text()
    manifest = json.loads((folder / "report.json").read_text())
    assert len(manifest["excerpts"]) == 3
    for entry in manifest["excerpts"]:
        # the second instrument's render of the notes (the realism scale) is a clip of its own
        assert list(entry["clips"]) == ["generated", "real", "floor", "musescore"]
        for name in [*entry["clips"].values(), *entry["images"].values()]:
            assert (folder / name).stat().st_size > 1000
    assert manifest["checkpoint"] == str(tiny_checkpoint) and str(tiny_checkpoint) in text
    assert manifest["command"] == "midi2wave " + " ".join(argv)
    results = manifest["results"]
    for measure in ("nll", "conditioning_gain", "transcription"):  # all of evaluate's per-excerpt measures shown
        assert len(results[measure]["per_excerpt"]) == 3
        assert text.count(f'data-measure="{measure}"') == 1 + 3
    f1 = results["transcription"]["per_excerpt"][2]["generated"]["f1"]
    assert f"{f1:.3f}" in text[text.index('id="excerpt-02"'):]


@needs_basic_pitch
def test_cli_evaluate_report_errors_are_one_line_and_nothing_is_overwritten(cli_report, store, tiny_checkpoint,
                                                                          tmp_path, capsys):
    from midi2wave.cli import main

    folder, argv = cli_report
    before = {p: p.stat().st_mtime_ns for p in folder.rglob("*")}
    capsys.readouterr()

    def error(args) -> str:
        assert main(args) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("midi2wave: error: "), err
        return err

    assert "already exists" in error(argv)  # an existing report, refused before any work
    assert {p: p.stat().st_mtime_ns for p in folder.rglob("*")} == before
    base = ["evaluate", "--checkpoint", str(tiny_checkpoint), "--excerpt-seconds", "0.5", "-q"]
    assert "no-transcription" in error(base + ["--data", str(store), "--no-transcription", "--report",
                                               str(tmp_path / "r")])
    assert "nope" in error(base + ["--data", str(tmp_path / "nope"), "--report", str(tmp_path / "r")])
    assert "validation" in error(base + ["--data", str(store), "--split", "validation", "--report",
                                         str(tmp_path / "r")])
    assert not (tmp_path / "r").exists()


# ------------------------------------------------------------------------------------- browser


@needs_basic_pitch
@pytest.mark.browser
def test_report_page_in_chromium_loads_and_plays_everything(cli_report, tmp_path):
    needs_browser()
    folder, _ = cli_report
    with browser.browser_page() as page:
        page.goto((folder / "index.html").as_uri())
        state = browser.media_state(page)
        # per excerpt: the notes + generated, real, floor and the second instrument (musescore)
        assert len(state["images"]) == 3 * 5 and len(state["audios"]) == 3 * 4
        for image in state["images"]:
            assert image["complete"] and image["width"] == 800 and image["height"] > 100, image
        for audio in state["audios"]:
            assert audio["error"] is None and audio["readyState"] == 4, audio  # HAVE_ENOUGH_DATA
            assert audio["duration"] == pytest.approx(0.5, abs=1e-3), audio
        for selector in ["#excerpt-00 audio[data-clip=generated]", "#excerpt-01 audio[data-clip=real]",
                         "#excerpt-02 audio[data-clip=floor]", "#excerpt-02 audio[data-clip=musescore]"]:
            played = browser.play(page, selector)
            assert not played["paused"] and played["currentTime"] > played["startTime"], played
        shot = browser.screenshot(page, tmp_path / "report.png")
        assert page.errors == []
    from PIL import Image

    image = Image.open(shot)
    assert image.size == browser.SCREENSHOT_SIZE and shot.stat().st_size < 300_000
    # the screenshot shows the page, not a blank window: many distinct colours (spectrograms)
    assert len(image.convert("RGB").getcolors(maxcolors=1 << 20)) > 100
