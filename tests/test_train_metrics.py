"""midi2wave.training.metrics: the windows of steps whose means a run logs."""

import math

from midi2wave.training.metrics import MetricWindow


def step(loss: float, bits: float, mel: float = 0.0, grad: float = 1.0) -> dict:
    return {"loss": loss, "bits_per_sample": bits, "aux_mel_loss": mel, "grad_norm": grad}


def test_window_means_skip_nonfinite_steps_but_the_rate_counts_them():
    window = MetricWindow(samples_per_step=1000)
    window.add_step(step(4.0, 3.0, 1.0, 2.0))
    window.add_step(None)  # a skipped (non-finite) step
    window.add_step(step(2.0, 1.0, 3.0, 4.0))
    means, rate = window.close(with_aux=True)
    assert means == {"loss": 3.0, "bits_per_sample": 2.0, "grad_norm": 3.0, "aux_mel_loss": 2.0}
    assert rate > 0 and math.isfinite(rate)
    window.add_step(step(8.0, 6.0))
    means, _ = window.close(with_aux=False)  # a new window after close
    assert means == {"loss": 8.0, "bits_per_sample": 6.0, "grad_norm": 1.0}
    window.add_step(None)
    means, rate = window.close(with_aux=False)
    assert means == {} and rate > 0  # every step non-finite: no means, the rate still counts
