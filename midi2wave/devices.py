"""The one check of a requested torch device, shared by `train`, `synthesize` and `evaluate`.

A device that does not exist here (`cuda` on a machine without CUDA, `cuda:3` on a one-GPU machine,
`mps` off Apple silicon, a misspelling such as `gpu7`) is refused with a one-line `InputError`
before any work starts, instead of a torch traceback from deep inside the first `.to(device)`.
"""

from __future__ import annotations

import torch

from .errors import InputError

__all__ = ["check_device", "default_device"]

_KNOWN = "cpu, cuda, cuda:N or mps"


def default_device() -> torch.device:
    """cuda when a CUDA GPU is visible, else cpu (the default of `train` and `evaluate`)."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def check_device(spec: str | torch.device) -> torch.device:
    """`spec` as a torch.device that exists on this machine; InputError (one line) otherwise.

    cpu is always there. cuda / mps / xpu need their backend available, and an explicit index must be
    below the backend's device count (cuda without an index stays index-less: the current GPU).
    """
    text = str(spec).strip()
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError, TypeError):
        raise InputError(f"device {text!r}: not a device name (expected {_KNOWN})") from None
    kind = device.type
    if kind == "cpu":
        return device
    if kind == "cuda":
        if not torch.cuda.is_available():
            why = (f"this torch ({torch.__version__}) is built without CUDA" if torch.version.cuda is None
                   else "no CUDA GPU is visible (check the driver and CUDA_VISIBLE_DEVICES)")
            raise InputError(f"device {text}: CUDA is not available: {why}; use --device cpu")
        return _check_index(device, text, torch.cuda.device_count())
    if kind == "mps":
        if not torch.backends.mps.is_available():
            raise InputError(f"device {text}: MPS is not available (Apple silicon with macOS 12.3+ only); "
                             f"use --device cpu")
        return _check_index(device, text, 1)
    backend = getattr(torch, kind, None)  # xpu and other accelerators with a torch.<type> module
    available = getattr(backend, "is_available", None)
    if available is None or kind == "meta":
        raise InputError(f"device {text}: not a device to run on here (expected {_KNOWN})")
    if not available():
        raise InputError(f"device {text}: {kind} is not available on this machine; use --device cpu")
    count = getattr(backend, "device_count", None)
    return _check_index(device, text, count() if count is not None else 1)


def _check_index(device: torch.device, text: str, count: int) -> torch.device:
    if device.index is not None and device.index >= count:
        have = f"{device.type}:0" if count == 1 else f"{device.type}:0 .. {device.type}:{count - 1}"
        raise InputError(f"device {text}: out of range: this machine has {count} {device.type} "
                         f"device{'s' if count != 1 else ''} ({have})")
    return device
