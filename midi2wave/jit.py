"""How the numba functions are compiled: just in time (numba, the default), or ahead of time.

Every jitted function of the package is declared with `jit.njit(...)` (and the kernel's vector
blocks with `jit.intrinsic`) instead of numba's own decorators. In a normal process they are
numba's: `import numba` and, on the first call, numba's disk cache or a compile.

`midi2wave play` and `live` must sound soon after they start, and importing numba and loading one
cached function takes about 0.6 s by itself on our 2-core VM. So the live engine's entry points
(`ENTRY_POINTS`: the functions it calls from Python) can also be compiled ahead of time into
one extension module (`render/native.py`, `midi2wave kernels --build`; numba's `pycc` with each
function's own numba options, so the machine code and the output are the same as the JIT's).
`use_ahead_of_time()`, called before the numba modules are first imported, loads that module when
it was built for these sources, this numba and this CPU (`kernels_key`). In such a process:

- `njit` returns, for an entry point, the compiled function behind a type check (`Compiled`: the
  arguments' types must be those it was built for: an extension module does not check them);
  every other jitted function becomes `NotCompiled`, which raises when called (the live engine
  calls none: tests/test_native.py);
- numba is never imported.

A process chooses once; `MIDI2WAVE_KERNELS=jit` keeps numba's JIT.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np

__all__ = ["ENTRY_POINTS", "ALWAYS_CALLED", "KERNELS_ENV", "KERNELS_DIR_ENV", "Compiled", "NotCompiled", "ahead_of_time", "built_value",
           "fingerprint", "intrinsic", "kernels_dir", "kernels_key", "njit", "use_ahead_of_time",
           "MODULE_NAME", "META_NAME"]

# (module, function) of every jitted function the live engine calls from Python
ENTRY_POINTS = (
    ("midi2wave.render.kernel", "run_streams"),
    ("midi2wave.conditioning.resonators", "unit_phasors"),
    ("midi2wave.render.live", "_dc_block"),
    ("midi2wave.midi_loops", "excitation_notes"),
    ("midi2wave.midi_loops", "note_rows"),
    ("midi2wave.midi_loops", "held_values"),
)
# the entry points every live model calls (building the kernels requires a call of each); the rolls'
# and excitation's loops run only for a model that reads those rows
ALWAYS_CALLED = ENTRY_POINTS[:3]
# the modules that define jitted functions: they must not be imported before the choice is made,
# and their sources (with the modules they read at compile time, and midi.py, which decides the types the
# loops of midi_loops.py are called with) key the built kernels
_JIT_MODULES = ("midi2wave.render.kernel", "midi2wave.conditioning.resonators", "midi2wave.render.live",
                "midi2wave.midi_loops")
_KEY_SOURCES = (
    "render/kernel.py", "conditioning/resonators.py", "render/live.py", "midi_loops.py", "midi.py", "constants.py", "jit.py",
    "render/native.py")

KERNELS_ENV = "MIDI2WAVE_KERNELS"  # "jit": never load the kernels built ahead of time
KERNELS_DIR_ENV = "MIDI2WAVE_KERNELS_DIR"  # where they are built (default: the user's cache folder)
MODULE_NAME = "midi2wave_kernels"  # the extension module's name (its file: MODULE_NAME + the platform's suffix)
META_NAME = "kernels.json"  # beside it: the key, the exported variants and the values the build used

_PACKAGE = Path(__file__).resolve().parent
_kernels: _Kernels | None = None  # set by use_ahead_of_time


def kernels_dir() -> Path:
    """The folder of built kernels: $MIDI2WAVE_KERNELS_DIR, else the user's cache folder."""
    if os.environ.get(KERNELS_DIR_ENV):
        return Path(os.environ[KERNELS_DIR_ENV]).expanduser()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "midi2wave" / "kernels"


def _cpu() -> str:
    """What the machine code depends on: the CPU's model and features (Linux), else its name."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            first = f.read().split("\n\n")[0]  # the first processor's block, whole
        return "\n".join(line for line in first.splitlines()
                         if line.split(":")[0].strip() in ("model name", "flags", "Features", "CPU part"))
    except OSError:
        return platform.processor()


def _numba_version() -> str:
    try:
        from importlib.metadata import version

        return version("numba")
    except Exception:
        return "none"


def kernels_key() -> str:
    """16 hex digits naming the kernels these sources, this Python, numba and CPU compile to."""
    h = hashlib.sha256()
    for name in _KEY_SOURCES:
        h.update(name.encode() + b"\0" + (_PACKAGE / name).read_bytes())
    for part in (sys.version, _numba_version(), np.__version__, platform.machine(), _cpu()):
        h.update(b"\0" + part.encode())
    return h.hexdigest()[:16]


# ------------------------------------------------------------------------------------ types


def fingerprint(value: Any) -> Any:
    """A hashable description of an argument's numba type: arrays by dtype, dimensions, layout,
    writability and alignment; (named) tuples by their class and items; scalars by their Python
    type. Two values with one fingerprint have one numba type (the converse need not hold)."""
    if isinstance(value, np.ndarray):
        f = value.flags
        layout = "C" if f.c_contiguous else "F" if f.f_contiguous else "A"
        return ("array", value.dtype.str, value.ndim, layout, bool(f.writeable), bool(f.aligned))
    if isinstance(value, tuple):
        return (type(value).__name__, tuple(fingerprint(v) for v in value))
    return type(value).__name__


def _as_tuple(value: Any) -> Any:
    """A fingerprint read back from JSON (lists) as the tuples `fingerprint` gives."""
    return tuple(_as_tuple(v) for v in value) if isinstance(value, list) else value


class Compiled:
    """An entry point compiled ahead of time: calls the variant built for the arguments' types."""

    def __init__(self, name: str, variants: dict[Any, Callable[..., Any]], folder: Path) -> None:
        self.__name__ = name
        self.variants = variants
        self.folder = folder
        # per argument, the last tuple seen and its fingerprint: an engine passes the same tuples of
        # weights and state in every call (a tuple's items stay; an array's type does not change)
        self._last: list[tuple[Any, Any]] = []

    def _types(self, args: tuple[Any, ...]) -> Any:
        last = self._last
        if len(last) != len(args):
            last[:] = [(None, None)] * len(args)
        items = []
        for i, a in enumerate(args):
            if type(a) is not tuple and isinstance(a, tuple):  # a named tuple
                entry = last[i]  # read once: another thread may replace it meanwhile
                if entry[0] is not a:
                    entry = (a, fingerprint(a))
                    last[i] = entry
                items.append(entry[1])
            else:
                items.append(fingerprint(a))
        return ("tuple", tuple(items))

    def __call__(self, *args: Any) -> Any:
        f = self.variants.get(self._types(args))
        if f is None:
            raise TypeError(f"{self.__name__}: the kernels built ahead of time in {self.folder} have no variant for "
                            f"these argument types; rebuild them (midi2wave kernels --build) or set {KERNELS_ENV}=jit")
        return f(*args)


class NotCompiled:
    """A jitted function that is not an entry point, in a process running the kernels built ahead
    of time: calling it is a bug (the live engine must call only `ENTRY_POINTS`)."""

    def __init__(self, function: Callable[..., Any]) -> None:
        self.py_func = function
        self.__name__ = function.__name__

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(f"{self.py_func.__module__}.{self.__name__} is not among the kernels built ahead of time "
                           f"(jit.ENTRY_POINTS); run with {KERNELS_ENV}=jit")


class _Kernels:
    def __init__(self, folder: Path, module: Any, meta: dict[str, Any]) -> None:
        self.folder = folder
        self.values = meta.get("values", {})
        self.functions: dict[tuple[str, str], Compiled] = {}
        for entry in meta["entries"]:
            key = (entry["module"], entry["name"])
            variants = {_as_tuple(v["fingerprint"]): getattr(module, v["symbol"]) for v in entry["variants"]}
            self.functions[key] = Compiled(entry["name"], variants, folder)


def _load(folder: Path) -> _Kernels | str:
    meta_path = folder / META_NAME
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        return f"{folder}: not built"
    if meta.get("key") != folder.name:
        return f"{meta_path}: built for another key"
    library = folder / meta.get("library", "")
    spec = importlib.util.spec_from_file_location(MODULE_NAME, library)
    if spec is None or spec.loader is None or not library.is_file():
        return f"{library}: missing"
    try:
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return _Kernels(folder, module, meta)
    except (ImportError, OSError, AttributeError, KeyError, TypeError) as e:
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        return f"{library}: cannot be loaded ({why}; rebuild: midi2wave kernels --build --force)"


def use_ahead_of_time() -> str | None:
    """Run this process on the kernels built ahead of time for these sources and this machine.
    Call before the package's numba modules are imported. Returns None when they are in use, else
    why not (the process then compiles with numba as usual)."""
    global _kernels
    if _kernels is not None:
        return None
    if os.environ.get(KERNELS_ENV, "").lower() == "jit":
        return f"{KERNELS_ENV}=jit"
    imported = [m for m in _JIT_MODULES if m in sys.modules]
    if imported:
        return f"{imported[0]} was imported before the choice"
    loaded = _load(kernels_dir() / kernels_key())
    if isinstance(loaded, str):
        return loaded
    _kernels = loaded
    return None


def ahead_of_time() -> bool:
    """Whether this process runs the kernels built ahead of time."""
    return _kernels is not None


def built_value(name: str) -> Any:
    """A value the kernels were built with (`render/native.py` records them: the kernel's vector
    blocking depends on the CPU numba compiled for)."""
    assert _kernels is not None, "only with the kernels built ahead of time"
    return _kernels.values[name]


# -------------------------------------------------------------------------------- decorators


def njit(**options: Any) -> Callable[[Callable[..., Any]], Any]:
    """`numba.njit(**options)`, or, in a process on the kernels built ahead of time, the compiled
    entry point (`Compiled`) or `NotCompiled`."""

    def decorate(function: Callable[..., Any]) -> Any:
        if _kernels is not None:
            compiled = _kernels.functions.get((function.__module__, function.__name__))
            return compiled if compiled is not None else NotCompiled(function)
        try:
            import numba
        except ImportError:  # pragma: no cover - numba is a core dependency; `--help` paths stay importable
            return function
        return numba.njit(**options)(function)

    return decorate


def intrinsic(function: Callable[..., Any]) -> Any:
    """`numba.extending.intrinsic`; unused (the function itself) ahead of time."""
    if _kernels is not None:
        return function
    from numba.extending import intrinsic as numba_intrinsic

    return numba_intrinsic(function)
