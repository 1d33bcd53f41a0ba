"""Test helper: Debian's headless Chromium driven by Playwright (no browser download).

    from browser import browser_page, media_state, screenshot
    with browser_page(downloads=tmp_path) as page:
        page.goto((folder / "index.html").as_uri())

Chromium runs as root here, so it needs --no-sandbox; audio may play without a user gesture
(`--autoplay-policy=no-user-gesture-required`) so that the tests can check that players play.
Playwright gives every launch a fresh temporary profile (user data dir). `scripts/report-screenshot.py`
takes the README's screenshot with `screenshot`, as the tests do.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import Iterator

CHROMIUM = os.environ.get("MIDI2WAVE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                 "--autoplay-policy=no-user-gesture-required"]
SCREENSHOT_SIZE = (1180, 1500)  # CSS pixels of the README screenshot (the page's top: summary, first excerpt)


def missing() -> str | None:
    """Why the browser tests cannot run here (None: they can)."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Python playwright is not installed (scripts/setup-dev.sh installs it)"
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        return f"{CHROMIUM} is missing (scripts/setup-dev.sh installs Debian's chromium)"
    return None


@contextlib.contextmanager
def browser_page(downloads: str | os.PathLike | None = None, viewport: tuple[int, int] = SCREENSHOT_SIZE) -> Iterator:
    """A Playwright page in headless Chromium (fresh profile); closed on exit. Downloads are accepted
    (fetch them with `page.expect_download()`); `downloads`: where Playwright keeps them."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
                                    downloads_path=str(downloads) if downloads is not None else None)
        try:
            context = browser.new_context(accept_downloads=True, viewport={"width": viewport[0], "height": viewport[1]})
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.errors = errors  # JavaScript exceptions raised by the page, for the tests to check
            yield page
        finally:
            browser.close()


MEDIA_STATE_JS = """
async () => {
  const images = [...document.images].map(img => ({src: img.getAttribute("src"), complete: img.complete,
                                                    width: img.naturalWidth, height: img.naturalHeight}));
  const audios = [];
  for (const a of document.querySelectorAll("audio")) {
    if (a.readyState < 4) {
      await new Promise(resolve => {
        const done = () => resolve();
        a.addEventListener("canplaythrough", done, {once: true});
        a.addEventListener("error", done, {once: true});
        setTimeout(done, 5000);
      });
    }
    audios.push({src: a.getAttribute("src"), readyState: a.readyState, duration: a.duration,
                 error: a.error ? a.error.code : null});
  }
  return {images, audios};
}
"""

PLAY_JS = """
async (selector) => {
  const a = document.querySelector(selector);
  await a.play();
  const t0 = a.currentTime;
  await new Promise(resolve => setTimeout(resolve, 400));
  const state = {paused: a.paused, currentTime: a.currentTime, startTime: t0, readyState: a.readyState};
  a.pause();
  return state;
}
"""


def media_state(page) -> dict:
    """{images: [{src, complete, width, height}], audios: [{src, readyState, duration, error}]}, after
    waiting (up to 5 s each) for every audio element to be able to play through."""
    return page.evaluate(MEDIA_STATE_JS)


def play(page, selector: str) -> dict:
    """Play the audio element `selector` for 0.4 s: {paused, currentTime, startTime, readyState}."""
    return page.evaluate(PLAY_JS, selector)


def screenshot(page, path: str | os.PathLike, max_bytes: int = 300_000) -> Path:
    """The viewport as a PNG at `path`; reduced to a 256-colour palette if larger than `max_bytes`."""
    from PIL import Image

    path = Path(path)
    page.screenshot(path=str(path), full_page=False)
    if path.stat().st_size > max_bytes:
        Image.open(path).convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    return path
