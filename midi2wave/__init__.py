"""midi2wave: MIDI-conditioned WaveNet piano synthesis (the midi2wave part of Wave2Midi2Wave).

Python API (imports are deferred so that `import midi2wave` stays light)::

    import midi2wave
    model, config = midi2wave.load_model("run/checkpoints/last.pt")   # or None: the bundled model
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["load_model", "__version__"]


def load_model(path: Any = None, device: str = "cpu") -> Any:
    """Rebuild a model from a checkpoint file alone (None: the bundled model). Returns (model, Config)."""
    from .checkpoint import load_model as _load_model

    return _load_model(path, device=device)
