"""midi2wave: MIDI-conditioned WaveNet piano synthesis (the midi2wave part of Wave2Midi2Wave).

Python API (imports are deferred so that `import midi2wave` stays light)::

    import midi2wave
    audio, sample_rate_hz = midi2wave.render("piece.mid")    # float32 numpy [n], Hz; the bundled model
    audio, sr = midi2wave.render("piece.mid", "run/checkpoints/last.pt",
                                 options=midi2wave.SamplingOptions(temperature=0.9, seed=1))
    model, config = midi2wave.load_model("run/checkpoints/last.pt")   # or None: the bundled model
"""

from __future__ import annotations

from typing import Any

# The subpackage `midi2wave.render` (engines, kernel, synthesize, ...) is imported first so that the
# function `render` below, not the subpackage, is the package's attribute: importing a submodule
# binds its parent only on the parent's first import. Import its modules as
# `from midi2wave.render import synthesize` (not `import midi2wave.render.synthesize as ...`).
from . import render as _render_package  # noqa: F401  (light: its __init__ imports nothing heavy)

__version__ = "0.7.0"  # the one place; pyproject reads it (dynamic version); CHANGELOG.md

__all__ = ["render", "SamplingOptions", "load_model", "__version__"]


def load_model(path: Any = None, device: str = "cpu") -> Any:
    """Rebuild a model from a checkpoint file alone (None: the bundled model). Returns (model, Config)."""
    from .checkpoint import load_model as _load_model

    return _load_model(path, device=device)


def render(midi: Any, checkpoint: Any = None, options: Any = None, **window: Any) -> Any:
    """Render a MIDI file (or (notes, pedals)) -> (audio float32 [n], sample_rate_hz); see `api.render`."""
    from .api import render as _render
    from .config import SamplingOptions as _Options

    return _render(midi, checkpoint, options if options is not None else _Options(), **window)


def __getattr__(name: str) -> Any:
    if name == "SamplingOptions":  # deferred like the rest: config is light, but keep `import midi2wave` minimal
        from .config import SamplingOptions

        return SamplingOptions
    raise AttributeError(f"module 'midi2wave' has no attribute {name!r}")
