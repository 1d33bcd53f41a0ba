#!/usr/bin/env python3
"""Screenshot of a report page (`midi2wave evaluate --report DIR`) in headless Chromium, taken as the
browser tests take theirs (tests/browser.py). README's docs/report-screenshot.png was made with:

    python3 -m midi2wave.cli make-demo-data /tmp/demo --minutes 3 --seed 0
    python3 -m midi2wave.cli prepare /tmp/demo /tmp/demo-store
    python3 -m midi2wave.cli evaluate --data /tmp/demo-store --split test --excerpts 4 --excerpt-seconds 4 --report /tmp/report
    python3 scripts/report-screenshot.py /tmp/report docs/report-screenshot.png
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from browser import browser_page, media_state, missing, screenshot  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path, help="report folder (with index.html)")
    parser.add_argument("out", type=Path, help="PNG to write")
    parser.add_argument("--force", action="store_true", help="overwrite an existing PNG")
    args = parser.parse_args()
    page_path = args.report / "index.html"
    if not page_path.is_file():
        print(f"report-screenshot: error: {page_path}: missing", file=sys.stderr)
        return 2
    if args.out.exists() and not args.force:
        print(f"report-screenshot: error: {args.out}: already exists (use --force to overwrite)", file=sys.stderr)
        return 2
    why = missing()
    if why:
        print(f"report-screenshot: error: {why}", file=sys.stderr)
        return 2
    with browser_page() as page:
        page.goto(page_path.resolve().as_uri())
        state = media_state(page)
        broken = [m["src"] for m in state["images"] if not m["width"]] + \
                 [m["src"] for m in state["audios"] if m["readyState"] < 1]
        if broken:
            print(f"report-screenshot: error: {page_path}: not loaded: {', '.join(broken)}", file=sys.stderr)
            return 1
        out = screenshot(page, args.out)
    print(f"wrote {out} ({out.stat().st_size // 1024} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
