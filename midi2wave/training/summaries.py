"""Audio summaries of a training run for TensorBoard: the target, a teacher-forced sample and a
short free-running sample of one example, and a piano roll over the spectrograms.

They let a person hear what the model has learnt while it trains; the free-running sample is an
uncached loop (quadratic in its length), hence `FREE_RUN_SECONDS`.
"""

from __future__ import annotations

import torch

from ..config import Config
from .metrics import warn

__all__ = ["FREE_RUN_SECONDS", "write_audio_summaries", "summary_figure"]

FREE_RUN_SECONDS = 0.05


@torch.no_grad()
def write_audio_summaries(tb, model: torch.nn.Module, batch: dict[str, torch.Tensor], config: Config,
                          step: int, seed: int) -> None:
    """Add the summaries of `batch`'s first example (tensors on the model's device) to the
    SummaryWriter `tb` at `step`; `seed` draws the sampling uniforms. The model is left in eval mode."""
    model.eval()
    device = batch["audio"].device
    audio, cond, year, exc = batch["audio"], batch["conditioning"], batch["year"], batch.get("excitation")
    sr, spf = config.data.sample_rate_hz, config.data.samples_per_frame
    g = torch.Generator().manual_seed(seed)
    T = audio.shape[-1]
    u = torch.rand(2, T, generator=g).to(device)
    params = model(audio, cond, year, exc).float()[0].transpose(0, 1)  # [T, out]
    teacher = model.sample(params, u[0], u[1]).clamp(-1, 1)
    n = min(T, max(spf, int(round(FREE_RUN_SECONDS * sr)) // spf * spf))
    m = model.context_margin_frames
    cond_n = cond[:, :, : n // spf + 2 * m]
    exc_n = exc[:, :n] if exc is not None else None
    free = torch.zeros(1, n, device=device)
    for t in range(n):
        p = model(free, cond_n, year, exc_n).float()[:, :, t]
        free[:, t] = model.sample(p, u[0, t:t + 1], u[1, t:t + 1])
    tb.add_audio("audio/target", audio[0].cpu().unsqueeze(0), step, sample_rate=sr)
    tb.add_audio("audio/teacher_forced", teacher.cpu().unsqueeze(0), step, sample_rate=sr)
    tb.add_audio("audio/free_running", free[0].cpu().clamp(-1, 1).unsqueeze(0), step, sample_rate=sr)
    try:
        tb.add_figure("roll_and_spectrograms", summary_figure(cond[0, :, m: cond.shape[-1] - m].cpu(),
                                                              audio[0].cpu(), teacher.cpu(), sr), step)
    except Exception as e:  # noqa: BLE001 - plotting must never stop training
        warn(f"could not draw the summary figure ({type(e).__name__}: {e})")


def summary_figure(roll: torch.Tensor, target: torch.Tensor, teacher: torch.Tensor, sr: int):
    """A matplotlib figure: the conditioning rows `roll` [C, frames] over the spectrograms of
    `target` and `teacher` [n] (float audio at `sr` Hz)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 1, figsize=(8, 7), sharex=True)
    seconds = target.shape[-1] / sr
    axes[0].imshow(roll.numpy(), aspect="auto", origin="lower", extent=(0, seconds, 0, roll.shape[0]),
                   cmap="magma", interpolation="nearest")
    axes[0].set_ylabel("conditioning row")
    axes[0].set_title("piano roll")
    for ax, x, title in ((axes[1], target, "target"), (axes[2], teacher, "teacher-forced sample")):
        window = torch.hann_window(512)
        spec = torch.stft(x.float(), 512, 128, window=window, return_complex=True).abs()
        ax.imshow(20 * torch.log10(spec + 1e-5).numpy(), aspect="auto", origin="lower",
                  extent=(0, seconds, 0, sr / 2000), cmap="magma", vmin=-100, vmax=20)
        ax.set_ylabel("kHz")
        ax.set_title(title)
    axes[2].set_xlabel("seconds")
    fig.tight_layout()
    return fig
