"""From parsed command-line arguments to a training run: the backend, determinism, the runtime,
staged data, then the Trainer. train.py only parses arguments and hands over here.

The backend must be chosen before the first import of Keras, so `choose_backend` imports nothing
heavy and `train` imports Keras only after KERAS_BACKEND is set.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import sys

from common.errors import UserError, describe


def choose_backend(requested: str) -> str:
    """KERAS_BACKEND wins; `auto` picks JAX on a TPU runtime without tensorflow-tpu, else TensorFlow."""
    if requested != "auto":
        return requested
    if os.environ.get("KERAS_BACKEND"):
        return os.environ["KERAS_BACKEND"]
    from training.runtime import tpu_present

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


def start_jax(args):
    """Before JAX's first computation: the CPU split into devices (--cpu-replicas), then, when this
    is one of several processes, the rendezvous with the others (training/processes.py). Returns
    the set-up (None for one process alone)."""
    import jax

    from training import processes

    process_setup = processes.setup(args.coordinator, args.num_processes, args.process_id, args.multihost,
                                    args.rendezvous_timeout)
    if args.cpu_replicas > 1:
        jax.config.update("jax_num_cpu_devices", args.cpu_replicas)
    if process_setup is not None:
        processes.join(process_setup)
    return process_setup


def train(args, backend: str) -> int:
    """Run train.py's arguments: config, runtime, optional staging, then train to the end (or
    `--stop-after` epochs)."""
    from training import config as configs

    config = configs.read(args.config, args.set)  # a config error ends this process before the rendezvous
    process_setup = None
    if backend == "jax":
        process_setup = start_jax(args)
    elif args.coordinator or args.num_processes or args.process_id is not None or args.multihost:
        raise UserError("--coordinator/--num-processes/--process-id/--multihost start JAX processes: add "
                        "--backend jax (TensorFlow's workers use --strategy multiworker and TF_CONFIG)")
    import keras
    import tensorflow as tf

    from training import preparation
    from training.runtime import detect
    from training.trainer import Trainer

    if backend == "jax":
        tf.config.set_visible_devices([], "GPU")  # TensorFlow only runs tf.data: leave the GPU to JAX
    runtime = detect(args.strategy, backend, args.cpu_replicas, config.runtime.mixed_precision)
    expected = None
    if runtime.processes > 1:  # compared in the run's preparation, before anything else it finds
        import jax

        settings = hashlib.sha256(json.dumps(config.to_dict(), sort_keys=True, default=str).encode()).hexdigest()
        told = process_setup.num_processes if process_setup and process_setup.num_processes else runtime.processes
        expected = ({"processes": told, "config": int(settings[:7], 16), "stop_after": args.stop_after or 0,
                     "devices": jax.local_device_count()},
                    {"processes": "--num-processes", "config": "the config (--config and --set)",
                     "stop_after": "--stop-after", "devices": "the number of devices of a process"})
    log = (lambda line: print(line, flush=True)) if runtime.is_chief else (lambda line: None)
    log(runtime.describe())
    if config.runtime.deterministic and backend == "tensorflow":
        tf.config.experimental.enable_op_determinism()  # reproducible to the last bit, slower
    try:
        keras.utils.set_random_seed(config.seed)
        # --quiet: Keras's one line per epoch (the log a notebook shows) instead of a per-batch bar
        verbose = 0 if not runtime.is_chief else 2 if args.quiet else 1
        with preparation.prepare(config, args.data, args.run_dir, runtime, args.stage_data, expected, log) as prepared:
            Trainer(config, prepared, runtime, verbose=verbose, log=log).fit(args.stop_after)
    except UserError as error:
        if runtime.processes == 1:
            raise
        # One line, and out at once: exiting normally would wait for the other processes in JAX's
        # shutdown, and they may be waiting in a collective for this one.
        print(f"error: {describe(error)}", file=sys.stderr, flush=True)
        sys.stdout.flush()
        os._exit(2)
    return 0
