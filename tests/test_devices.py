"""Devices that do not exist here: one line (exit 2) in every command, before any work."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from midi2wave.cli import main as cli_main
from midi2wave.devices import check_device
from midi2wave.errors import InputError
from midi2wave.training import distributed as D
from helpers import tiny_config
from store_fixture import make_store

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_MIDI = ROOT / "examples" / "example.mid"


def test_check_device_accepts_the_cpu_and_refuses_what_is_missing():
    assert check_device("cpu") == torch.device("cpu")
    assert check_device(torch.device("cpu")) == torch.device("cpu")
    with pytest.raises(InputError, match=r"^device 'gpu7': not a device name"):
        check_device("gpu7")
    with pytest.raises(InputError, match=r"^device cuda: CUDA is not available"):
        check_device("cuda")
    with pytest.raises(InputError, match=r"^device mps: MPS is not available"):
        check_device("mps")
    with pytest.raises(InputError, match=r"^device meta: not a device to run on"):
        check_device("meta")


def test_cuda_index_out_of_range_on_a_one_gpu_machine(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert check_device("cuda") == torch.device("cuda")
    assert check_device("cuda:0") == torch.device("cuda", 0)
    with pytest.raises(InputError, match=r"^device cuda:3: out of range: this machine has 1 cuda device \(cuda:0\)"):
        check_device("cuda:3")
    # under torchrun, a plain cuda means the GPU of LOCAL_RANK: it must exist too
    assert D.resolve_device("cuda", D.DistInfo(rank=0, world_size=2, local_rank=0)) == torch.device("cuda", 0)
    with pytest.raises(InputError, match=r"LOCAL_RANK 1 needs cuda:1, but 1 CUDA device"):
        D.resolve_device("cuda", D.DistInfo(rank=1, world_size=2, local_rank=1))


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("command", ["train", "synthesize", "evaluate"])
def test_every_command_refuses_a_missing_gpu_in_one_line(command, tmp_path, capsys):
    """The device is checked first: before the outputs (taken here, so any later check would complain
    about them instead), before the model loads, before any folder is made."""
    taken = tmp_path / "taken"
    taken.write_bytes(b"keep")
    if command == "train":
        make_store(tmp_path / "store", {"train": 1}, seconds=0.4)
        (tmp_path / "cfg.json").write_text(tiny_config().to_json())
        argv = ["train", "-c", str(tmp_path / "cfg.json"), "--data", str(tmp_path / "store"),
                "--out", str(tmp_path / "out"), "-q"]
    elif command == "synthesize":
        argv = ["synthesize", str(EXAMPLE_MIDI), "-o", str(taken), "--engine", "torch", "-q"]
    else:
        argv = ["evaluate", "--midi", str(EXAMPLE_MIDI), "--json", str(taken), "-q"]
    assert cli_main(argv + ["--device", "cuda"]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert lines == ["midi2wave: error: device cuda: CUDA is not available: this torch "
                     f"({torch.__version__}) is built without CUDA; use --device cpu"], captured.err
    assert captured.out == ""
    assert not (tmp_path / "out").exists() and taken.read_bytes() == b"keep"
