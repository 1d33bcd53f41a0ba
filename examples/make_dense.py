"""Write examples/dense.mid: ~45 s of dense piano for the live benchmarks (`bench/live.py --midi
examples/dense.mid`): excerpts of Clara Schumann's Polonaises Op. 1 Nos. 1 and 2 and Joplin's Maple
Leaf Rag as `midi2wave make-demo-data` performs them (rubato, onset jitter, continuous pedal), played
twice as fast: 1080 notes in 43 s, 25 a second on average (32 in its densest 5 s) and up to 56
notes sounding under the pedal, against examples/example.mid's 9 and 27. A virtuoso passage, not
an average one. Deterministic.

    python examples/make_dense.py              # -> examples/dense.mid
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

try:
    from midi2wave.data.demo import corpus_excerpt, write_midi
except ModuleNotFoundError:  # run from a checkout without installing: use the repository's package
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from midi2wave.data.demo import corpus_excerpt, write_midi

WORKS = ("schumann_clara/polonaise_op1n2.mxl", "schumann_clara/polonaise_op1n1.mxl", "joplin/maple_leaf_rag.mxl")
SECONDS = 30.0  # of each excerpt, at its own tempo
SPEED = 2.0
SEED = 0


def make_dense(out: str | Path = Path(__file__).with_name("dense.mid")) -> Path:
    parts, shift = [], 0.0
    for work in WORKS:
        perf = corpus_excerpt(work, seconds=SECONDS, seed=SEED)
        up = perf.end_s  # every pedal up at the excerpt's last event, before the next one
        parts.append(replace(perf, onset_s=(perf.onset_s + shift * SPEED) / SPEED,
                             offset_s=(perf.offset_s + shift * SPEED) / SPEED,
                             cc_time_s=(np.concatenate([perf.cc_time_s, np.full(3, up)]) + shift * SPEED) / SPEED,
                             cc_controller=np.concatenate([perf.cc_controller, [64, 66, 67]]),
                             cc_value=np.concatenate([perf.cc_value, np.zeros(3, np.int64)])))
        shift += (up + 0.1) / SPEED
    dense = replace(parts[0], **{f: np.concatenate([getattr(p, f) for p in parts])
                                 for f in ("onset_s", "offset_s", "pitch", "velocity",
                                           "cc_time_s", "cc_controller", "cc_value")},
                    title="dense: Schumann Op. 1 Nos. 2 and 1, Joplin, at twice the tempo", work="dense")
    return write_midi(dense, out)


if __name__ == "__main__":
    print(make_dense(*sys.argv[1:2]))
