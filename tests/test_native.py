"""The live engine's kernels built ahead of time (midi2wave/jit.py, render/native.py): `play` on them
never imports numba and writes the JIT's audio bit for bit; wrong argument types and functions that
were not built fail loudly; the key follows the sources."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

from midi2wave import cli, jit
from midi2wave.errors import Midi2WaveError
from helpers import live_piece, missing

ROOT = Path(__file__).resolve().parents[1]

# run in a fresh interpreter on the built kernels: play, then what must fail
_AHEAD_OF_TIME = r"""
import json, sys
import numpy as np
from midi2wave import cli, jit
rc = cli.main(sys.argv[1:])
live = sys.modules["midi2wave.render.live"]
kernel = sys.modules["midi2wave.render.kernel"]
out = {"rc": rc, "ahead_of_time": jit.ahead_of_time(), "numba": "numba" in sys.modules}
try:
    live._dc_block(np.zeros(4, np.float32), np.zeros(1), 0.1)  # built for float64 samples
except TypeError as e:
    out["wrong_types"] = str(e)
try:
    kernel.fast_activations(np.zeros(3, np.float32), np.zeros((2, 3), np.float32))  # not an entry point
except RuntimeError as e:
    out["not_built"] = str(e)
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def kernels(tmp_path_factory) -> Path:
    """The kernels (fp32 only: one variant of each entry point) built into a temporary folder."""
    from midi2wave.render import native

    if shutil.which("cc") is None and shutil.which("gcc") is None:
        missing("no C compiler (scripts/setup-dev.sh installs gcc)")
    folder = tmp_path_factory.mktemp("kernels")
    saved = os.environ.get(jit.KERNELS_DIR_ENV)
    os.environ[jit.KERNELS_DIR_ENV] = str(folder)
    try:
        built = native.build_kernels(precisions=("fp32",), quiet=True)
    finally:
        if saved is None:
            os.environ.pop(jit.KERNELS_DIR_ENV)
        else:
            os.environ[jit.KERNELS_DIR_ENV] = saved
    assert built.parent == folder and built.name == jit.kernels_key()
    return folder


@pytest.mark.compiler
def test_play_on_the_built_kernels_never_imports_numba_and_writes_the_jits_audio(kernels, tmp_path):
    piece = live_piece(tmp_path)  # a rest that falls silent, sustain and sostenuto pedals, a re-struck key
    args = [piece, "--no-audio", "--end", "3.4", "--seed", "3", "--year", "2011", "--sustain-temperature", "0.5", "-q"]
    env = {**os.environ, jit.KERNELS_DIR_ENV: str(kernels)}
    env.pop(jit.KERNELS_ENV, None)
    run = subprocess.run([sys.executable, "-c", _AHEAD_OF_TIME, "play", *args, "-o", str(tmp_path / "aot.wav")],
                         env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["rc"] == 0 and out["ahead_of_time"] and not out["numba"]
    assert "no variant for these argument types" in out["wrong_types"] and "--build" in out["wrong_types"]
    assert "fast_activations is not among the kernels built ahead of time" in out["not_built"]

    assert cli.main(["play", *args, "-o", str(tmp_path / "jit.wav")]) == 0  # this process: numba's JIT
    aot, sr = soundfile.read(tmp_path / "aot.wav", dtype="int16")
    want, _ = soundfile.read(tmp_path / "jit.wav", dtype="int16")
    assert sr == 16000 and len(aot) == len(want) > 3 * sr and np.abs(want).max() > 1000
    assert np.array_equal(aot, want)


def test_a_process_chooses_once_and_says_why_not():
    os.environ[jit.KERNELS_ENV] = "jit"  # conftest's setting
    assert jit.use_ahead_of_time() == "MIDI2WAVE_KERNELS=jit"
    os.environ[jit.KERNELS_ENV] = ""
    try:
        import midi2wave.render.kernel  # noqa: F401  (this process compiles with numba)

        assert "was imported before the choice" in jit.use_ahead_of_time()
        assert not jit.ahead_of_time()
    finally:
        os.environ[jit.KERNELS_ENV] = "jit"


def test_a_folder_of_kernels_is_checked_before_it_is_loaded(tmp_path):
    folder = tmp_path / "0123456789abcdef"
    assert jit._load(folder).endswith("not built")
    folder.mkdir()
    (folder / jit.META_NAME).write_text(json.dumps({"key": "fedcba9876543210", "library": "x.so", "entries": []}))
    assert "built for another key" in jit._load(folder)
    (folder / jit.META_NAME).write_text(json.dumps({"key": folder.name, "library": "x.so", "entries": []}))
    assert jit._load(folder).endswith("x.so: missing")
    (folder / "x.so").write_bytes(b"not a library")
    assert "x.so: cannot be loaded" in jit._load(folder) and "--build --force" in jit._load(folder)


def test_fingerprints_tell_apart_what_numba_types_apart():
    a = np.zeros((3, 4), np.float32)
    fp = jit.fingerprint
    assert fp(a) == fp(np.ones((3, 4), np.float32))
    assert fp(a) != fp(a.astype(np.float64))  # dtype
    assert fp(a) != fp(a[None])  # dimensions
    assert fp(a) != fp(np.asfortranarray(a)) != fp(a[:, ::2])  # layout: C, F, A
    ro = a.copy()
    ro.setflags(write=False)
    assert fp(a) != fp(ro)
    assert fp(1) != fp(1.0) != fp(np.float32(1.0)) != fp(True)
    assert fp((a, 1)) != fp((a, 1.0))


def test_compiled_checks_the_argument_types_and_caches_only_the_same_tuple():
    from collections import namedtuple

    Pair = namedtuple("Pair", "x y")
    seen = []
    f = jit.Compiled("f", {("tuple", (jit.fingerprint(Pair(np.zeros(2), 1)), "int")): lambda p, n: seen.append(n)},
                     Path("/k"))
    p = Pair(np.zeros(2), 1)
    f(p, 5)
    f(p, 6)
    with pytest.raises(TypeError, match="no variant for these argument types"):
        f(Pair(np.zeros(2, np.float32), 1), 7)  # a new tuple of the same class is looked at again
    with pytest.raises(TypeError):
        f(p, 1.5)
    assert seen == [5, 6]


def test_the_key_follows_the_sources(tmp_path, monkeypatch):
    for name in jit._KEY_SOURCES:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(Path(jit.__file__).parent / name, tmp_path / name)
    monkeypatch.setattr(jit, "_PACKAGE", tmp_path)
    key = jit.kernels_key()
    assert key == jit.kernels_key() and len(key) == 16
    with open(tmp_path / "conditioning" / "resonators.py", "a") as f:
        f.write("\n# an edit\n")
    assert jit.kernels_key() != key


def test_kernels_says_where_they_go_and_whether_they_are_built(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(jit.KERNELS_DIR_ENV, str(tmp_path))
    assert cli.main(["kernels"]) == 0
    line = capsys.readouterr().out.strip()
    assert line == f"{tmp_path / jit.kernels_key()}: not built (midi2wave kernels --build)"


def test_each_function_is_built_with_its_own_numba_options(monkeypatch):
    import warnings

    from numba.core.compiler import Flags

    from midi2wave.render import kernel, native

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import numba.pycc.compiler as pycc_compiler
    got = {}
    monkeypatch.setattr(pycc_compiler, "compile_extra", lambda *a: got.setdefault(a[2], a[5]))
    f = kernel.run_streams
    with native._own_options({f.py_func: f}):
        pycc_compiler.compile_extra(None, None, f.py_func, (), None, Flags(), {}, None)
    flags = got[f.py_func]
    assert flags.fastmath and flags.release_gil and flags.error_model == "numpy" and not flags.boundscheck


def test_the_cpu_part_of_the_key_does_not_move_with_the_clock(monkeypatch):
    """/proc/cpuinfo of a many-core machine is longer than any fixed read, and its MHz lines change
    width between reads: only the first processor's block keys the kernels."""
    import io

    def cpuinfo(mhz: str) -> str:
        block = "processor\t: {i}\nmodel name\t: Some CPU\ncpu MHz\t\t: {mhz}\nflags\t\t: " + "fpu avx2 " * 150 + "\n\n"
        return "".join(block.format(i=i, mhz=mhz) for i in range(128))

    keys = []
    for mhz in ("800.000", "3600.125"):
        text = cpuinfo(mhz)
        assert len(text) > 1 << 17
        monkeypatch.setattr(jit, "open", lambda *a, _t=text, **k: io.StringIO(_t), raising=False)
        keys.append(jit._cpu())
    assert keys[0] == keys[1] and "model name" in keys[0] and keys[0].count("flags") == 1


def test_a_model_without_pedal_rows_or_excitation_builds_without_their_loops():
    """The rolls' and excitation's loops (midi_loops.py) run only for a model that reads them: the
    build records the entry points the engine called and requires only the kernel's own."""
    import torch

    from conftest import tiny_model_config
    from helpers import LIVE_BANK, live_model
    from midi2wave.config import DataConfig
    from midi2wave.model import Midi2Wave
    from midi2wave.render import native

    loops = {key for key in jit.ENTRY_POINTS if key[0] == "midi2wave.midi_loops"}
    assert set(native._sample_calls(live_model(), ("fp32",))) == set(jit.ENTRY_POINTS)
    torch.manual_seed(0)
    bare = Midi2Wave(tiny_model_config(n_stacks=1, layers_per_stack=4, context_layers_per_stack=2, output_kind="mulaw",
                                       context_causal=True),
                     DataConfig(conditioning=("onset_velocity",), segment_seconds=0.032, resonators=LIVE_BANK,
                                excitation_partials=0)).eval()
    seen = native._sample_calls(bare, ("fp32",))  # its onset rows still go through note_rows
    assert set(seen) == (set(jit.ENTRY_POINTS) - loops) | {("midi2wave.midi_loops", "note_rows")}
    assert all(seen.values())
    # the kernel's own entry points stay required: the excitation's loop, required, fails the bare model
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(jit, "ALWAYS_CALLED", jit.ALWAYS_CALLED + (("midi2wave.midi_loops", "excitation_notes"),))
        with pytest.raises(Midi2WaveError, match="the live engine never called excitation_notes"):
            native._sample_calls(bare, ("fp32",))
