"""The network: pure nn.Modules, tensors in, tensors out; no file I/O, CLI or training imports (model/).

Owns: `Midi2Wave` (`wavenet.py`: the audio WaveNet over a context stack and the year), its layers
(`layers.py`: input layer, gated residual layer; `context.py`: the context stack over the frame-rate
rolls and its upsampling), the output distributions (`distributions.py`: 16-bit discretized mixture
of logistics, 256-way mu-law; sampling from the caller's uniforms, so every engine turns the same
random numbers into the same samples) and the weights a per-sample stepper needs (`stepping.py`).
It imports only the core (config, constants); `checkpoint`, `render/`, `training/` and
`evaluation/` use it. Its entry points are imported on first use (`lazy.py`): `Midi2Wave` imports
torch; `model.stepping`'s numpy side (the live engine's snapshot) does not.

Entry points (`__all__`): `Midi2Wave(model_config, data_config)`; `stepping_weights(model) ->
SteppingWeights` (the only reader of the head, layers and input layer for the cached engines and
the nv-wavenet export, see render/).

Shapes: B batch, T audio samples (a multiple of `samples_per_frame`), F = T / samples_per_frame
frames, C conditioning rows, L layers, R residual, G gate, S skip channels.
- `forward(audio [B, T], conditioning [B, C, F + 2 * context_margin_frames], year [B],
  excitation [B, T] | None) -> [B, output_channels, T]`: output t is the distribution of
  `audio[t]` given `audio[:t]` (the input is shifted right inside). Audio is float
  `x = int16 / 32768` in [-1, 1) (the network reads the innovation instead for resonator models,
  see conditioning/).
- `model.context_margin_frames`: the frames of conditioning it wants on each side of a segment.
- `layer_conditioning(conditioning, year) -> (cond [B, L, G, N], samples_per_step)`: every
  layer's gate conditioning in one batched pass, at frame rate (repeat upsampling) or audio rate
  (the learned upsampler), the year folded in; generation computes it once per call.
"""

from ..lazy import entry_points

_ENTRY_POINTS = {"Midi2Wave": "wavenet", "SteppingWeights": "stepping", "stepping_weights": "stepping"}

__all__ = list(_ENTRY_POINTS)

__getattr__, __dir__ = entry_points(__name__, _ENTRY_POINTS)
