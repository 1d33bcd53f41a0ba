"""Write examples/example.mid: ~13 s of humanised piano, the opening of Scott Joplin's Maple Leaf
Rag as `midi2wave make-demo-data` would perform it (tempo with rubato, onset jitter, phrase dynamics,
continuous sustain pedal), in MAESTRO's MIDI layout. Deterministic: rerunning rewrites the same bytes.

    python examples/make_example.py            # -> examples/example.mid
    midi2wave synthesize examples/example.mid  # -> examples/example.wav
"""

from __future__ import annotations

import sys
from pathlib import Path

try:
    from midi2wave.data.demo import corpus_excerpt, write_midi
except ModuleNotFoundError:  # run from a checkout without installing: use the repository's package
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from midi2wave.data.demo import corpus_excerpt, write_midi

WORK = "joplin/maple_leaf_rag.mxl"  # music21 corpus path
SECONDS = 13.0
SEED = 0


def make_example(out: str | Path = Path(__file__).with_name("example.mid")) -> Path:
    perf = corpus_excerpt(WORK, seconds=SECONDS, seed=SEED)
    return write_midi(perf, out)


if __name__ == "__main__":
    print(make_example(*sys.argv[1:2]))
