"""Export a mu-law model to the weight layout of NVIDIA's nv-wavenet CUDA inference kernels.

What nv-wavenet computes (NVIDIA/nv-wavenet: `nv_wavenet_reference.cpp`, the PyTorch wrapper
`pytorch/nv_wavenet.py` and its model `pytorch/wavenet.py`, `export_weights`/`get_cond_input`), per
sample t and batch row, with classes y (mu-law, A of them; both start at 128, the class of silence)::

    x_0   = embedding_prev[y_{t-2}] + embedding_curr[y_{t-1}]        (tanh'd only if use_embed_tanh)
    for layer l (dilation d = 1, 2, ... max_dilation, 1, 2, ...):
        h     = Wprev_l x_l[t-d] + Wcurr_l x_l[t] + dilate_bias_l + cond[:, b, l, t]   (x_l[t-d] = 0 for t < d)
        z     = tanh(h[:R]) * sigmoid(h[R:])
        x_l+1 = x_l + W_res_l z + b_res_l           (the wrapper appends a zero res layer for the last one)
        skip  = skip + W_skip_l z + b_skip_l
    logits = conv_end @ relu(conv_out @ relu(skip) + conv_out_bias) + conv_end_bias;  p = softmax(logits)

How the midi2wave model maps onto it (what was inferred from the nv-wavenet sources):

- `InputLayer` (mu-law) is already nv-wavenet's pair of tables (`embed_prev`/`embed_curr`); its bias
  is folded into `embedding_curr` (every sample adds exactly one row of each table), and
  `use_embed_tanh` is False.
- The dilated conv's taps `weight[:, :, 0]` / `[:, :, 1]` act on x[t-d] / x[t]: the wrapper splits
  `dilate_weights` (2R x R x 2) itself the same way. Dilations restart at 1 after `max_dilation`,
  exactly our `n_stacks` x `layers_per_stack` pattern.
- Our fused residual+skip 1x1 conv ((R + S) x R) is split into `res_weights` (R x R, all layers but
  the last — the wrapper appends a zero one) and `skip_weights` (S x R), biases likewise.
- The head ReLU -> conv (A x S) -> ReLU -> conv (A x A) is `conv_out_weight` / `conv_end_weight`.
  nv-wavenet's kernel takes biases for both (`setOutWeights(Wzs, Bzs, Wza, Bza)`), but the stock
  PyTorch wrapper (`pytorch/wavenet_infer.cu`) passes zeros ("We didn't use biases on our
  outputs"). They are exported as `conv_out_bias` / `conv_end_bias`; when they are not zero, pass
  them to `setOutWeights` in place of the dummies (`head_biases_nonzero` in the file says whether).
- A model without biases (`model.bias = false`) is exported with zero biases, which is exact.
- nv-wavenet has no global conditioning and no audio-rate side input: the conditioning tensor
  `cond_input` (2R x B x L x T, the layout `get_cond_input` returns) is our `layer_conditioning`
  (context stack -> per-layer projection) upsampled to the audio rate, plus the year embedding and
  the excitation term folded in. The dilated convs' own biases stay in `dilate_biases`, which the
  kernel adds itself. `cond_input` is only present when a MIDI (or conditioning) was given.

Refused (each with the constraint named): MoL output (nv-wavenet samples a 256-way softmax),
scalar input (it embeds mu-law classes), A != 256, R not in {32, 64}, S not in {128, 256} (the
channel counts nv-wavenet's README lists as tested template instantiations), kernel size != 2,
gate channels != 2R, and a head whose hidden width is not A.

The file is a `torch.save`d dict of plain tensors, lists of tensors, ints and bools (loads with
`torch.load(weights_only=True)`); `NVWaveNet(**{k: d[k] for k in NV_WAVENET_ARGS})` builds the
wrapper. `reference_logits` runs nv-wavenet's per-sample algorithm in numpy on such a dict.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import Config, ConfigError, ModelConfig, load_config
from ..errors import Midi2WaveError
from ..model.stepping import SteppingWeights, stepping_weights

__all__ = [
    "NV_WAVENET_ARGS",
    "ExportError",
    "check_nv_wavenet_compatible",
    "nv_wavenet_weights",
    "nv_wavenet_conditioning",
    "export_nv_wavenet",
    "export_model",
    "reference_logits",
]

FORMAT = "midi2wave-nv-wavenet"
# The keyword arguments of nv-wavenet's `NVWaveNet.__init__` (pytorch/nv_wavenet.py), in its order.
NV_WAVENET_ARGS: tuple[str, ...] = (
    "embedding_prev", "embedding_curr", "conv_out_weight", "conv_end_weight", "dilate_weights",
    "dilate_biases", "max_dilation", "res_weights", "res_biases", "skip_weights", "skip_biases",
    "use_embed_tanh",
)
SUPPORTED_R: tuple[int, ...] = (32, 64)
SUPPORTED_S: tuple[int, ...] = (128, 256)
SUPPORTED_A: tuple[int, ...] = (256,)
SILENCE_CLASS = 128  # nv-wavenet's initial y_{t-1}, y_{t-2}; the mu-law class of 0.0 for A = 256


class ExportError(Midi2WaveError, ValueError):
    """The model cannot be expressed in the target format; the message names the constraint."""


# ------------------------------------------------------------------------------------ checks


def check_nv_wavenet_compatible(model_config: ModelConfig) -> None:
    """Raise ExportError naming the first nv-wavenet constraint the model breaks."""
    m = model_config
    R, G, S, A = m.residual_channels, m.gate_channels, m.skip_channels, m.mulaw_classes
    checks = [
        (m.output_kind == "mulaw", f"model.output_kind = {m.output_kind!r}: nv-wavenet samples a 256-way "
                                   "mu-law softmax; mixture-of-logistics output is not supported"),
        (m.input_kind == "mulaw_embedding", f"model.input_kind = {m.input_kind!r}: nv-wavenet embeds mu-law "
                                            "classes (embedding_prev/embedding_curr); scalar input is not supported"),
        (A in SUPPORTED_A, f"model.mulaw_classes = {A}: nv-wavenet needs A = 256 audio classes"),
        (R in SUPPORTED_R, f"model.residual_channels = {R}: nv-wavenet supports R in {list(SUPPORTED_R)}"),
        (S in SUPPORTED_S, f"model.skip_channels = {S}: nv-wavenet supports S in {list(SUPPORTED_S)}"),
        (m.kernel_size == 2, f"model.kernel_size = {m.kernel_size}: nv-wavenet only supports kernel size 2"),
        (G == 2 * R, f"model.gate_channels = {G}: nv-wavenet needs gate channels = 2 x residual_channels ({2 * R})"),
    ]
    for ok, problem in checks:
        if not ok:
            raise ExportError(f"cannot export to nv-wavenet: {problem}")


def _check_head(sw: SteppingWeights) -> None:
    A = sw.mulaw_classes
    hidden, end = sw.head_hidden_weight.shape, sw.head_out_weight.shape  # [H1, S], [O, H1]
    if hidden[0] != A or end[1] != A or end[0] != A:
        raise ExportError(f"cannot export to nv-wavenet: the output head's hidden width is "
                          f"{hidden[0]}, nv-wavenet needs A = {A} (conv_out A x S, conv_end A x A)")


# ----------------------------------------------------------------------------------- weights


def _t(x: torch.Tensor) -> torch.Tensor:
    return x.detach().to("cpu", torch.float32).contiguous().clone()


def nv_wavenet_weights(model: Any) -> dict[str, Any]:
    """The model's weights as nv-wavenet's `NVWaveNet(**weights)` arguments, plus `conv_out_bias`,
    `conv_end_bias` and `head_biases_nonzero`. Raises ExportError for incompatible models."""
    mc: ModelConfig = model.model_config
    check_nv_wavenet_compatible(mc)
    if model.data_config.resonators.enabled:
        raise ExportError(f"cannot export to nv-wavenet: data.resonators.partials = "
                          f"{model.data_config.resonators.partials}: the model predicts the innovation of a MIDI "
                          "resonator bank, which nv-wavenet does not run")
    sw = stepping_weights(model)
    _check_head(sw)
    R, S, A = mc.residual_channels, mc.skip_channels, mc.mulaw_classes
    out: dict[str, Any] = {
        "embedding_prev": _t(sw.embed_prev),  # A x R
        "embedding_curr": _t(sw.embed_curr) + _t(sw.input_bias)[None, :],  # A x R, the input bias folded in
        "conv_out_weight": _t(sw.head_hidden_weight),  # A x S
        "conv_end_weight": _t(sw.head_out_weight),  # A x A
    }
    dilate_w, dilate_b, res_w, res_b, skip_w, skip_b = [], [], [], [], [], []
    L = sw.n_layers
    for i in range(L):
        dilate_w.append(_t(sw.dilated_weight[i]))  # 2R x R x 2: [:, :, 0] on x[t-d], [:, :, 1] on x[t]
        dilate_b.append(_t(sw.dilated_bias[i]))
        w, b = _t(sw.out_weight[i]), _t(sw.out_bias[i])  # (R + S) x R, R + S
        if i < L - 1:  # nv-wavenet's last layer has no residual output
            res_w.append(w[:R].contiguous())
            res_b.append(b[:R].contiguous())
        skip_w.append(w[R:].contiguous())
        skip_b.append(b[R:].contiguous())
    out.update(
        dilate_weights=dilate_w, dilate_biases=dilate_b, max_dilation=int(max(mc.dilations)),
        res_weights=res_w, res_biases=res_b, skip_weights=skip_w, skip_biases=skip_b, use_embed_tanh=False,
    )
    conv_out_bias, conv_end_bias = _t(sw.head_hidden_bias), _t(sw.head_out_bias)
    out["conv_out_bias"] = conv_out_bias
    out["conv_end_bias"] = conv_end_bias
    out["head_biases_nonzero"] = bool(conv_out_bias.abs().max() > 0 or conv_end_bias.abs().max() > 0)
    assert out["conv_out_weight"].shape == (A, S) and out["embedding_prev"].shape == (A, R)
    return out


@torch.no_grad()
def nv_wavenet_conditioning(model: Any, conditioning: torch.Tensor | None, year: torch.Tensor | None,
                            excitation: torch.Tensor | None, n_samples: int) -> torch.Tensor:
    """nv-wavenet's `cond_input` [2R, B, L, n_samples]: the per-layer gate conditioning at audio rate
    with the year embedding and the excitation folded in (the dilated convs' biases are not: the
    kernel adds `dilate_biases` itself).

    conditioning: [B, C, n_samples / spf + 2 * margin] rolls (or None); year: [B] long; excitation [B, T].
    """
    L, G = model.model_config.n_layers, model.model_config.gate_channels
    cond, step = model.layer_conditioning(conditioning, year)
    batch = next(x.shape[0] for x in (conditioning, year, excitation) if x is not None) \
        if any(x is not None for x in (conditioning, year, excitation)) else 1
    out = torch.zeros(batch, L, G, n_samples)
    if cond is not None:
        if cond.shape[-1] == 1:
            out += cond.float()
        else:
            full = cond.float().repeat_interleave(step, dim=-1) if step > 1 else cond.float()
            if full.shape[-1] < n_samples:
                raise ValueError(f"conditioning covers {full.shape[-1]} samples, {n_samples} asked")
            out += full[..., :n_samples]
    if model.excitation_weight is not None and excitation is not None:
        out += model.excitation_weight.float().view(1, L, G, 1) * excitation[:, None, None, :n_samples].float()
    return out.permute(2, 0, 1, 3).contiguous()  # channels x batch x layers x samples


# ------------------------------------------------------------------------------------- export


def _resolve_model(model_or_checkpoint: Any) -> tuple[Any, Config | None]:
    if isinstance(model_or_checkpoint, torch.nn.Module):
        return model_or_checkpoint, None
    from ..checkpoint import load_model

    return load_model(model_or_checkpoint)


def export_nv_wavenet(model_or_checkpoint: Any, out_path: str | Path, *, midi_path: str | Path | None = None,
                      start_s: float = 0.0, end_s: float | None = None, year: int | None = None,
                      force: bool = False) -> dict[str, Any]:
    """Write the nv-wavenet weights of a model (or a checkpoint path / None for the bundled model)
    to `out_path` (torch file of plain tensors; atomic; refused if it exists unless `force`).

    With `midi_path`, also `cond_input` [2R, 1, L, T] for that MIDI between `start_s` and `end_s`
    (default: the end of the notes + release), conditioned on `year`. Returns the dict written.
    """
    from ..files import atomic_path

    model, _ = _resolve_model(model_or_checkpoint)
    weights = nv_wavenet_weights(model)
    weights["format"] = FORMAT
    # the source model's Config JSON, for the record
    weights["config"] = Config(data=model.data_config, model=model.model_config).to_json()
    if midi_path is not None:
        from .synthesize import midi_model_inputs

        inputs = midi_model_inputs(model, midi_path, start_s=start_s, end_s=end_s, year=year)
        weights["cond_input"] = nv_wavenet_conditioning(model, inputs.rolls, inputs.year, inputs.excitation,
                                                        inputs.n_samples)
        weights["sample_rate_hz"] = int(model.data_config.sample_rate_hz)
        weights["start_sample"] = int(inputs.start_sample)
    buffer = io.BytesIO()
    torch.save(weights, buffer)
    out_path = Path(out_path)
    if not out_path.parent.is_dir():
        raise Midi2WaveError(f"{out_path}: folder {out_path.parent} does not exist")
    with atomic_path(out_path, force=force) as tmp:
        tmp.write_bytes(buffer.getvalue())
    return weights


def export_model(checkpoint: Path | None, out: Path, *, fmt: str = "nv-wavenet", midi_path: Path | None = None,
                 start_s: float = 0.0, end_s: float | None = None, year: int | None = None,
                 force: bool = False, sampling_from: Path | None = None) -> list[str]:
    """`midi2wave export`: write `checkpoint` (None: the bundled model) to `out` in format `fmt`
    ("nv-wavenet" or "safetensors"; with safetensors, `sampling_from` a config JSON whose
    synthesis-only settings, its `sampling` section and the bank's partial levels, become the
    released model's: `Config.with_synthesis_settings_from`). Returns the lines to report."""
    if fmt == "safetensors":
        from ..checkpoint import export_safetensors, find_checkpoint

        if midi_path is not None:
            raise ExportError("--midi goes with --format nv-wavenet only")
        source = load_config(sampling_from) if sampling_from is not None else None
        try:
            target = export_safetensors(find_checkpoint(checkpoint), out, force=force, synthesis_from=source)
        except ConfigError as e:
            raise ExportError(f"{sampling_from}: {e}") from None
        from .livemodel import export_live_snapshot

        lines = [f"wrote {target} and {target.parent / 'config.json'} ({target.stat().st_size / 1e6:.2f} MB)"]
        snapshot = export_live_snapshot(target.parent)
        if snapshot is not None:
            lines.append(f"wrote {snapshot} (the live engine's snapshot: `play` and `live` load it without torch)")
        return lines
    if fmt != "nv-wavenet":
        raise ExportError(f"--format {fmt}: unknown format")
    if sampling_from is not None:
        raise ExportError("--sampling-from goes with --format safetensors only")
    written = export_nv_wavenet(checkpoint, out, midi_path=midi_path, start_s=start_s, end_s=end_s, year=year,
                                force=force)
    n_layers = len(written["dilate_weights"])
    R = written["embedding_prev"].shape[1]
    S = written["conv_out_weight"].shape[1]
    what = (f"R={R} S={S} A={written['conv_out_weight'].shape[0]} layers={n_layers} "
            f"max_dilation={written['max_dilation']}")
    if "cond_input" in written:
        what += f", cond_input {tuple(written['cond_input'].shape)}"
    lines = [f"wrote {out} (nv-wavenet: {what})"]
    if written["head_biases_nonzero"]:
        lines.append("note: the output head has biases (conv_out_bias, conv_end_bias); nv-wavenet's kernel takes "
                     "them in setOutWeights, but its stock PyTorch wrapper passes zeros there: pass these instead")
    return lines


# ------------------------------------------------------------------------ numpy reference


def _get(weights: dict[str, Any], key: str) -> Any:
    value = weights[key]
    if isinstance(value, (list, tuple)):
        return [np.asarray(v, dtype=np.float64) for v in value]
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy().astype(np.float64)
    return value


def reference_logits(weights: dict[str, Any], classes: np.ndarray, cond_input: np.ndarray | torch.Tensor
                     ) -> np.ndarray:
    """nv-wavenet's inference algorithm, one sample at a time, teacher-forced, in float64 numpy.

    weights: an exported dict; classes: int [B, T] mu-law classes of the audio (the input at step t
    is classes[:, t-1] and classes[:, t-2], silence (128) before the start); cond_input: [2R, B, L, T].
    Returns the logits before the softmax, [B, A, T]: the distribution of classes[:, t].
    """
    emb_prev, emb_curr = _get(weights, "embedding_prev"), _get(weights, "embedding_curr")
    conv_out, conv_end = _get(weights, "conv_out_weight"), _get(weights, "conv_end_weight")
    conv_out_b = _get(weights, "conv_out_bias") if "conv_out_bias" in weights else 0.0
    conv_end_b = _get(weights, "conv_end_bias") if "conv_end_bias" in weights else 0.0
    dil_w, dil_b = _get(weights, "dilate_weights"), _get(weights, "dilate_biases")
    res_w, res_b = _get(weights, "res_weights"), _get(weights, "res_biases")
    skip_w, skip_b = _get(weights, "skip_weights"), _get(weights, "skip_biases")
    max_dilation = int(weights["max_dilation"])
    use_tanh = bool(weights["use_embed_tanh"])
    cond = np.asarray(cond_input.detach().cpu().numpy() if isinstance(cond_input, torch.Tensor) else cond_input,
                      dtype=np.float64)
    classes = np.asarray(classes, dtype=np.int64)
    B, T = classes.shape
    R = emb_prev.shape[1]
    L = len(dil_w)
    A = conv_end.shape[0]
    # as the wrapper does: a zero residual layer for the last one
    res_w = res_w + [np.zeros((R, R))]
    res_b = res_b + [np.zeros(R)]
    dilations, d = [], 1
    for _ in range(L):
        dilations.append(d)
        d = 1 if d * 2 > max_dilation else d * 2
    history = np.zeros((L, T, B, R))  # x_l[t], the input of layer l at sample t
    y_prev = np.full(B, SILENCE_CLASS)
    y_cur = np.full(B, SILENCE_CLASS)
    logits = np.zeros((B, A, T))
    for t in range(T):
        x = emb_prev[y_prev] + emb_curr[y_cur]  # [B, R]
        if use_tanh:
            x = np.tanh(x)
        skip = 0.0
        for l in range(L):
            history[l, t] = x
            d = dilations[l]
            x_past = history[l, t - d] if t >= d else np.zeros((B, R))
            w = dil_w[l]
            h = x_past @ w[:, :, 0].T + x @ w[:, :, 1].T + dil_b[l] + cond[:, :, l, t].T  # [B, 2R]
            z = np.tanh(h[:, :R]) / (1.0 + np.exp(-h[:, R:]))
            skip = skip + z @ skip_w[l].T + skip_b[l]
            x = x + z @ res_w[l].T + res_b[l]
        hidden = np.maximum(np.maximum(skip, 0.0) @ conv_out.T + conv_out_b, 0.0)
        logits[:, :, t] = hidden @ conv_end.T + conv_end_b
        # teacher forcing: the next input is the true class of this sample
        y_prev, y_cur = y_cur, classes[:, t]
    return logits
