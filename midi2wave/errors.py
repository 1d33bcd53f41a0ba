"""Errors that reach the user as one line naming the file and the problem (the CLI prints them)."""

from __future__ import annotations


class Midi2WaveError(Exception):
    """Base of all errors the CLI reports as a one-line message instead of a traceback."""


class InputError(Midi2WaveError):
    """A bad input file: unreadable, corrupt, missing, or inconsistent. Message: '<path>: <problem>'."""


class MidiError(InputError):
    """A MIDI file that cannot be read or holds no notes."""


class AudioError(InputError):
    """An audio file that cannot be decoded or is empty."""


class CheckpointError(Midi2WaveError):
    """A checkpoint that is missing, corrupt, or holds something other than plain tensors and config."""


class OutputExistsError(Midi2WaveError, FileExistsError):
    """An output file already exists and overwriting was not asked for (`force`)."""


class TrainingError(Midi2WaveError):
    """Training cannot start or cannot go on (bad run folder, nothing to resume, diverged...)."""


class EvaluationError(Midi2WaveError):
    """Evaluation cannot run (no data, bad options, outputs that exist)."""
