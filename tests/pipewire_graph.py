"""The live engine in a graph of PipeWire's JACK, on the real clock: run as
`pw-jack python tests/pipewire_graph.py PIECE` by tests/test_live_pipewire.py (a process of its own:
JACK-Client loads the JACK library once, and the test process has jackd's).

A MIDI sender -> `JackBackend` -> a recorder (tests/jack_graph.py), every client asking for 128
frames per period, for 3 s. Prints one JSON line, `jack_graph.real_clock_check` of the clients'
call logs: the rate, the period, the latency in frames, late blocks, xruns, errors, whether the
engine's output is its render of the MIDI it got, whether that MIDI is what the sender wrote and
when, how many of the recorder's periods are the engine's output of the same period, and the
output's peak where the first event must sound. Then the process exits with its three clients
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

from helpers import live_model  # noqa: E402
from jack_graph import events_at, real_clock_check, run_graph  # noqa: E402


def main(piece: str) -> None:
    rate = 48000
    up = rate // math.gcd(16000, rate)
    lead = -(-3072 * rate // 16000 // up) * up  # the engine's first periods pass before the first event
    events = [(lead + f, data) for f, data in events_at(piece, rate)]
    n_frames = lead + 3 * rate
    model = live_model()
    run = run_graph(model, events, n_frames, freewheel=False)
    result = real_clock_check(run, model, events)
    result["late_times"] = run.late_times.tolist()  # CLOCK_MONOTONIC: the test's StallProbe judges them
    print(json.dumps(result), flush=True)
    os._exit(0)  # the clients are not deactivated (tests/jack_graph.py says why)


if __name__ == "__main__":
    main(sys.argv[1])
