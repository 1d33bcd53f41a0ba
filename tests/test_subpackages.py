"""The subpackages name their entry points without importing heavy modules (docs/DESIGN.md's map)."""

from __future__ import annotations

import importlib
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAZY = ["conditioning", "render", "training", "evaluation", "data"]
ALL = LAZY + ["model"]


def test_importing_the_package_and_the_lazy_subpackages_loads_no_torch_or_numba():
    code = (
        "import json, sys, importlib\n"
        "import midi2wave\n"
        "out = {'midi2wave': sorted(m for m in sys.modules if m.startswith(('torch', 'numba')))}\n"
        f"for name in {LAZY!r}:\n"
        "    importlib.import_module('midi2wave.' + name)\n"
        "    out[name] = sorted(m for m in sys.modules if m.startswith(('torch', 'numba')))\n"
        "out['render_is_the_function'] = callable(midi2wave.render) and not hasattr(midi2wave.render, '__path__')\n"
        "print(json.dumps(out))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    loaded = json.loads(result.stdout)
    assert loaded.pop("render_is_the_function") is True
    assert loaded == {name: [] for name in ["midi2wave"] + LAZY}


@pytest.mark.parametrize("name", ALL)
def test_entry_points_resolve_and_never_shadow_a_submodule(name):
    package = importlib.import_module(f"midi2wave.{name}")
    submodules = {m.name for m in pkgutil.iter_modules(package.__path__)}
    assert package.__doc__ and "Entry points" in package.__doc__
    assert package.__all__, name
    if name in LAZY:  # the lazy table and the names it exports are one list
        assert sorted(package.__all__) == sorted(package._ENTRY_POINTS)
    for entry in package.__all__:
        assert entry not in submodules, f"midi2wave.{name}.{entry} would hide the module of that name"
        value = getattr(package, entry)
        owner = getattr(value, "__module__", "")
        assert owner.startswith(f"midi2wave.{name}."), (entry, owner)
        assert entry in package.__doc__, f"{entry} is in __all__ but not in midi2wave.{name}'s docstring"
    with pytest.raises(AttributeError):
        package.no_such_entry_point  # noqa: B018


def test_submodules_still_import_by_name_after_the_lazy_names():
    from midi2wave.conditioning import resonators
    from midi2wave.evaluation import evaluate, transcribe
    from midi2wave.render import generate, synthesize

    for module in (resonators, evaluate, transcribe, generate, synthesize):
        assert module.__name__.count(".") == 2 and hasattr(module, "__file__")
    assert generate.GenerationCache is importlib.import_module("midi2wave.render").GenerationCache
