"""Is a demo dataset's audio the Salamander grand? Two checks against a MuseScore demo dataset of
the same seed (the same MIDI files):

1. log-mel distance of the dataset's renders to a plain sfizz render of the same MIDI
   (`sfizz_render`, the binary in the pysfizz wheel, with the project's 16-layer SFZ over the
   OGG samples as published, `write_sfz(aligned=False)`: no room, no year changes, no channel
   alignment) and to the MuseScore dataset's render of it. Distance: mean absolute
   difference of natural-log mel spectrograms (16 kHz mono, n_fft 1024, hop 256, 80 mels,
   power 2, floor 1e-5), after scaling the other signal to the same RMS; cropped to the shorter.
2. basic-pitch onset F1 (midi2wave.evaluation.transcribe, evaluate.note_f1: 50 ms, offsets ignored) of
   every piece of a split of both datasets against its MIDI; with `--gains-db`, also of both
   datasets' audio scaled by each gain (basic-pitch's reading depends on the playback level).

    python3 scripts/compare_instruments.py --data SALAMANDER_DATASET --other MUSESCORE_DATASET \
        [--split test] [--pieces 6] [--gains-db 0 -6 -12] [--json out.json]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from midi2wave.audio import decode_mono_int16, int16_to_float
from midi2wave.data.salamander import write_sfz
from midi2wave.data.samples import ensure_samples
from midi2wave.evaluation.evaluate import note_f1
from midi2wave.midi import read_midi
from midi2wave.evaluation.transcribe import transcribe

SR = 16000


def rows(root: Path) -> dict[str, dict[str, str]]:
    with open(root / "maestro-v3.0.0.csv", newline="", encoding="utf-8") as f:
        return {r["midi_filename"]: r for r in csv.DictReader(f)}


def mono16k(path: Path) -> np.ndarray:
    pcm, _ = decode_mono_int16(path, SR)
    return int16_to_float(pcm).astype(np.float64)


def log_mel(x: np.ndarray) -> np.ndarray:
    import librosa

    m = librosa.feature.melspectrogram(y=x.astype(np.float32), sr=SR, n_fft=1024, hop_length=256, n_mels=80, power=2.0)
    return np.log(np.maximum(m, 1e-5))


def distance(a: np.ndarray, b: np.ndarray) -> float:
    n = min(len(a), len(b))
    a, b = a[:n], b[:n]
    b = b * (np.sqrt(np.mean(a**2)) / max(np.sqrt(np.mean(b**2)), 1e-12))
    return float(np.mean(np.abs(log_mel(a) - log_mel(b))))


def sfizz_render_binary() -> str:
    import pysfizz

    path = Path(pysfizz.__file__).resolve().parents[1] / "bin" / "sfizz_render"
    if not path.is_file():
        sys.exit(f"{path}: not found (pip install pysfizz==0.1.3)")
    if not os.access(path, os.X_OK):
        path.chmod(path.stat().st_mode | 0o111)
    return str(path)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, required=True, help="the Salamander demo dataset")
    p.add_argument("--other", type=Path, required=True, help="a MuseScore demo dataset of the same seed")
    p.add_argument("--split", default="test")
    p.add_argument("--pieces", type=int, default=6, help="pieces for the log-mel check")
    p.add_argument("--gains-db", type=float, nargs="+", default=[0.0],
                   help="transcribe both datasets' audio scaled by each of these gains (default: 0 only)")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    if not all(np.isfinite(g) and g <= 0 for g in args.gains_db):
        p.error(f"--gains-db {args.gains_db}: gains must be finite and <= 0 dB (the audio must not clip)")
    ours, theirs = rows(args.data), rows(args.other)
    names = sorted(n for n, r in ours.items() if r["split"] == args.split)
    for n in names:
        if n not in theirs or (args.data / n).read_bytes() != (args.other / n).read_bytes():
            sys.exit(f"{args.other / n}: not the same MIDI as {args.data / n} (make both with the same seed)")
    result: dict = {"split": args.split, "logmel": [], "f1": {}}
    if args.pieces > 0:  # the plain renders need the samples and sfizz; the F1 check alone does not
        sfz = write_sfz(ensure_samples(), aligned=False)  # the samples as published
        binary = sfizz_render_binary()
    with tempfile.TemporaryDirectory() as tmp:
        for n in names[: args.pieces]:
            wav = Path(tmp) / "plain.wav"
            subprocess.run([binary, "--sfz", str(sfz), "--midi", str(args.data / n), "--wav", str(wav),
                            "-s", "44100", "-q", "2", "-p", "256"], check=True, capture_output=True)
            a = mono16k(args.data / ours[n]["audio_filename"])
            d_sfizz = distance(a, mono16k(wav))
            d_muse = distance(a, mono16k(args.other / theirs[n]["audio_filename"]))
            result["logmel"].append({"midi": n, "to_plain_sfizz": d_sfizz, "to_musescore_data": d_muse})
            print(f"{n}: log-mel distance to plain sfizz {d_sfizz:.3f}, to the MuseScore data {d_muse:.3f}", flush=True)
    result["f1_by_gain_db"] = {f"{g:g}": {} for g in args.gains_db}
    for label, root, table in (("salamander", args.data, ours), ("musescore", args.other, theirs)):
        pieces = [(read_midi(root / n)[0], mono16k(root / table[n]["audio_filename"])) for n in names]  # read once
        for gain_db in args.gains_db:
            matched = n_ref = n_est = 0
            per_piece = []
            for notes, audio in pieces:
                s = note_f1(notes, transcribe((audio * 10.0 ** (gain_db / 20.0)).astype(np.float32), SR))
                matched, n_ref, n_est = matched + s["n_matched"], n_ref + s["n_reference"], n_est + s["n_estimated"]
                per_piece.append(s["f1"])
            pooled = 2 * matched / (n_ref + n_est) if n_ref + n_est else 0.0
            precision, recall = matched / max(n_est, 1), matched / max(n_ref, 1)
            result["f1_by_gain_db"][f"{gain_db:g}"][label] = {
                "pooled_f1": pooled, "mean_piece_f1": float(np.mean(per_piece)), "pieces": len(names),
                "n_reference": n_ref, "precision": precision, "recall": recall}
            at = "" if gain_db == 0 else f" at {gain_db:+g} dB"
            print(f"{label}{at}: onset F1 {pooled:.3f} pooled over {len(names)} {args.split} pieces "
                  f"({n_ref} notes; precision {precision:.3f}, recall {recall:.3f}), mean per piece "
                  f"{np.mean(per_piece):.3f}", flush=True)
    result["f1"] = result["f1_by_gain_db"].get("0", {})
    d = np.array([[r["to_plain_sfizz"], r["to_musescore_data"]] for r in result["logmel"]]).reshape(-1, 2)
    if len(d):
        print(f"log-mel distance, mean of {len(d)}: to plain sfizz {d[:, 0].mean():.3f}, to the MuseScore data {d[:, 1].mean():.3f}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
