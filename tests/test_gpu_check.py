"""scripts/gpu-check.sh --dry-run: the GPU check's logic on the CPU (tiny sizes), every section
passing, the summary printed and written as JSON; a failing section does not stop the others and
makes the exit status non-zero. numba and soundfile are hidden: the GPU machine may lack them."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu-check.sh"

# the numbers each check reports (the keys the lead's BENCHMARKS table is built from)
NUMBERS = {
    "a": {"steps", "batch", "loss_first", "loss_last", "samples_per_second", "nonfinite_steps"},
    "b": {"backend", "world_size", "steps", "max_grad_rel_diff", "all_reduce_ok", "samples_per_second"},
    "c": {"streams", "audio_seconds", "wall_seconds", "rtf", "rtf_per_stream"},
    "d": {"max_abs_diff_forward", "max_abs_diff_engine", "tolerance"},
}


def _run(tmp_path: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    blocked = tmp_path / "blocked"
    for name in ("numba", "soundfile"):  # `import numba` raises ImportError, as where it is not installed
        (blocked / name).mkdir(parents=True, exist_ok=True)
        (blocked / name / "__init__.py").write_text(f"raise ImportError('{name} is hidden by the test')\n")
    base = {k: v for k, v in os.environ.items() if k != "MIDI2WAVE_GPU_CHECK_FAIL"}
    env = {**base, "PYTHONPATH": str(blocked), **(env or {})}
    return subprocess.run(["bash", str(SCRIPT), "--dry-run", *args], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=600, check=False)


def test_dry_run_passes_every_section_and_writes_the_summary(tmp_path):
    out = tmp_path / "gpu-check.json"
    result = _run(tmp_path, "--json", str(out))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["dry_run"] is True and report["passed"] is True
    assert set(report["sections"]) == {"a", "b", "c", "d"}
    assert report["environment"]["numba"] is None  # hidden: the check ran without it
    names = {letter: [c["name"] for c in s["checks"]] for letter, s in report["sections"].items()}
    assert names == {"a": ["bf16", "fp16"], "b": ["gloo x1"],
                     "c": ["bundled B=1", "bundled B=16", "nv-wavenet B=1", "nv-wavenet B=16"], "d": ["logits"]}
    for letter, section in report["sections"].items():
        assert section["passed"] and section["seconds"] > 0
        for c in section["checks"]:
            assert c["passed"] and c["error"] is None, (letter, c)
            assert NUMBERS[letter] <= set(c["numbers"]), (letter, c["numbers"])
    a = report["sections"]["a"]["checks"][0]["numbers"]
    assert a["steps"] == 8 and a["loss_last"] < a["loss_first"]
    assert [c["numbers"]["streams"] for c in report["sections"]["c"]["checks"]] == [1, 16, 1, 16]
    # the summary table: a header, one row per check, the verdict
    table = result.stdout[result.stdout.index("section  "):]
    assert table.count(" pass ") == 8 and "gpu-check PASSED: 4 of 4 sections" in table


def test_a_failing_section_leaves_the_others_running_and_the_exit_status_says_so(tmp_path):
    out = tmp_path / "gpu-check.json"
    result = _run(tmp_path, "--sections", "d,a", "--json", str(out), env={"MIDI2WAVE_GPU_CHECK_FAIL": "a"})
    assert result.returncode == 1
    report = json.loads(out.read_text())
    assert report["passed"] is False and list(report["sections"]) == ["a", "d"]
    a, d = report["sections"]["a"], report["sections"]["d"]
    assert not a["passed"] and [c["name"] for c in a["checks"]] == ["a.bf16", "a.fp16"]
    assert all("failure injected" in c["error"] for c in a["checks"])
    assert d["passed"]
    assert "gpu-check FAILED: 1 of 2 sections passed" in result.stdout


def test_bad_arguments_get_one_line(tmp_path):
    result = _run(tmp_path, "--sections", "a,x")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["gpu-check: error: --sections 'a,x': choose from a,b,c,d"]
    result = _run(tmp_path, "--json", str(tmp_path / "missing" / "x.json"))
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "does not exist" in result.stderr
