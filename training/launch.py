"""From parsed command-line arguments to a training run: the backend, determinism, the runtime,
staged data, then the Trainer. train.py only parses arguments and hands over here.

The backend must be chosen before the first import of Keras, so `choose_backend` imports nothing
heavy and `train` imports Keras only after KERAS_BACKEND is set.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os


def choose_backend(requested: str) -> str:
    """KERAS_BACKEND wins; `auto` picks JAX on a TPU runtime without tensorflow-tpu, else TensorFlow."""
    if requested != "auto":
        return requested
    if os.environ.get("KERAS_BACKEND"):
        return os.environ["KERAS_BACKEND"]
    from training.strategy import tpu_present

    if tpu_present() and importlib.util.find_spec("jax") is not None:
        try:
            importlib.metadata.version("tensorflow-tpu")
        except importlib.metadata.PackageNotFoundError:
            return "jax"
    return "tensorflow"


def set_backend(requested: str) -> str:
    """Fix the Keras backend for this process (before Keras is imported) and return it."""
    backend = choose_backend(requested)
    os.environ["KERAS_BACKEND"] = backend
    return backend


def train(args, backend: str) -> int:
    """Run train.py's arguments: config, runtime, optional staging, then train to the end (or
    `--stop-after` epochs)."""
    import keras
    import tensorflow as tf

    from training import config as configs
    from training.strategy import detect
    from training.trainer import Trainer

    if backend == "jax":
        tf.config.set_visible_devices([], "GPU")  # TensorFlow only runs tf.data: leave the GPU to JAX
    config = configs.read(args.config, args.set)
    runtime = detect(args.strategy, backend, args.cpu_replicas, config.runtime.mixed_precision)
    print(runtime.describe(), flush=True)
    if config.runtime.deterministic and backend == "tensorflow":
        tf.config.experimental.enable_op_determinism()  # reproducible to the last bit, slower
    data = args.data
    if args.stage_data:
        from training.staging import stage

        needed = {s.resolution for s in config.stages} | {config.final_resolution or 0}
        data = stage(args.data, args.stage_data, sorted(r for r in needed if r))
    keras.utils.set_random_seed(config.seed)
    trainer = Trainer(config, data, args.run_dir, runtime, verbose=0 if args.quiet else 1,
                      log=lambda line: print(line, flush=True))
    trainer.fit(args.stop_after)
    return 0
