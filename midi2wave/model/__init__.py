"""Pure model code: tensors in, tensors out; no file I/O, CLI or training imports."""

from .wavenet import Midi2Wave

__all__ = ["Midi2Wave"]
