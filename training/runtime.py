"""Find the accelerator and set up data parallelism, under TensorFlow or JAX.

TensorFlow: a TPU (TPUStrategy), else every GPU (MirroredStrategy), else the default strategy on
one device; `multiworker` reads TF_CONFIG (MultiWorkerMirroredStrategy). JAX: every device of
every process (training/processes.py joins them) through `keras.distribution.DataParallel`.
Batch sizes in configs are global; each replica gets its share through
`distribute_datasets_from_function` (TensorFlow); under JAX each process reads its own shards at
its share of the global batch, which Keras splits over the process's devices.
Mixed precision: bfloat16 on TPU, float16 on GPU, float32 on CPU.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import importlib.metadata
import json
import os
from collections.abc import Callable

from common.errors import UserError, first_line

KINDS = ("auto", "tpu", "gpu", "cpu", "multiworker")


@dataclasses.dataclass
class Runtime:
    backend: str  # "tensorflow" | "jax"
    kind: str  # "tpu" | "gpu" | "cpu" | "multiworker"
    replicas: int
    devices: list[str]
    mixed_precision: str
    strategy: object = None  # tf.distribute.Strategy under TensorFlow
    worker_index: int = 0  # this worker (TensorFlow) or process (JAX); 0 is the chief
    processes: int = 1  # JAX processes (hosts) training together

    def scope(self):
        return self.strategy.scope() if self.strategy is not None else contextlib.nullcontext()

    def distribute(self, make: Callable):
        """`make(input_context)` -> tf.data.Dataset; the result is what `fit` takes."""
        if self.processes > 1:  # JAX: this process's shards at its share of the global batch
            import tensorflow as tf

            return make(tf.distribute.InputContext(self.processes, self.worker_index, self.processes))
        if self.strategy is None or (self.replicas == 1 and self.kind in ("cpu", "gpu")):
            return make(None)
        return self.strategy.distribute_datasets_from_function(make)

    def together(self, action: Callable, what: str, agreed: dict[str, str] | None = None,
                 values: Callable | None = None, undo: Callable | None = None, known: dict[str, int] | None = None):
        """`action()` in every process of the run, each stopping if any one fails (a UserError),
        so that none waits alone in its next collective; with `agreed`, the `known` values and
        `values(result)` also the same in every process; `undo(result)` where the others made a
        process stop (training/processes.py)."""
        from training import processes

        return processes.together(action, what, self.processes, agreed, values, undo, known)

    def agree(self, values: dict[str, int], names: dict[str, str]) -> None:
        """Every process holds the same `values`, or every process stops with one line naming the
        first that differs (`names`: how each is set); nothing to compare in a single process."""
        if self.processes > 1:
            from training import processes

            processes.agree(values, names)

    @property
    def is_chief(self) -> bool:
        return self.worker_index == 0

    @property
    def writes_run_dir(self) -> bool:
        """JAX processes other than 0 write nothing; TensorFlow workers each save (their collectives
        need every worker), the others into a folder of their own."""
        return self.is_chief or self.kind == "multiworker"

    def describe(self) -> str:
        shown = ", ".join(self.devices[:8]) + (f" (+{len(self.devices) - 8} more)" if len(self.devices) > 8 else "")
        hosts = f" over {self.processes} processes" if self.processes > 1 else ""
        return (f"backend {self.backend}, {self.kind}: {self.replicas} replica(s){hosts} [{shown}], "
                f"precision {self.mixed_precision}")


def tpu_present() -> bool:
    """Cheap signs of a TPU, so `auto` does not spend a minute probing for one on a GPU runtime."""
    return bool(os.environ.get("TPU_NAME") or os.environ.get("COLAB_TPU_ADDR") or glob.glob("/dev/accel*")
                or glob.glob("/dev/vfio/[0-9]*"))


def _versions() -> str:
    found = []
    for package in ("tensorflow", "tensorflow-cpu", "tensorflow-tpu", "libtpu", "jax", "jaxlib"):
        try:
            found.append(f"{package} {importlib.metadata.version(package)}")
        except importlib.metadata.PackageNotFoundError:
            pass
    return ", ".join(found) or "no TensorFlow or JAX packages found"


def _tensorflow_tpu():
    import tensorflow as tf

    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(
            tpu="" if os.environ.get("COLAB_TPU_ADDR") else "local")
        if os.environ.get("COLAB_TPU_ADDR"):
            tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    except (ValueError, RuntimeError, tf.errors.OpError) as error:
        raise UserError(
            f"--strategy tpu: TensorFlow sees no TPU ({first_line(error)}). Installed: {_versions()}. On Colab's TPU "
            f"runtime TensorFlow needs the tensorflow-tpu wheel of the same version as tensorflow (it often "
            f"lags a release); use --backend jax there instead") from None


def detect(kind: str = "auto", backend: str | None = None, cpu_replicas: int = 1,
           mixed_precision: str = "auto") -> Runtime:
    """The Runtime to train with. `cpu_replicas` > 1 splits the CPU into logical devices
    (data-parallel on one machine without a GPU: for checking distribution code)."""
    import keras

    backend = backend or keras.backend.backend()
    if kind not in KINDS:
        raise UserError(f"--strategy {kind}: expected one of {', '.join(KINDS)}")
    runtime = _detect_jax(kind) if backend == "jax" else _detect_tensorflow(kind, cpu_replicas)
    runtime.mixed_precision = _precision(runtime.kind, mixed_precision)
    return runtime


def _precision(kind: str, requested: str) -> str:
    if requested != "auto":
        return requested
    return {"tpu": "mixed_bfloat16", "gpu": "mixed_float16"}.get(kind, "float32")


def _detect_tensorflow(kind: str, cpu_replicas: int) -> Runtime:
    import tensorflow as tf

    if cpu_replicas > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        try:
            tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * cpu_replicas)
        except RuntimeError:
            pass  # already initialised with logical devices (a second run in one process)
    if kind == "multiworker":
        if "TF_CONFIG" not in os.environ:
            raise UserError("--strategy multiworker: set TF_CONFIG (cluster and task) on every worker")
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        _patch_keras_multiworker_reduce()
        task = json.loads(os.environ["TF_CONFIG"]).get("task", {})
        devices = [d.name for d in tf.config.list_logical_devices("GPU")] or ["CPU:0"]
        return Runtime("tensorflow", "multiworker", strategy.num_replicas_in_sync, devices, "", strategy,
                       int(task.get("index", 0)))
    if kind == "tpu" or (kind == "auto" and tpu_present()):
        try:
            strategy = _tensorflow_tpu()
        except UserError:
            if kind == "tpu":
                raise
        else:
            devices = [d.name for d in tf.config.list_logical_devices("TPU")]
            return Runtime("tensorflow", "tpu", strategy.num_replicas_in_sync, devices, "", strategy)
    gpus = tf.config.list_logical_devices("GPU")
    if kind == "gpu" and not gpus:
        raise UserError("--strategy gpu: TensorFlow sees no GPU (Colab: Runtime > Change runtime type)")
    if gpus and kind in ("auto", "gpu"):
        names = [g.name for g in gpus]
        strategy = tf.distribute.MirroredStrategy(names) if len(gpus) > 1 else tf.distribute.get_strategy()
        return Runtime("tensorflow", "gpu", len(gpus), names, "", strategy)
    cpus = tf.config.list_logical_devices("CPU")
    if len(cpus) > 1:
        names = [c.name for c in cpus]
        return Runtime("tensorflow", "cpu", len(cpus), names, "", tf.distribute.MirroredStrategy(names))
    return Runtime("tensorflow", "cpu", 1, [cpus[0].name], "", tf.distribute.get_strategy())


def _patch_keras_multiworker_reduce() -> None:
    """Keras 3's `fit` under MultiWorkerMirroredStrategy averages each step's scalar metrics with
    `strategy.reduce("MEAN", v, axis=0)`, which fails on scalars ("Invalid reduction dimension 0
    for input with 0 dimensions", tensorflow/tensorflow#72388, unfixed in Keras 3.15). Reduce
    scalars with axis=None instead: the same mean over replicas that single-worker runs compute.
    """
    from keras import tree
    from keras.src.backend.tensorflow import trainer as tf_trainer

    original = getattr(tf_trainer.reduce_per_replica, "__wrapped__", tf_trainer.reduce_per_replica)

    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean") and tf_trainer._collective_all_reduce_multi_worker(strategy):
            def mean(value):
                rank = len(value.values[0].shape) if hasattr(value, "values") else len(value.shape)
                return strategy.reduce("MEAN", value, axis=None if rank == 0 else 0)
            return tree.map_structure(mean, values)
        return original(values, strategy, reduction)

    reduce_per_replica.__wrapped__ = original
    tf_trainer.reduce_per_replica = reduce_per_replica


def _detect_jax(kind: str) -> Runtime:
    import jax
    import keras

    if kind == "multiworker":
        raise UserError("--strategy multiworker is TensorFlow's; under JAX run one process per host "
                        "(jax.distributed) or use --backend tensorflow")
    devices = jax.devices()  # every process's, after jax.distributed joined them
    platform = devices[0].platform  # "tpu" | "gpu" | "cpu"
    wanted = {"tpu": "tpu", "gpu": "gpu", "cpu": "cpu"}.get(kind)
    if wanted and platform != wanted:
        raise UserError(f"--strategy {kind}: JAX sees {platform} devices only. Installed: {_versions()}")
    if len(devices) > 1:
        # Each process feeds its own shards at its share of the batch (Runtime.distribute), so Keras
        # must not shard the per-process dataset again.
        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices, auto_shard_dataset=False))
    return Runtime("jax", platform, len(devices), [str(d) for d in devices], "", worker_index=jax.process_index(),
                   processes=jax.process_count())
