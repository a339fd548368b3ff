"""Progressive-resizing training that resumes by itself: the engine behind train.py.

Stages run small images first (32 -> 48 -> 64 px). Epochs are numbered globally across stages,
one optimizer step counter drives the cyclical schedule across all of them, and the data of
every epoch is a pure function of (seed, epoch): a run restarted from its run directory picks
up at the checkpointed epoch (or mid-epoch, after a timer checkpoint) and carries on exactly
as if it had never stopped.
"""

from __future__ import annotations

import dataclasses
import json
import posixpath
import time

import keras

import model as models
from common import files
from common.errors import UserError
from model import rules
from pipeline import dataset
from pipeline import manifest as manifests
from training import callbacks, checkpoint
from training import config as configs
from training.config import Config
from training.run_lock import RunLock, lock_guard
from training.schedules import StagedCyclicalLearningRate
from training.strategy import Runtime

CONFIG = "config.json"  # the config in force
CHANGES = "config_changes.jsonl"  # settings changed at resumes, one JSON line per resume


@dataclasses.dataclass
class StagePlan:
    index: int
    resolution: int
    batch_size: int
    first_epoch: int
    epochs: int
    steps_per_epoch: int
    first_step: int

    @property
    def last_epoch(self) -> int:
        return self.first_epoch + self.epochs


def plan(config: Config, data_dir: str) -> tuple[list[StagePlan], dict]:
    """Stage boundaries in epochs and steps, from the manifests (counts, never a scan)."""
    stages, epoch, step, manifest = [], 0, 0, None
    for index, stage in enumerate(config.stages):
        manifest = manifests.read(data_dir, stage.resolution)
        count = dataset.split_count(manifest, "train", config.classes or None)
        steps = count // stage.batch_size
        if steps < 1:
            raise UserError(f"{config.source}: stages[{index}] batch_size {stage.batch_size} exceeds the "
                            f"{count} training examples at {stage.resolution}px")
        stages.append(StagePlan(index, stage.resolution, stage.batch_size, epoch, stage.epochs, steps, step))
        epoch += stage.epochs
        step += stage.epochs * steps
    return stages, manifest


def make_optimizer(config: Config, schedule):
    settings = config.optimizer
    common = {"learning_rate": schedule}
    if settings.clipnorm:
        common["clipnorm"] = settings.clipnorm
    decay = settings.weight_decay or None
    if settings.name == "sgd":
        # Keras 3 applies weight_decay decoupled from the gradient (lr * wd * w), as in SGDW.
        return keras.optimizers.SGD(momentum=settings.momentum, nesterov=settings.nesterov, weight_decay=decay,
                                    **common)
    if settings.name == "adam":
        return keras.optimizers.Adam(**common)
    return keras.optimizers.AdamW(weight_decay=settings.weight_decay, **common)


def run_rules(config: Config, net) -> tuple[list[str], str]:
    """The course's rules for this model and run: what is broken, and the report to print."""
    violations, text = rules.report(net)
    broken = [str(v) for v in violations]
    lines = [text, f"epochs: {config.total_epochs} in total (limit 500)",
             f"augmentations: {len({s.name for s in _policy_steps(config)})} named variants "
             f"({', '.join(dict.fromkeys(s.name for s in _policy_steps(config)))})",
             f"learning rate: cyclical ({config.schedule.mode}, bonus)",
             "data: trains on the train split only; test records are never opened; no pretrained weights"]
    return broken, "\n".join(lines)


def _policy_steps(config: Config):
    from pipeline import augment

    return augment.parse_policy(config.augment.policy)


def _build_without_a_distributed_batch(net, resolution: int, num_classes: int) -> None:
    """Work around Keras 3 under MultiWorkerMirroredStrategy.

    Before the first step `fit` builds the metrics from the first batch, which it averages with
    `strategy.reduce("MEAN", batch)`; MultiWorkerMirroredStrategy rejects that nested reduce
    ("Attempt to convert a value (PerReplica...)"). Building from a dummy batch of the right
    shapes beforehand and skipping that step gives the same state.
    """
    import numpy as np

    images = np.zeros((2, resolution, resolution, 3), np.uint8)
    labels = np.zeros((2, num_classes), np.float32)
    net._symbolic_build(data_batch=(images, labels))
    net._maybe_symbolic_build = lambda iterator=None, data_batch=None: None


def _has_tensorboard() -> bool:
    import importlib.util

    return importlib.util.find_spec("tensorboard") is not None


class Trainer:
    def __init__(self, config: Config, data_dir: str, run_dir: str, runtime: Runtime, verbose: int = 1,
                 log=print):
        if runtime.kind == "multiworker" and not runtime.is_chief:
            # Every worker saves (collectives need them all), each into its own folder.
            run_dir = posixpath.join(run_dir, f"worker-{runtime.worker_index}")
        self.config, self.data_dir, self.run_dir, self.runtime = config, data_dir, run_dir, runtime
        self.verbose, self.log = verbose, log
        for index, stage in enumerate(config.stages):
            if stage.batch_size % runtime.replicas:
                raise UserError(f"{config.source}: stages[{index}].batch_size = {stage.batch_size} does not divide "
                                f"evenly over {runtime.replicas} replicas; use a multiple of {runtime.replicas}")
        self.stages, last_manifest = plan(config, data_dir)
        self.num_classes = config.classes or len(last_manifest["classes"])
        self.mean, self.std = last_manifest["mean"], last_manifest["std"]
        self.final_resolution = config.final_resolution or max(s.resolution for s in config.stages)
        manifests.read(data_dir, self.final_resolution)  # the final evaluation's records, checked before epoch 1

    @property
    def _pad_to(self) -> int:
        """JAX's DataParallel needs every batch divisible by its device count; TensorFlow does not."""
        return self.runtime.replicas if self.runtime.backend == "jax" else 1

    # -- set-up -----------------------------------------------------------------------------------
    def _check_run_dir(self) -> dict | None:
        """The checkpoint's state (None for a new run), after refusing a resume whose config changes
        what the checkpoint depends on. Accepted changes are kept for `_record_config`."""
        import tensorflow as tf

        tf.io.gfile.makedirs(self.run_dir)
        self._changes = {}
        state = checkpoint.read_state(self.run_dir)
        if state is None:
            return None
        current = self.config.to_dict()
        # The checkpoint carries the config it was trained with; config.json is the fallback for
        # checkpoints written before it did.
        saved = state.get("config") or files.read_json(posixpath.join(self.run_dir, CONFIG))
        self._changes = configs.differences(saved, current) if saved is not None else {}
        fixed = configs.fixed_on_resume(self._changes)
        if fixed or state.get("fingerprint") != self.config.fingerprint():
            detail = f" ({fixed[0]}: {self._changes[fixed[0]][0]!r} -> {self._changes[fixed[0]][1]!r})" if fixed else ""
            raise UserError(f"{self.run_dir}: holds a run with another model, stages, schedule, seed, classes or "
                            f"optimizer{detail}; use a new --run-dir (or the original config to resume)")
        return state

    def _record_config(self, state: dict | None) -> None:
        """config.json is the config in force; every accepted change at a resume is printed and
        appended to config_changes.jsonl (written only once the resume is known to work)."""

        if self._changes:
            for key, (old, new) in self._changes.items():
                self.log(f"resume: {key} changed from {old!r} to {new!r}")
            history = posixpath.join(self.run_dir, CHANGES)
            previous = files.read_text(history) or ""
            entry = {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "at_epoch": state["epoch"] if state else 0,
                     "changes": {k: list(v) for k, v in self._changes.items()}}
            files.write_text(history, previous + json.dumps(entry) + "\n")
        files.write_json(posixpath.join(self.run_dir, CONFIG), self.config.to_dict())

    def build_model(self):
        keras.mixed_precision.set_global_policy(self.runtime.mixed_precision)
        with self.runtime.scope():
            net = models.build(self.config.model, self.num_classes, mean=self.mean, std=self.std)
            broken, report = run_rules(self.config, net)
            self.log(report)
            if broken:
                raise UserError("the model breaks the course rules: " + "; ".join(broken))
            self.schedule = StagedCyclicalLearningRate(
                self.config.schedule.base_lr, self.config.schedule.max_lr, self.config.schedule.step_size_epochs,
                [(s.first_step, s.first_epoch, s.steps_per_epoch) for s in self.stages],
                self.config.schedule.mode, self.config.schedule.gamma)
            runtime_settings = self.config.runtime
            steps_per_execution = runtime_settings.steps_per_execution or (32 if self.runtime.kind == "tpu" else 1)
            jit = {"auto": "auto", "true": True, "false": False}[runtime_settings.jit_compile]
            net.compile(optimizer=make_optimizer(self.config, self.schedule),
                        loss=keras.losses.CategoricalCrossentropy(label_smoothing=self.config.label_smoothing),
                        # weighted: evaluation batches padded for JAX's DataParallel carry weight 0
                        weighted_metrics=[keras.metrics.CategoricalAccuracy(name="accuracy"),
                                          keras.metrics.TopKCategoricalAccuracy(5, name="top5")],
                        steps_per_execution=steps_per_execution, jit_compile=jit)
            net.optimizer.build(net.trainable_variables)  # a loss-scale wrapper builds its inner optimizer too
            if self.runtime.kind == "multiworker":
                _build_without_a_distributed_batch(net, self.stages[0].resolution, self.num_classes)
        if self.config.augment.on == "device":
            from training.device_augment import augment_in_train_step

            augment_in_train_step(net, self.config.augment.policy, self.config.seed, self.runtime.backend)
        return net

    def _datasets(self, stage: StagePlan, first_epoch: int, skip_batches: int):
        config = self.config
        cache = {"auto": stage.resolution <= 32, "true": True, "false": False}[config.runtime.cache]
        host_policy = config.augment.policy if config.augment.on == "host" else None
        classes = config.classes or None

        def train(context):
            ds, _ = dataset.build(self.data_dir, "train", stage.resolution, stage.batch_size, policy=host_policy,
                                  seed=config.seed, first_epoch=first_epoch, epochs=stage.last_epoch - first_epoch,
                                  cache=cache, classes=classes, input_context=context,
                                  hard_examples=config.augment.hard_examples or None,
                                  hard_fraction=config.augment.hard_fraction, steps_per_epoch=stage.steps_per_epoch)
            if not skip_batches:
                return ds
            # A step takes one batch per replica from its worker's pipeline.
            per_step = context.num_replicas_in_sync // context.num_input_pipelines if context else 1
            return ds.skip(skip_batches * per_step)

        def val(context):
            return dataset.build(self.data_dir, "val", stage.resolution, stage.batch_size, classes=classes,
                                 cache=cache, input_context=context, pad_to=self._pad_to)[0]

        return self.runtime.distribute(train), self.runtime.distribute(val)

    # -- the run ----------------------------------------------------------------------------------
    def fit(self, stop_after: int | None = None) -> dict | None:
        """Train to the end (or `stop_after` more epochs: a Colab session's worth) and evaluate."""
        import tensorflow as tf

        tf.io.gfile.makedirs(self.run_dir)
        with RunLock(self.run_dir) as lock:
            self._lock_guard = lock_guard(lock)
            return self._fit(stop_after)

    def _fit(self, stop_after: int | None) -> dict | None:
        state = self._check_run_dir()
        net = self.build_model()
        if state is not None:
            state = {**checkpoint.load(self.run_dir, net), "config": self.config.to_dict()}
        self._record_config(state)
        # The log agrees with the checkpoint: rows of epochs it does not hold (a run killed between
        # the two, even before its first checkpoint) are dropped.
        callbacks.trim_log(self.run_dir, state["epoch"] if state is not None else 0)
        if state is not None:
            self.log(f"resuming {self.run_dir}: {state['epoch']} epochs done"
                     + (f" and {state['batch']} batches of the next" if state.get("batch") else "")
                     + f", global step {callbacks.global_step(net)}")
        else:
            state = {"epoch": 0, "batch": 0, "global_step": 0, "fingerprint": self.config.fingerprint(),
                     "config": self.config.to_dict()}
        total = self.config.total_epochs
        until = min(total, state["epoch"] + stop_after) if stop_after else total
        for stage in self.stages:
            if state["epoch"] >= min(stage.last_epoch, until):
                continue
            state = self._run_stage(net, stage, state, until)
        if state["epoch"] < total:
            self.log(f"stopped after epoch {state['epoch']} of {total} as asked; run the same command to continue")
            return None
        self.log(f"training done: {total} epochs; best val top-1 {state.get('best_val_accuracy', float('nan')):.4f} "
                 f"at epoch {state.get('best_epoch')}")
        return self.final_evaluation(net, state)

    def _run_stage(self, net, stage: StagePlan, state: dict, until: int) -> dict:
        start = max(state["epoch"], stage.first_epoch)
        end = min(stage.last_epoch, until)
        skip = state.get("batch", 0) if state["epoch"] == start else 0
        self.log(f"stage {stage.index + 1}/{len(self.stages)}: {stage.resolution}px, batch {stage.batch_size}, "
                 f"epochs {start + 1}-{end} of {stage.first_epoch + 1}-{stage.last_epoch}, "
                 f"{stage.steps_per_epoch} steps each")
        with dataset.naming_corrupt_shards(self.data_dir, stage.resolution):
            train, val = self._datasets(stage, start, skip)
            end_of_epoch = callbacks.EpochEnd(self.run_dir, stage.index, stage.resolution, stage.batch_size,
                                              self.schedule, state, self.config.runtime.checkpoint_minutes,
                                              first_batch=skip)
            extra = ([self._tensorboard()] if _has_tensorboard() else []) + [self._lock_guard]
            if skip:  # finish the epoch a timer checkpoint interrupted, then carry on normally
                net.fit(train, validation_data=val, initial_epoch=start, epochs=start + 1,
                        steps_per_epoch=stage.steps_per_epoch - skip, callbacks=[end_of_epoch, *extra],
                        verbose=self.verbose, shuffle=False)
                start += 1
                if start < end:
                    train, val = self._datasets(stage, start, 0)
            if start < end:
                net.fit(train, validation_data=val, initial_epoch=start, epochs=end,
                        steps_per_epoch=stage.steps_per_epoch, callbacks=[end_of_epoch, *extra],
                        verbose=self.verbose, shuffle=False)
        return end_of_epoch.state

    def _tensorboard(self):
        return keras.callbacks.TensorBoard(posixpath.join(self.run_dir, "tensorboard"), write_graph=False,
                                           update_freq="epoch")

    def final_evaluation(self, net, state: dict) -> dict:
        """Top-1/top-5 on val at the final resolution with the last weights, saved as final.json."""

        resolution = self.final_resolution
        started = time.monotonic()
        with dataset.naming_corrupt_shards(self.data_dir, resolution):
            val = self.runtime.distribute(lambda context: dataset.build(
                self.data_dir, "val", resolution, self.stages[-1].batch_size, classes=self.config.classes or None,
                input_context=context, pad_to=self._pad_to)[0])
            scores = net.evaluate(val, verbose=0, return_dict=True)
        result = {"resolution": resolution, "val_accuracy": float(scores["accuracy"]),
                  "val_top5": float(scores["top5"]), "val_loss": float(scores["loss"]),
                  "epochs": state["epoch"], "best_val_accuracy": state.get("best_val_accuracy"),
                  "best_epoch": state.get("best_epoch"), "seconds": round(time.monotonic() - started, 1),
                  "backend": self.runtime.backend}
        files.write_json(posixpath.join(self.run_dir, "final.json"), result)
        self.log(f"final evaluation at {resolution}px: top-1 {result['val_accuracy']:.4f}, "
                 f"top-5 {result['val_top5']:.4f}")
        return result
