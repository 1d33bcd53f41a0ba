"""The live engine in a graph of PipeWire's JACK, on the real clock: run as
`pw-jack python tests/pipewire_graph.py PIECE` by tests/test_live_pipewire.py (a process of its own:
JACK-Client loads the JACK library once, and the test process has jackd's).

A MIDI sender -> `JackBackend` -> a recorder (tests/jack_graph.py), every client asking for 128
frames per period, for 3 s. Prints one JSON line: the rate, the period, the latency in frames, late
blocks, xruns, errors, how many frames were recorded, whether every one of them equals the
engine's render of the same events in the same periods (`reference`), and the output's peak in
the frame where the first event must sound. Then the process exits with its three clients
running: deactivating one of several clients in one process under PipeWire's JACK can hang it
(`playback.deactivate_jack_client`), and `live` runs one."""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

os.environ["PIPEWIRE_LATENCY"] = "128/48000"  # the sender and the recorder ask for the engine's period
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

from helpers import live_model  # noqa: E402
from jack_graph import events_at, reference, run_graph  # noqa: E402


def main(piece: str) -> None:
    rate = 48000
    up = rate // math.gcd(16000, rate)
    lead = -(-3072 * rate // 16000 // up) * up  # the engine's first periods pass before the first event
    events = [(lead + f, data) for f, data in events_at(piece, rate)]
    n_frames = lead + 3 * rate
    model = live_model()
    run = run_graph(model, events, n_frames, freewheel=False)
    heard = ~np.isnan(run.recorded)
    ref = reference(model, events, run.rate, run.period, n_frames, None)
    onset = events[0][0] + run.latency_frames
    print(json.dumps({"rate": run.rate, "period": run.period, "latency_frames": run.latency_frames,
                      "late": run.late, "xruns": run.xruns, "errors": run.errors,
                      "recorded": int(heard[lead:].sum()), "of": n_frames - lead,
                      "equal": bool(np.array_equal(run.recorded[heard], ref[heard])),
                      "peak_at_onset": float(np.abs(np.nan_to_num(run.recorded[onset:onset + 192])).max())}), flush=True)
    os._exit(0)  # the clients are not deactivated (tests/jack_graph.py says why)


if __name__ == "__main__":
    main(sys.argv[1])
