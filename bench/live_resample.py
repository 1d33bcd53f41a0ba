"""The live engine's resampler (`live.StreamResampler`) against soxr's stream API, at device rates.

For each rate, both resample the same 16 kHz noise in the blocks one period of the engine makes
(64 model samples), interleaved round by round; printed per rate:
- the median microseconds per block of each and their ratio (soxr's stream is the baseline);
- the latency each adds, in device frames and ms: the resampler's `delay_frames`; for soxr what
  its stream withholds (measured as `live` measured it before: 64 blocks of 64 zeros) plus the ring
  frames `RateAdapter` started with to cover it;
- the gain of a tone at 7 and 7.5 kHz and the images of a 6 kHz tone above 8 kHz (dB; 1 s tones),
  also for the filter `live` had at integer ratios before (`--before`: taps, cutoff, Kaiser beta).

    python bench/live_resample.py [--rates 44100 48000 88200 22050 96000] [--quality LQ] [--rounds 5]

`--plot PNG --wav WAV` (a 16 kHz render, e.g. `midi2wave play examples/example.mid --no-audio --out
WAV`) instead draws its seconds 2-6 at 44.1 kHz through soxr HQ (what an offline player does), this
resampler and soxr's stream (LQ), and prints each one's share of the power per band (dB).
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import numpy as np
import soxr

from midi2wave.render.live import StreamResampler

SR = 16000
BLOCK = 64


def _soxr_withheld(rate: int, quality: str) -> int:
    probe = soxr.ResampleStream(SR, rate, 1, dtype="float32", quality=quality)
    got = sum(len(probe.resample_chunk(np.zeros(BLOCK, np.float32))) for _ in range(64))
    return int(math.floor(64 * BLOCK * rate / SR)) - got


def _tone_db(run, rate: int, f: float) -> tuple[float, float]:
    """(gain of the tone, strongest component above 8 kHz relative to it), dB."""
    y = run(np.sin(2 * np.pi * f * np.arange(2 * SR) / SR).astype(np.float32)).astype(np.float64)
    core = y[len(y) // 4: len(y) // 4 + rate // 2]
    spectrum = np.abs(np.fft.rfft(core * np.hanning(len(core))))
    freqs = np.fft.rfftfreq(len(core), 1 / rate)
    peak = spectrum[np.argmin(np.abs(freqs - f))]
    gain = 20 * np.log10(np.sqrt(2 * np.mean(core ** 2)))
    return gain, 20 * np.log10(spectrum[freqs > SR / 2].max() / peak)


def _time_blocks(step, blocks: list[np.ndarray]) -> float:
    t = time.perf_counter()
    for b in blocks:
        step(b)
    return (time.perf_counter() - t) / len(blocks) * 1e6


def _plot(wav: str, png: str, quality: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import soundfile as sf

    y, sr = sf.read(wav, dtype="float32")
    if sr != SR:
        raise SystemExit(f"{wav}: {sr} Hz, not {SR}")
    y = y[2 * SR:6 * SR]
    rate = 44100
    ours = StreamResampler(SR, rate)
    stream = soxr.ResampleStream(SR, rate, 1, dtype="float32", quality=quality)
    panels = [(f"{SR // 1000} kHz render, 2-6 s", y, SR),
              ("to 44.1 kHz: soxr HQ (an offline player)", soxr.resample(y, SR, rate, quality="HQ"), rate),
              ("to 44.1 kHz: live.StreamResampler", ours(y)[ours.delay_frames:], rate),
              (f"to 44.1 kHz: soxr's stream ({quality}, live before)",
               np.concatenate([stream.resample_chunk(y[i:i + BLOCK]) for i in range(0, len(y), BLOCK)]), rate)]
    fig, axes = plt.subplots(len(panels), 1, figsize=(10, 10), sharex=True)
    n, hop = 2048, 256
    for ax, (title, x, fs) in zip(axes, panels):
        frames = np.lib.stride_tricks.sliding_window_view(x, n)[::hop] * np.hanning(n)
        db = 20 * np.log10(np.abs(np.fft.rfft(frames, axis=1)) + 1e-9).T
        freqs = np.fft.rfftfreq(n, 1 / fs)
        keep = freqs <= 12000
        ax.pcolormesh(np.arange(db.shape[1]) * hop / fs, freqs[keep], db[keep], vmin=db.max() - 110, vmax=db.max(),
                      shading="auto", cmap="magma")
        ax.axhline(SR / 2, color="c", lw=0.5)
        ax.set_ylim(0, 12000)
        ax.set_title(title)
        ax.set_ylabel("Hz")
        spectrum = np.abs(np.fft.rfft(x.astype(np.float64) * np.hanning(len(x)))) ** 2
        f = np.fft.rfftfreq(len(x), 1 / fs)
        bands = [(6000, 7000), (7000, 7500), (7500, 8000), (8000, 9000), (9000, 12000)]
        shares = "  ".join(f"{lo / 1000:g}-{hi / 1000:g}k {10 * np.log10(spectrum[(f >= lo) & (f < hi)].sum() / spectrum.sum() + 1e-30):6.1f}"
                           for lo, hi in bands)
        print(f"{title:<45} {shares}")
    axes[-1].set_xlabel("s")
    fig.tight_layout()
    fig.savefig(png, dpi=60)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rates", type=int, nargs="+", default=[44100, 48000, 88200, 22050, 96000])
    ap.add_argument("--quality", default="LQ", help="soxr's quality for the baseline (live used LQ)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--blocks", type=int, default=2000, help="blocks of 64 model samples per round")
    ap.add_argument("--before", type=float, nargs=3, default=[16, 0.9, 8.0], metavar=("TAPS", "CUTOFF", "BETA"))
    ap.add_argument("--plot", default=None, metavar="PNG", help="draw --wav through the resamplers instead")
    ap.add_argument("--wav", default=None, help="a 16 kHz render for --plot")
    args = ap.parse_args()
    if args.plot:
        if not args.wav:
            raise SystemExit("--plot needs --wav (a 16 kHz render)")
        _plot(args.wav, args.plot, args.quality)
        return
    taps, cutoff, beta = int(args.before[0]), args.before[1], args.before[2]
    x = (np.random.default_rng(0).standard_normal(args.blocks * BLOCK) * 0.1).astype(np.float32)
    blocks = [x[i:i + BLOCK] for i in range(0, len(x), BLOCK)]
    print(f"{'rate':>6} | {'ours us/block':>13} {'soxr us/block':>13} {'ratio':>5} | "
          f"{'ours delay':>14} {'soxr delay':>15} | {'ours 7k/7.5k/img6k dB':>22} {'soxr 7k/7.5k/img6k dB':>22} "
          f"{'before 7k/7.5k/img6k dB':>24}")
    for rate in args.rates:
        ours_t, soxr_t = [], []
        for _ in range(args.rounds):
            ours = StreamResampler(SR, rate)
            stream = soxr.ResampleStream(SR, rate, 1, dtype="float32", quality=args.quality)
            ours_t.append(_time_blocks(ours, blocks))
            soxr_t.append(_time_blocks(stream.resample_chunk, blocks))
        a, b = statistics.median(ours_t), statistics.median(soxr_t)
        delay = StreamResampler(SR, rate).delay_frames
        withheld = _soxr_withheld(rate, args.quality)
        soxr_frames = withheld + int(math.ceil(rate / SR)) + 2  # what RateAdapter's ring started with
        ours_db = [_tone_db(StreamResampler(SR, rate), rate, f) for f in (7000.0, 7500.0, 6000.0)]
        soxr_db = [_tone_db(lambda y: soxr.ResampleStream(SR, rate, 1, dtype="float32", quality=args.quality)
                            .resample_chunk(y, last=True), rate, f) for f in (7000.0, 7500.0, 6000.0)]
        before_db = [_tone_db(StreamResampler(SR, rate, taps, cutoff, beta), rate, f) for f in (7000.0, 7500.0, 6000.0)]
        fmt = lambda d: f"{d[0][0]:5.1f}/{d[1][0]:5.1f}/{d[2][1]:6.1f}"  # noqa: E731
        print(f"{rate:>6} | {a:13.1f} {b:13.1f} {a / b:5.2f} | {delay:>5} = {1000 * delay / rate:4.2f} ms "
              f"{soxr_frames:>5} = {1000 * soxr_frames / rate:5.2f} ms | {fmt(ours_db):>22} {fmt(soxr_db):>22} "
              f"{fmt(before_db):>24}")


if __name__ == "__main__":
    main()
