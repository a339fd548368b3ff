"""Train a rule-abiding ResNet on converted Tiny-ImageNet records; resumes by itself.

    python train.py --data /content/drive/MyDrive/tin --run-dir /content/drive/MyDrive/runs/r34 \
        --config configs/tiny_imagenet.toml

Start it again with the same --run-dir after a disconnect and it continues from the last
checkpoint. The backend (TensorFlow or JAX) is chosen here, before Keras is imported.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import os
import sys


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


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, help="the converter's output folder (local, Drive or gs://)")
    parser.add_argument("--run-dir", required=True, help="checkpoints, logs and curves go here (use Drive)")
    parser.add_argument("--config", help="a TOML config, e.g. configs/tiny_imagenet.toml")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set optimizer.weight_decay=1e-4 --set stages.0.epochs=5")
    parser.add_argument("--strategy", default="auto", choices=["auto", "tpu", "gpu", "cpu", "multiworker"])
    parser.add_argument("--backend", default="auto", choices=["auto", "tensorflow", "jax"])
    parser.add_argument("--stage-data", metavar="LOCAL_DIR", help="copy the needed records here first")
    parser.add_argument("--cpu-replicas", type=int, default=1,
                        help="split the CPU into N logical devices and train data-parallel (testing without GPUs)")
    parser.add_argument("--stop-after", type=int, metavar="N",
                        help="train N more epochs, checkpoint and stop (fits a Colab session; run again to continue)")
    parser.add_argument("--quiet", action="store_true", help="no per-batch progress bar")
    args = parser.parse_args(argv)
    if args.stop_after is not None and args.stop_after < 1:
        parser.error("--stop-after: must be at least 1 epoch")
    if args.cpu_replicas < 1:
        parser.error("--cpu-replicas: must be at least 1")
    return args


def main(argv=None) -> int:
    args = parse(argv)
    backend = choose_backend(args.backend)
    os.environ["KERAS_BACKEND"] = backend  # must happen before the first import of keras
    from common.cli import command_line

    return command_line(lambda _: train(args, backend))(None)


def train(args, backend: str) -> int:
    from training import config as configs
    from training.strategy import detect
    from training.trainer import Trainer

    if backend == "jax":
        import tensorflow as tf

        tf.config.set_visible_devices([], "GPU")  # TensorFlow only runs tf.data: leave the GPU to JAX
    config = configs.load(args.config, args.set)
    runtime = detect(args.strategy, backend, args.cpu_replicas, config.runtime.mixed_precision)
    print(runtime.describe(), flush=True)
    if config.runtime.deterministic:
        import keras

        keras.utils.set_random_seed(config.seed)
        if backend == "tensorflow":
            import tensorflow as tf

            tf.config.experimental.enable_op_determinism()
    data = args.data
    if args.stage_data:
        from training.staging import stage

        needed = {s.resolution for s in config.stages} | {config.final_resolution or 0}
        data = stage(args.data, args.stage_data, sorted(r for r in needed if r))
    import keras

    keras.utils.set_random_seed(config.seed)
    trainer = Trainer(config, data, args.run_dir, runtime, verbose=0 if args.quiet else 1,
                      log=lambda line: print(line, flush=True))
    trainer.fit(args.stop_after)
    return 0


if __name__ == "__main__":
    sys.exit(main())
