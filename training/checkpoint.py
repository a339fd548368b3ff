"""Checkpoints that survive a Colab disconnect and move between TensorFlow and JAX.

One file, `checkpoint.npz`, holds the model weights, the optimizer's variables (its step counter
and momenta) and the training state (epochs done, batches done in the next epoch, best accuracy)
together, so they can never disagree. It is written under a temporary name and renamed, through
tf.io.gfile (Drive or a bucket). Plain numpy arrays in Keras's variable order: the same model and
optimizer rebuilt under the other backend load them unchanged. `state.json` is a readable copy.
"""

from __future__ import annotations

import io
import json
import posixpath

import numpy as np

NAME = "checkpoint.npz"


def _gfile():
    import tensorflow as tf

    return tf.io.gfile


def inner_optimizer(optimizer):
    """The optimizer that owns the step counter and slots (unwrapping a loss-scale wrapper)."""
    return getattr(optimizer, "inner_optimizer", optimizer)


def save(run_dir: str, model, state: dict) -> None:
    optimizer = inner_optimizer(model.optimizer)
    arrays = {f"w{i:05d}": np.asarray(w) for i, w in enumerate(model.get_weights())}
    variables = optimizer.variables
    arrays.update({f"o{i:05d}": np.asarray(v.value if hasattr(v, "value") else v) for i, v in enumerate(variables)})
    meta = {**state, "optimizer": type(optimizer).__name__, "optimizer_variables": [v.name for v in variables],
            "weights": [v.path for v in model.weights]}
    arrays["state"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    gfile = _gfile()
    gfile.makedirs(run_dir)
    path = posixpath.join(run_dir, NAME)
    with gfile.GFile(path + ".tmp", "wb") as handle:
        handle.write(buffer.getvalue())
    gfile.rename(path + ".tmp", path, overwrite=True)
    with gfile.GFile(posixpath.join(run_dir, "state.json.tmp"), "w") as handle:
        handle.write(json.dumps(state, indent=1))
    gfile.rename(posixpath.join(run_dir, "state.json.tmp"), posixpath.join(run_dir, "state.json"), overwrite=True)


def read_state(run_dir: str) -> dict | None:
    """The state stored in the checkpoint, or None when the run directory has none."""
    path = posixpath.join(run_dir, NAME)
    gfile = _gfile()
    if not gfile.exists(path):
        return None
    with gfile.GFile(path, "rb") as handle:
        with np.load(io.BytesIO(handle.read())) as data:
            return json.loads(data["state"].tobytes().decode())


def load(run_dir: str, model) -> dict:
    """Restore weights and optimizer variables into a compiled, built model; return the state."""
    from pipeline.errors import DataError

    path = posixpath.join(run_dir, NAME)
    with _gfile().GFile(path, "rb") as handle:
        data = dict(np.load(io.BytesIO(handle.read())))
    state = json.loads(data.pop("state").tobytes().decode())
    weights = [data[k] for k in sorted(k for k in data if k.startswith("w"))]
    current = model.get_weights()
    if len(weights) != len(current) or any(a.shape != b.shape for a, b in zip(weights, current)):
        raise DataError(f"{path}: the checkpoint holds another model (weights do not match {model.name})")
    model.set_weights(weights)
    optimizer = inner_optimizer(model.optimizer)
    saved = [data[k] for k in sorted(k for k in data if k.startswith("o"))]
    if state.get("optimizer") != type(optimizer).__name__ or len(saved) != len(optimizer.variables):
        raise DataError(f"{path}: saved with optimizer {state.get('optimizer')}, the config asks for "
                        f"{type(optimizer).__name__}; resume with the same optimizer")
    for variable, value in zip(optimizer.variables, saved):
        variable.assign(value.astype(variable.dtype) if hasattr(value, "astype") else value)
    return state
