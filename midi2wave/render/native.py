"""The live engine's kernels compiled ahead of time (`midi2wave kernels --build`; see `jit.py`).

`build_kernels()` plays a few notes through the live engine under numba's JIT for each weight
precision, records the argument types of every call of an entry point (`jit.ENTRY_POINTS`), and
compiles those functions for exactly those types into one extension module with numba's `pycc`.
Each function is compiled with its own numba options (fastmath, error model, bounds checks, nogil:
the GIL is released as under the JIT) for this CPU, so the machine code, and the audio, are the
JIT's (tests/test_native.py compares them bit for bit). Building needs a C compiler and takes
about 10 s per variant; the result goes to `jit.kernels_dir() / jit.kernels_key()`, written under
a temporary name and renamed.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import warnings
from importlib import import_module
from pathlib import Path
from typing import Any, Iterator

from .. import jit
from ..errors import Midi2WaveError
from ..files import LIVE_ASSETS_DIR, atomic_folder

__all__ = ["build_kernels", "kernels_status", "record_entry_calls"]


@contextlib.contextmanager
def record_entry_calls() -> Iterator[dict[tuple[str, str], list[tuple[Any, ...]]]]:
    """Within the block, every call of an entry point (module-level name lookups, as the live engine
    makes them) is recorded: {(module, name): [args, ...]} (the arguments as passed, not copied)."""
    calls: dict[tuple[str, str], list[tuple[Any, ...]]] = {}
    saved = []
    for module_name, name in jit.ENTRY_POINTS:
        module = import_module(module_name)
        function = getattr(module, name)
        saved.append((module, name, function))

        def recorder(*args: Any, _f: Any = function, _key: tuple[str, str] = (module_name, name)) -> Any:
            calls.setdefault(_key, []).append(args)
            return _f(*args)

        setattr(module, name, recorder)
    try:
        yield calls
    finally:
        for module, name, function in saved:
            setattr(module, name, function)


def _sample_calls(model: Any, precisions: tuple[str, ...]) -> dict[tuple[str, str], dict[Any, tuple[Any, ...]]]:
    """{entry: {fingerprint: args}}: the argument types the live engine passes, per precision."""
    from ..config import SamplingOptions
    from .live import LiveSynth

    seen: dict[tuple[str, str], dict[Any, tuple[Any, ...]]] = {key: {} for key in jit.ENTRY_POINTS}
    for precision in precisions:
        with record_entry_calls() as calls:
            synth = LiveSynth(model, SamplingOptions(precision=precision))
            synth.control_change(64, 127, 10)
            for i, pitch in enumerate((48, 60, 64, 67, 108)):
                synth.note_on(pitch, 40 + 20 * i, 5 * i)
            synth.render(600)
            synth.note_off(60, 3)
            synth.render(300)
        for key, arg_lists in calls.items():
            for args in arg_lists:
                seen[key].setdefault(jit.fingerprint(args), args)
    # every model calls these; one without pedal rows or an excitation builds without their loops
    missing = [name for module, name in jit.ALWAYS_CALLED if not seen[(module, name)]]
    if missing:
        raise Midi2WaveError(f"building the kernels: the live engine never called {', '.join(missing)}")
    return {key: variants for key, variants in seen.items() if variants}


@contextlib.contextmanager
def _own_options(dispatchers: dict[Any, Any]) -> Iterator[None]:
    """pycc compiles every export with one set of flags; within the block each function gets the
    flags numba's JIT gives it (its decorator's options: fastmath, error model, nogil, ...)."""
    import numba.pycc.compiler as pycc_compiler

    original = pycc_compiler.compile_extra

    def compile_extra(typingctx, targetctx, func, args, return_type, flags, locals, library):  # noqa: A002
        dispatcher = dispatchers[func]
        own = flags.copy()
        dispatcher.targetdescr.options.parse_as_flags(own, dispatcher.targetoptions)
        return original(typingctx, targetctx, func, args, return_type, own, locals, library)

    pycc_compiler.compile_extra = compile_extra
    try:
        yield
    finally:
        pycc_compiler.compile_extra = original


def kernels_status() -> str:
    """One line: where the kernels for this machine go and whether they are built."""
    folder = jit.kernels_dir() / jit.kernels_key()
    built = (folder / jit.META_NAME).is_file()
    return f"{folder}: {'built' if built else 'not built (midi2wave kernels --build)'}"


def build_kernels(model_path: str | Path | None = None, precisions: tuple[str, ...] | None = None,
                  force: bool = False, quiet: bool = False) -> Path:
    """Build the kernels for this machine (see the module docstring) unless built (or `force`);
    returns their folder. model_path: the live model whose calls give the argument types (default:
    the bundled one); precisions: the weight precisions to build for (default: all)."""
    if jit.ahead_of_time():
        raise Midi2WaveError("building the kernels needs numba's JIT: this process runs the built ones")
    from . import kernel
    from .livemodel import load_live_model

    folder = jit.kernels_dir() / jit.kernels_key()
    if (folder / jit.META_NAME).is_file() and not force:
        return folder
    try:  # before the work: the folder must be writable
        folder.parent.mkdir(parents=True, exist_ok=True)
        probe = folder.parent / f".probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise Midi2WaveError(f"{folder.parent}: cannot write the kernels there ({e.strerror or e}; "
                             f"set {jit.KERNELS_DIR_ENV})") from None
    path = Path(model_path) if model_path is not None else LIVE_ASSETS_DIR
    model = load_live_model(path)
    if model is None:
        from ..checkpoint import load_model

        model, _ = load_model(path)
    seen = _sample_calls(model, tuple(precisions or kernel.PRECISIONS))

    import numba
    from numba.core import typing

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numba.pycc is "pending deprecation"
        from numba.pycc import CC

    cc = CC(jit.MODULE_NAME)
    cc.target_cpu = "host"  # what numba's JIT compiles for
    cc.verbose = False
    entries = []
    dispatchers = {}
    for (module_name, name), variants in seen.items():
        dispatcher = getattr(import_module(module_name), name)
        dispatchers[dispatcher.py_func] = dispatcher
        exported = []
        for i, (fp, args) in enumerate(variants.items()):
            # the JIT compiled (or loaded) this variant when the engine called it
            signature = dispatcher.overloads[tuple(numba.typeof(a) for a in args)].signature
            symbol = f"{name.strip('_')}_{i}"
            cc.export(symbol, typing.signature(signature.return_type, *signature.args))(dispatcher.py_func)
            exported.append({"symbol": symbol, "fingerprint": fp})
        entries.append({"module": module_name, "name": name, "variants": exported})

    if not quiet:
        n = sum(len(e["variants"]) for e in entries)
        print(f"midi2wave kernels: compiling {n} functions for this CPU into {folder}", file=sys.stderr)
    with atomic_folder(folder, force=True) as tmp:
        cc.output_dir = str(tmp)
        try:
            with warnings.catch_warnings(), _own_options(dispatchers):
                warnings.simplefilter("ignore")
                cc.compile()
        except Exception as e:  # the C compiler or the linker: one line
            lines = str(e).strip().splitlines()
            raise Midi2WaveError(f"building the kernels failed (it needs a C compiler): "
                                 f"{lines[-1] if lines else type(e).__name__}") from None
        library = next(tmp.glob(jit.MODULE_NAME + ".*"))
        meta = {"key": folder.name, "library": library.name, "numba": numba.__version__,
                "values": {"wide_vector_registers": bool(kernel._WIDE)}, "entries": entries}
        (tmp / jit.META_NAME).write_text(json.dumps(meta, indent=1))
    return folder
