"""Fit the innovation gain (data.resonators.gain*) of a config to a store's training audio.

    python scripts/fit_innovation_gain.py STORE -c configs/default.json [--pieces 16] [--target-rms 0.2]

The bank of the config (with its gain off) analyses training pieces; the short-time RMS of the
teacher-forced innovation (10 ms frames) is what the gain should follow, so that the innovation over
the gain (the network's target u, or with a pre-emphasis n, which synthesis bounds to [-1, 1] and
whose pre-emphasis the network samples) has about the same scale (`--target-rms`) everywhere: loud
at the hammer, quiet under held notes, the recording's own floor where nothing sounds. The fit is
least squares on log RMS (frames where nothing sounds fit the floor), over the gain's seven
parameters (see config.ResonatorConfig). Prints the fitted settings as a JSON `"data": {"resonators": {...}}`
block and, as a check, the RMS and clipped share of u computed by the bank itself with the fitted gain.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys

import numpy as np
from scipy.optimize import minimize

from midi2wave import constants as C
from midi2wave.conditioning import resonators as rs
from midi2wave.config import load_config
from midi2wave.data.store import load_store_manifest, load_store_notes
from midi2wave.midi import apply_sustain, decay_tau_s

HOP = 160  # 10 ms at 16 kHz
MIN_FLOOR = 4.0 / C.PCM_SCALE
NAMES = ("gain", "gain_velocity_exponent", "gain_attack_s", "gain_sustain", "gain_decay_scale", "gain_release_s",
         "gain_floor")  # the fitted settings of config.ResonatorConfig, in theta's order


def frame_gain(theta: np.ndarray, notes, n_frames: int, release_tau_s: float) -> np.ndarray:
    """The gain of ResonatorConfig at the frames' centres (numpy, the same formula as bank_gain;
    the note's tail as ResonatorConfig.release_tail_s sets it)."""
    level, vexp, attack_s, sustain, decay_scale, release_s, floor = theta
    release_tail_s = 5.0 * max(release_tau_s, release_s)
    t = (np.arange(n_frames) * HOP + HOP // 2) / C.SAMPLE_RATE_HZ
    acc = np.zeros(n_frames)
    tau = decay_tau_s(notes.pitch)
    for on, off, v, td in zip(notes.onset_s, notes.offset_s, notes.velocity, tau):
        f0 = int(on * C.SAMPLE_RATE_HZ) // HOP
        f1 = min(n_frames, int((off + release_tail_s) * C.SAMPLE_RATE_HZ) // HOP + 1)
        if f1 <= f0:
            continue
        tt = t[f0:f1]
        held = np.clip(np.minimum(tt, off) - on, 0.0, None)
        a = level * (v / 127.0) ** vexp * (np.exp(-held / attack_s) + sustain * np.exp(-held / (decay_scale * td)))
        a = np.where(tt > off, a * np.exp(-(tt - off) / release_s), a)
        acc[f0:f1] += a * a
    return floor + np.sqrt(acc)


def training_pieces(store, sustain_threshold: int, n_pieces: int, seconds: float, multiple_of: int = 1):
    """[(record, sustained notes, audio float64 [n] in [-1, 1))] of `n_pieces` training pieces drawn
    with a fixed seed, each its first `seconds` cut to a multiple of `multiple_of` samples."""
    records = [r for r in load_store_manifest(store) if r["split"] == "train"]
    rng = np.random.default_rng(0)
    out = []
    for i in sorted(rng.permutation(len(records))[:n_pieces]):
        r = records[i]
        notes, pedals = load_store_notes(f"{store}/{r['notes']}")
        audio = np.load(f"{store}/{r['audio']}", mmap_mode="r")
        n = min(len(audio), int(seconds * C.SAMPLE_RATE_HZ)) // multiple_of * multiple_of
        out.append((r, apply_sustain(notes, pedals, sustain_threshold), np.asarray(audio[:n], np.float64) / C.PCM_SCALE))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("store")
    ap.add_argument("-c", "--config", required=True)
    ap.add_argument("--pieces", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=40.0, help="at most this much of each piece")
    ap.add_argument("--target-rms", type=float, default=0.2, help="the RMS of u = innovation / gain to aim at")
    ap.add_argument("--q99", type=float, default=0.7, help="after the fit, u's 99th percentile of |u| is set to this")
    args = ap.parse_args(argv)

    config = load_config(args.config)
    bank = rs.from_data_config(config.data)
    if bank is None:
        print(f"{args.config}: the config has no resonator bank (data.resonators.partials = 0)", file=sys.stderr)
        return 2
    pieces = []
    for r, notes, x in training_pieces(args.store, config.data.sustain_threshold, args.pieces, args.seconds, HOP):
        n = len(x)
        e, _ = rs.analyze(x, rs.schedule(notes, 0, n, C.SAMPLE_RATE_HZ, bank).without_gain())
        rms = np.sqrt(np.mean(e.astype(np.float64).reshape(-1, HOP) ** 2, axis=1))
        pieces.append((notes, x, rms))
        print(f"{r['id']}: {n / C.SAMPLE_RATE_HZ:.1f} s, innovation/audio "
              f"{10 * math.log10(np.mean(e ** 2) / max(np.mean(x ** 2), 1e-20)):.1f} dB", file=sys.stderr)
    eps = 1e-6
    target = [np.log(rms + eps) - math.log(args.target_rms) for _, _, rms in pieces]

    def unpack(z):  # the floor stays above a few 16-bit steps (the network reads u on the 16-bit grid)
        return np.array([math.exp(z[0]), min(max(z[1], 0.0), 4.0), min(math.exp(z[2]), 2.0), math.exp(z[3]), math.exp(z[4]),
                         min(math.exp(z[5]), 2.0), MIN_FLOOR + math.exp(z[6])])

    def loss(z):
        theta = unpack(z)
        total, count = 0.0, 0
        for (notes, _, rms), tgt in zip(pieces, target):
            g = frame_gain(theta, notes, len(rms), bank.release_tau_s)
            d = np.log(g + eps / args.target_rms) - tgt
            total += float(np.sum(d * d))
            count += len(d)
        return total / count

    z0 = np.array([math.log(0.3), 1.0, math.log(0.02), math.log(0.1), math.log(1.0), math.log(0.05),
                   math.log(1e-3)])
    best = minimize(loss, z0, method="Nelder-Mead", options={"maxiter": 1500, "xatol": 1e-3, "fatol": 1e-5})
    theta = unpack(best.x)
    print(f"fit: mean squared log error {best.fun:.3f} (start {loss(z0):.3f}), {best.nit} iterations", file=sys.stderr)

    def u_of(theta):  # e / g computed by the bank itself with the gain theta (before any pre-emphasis)
        gained = dataclasses.replace(bank, pre_emphasis=0.0, **{name: float(v) for name, v in zip(NAMES, theta)})
        return np.concatenate([rs.analyze(x, rs.schedule(notes, 0, len(x), C.SAMPLE_RATE_HZ, gained))[0]
                               for notes, x, _ in pieces]).astype(np.float64)

    # the least-squares fit follows the typical level; scale the gain (and floor) so that u's 99th
    # percentile sits at --q99 and little of u is clipped to [-1, 1)
    us = u_of(theta)
    scale = float(np.quantile(np.abs(us), 0.99)) / args.q99
    theta[0] *= scale
    theta[6] = max(MIN_FLOOR, theta[6] * scale)
    us = u_of(theta)
    fitted = {name: float(f"{value:.4g}") for name, value in zip(NAMES, theta)}
    print(f"u = innovation / gain (scaled by {scale:.3g}): RMS {np.sqrt(np.mean(us ** 2)):.3f}, |u| >= 1 in "
          f"{np.mean(np.abs(us) >= 1):.2%} of samples, 99th / 99.9th percentile of |u| "
          f"{np.quantile(np.abs(us), 0.99):.3f} / {np.quantile(np.abs(us), 0.999):.3f}", file=sys.stderr)
    print(json.dumps({"data": {"resonators": fitted}}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
