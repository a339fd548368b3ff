"""Train a rule-abiding ResNet on converted Tiny-ImageNet records; resumes by itself.

    python train.py --data /content/drive/MyDrive/tin --run-dir /content/drive/MyDrive/runs/r34 \
        --config configs/tiny_imagenet.toml

Start it again with the same --run-dir after a disconnect and it continues from the last
checkpoint. The backend (TensorFlow or JAX) is chosen before Keras is imported.
"""

from __future__ import annotations

import argparse
import sys

from common import quiet

if __name__ == "__main__":  # before TensorFlow or JAX is imported: their start-up notices hidden
    quiet.start()


def parse(argv):
    from training.processes import DEFAULT_TIMEOUT

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
    parser.add_argument("--quiet", action="store_true", help="one line per epoch instead of a per-batch progress bar")
    parser.add_argument("--verbose", action="store_true",
                        help="show TensorFlow's and JAX's start-up notices (hidden by default; also TIN_VERBOSE=1)")
    hosts = parser.add_argument_group("several hosts under JAX (one process per host, the same command on each)")
    hosts.add_argument("--multihost", action="store_true",
                       help="let JAX find the other processes (Cloud TPU slices, SLURM, Open MPI)")
    hosts.add_argument("--coordinator", metavar="HOST:PORT", help="process 0's address (or JAX_COORDINATOR_ADDRESS)")
    hosts.add_argument("--num-processes", type=int, metavar="N", help="processes in all (or JAX_NUM_PROCESSES)")
    hosts.add_argument("--process-id", type=int, metavar="I", help="this process, 0 to N-1 (or JAX_PROCESS_ID)")
    hosts.add_argument("--rendezvous-timeout", type=int, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                       help=f"how long the processes wait for each other (default {DEFAULT_TIMEOUT})")
    args = parser.parse_args(argv)
    if args.stop_after is not None and args.stop_after < 1:
        parser.error("--stop-after: must be at least 1 epoch")
    if args.cpu_replicas < 1:
        parser.error("--cpu-replicas: must be at least 1")
    return args


def main(argv=None) -> int:
    args = parse(argv)
    from common.cli import command_line
    from training import launch

    backend = launch.set_backend(args.backend)  # before the first import of Keras
    return command_line(lambda _: launch.train(args, backend))(None)


if __name__ == "__main__":
    sys.exit(main())
