"""How close a level table can bring the bank's partials to a note sheet's reference: fit the table
to the sheet's own reference notes (its training-instrument renders) and print the config with it (the rest of -c as it is,
but without the prompt sound, `prompt_levels_db`, and the velocity tone, fitted beside -c's table).

    python scripts/levels_bound.py SHEET_DIR -c configs/default.json [--delay 0.1] > bound.json
    python -m midi2wave export --format safetensors midi2wave/assets /tmp/bound --sampling-from bound.json
    python -m midi2wave evaluate --note-sheet /tmp/bound-sheet --checkpoint /tmp/bound

Why: the note sheet's partial-level check (docs/evaluation.md) compares the model's partials with the
reference's 0.15-0.65 s after each onset; the bank sets each partial's level at the attack's end
from a table smooth in pitch and velocity and then decays every partial of a note at one rate. A
table fitted to the very notes the sheet measures is the best such a table can do on that sheet:
if even it misses the bar, the bar needs more than a better fit (per-partial decays, each
recorded note's own levels). It is a measurement, never a model to release: it is fitted to the
test.

How: `fit_partials.measure_levels` and `fit_levels` (the same measure and fit as on a store) over
the reference WAVs of every year the sheet rendered.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from fit_partials import fit_levels, measure_levels  # this folder: python scripts/levels_bound.py

from midi2wave.conditioning.resonators import bank_partial_hz
from midi2wave.config import load_config
from midi2wave.midi import Notes


def sheet_pieces(sheet_dir: Path) -> list[tuple[Notes, np.ndarray]]:
    """[(notes, reference audio)] of each year a note sheet rendered (`evaluate --note-sheet`)."""
    report = json.loads((sheet_dir / "note_sheet.json").read_text())
    hold_s = float(report["sheet"]["hold_seconds"])
    pieces = []
    for year, notes in report["per_note"]["reference"].items():
        audio, _ = sf.read(sheet_dir / "audio" / f"reference_{year}.wav", dtype="float64")
        onset = np.array([n["onset_s"] for n in notes], np.float64)
        pieces.append((Notes(onset, onset + hold_s, np.array([n["pitch"] for n in notes], np.int16),
                             np.array([n["velocity"] for n in notes], np.int16)), audio))
    return pieces


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("sheet", type=Path, help="a note sheet's folder (evaluate --note-sheet)")
    ap.add_argument("-c", "--config", required=True, help="the model's config (its bank and its table's size)")
    ap.add_argument("--delay", type=float, default=0.0, help="measure this long after the attack's end (s)")
    ap.add_argument("--search-cents", type=float, default=0.0,
                    help="take each partial's spectral peak within this many cents (fit_partials --level-search-cents)")
    args = ap.parse_args(argv)
    if not (args.sheet / "note_sheet.json").is_file():
        ap.error(f"{args.sheet}: no note_sheet.json (make one with evaluate --note-sheet)")
    config = load_config(args.config)
    bank = config.data.resonators
    partials = max(bank.partials, bank.synthesis_partials)
    def positions(pitch, k):  # where this bank puts its partials, the synthesis-only ones too
        return bank_partial_hz(pitch, k, bank)

    obs = measure_levels(sheet_pieces(args.sheet), bank.tuning_cents, bank.inharmonicity, bank.decay_scale,
                         bank.decay_exponent, bank.attack_s, bank.max_hz, partials=partials, delay_s=args.delay,
                         search_cents=args.search_cents, positions=positions)
    if len(obs) < 20:
        print(f"{args.sheet}: only {len(obs)} partial levels measured; nothing fitted", file=sys.stderr)
        return 1
    pitches, table, slopes, err = fit_levels(obs, partials=partials)
    print(f"{len(obs)} partial levels; median |residual| {err:.2f} dB", file=sys.stderr)
    out = json.loads(Path(args.config).read_text())  # the config whole (its sampling too), the table replaced
    # the prompt sound and the velocity tone are left out: they were fitted beside the config's level table
    out["data"]["resonators"].update(level_pitches=list(pitches), levels_db=[list(r) for r in table],
                                     level_velocity_slope_table=[list(r) for r in slopes], level_velocity_slopes=[],
                                     prompt_levels_db=[], prompt_velocity_slope_table=[], prompt_seconds=0.0,
                                     velocity_tone_velocities=[], velocity_tone_hz=[], velocity_tone_db=[],
                                     prompt_velocity_tone_db=[])
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
