"""Save and load models as ``.npz`` without pickle: weights, optimizer state and config.

Arrays are stored in their tensor class's storage format (fp16 as float16; bf16 as the fp32
values it holds, which is exact), with the master copy of the weights where the backend's
storage keeps one; a JSON header carries the config, the epoch and optimizer scalars. The
config of a model built in Python gets the backend's numerics and the optimizer's spec, so
that ``Model.load`` rebuilds it as well.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from neon.errors import UserError

__all__ = ["FORMAT", "load_model", "load_weights", "save_model"]

FORMAT = "neon-search-model/1"


def _host(model: Any, x: Any, tensor_class: str) -> np.ndarray:
    arr = model.be.to_host(x)
    if model.be.storage.of(tensor_class).storage == np.float16:
        return arr.astype(np.float16)
    return arr


def _config(model: Any, optimizer: Any) -> dict[str, Any] | None:
    """The model's config, with the backend section and the optimizer's spec filled in
    where it has none (a model built in Python)."""
    if not model.config:
        return model.config
    config = dict(model.config)
    if not config.get("backend"):
        config["backend"] = model.be.config()
    if not config.get("optimizer") and optimizer is not None and hasattr(optimizer, "config"):
        config["optimizer"] = optimizer.config()
    return config


def save_model(model: Any, path: str | os.PathLike[str], optimizer: Any, meta: dict) -> None:
    arrays: dict[str, np.ndarray] = {}
    for layer in model.layers:
        for p in layer.params:
            arrays[f"param/{p.key}"] = _host(model, p.value, "weights")
            if p.master is not None:
                arrays[f"master/{p.key}"] = _host(model, p.master, "master_weights")
            for slot, value in p.state.items():
                arrays[f"opt/{p.key}/{slot}"] = _host(model, value, "optimizer_state")
        for name, value in layer.states().items():
            arrays[f"state/{layer.name}/{name}"] = _host(model, value, "activations")
    header = {
        "format": FORMAT,
        "config": _config(model, optimizer),
        "in_shape": list(model.in_shape or ()),
        "epoch": model.epoch,
        "numerics": model.be.numerics,
        "backend": model.be.describe(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "loss_scaler": model.loss_scaler.state_dict() if model.loss_scaler else None,
        "layers": [layer.name for layer in model.layers],
        "meta": meta,
    }
    arrays["__header__"] = np.array(json.dumps(header, default=str))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz.tmp")
    os.close(fd)
    try:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
        os.replace(tmp, path)  # a checkpoint is either old or complete, never half-written
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _read(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except FileNotFoundError:
        raise UserError("checkpoint not found", file=str(path)) from None
    except (ValueError, OSError) as exc:
        raise UserError(f"not a readable .npz checkpoint ({exc})", file=str(path)) from None
    if "__header__" not in arrays:
        raise UserError("not a neon-search checkpoint (no header)", file=str(path))
    header = json.loads(str(arrays.pop("__header__")))
    return header, arrays


def load_weights(model: Any, path: str | os.PathLike[str], optimizer: Any = None) -> dict:
    """Copy saved arrays into an initialized ``model`` (and ``optimizer`` state); header."""
    header, arrays = _read(path)
    if not model.initialized:
        model.initialize(header["in_shape"])
    be = model.be
    for layer in model.layers:
        for p in layer.params:
            key = f"param/{p.key}"
            _check(p.value, arrays.get(key), key, path)
            # the master copy where one was saved (loaded into the weights where this
            # backend keeps none: their nearest values), else the weights as saved
            saved = arrays.get(f"master/{p.key}")
            if saved is None:
                saved = arrays[key]
            if be.storage.keeps_master and p.master is None:
                be.attach_master(p)
            be.assign_param(p, be.asarray(saved.astype(np.float32)))
            with be.storing("optimizer_state"):
                for name in [k for k in arrays if k.startswith(f"opt/{p.key}/")]:
                    slot = name.rsplit("/", 1)[1]
                    p.state[slot] = be.array(arrays[name].astype(np.float32))
        for name, value in layer.states().items():
            saved = arrays.get(f"state/{layer.name}/{name}")
            if saved is not None:
                value[...] = be.array(saved.astype(value.dtype))
    model.epoch = int(header.get("epoch", 0))
    if optimizer is not None and header.get("optimizer"):
        optimizer.load_state_dict(header["optimizer"])
    if header.get("loss_scaler"):
        from neon.optimizers.loss_scaling import build_loss_scaler

        model.loss_scaler = model.loss_scaler or build_loss_scaler(
            None, be.storage.of("gradients").name)
        model.loss_scaler.load_state_dict(header["loss_scaler"])
    model.meta = header.get("meta") or {}
    return header


def _check(target: Any, saved: np.ndarray | None, key: str, path: Any) -> None:
    if saved is None:
        raise UserError(f"checkpoint has no array {key!r}: it belongs to another model",
                        file=str(path))
    if tuple(saved.shape) != tuple(target.shape):
        raise UserError(f"{key}: saved shape {saved.shape} != model shape {target.shape}",
                        file=str(path))


def load_model(path: str | os.PathLike[str], be: Any = None) -> Any:
    """Rebuild a model (and its optimizer) from a checkpoint's config, then load weights."""
    from neon.config import build_backend, build_model, to_plain
    from neon.optimizers import build_optimizer

    header, _ = _read(path)
    config = header.get("config")
    if not config:
        raise UserError("checkpoint holds no config; build the Model in Python and call "
                        "neon.serialize.load_weights(model, path)", file=str(path))
    if be is None:
        seed = int((config.get("training") or {}).get("seed", 0))
        be, _ = build_backend(config, seed)
    model = build_model(config, be)
    model.config = to_plain(config)
    model.initialize(header["in_shape"], be)
    optimizer = build_optimizer(config["optimizer"]) if config.get("optimizer") else None
    load_weights(model, path, optimizer)
    model.optimizer = optimizer
    return model
