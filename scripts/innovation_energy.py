"""How much of the audio the resonator bank leaves to the network: the teacher-forced innovation's
energy relative to the audio's (dB) on a store's training pieces, for bank variants.

    python scripts/innovation_energy.py STORE -c configs/default.json [--pieces 8] [--seconds 20]
        [--partials 6:6000 16:7800] [--sustain-kappa 0.001 0.005] [--decay-scale 0.5 1 2 4] [--decay-exponent 1]

Every combination of the given settings is one line (the gain is off: this is the innovation itself).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import math

import numpy as np

from fit_innovation_gain import training_pieces  # this folder: python scripts/innovation_energy.py

from midi2wave import constants as C
from midi2wave.conditioning import resonators as rs
from midi2wave.config import load_config


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("store")
    ap.add_argument("-c", "--config", required=True)
    ap.add_argument("--pieces", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--partials", nargs="+", default=["6:6000"], help="PARTIALS:MAX_HZ")
    ap.add_argument("--sustain-kappa", type=float, nargs="+", default=[0.001])
    ap.add_argument("--decay-scale", type=float, nargs="+", default=[0.5])
    ap.add_argument("--decay-exponent", type=float, nargs="+", default=[1.0])
    args = ap.parse_args(argv)
    config = load_config(args.config)
    bank = rs.from_data_config(config.data)
    if bank is None:
        ap.error(f"{args.config}: the config has no resonator bank")
    pieces = [(notes, x) for _, notes, x in training_pieces(args.store, config.data.sustain_threshold, args.pieces,
                                                            args.seconds)]
    print("partials max_hz sustain_kappa decay_scale decay_exponent innovation/audio")
    for spec, kappa, scale, exponent in itertools.product(args.partials, args.sustain_kappa, args.decay_scale,
                                                          args.decay_exponent):
        partials, max_hz = spec.split(":")
        b = dataclasses.replace(bank, partials=int(partials), max_hz=float(max_hz), sustain_kappa=kappa,
                                decay_scale=scale, decay_exponent=exponent)
        num = den = 0.0
        for notes, x in pieces:
            e, _ = rs.analyze(x, rs.schedule(notes, 0, len(x), C.SAMPLE_RATE_HZ, b).without_gain())
            num += float(np.sum(e.astype(np.float64) ** 2))
            den += float(np.sum(x ** 2))
        print(f"{partials} {max_hz} {kappa:g} {scale:g} {exponent:g} {10 * math.log10(num / den):.2f} dB", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
