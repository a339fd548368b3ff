"""Checkpoints that survive a Colab disconnect and move between TensorFlow and JAX.

One file, `checkpoint.npz`, holds the model weights, the optimizer's variables (its step counter
and momenta, and under mixed_float16 the loss-scale wrapper's dynamic scale and step counter) and
the training state (epochs done, batches done in the next epoch, best accuracy)
together, so they can never disagree. It is written under a temporary name and renamed, through
tf.io.gfile (Drive or a bucket). Plain numpy arrays in Keras's variable order: the same model and
optimizer rebuilt under the other backend load them unchanged. `state.json` is a readable copy.
"""

from __future__ import annotations

import io
import json

import numpy as np

from common import files
from common.errors import UserError
from training.run_dir import RunDir, TrainingState


def inner_optimizer(optimizer):
    """The optimizer that owns the step counter and slots (unwrapping a loss-scale wrapper)."""
    return getattr(optimizer, "inner_optimizer", optimizer)


def global_step(model) -> int:
    """Optimizer steps taken so far (the schedule's clock, saved with the optimizer), under either
    backend."""
    import keras

    return int(keras.ops.convert_to_numpy(inner_optimizer(model.optimizer).iterations))


def _value(variable) -> np.ndarray:
    return np.asarray(variable.value if hasattr(variable, "value") else variable)


def loss_scale_variables(optimizer) -> list:
    """The variables a loss-scale wrapper adds to its inner optimizer's (dynamic scale, its step
    counter); none for a plain optimizer. Keras rebuilds them fresh unless they are restored."""
    inner = inner_optimizer(optimizer)
    if inner is optimizer:
        return []
    own = {v.path for v in inner.variables}
    return [v for v in optimizer.variables if v.path not in own]


def save(run: RunDir, model, state: TrainingState) -> None:
    optimizer = inner_optimizer(model.optimizer)
    arrays = {f"w{i:05d}": np.asarray(w) for i, w in enumerate(model.get_weights())}
    variables = optimizer.variables
    arrays.update({f"o{i:05d}": _value(v) for i, v in enumerate(variables)})
    scale = loss_scale_variables(model.optimizer)
    arrays.update({f"s{i:05d}": _value(v) for i, v in enumerate(scale)})
    meta = {**state.to_dict(), "optimizer": type(optimizer).__name__,
            "optimizer_variables": [v.name for v in variables], "loss_scale_variables": [v.name for v in scale],
            "weights": [v.path for v in model.weights]}
    arrays["state"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    run.make()
    files.write_bytes(run.checkpoint, buffer.getvalue())
    files.write_json(run.state, state.to_dict())


def _read(path: str) -> dict:
    """Every array of the checkpoint; a UserError naming the file when it cannot be read whole."""
    import zipfile
    import zlib

    try:
        with files.gfile().GFile(path, "rb") as handle:
            with np.load(io.BytesIO(handle.read())) as data:
                arrays = {key: data[key] for key in data.files}
        json.loads(arrays["state"].tobytes().decode())
        return arrays
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, KeyError, UnicodeDecodeError) as error:
        reason = f"{type(error).__name__}: {error}".splitlines()[0][:120]
        raise UserError(f"{path}: unreadable checkpoint ({reason}); restore a copy, or delete it (and state.json) "
                        "to train this run directory from the start") from None


def read_state(run: RunDir) -> TrainingState | None:
    """The state stored in the checkpoint, or None when the run directory has none."""
    if not files.gfile().exists(run.checkpoint):
        return None
    return TrainingState.from_dict(json.loads(_read(run.checkpoint)["state"].tobytes().decode()))


def _class_counts(saved: list, current: list, model) -> tuple[int, int] | None:
    """(saved, current) class counts when the only difference is the width of the class head,
    else None: as many arrays, and each pair that differs does so in its last axis only, where
    the model has its class count."""
    classes = int(model.output_shape[-1])
    if len(saved) != len(current):
        return None
    differing = [(a.shape, b.shape) for a, b in zip(saved, current) if a.shape != b.shape]
    if not differing or not all(len(a) == len(b) and a[:-1] == b[:-1] and b[-1] == classes for a, b in differing):
        return None
    widths = {a[-1] for a, _ in differing}
    return (widths.pop(), classes) if len(widths) == 1 else None


def restore(run: RunDir, model) -> TrainingState:
    """Restore weights and optimizer variables into a compiled, built model; return the state."""
    path = run.checkpoint
    data = _read(path)
    state = json.loads(data.pop("state").tobytes().decode())
    weights = [data[k] for k in sorted(k for k in data if k.startswith("w"))]
    current = model.get_weights()
    if len(weights) != len(current) or any(a.shape != b.shape for a, b in zip(weights, current)):
        classes = _class_counts(weights, current, model)
        if classes is not None:
            raise UserError(f"{path}: the checkpoint's model scores {classes[0]} classes, the records in --data hold "
                            f"{classes[1]}; resume with the records it began with (or a new --run-dir)")
        raise UserError(f"{path}: the checkpoint holds another model (weights do not match {model.name})")
    model.set_weights(weights)
    optimizer = inner_optimizer(model.optimizer)
    saved = [data[k] for k in sorted(k for k in data if k.startswith("o"))]
    if state.get("optimizer") != type(optimizer).__name__ or len(saved) != len(optimizer.variables):
        raise UserError(f"{path}: saved with optimizer {state.get('optimizer')}, the config asks for "
                        f"{type(optimizer).__name__}; resume with the same optimizer")
    for variable, value in zip(optimizer.variables, saved):
        variable.assign(value.astype(variable.dtype) if hasattr(value, "astype") else value)
    # The loss scale carries over when the run resumes under the same precision; a checkpoint from a
    # float32 or bfloat16 runtime has none, and the wrapper then starts from its initial scale.
    saved_scale = [data[k] for k in sorted(k for k in data if k[0] == "s" and k[1:].isdigit())]
    scale = dict(zip(state.get("loss_scale_variables", []), saved_scale))
    for variable in loss_scale_variables(model.optimizer):
        if variable.name in scale:
            variable.assign(scale[variable.name].astype(variable.dtype))
    return TrainingState.from_dict(state)
