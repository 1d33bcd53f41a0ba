"""The live engine's snapshot of a model: everything `LiveSynth` runs, as numpy arrays, loadable
without torch, so `midi2wave play` and `midi2wave live` start without importing it (torch's import
alone takes longer than the first sound may).

`LiveModel` holds the config, the stepping weights (`model.stepping.SteppingWeights.numpy()`), the
causal context stack (`ContextWeights`) and the mu-law tables. `live_model(model)` takes them out of
a `Midi2Wave`; `LiveSynth` accepts either.

On disk it is `live.safetensors` beside an exported model's `model.safetensors` (`midi2wave export`
writes it for a model that can play live): plain tensors, the config JSON and the SHA-256 of the
`model.safetensors` it was made from in the metadata. `load_live_model(folder)` returns None (and
the caller builds the snapshot from the torch model) when there is no snapshot, or it was made from
other weights, or it cannot be read: a stale snapshot is never played.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..config import Config, ConfigError, config_from_dict
from ..files import SAFETENSORS_NAME
from ..model.stepping import ContextLayer, ContextWeights, SteppingWeights, context_weights, stepping_weights
from .kernel import MulawTables, mulaw_tables

logger = logging.getLogger(__name__)

LIVE_NAME = "live.safetensors"
FORMAT = "midi2wave-live"
VERSION = "1"

__all__ = ["LiveModel", "live_model", "save_live_model", "load_live_model", "export_live_snapshot", "LIVE_NAME"]

# SteppingWeights' settings (the rest are arrays)
_SETTINGS = ("input_kind", "output_kind", "mulaw_classes", "n_mixtures", "kernel_size", "dilations",
             "residual_channels", "gate_channels", "skip_channels")


@dataclass
class LiveModel:
    """A model as the live engine runs it (see the module docstring)."""

    config: Config
    stepping: SteppingWeights  # numpy float32 arrays
    context: ContextWeights
    tables: MulawTables

    # what LiveSynth reads of a Midi2Wave
    @property
    def data_config(self) -> Any:
        return self.config.data

    @property
    def model_config(self) -> Any:
        return self.config.model

    @property
    def sampling_defaults(self) -> Any:
        return self.config.sampling


def live_model(model: Any) -> LiveModel:
    """The snapshot of a `Midi2Wave` (or a LiveModel, returned as is). ValueError when its context
    cannot be stepped frame by frame (`model.stepping.context_weights`)."""
    if isinstance(model, LiveModel):
        return model
    config = Config(data=model.data_config, model=model.model_config, sampling=model.sampling_defaults)
    return LiveModel(config, stepping_weights(model).numpy(), context_weights(model),
                     mulaw_tables(model.model_config.mulaw_classes))


def file_digest(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes (hex)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _tensors(live: LiveModel) -> dict[str, np.ndarray]:
    sw, cw = live.stepping, live.context
    out = {f"stepping.{name}": getattr(sw, name) for name in SteppingWeights.ARRAYS if getattr(sw, name) is not None}
    out.update({"context.in_weight": cw.in_weight, "context.in_bias": cw.in_bias, "context.proj_weight": cw.proj_weight})
    if cw.year_table is not None:
        out["context.year_table"] = cw.year_table
    for i, layer in enumerate(cw.layers):
        for name in ("conv_weight", "conv_bias", "out_weight", "out_bias"):
            out[f"context.layers.{i}.{name}"] = getattr(layer, name)
    out["tables.pcm_to_class"] = live.tables.pcm_to_class.astype(np.int32)  # 0..Q-1
    out["tables.class_to_value"] = live.tables.class_to_value
    return {k: np.ascontiguousarray(v) for k, v in out.items()}


def save_live_model(folder: str | os.PathLike, live: LiveModel) -> Path:
    """Write `folder/live.safetensors` for the `folder/model.safetensors` it was made from
    (atomically; replaces an older snapshot). Returns its path."""
    from safetensors.numpy import save

    from ..files import atomic_write_bytes

    folder = Path(folder)
    sw = live.stepping
    metadata = {
        "format": FORMAT, "version": VERSION, "config": live.config.to_json(),
        "source_sha256": file_digest(folder / SAFETENSORS_NAME),
        "stepping": json.dumps({name: getattr(sw, name) for name in _SETTINGS}),
        "context_dilations": json.dumps([layer.dilation for layer in live.context.layers]),
        "context_gates": json.dumps(list(live.context.gates)),
        "silence_class": str(live.tables.silence_class),
    }
    return atomic_write_bytes(folder / LIVE_NAME, save(_tensors(live), metadata=metadata))


def export_live_snapshot(folder: str | os.PathLike) -> Path | None:
    """Write the snapshot of the exported model in `folder` (`midi2wave export --format safetensors`
    does after writing it); None when the model cannot play live (an older snapshot there is removed)."""
    from ..checkpoint import load_model

    model, config = load_model(Path(folder) / SAFETENSORS_NAME)
    try:
        if not config.model.context_causal:
            raise ValueError("looks ahead")
        snapshot = live_model(model)
    except ValueError:  # it looks ahead, or has no frame-rate context stack to step
        (Path(folder) / LIVE_NAME).unlink(missing_ok=True)
        return None
    return save_live_model(folder, snapshot)


def load_live_model(path: str | os.PathLike) -> LiveModel | None:
    """The snapshot of the exported model at `path` (its folder or its model.safetensors), or None
    when there is none that was made from these weights (see the module docstring)."""
    from safetensors import SafetensorError, safe_open

    from ..errors import CheckpointError
    from ..files import find_checkpoint

    try:  # the file `load_model` would load (a run folder's last.pt before an exported model)
        source = find_checkpoint(path)
    except CheckpointError:
        return None
    if source.name != SAFETENSORS_NAME or not source.is_file():
        return None
    snapshot = source.parent / LIVE_NAME
    if not snapshot.is_file():
        return None
    try:
        with safe_open(str(snapshot), framework="numpy") as f:
            meta = f.metadata() or {}
            if meta.get("format") != FORMAT or meta.get("version") != VERSION:
                logger.info("%s: not a version %s live snapshot; building it from the model", snapshot, VERSION)
                return None
            if meta.get("source_sha256") != file_digest(source):
                logger.info("%s: made from other weights than %s; building it from the model", snapshot, source)
                return None
            t = {key: f.get_tensor(key) for key in f.keys()}
        settings = json.loads(meta["stepping"])
        config = config_from_dict(json.loads(meta["config"]))
        stepping = SteppingWeights(**settings, **{name: t.get(f"stepping.{name}") for name in SteppingWeights.ARRAYS})
        dilations = json.loads(meta["context_dilations"])
        layers = [ContextLayer(int(d), *(t[f"context.layers.{i}.{name}"]
                                         for name in ("conv_weight", "conv_bias", "out_weight", "out_bias")))
                  for i, d in enumerate(dilations)]
        gates = json.loads(meta["context_gates"])
        context = ContextWeights(t["context.in_weight"], t["context.in_bias"], layers, t["context.proj_weight"],
                                 t.get("context.year_table"), (int(gates[0]), int(gates[1])))
        tables = MulawTables(t["tables.pcm_to_class"].astype(np.int64), t["tables.class_to_value"],
                             int(meta["silence_class"]))
        live = LiveModel(config, stepping, context, tables)
        _check_shapes(live)
    except (SafetensorError, OSError, ValueError, KeyError, TypeError, IndexError, ConfigError) as e:
        logger.info("%s: unreadable live snapshot (%s); building it from the model", snapshot, e)
        return None
    return live


def _check_shapes(live: LiveModel) -> None:
    """ValueError unless every array is float32 and shaped as the config's model says (a snapshot
    whose weights match its model's hash may still have been edited)."""
    m, sw, cw = live.config.model, live.stepping, live.context
    L, R, G, S, K = m.n_layers, m.residual_channels, m.gate_channels, m.skip_channels, m.kernel_size
    Cc = m.context_channels
    expected = {
        "dilated_weight": (L, G, R, K), "dilated_bias": (L, G), "out_weight": (L, R + S, G // 2),
        "out_bias": (L, R + S), "input_bias": (R,),
        "head_hidden_weight": (sw.head_hidden_weight.shape[0], S), "head_hidden_bias": (sw.head_hidden_weight.shape[0],),
        "head_out_weight": (sw.head_out_weight.shape[0], sw.head_hidden_weight.shape[0]),
        "head_out_bias": (sw.head_out_weight.shape[0],),
    }
    if sw.input_kind == "mulaw_embedding":
        expected.update(embed_prev=(m.mulaw_classes, R), embed_curr=(m.mulaw_classes, R))
    for name in SteppingWeights.ARRAYS:
        a = getattr(sw, name)
        if a is not None and (a.dtype != np.float32 or (name in expected and a.shape != expected[name])):
            raise ValueError(f"stepping.{name}: {a.dtype} {a.shape}, expected float32 {expected.get(name)}")
    if (len(sw.dilations) != L or sw.kernel_size != K or (sw.input_kind, sw.output_kind, sw.residual_channels,
                                                             sw.gate_channels, sw.skip_channels)
            != (m.input_kind, m.output_kind, R, G, S)):
        raise ValueError("the stepping settings differ from the config's model")
    if tuple(cw.gates) != (L, G) or len(cw.layers) != m.context_stacks * m.context_layers_per_stack:
        raise ValueError(f"context: gates {cw.gates}, {len(cw.layers)} layers, not as the config's model")
    shapes = [(cw.in_weight, (Cc, live.config.data.conditioning_channels)), (cw.in_bias, (Cc,)),
              (cw.proj_weight, (L * G, Cc))]
    for layer in cw.layers:
        shapes += [(layer.conv_weight, (2 * Cc, Cc, m.context_kernel_size)), (layer.conv_bias, (2 * Cc,)),
                   (layer.out_weight, (Cc, Cc)), (layer.out_bias, (Cc,))]
    if cw.year_table is not None:
        shapes.append((cw.year_table, (cw.year_table.shape[0], L * G)))
    for a, shape in shapes:
        if a.dtype != np.float32 or a.shape != shape:
            raise ValueError(f"context array {a.dtype} {a.shape}, expected float32 {shape}")
    if live.tables.pcm_to_class.shape != (65536,) or live.tables.class_to_value.shape != (m.mulaw_classes,):
        raise ValueError("the mu-law tables have the wrong shapes")
