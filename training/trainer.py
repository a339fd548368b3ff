"""Progressive-resizing training that resumes by itself: the engine behind train.py.

Stages run small images first (32 -> 48 -> 64 px). Epochs are numbered globally across stages,
one optimizer step counter drives the cyclical schedule across all of them, and the data of
every epoch is a pure function of (seed, epoch): a run restarted from its run directory picks
up at the checkpointed epoch (or mid-epoch, after a timer checkpoint) and carries on exactly
as if it had never stopped.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import time

from common import files
from model import custom
from pipeline import dataset, wait_meter
from pipeline.data_folder import naming_corrupt_shards
from pipeline.input_spec import Evaluation, InputSpec, Training
from training import callbacks, evaluation, model_setup, resume
from training.config import Config
from training.preparation import Prepared, StagePlan
from training.run_dir import TrainingState
from training.run_lock import lock_guard
from training.runtime import Runtime


def _batches_a_step(context) -> int:
    """Batches a step takes from one worker's pipeline: one per replica it feeds."""
    return context.num_replicas_in_sync // context.num_input_pipelines if context else 1


class Trainer:
    """Builds, fits and evaluates a run `training.preparation.prepare` prepared (and releases)."""

    def __init__(self, config: Config, prepared: Prepared, runtime: Runtime, verbose: int = 1, log=print):
        self.config, self.runtime, self.verbose, self.log = config, runtime, verbose, log
        self.prepared, self.run = prepared, prepared.run
        self.stages, self.num_classes = prepared.stages, prepared.num_classes
        # JAX processes other than 0 read the run directory (the same checkpoint) and write nothing
        self.writes = runtime.writes_run_dir
        # seconds the training input kept the model waiting; TensorFlow's op determinism forbids
        # reading the clock inside tf.data, so a deterministic run logs no input_wait
        self.input_wait = None if config.runtime.deterministic else wait_meter.WaitMeter()
        # one for the whole run (not one a stage): its advice is given once a run
        self._input_wait_logs = callbacks.InputWait(self.input_wait, self.log) if self.input_wait else None

    @property
    def _pad_to(self) -> int:
        """JAX's DataParallel needs every batch divisible by its device count; TensorFlow does not."""
        return self.runtime.replicas if self.runtime.backend == "jax" else 1

    def _evaluation_spec(self, batch_size: int) -> InputSpec:
        """Every example once, in file order. JAX over several processes needs batches of one shape
        and as many in every process: each pads its share to whole batches with weight-0 rows."""
        return InputSpec(batch_size, cache=False,
                         evaluation=Evaluation(pad_to=self._pad_to, same_batches=self.runtime.processes > 1))

    def _specs(self, stage: StagePlan, first_epoch: int) -> tuple[InputSpec, InputSpec]:
        config = self.config
        train = InputSpec(stage.batch_size, cache=stage.cache, training=Training(
            policy=config.augment.steps if config.augment.on == "host" else (), seed=config.seed,
            first_epoch=first_epoch, epochs=stage.last_epoch - first_epoch, steps_per_epoch=stage.steps_per_epoch,
            hard_examples=config.augment.hard_examples or None, hard_fraction=config.augment.hard_fraction,
            with_boxes=config.augment.on == "device"))
        val = dataclasses.replace(self._evaluation_spec(stage.batch_size), cache=stage.cache)
        return train, val

    def _datasets(self, stage: StagePlan, first_epoch: int, skip_batches: int):
        train_spec, val_spec = self._specs(stage, first_epoch)

        def train(context):
            ds, _ = dataset.build(stage.train, train_spec, context)
            ds = ds.skip(skip_batches * _batches_a_step(context)) if skip_batches else ds
            return wait_meter.metered(ds, self.input_wait) if self.input_wait else ds

        return self.runtime.distribute(train), self._val(stage.val, val_spec)

    def _val(self, split, spec: InputSpec):
        """A val split for `fit` or `evaluate`: whole, or with runtime.val_steps the batches of its
        first that many steps: the same batches in every evaluation of every epoch and session
        (Keras's `validation_steps` may carry on where the last evaluation stopped)."""
        steps = self.config.runtime.val_steps

        def make(context):
            ds = dataset.build(split, spec, context)[0]
            return ds.take(steps * _batches_a_step(context)) if steps else ds

        return self.runtime.distribute(make)

    # -- the run ----------------------------------------------------------------------------------
    def fit(self, stop_after: int | None = None) -> dict | None:
        """Train to the end (or `stop_after` more epochs: a Colab session's worth) and evaluate."""
        prepared = self.prepared
        self._lock_guard = lock_guard(prepared.lock) if prepared.lock is not None else None
        saved, changes = prepared.saved, prepared.changes
        self.schedule = model_setup.schedule_for(self.config, self.stages)
        net, broken = model_setup.build_model(self.config, self.runtime, self.stages[-1].train, self.num_classes,
                                              self.schedule, self.log, self.run.model_file)
        state = resume.continue_from(self.run, net, self.config, saved, changes, self.writes, self.log)
        state.parameters, state.rules_broken = net.count_params(), broken
        self._note_other_records(state)
        total = self.config.total_epochs
        finished = files.read_json(self.run.final) if state.epoch >= total else None
        if isinstance(finished, dict) and finished.get("epochs") == total:
            # Run again (a notebook run twice, a resume cell after the end): nothing to train or evaluate.
            self.log(f"finished: {self.run.path} trained its {total} epochs; final.json holds its evaluation "
                     f"(top-1 {finished.get('val_accuracy')}); delete final.json to evaluate again")
            return finished
        until = min(total, state.epoch + stop_after) if stop_after else total
        for stage in self.stages:
            if state.epoch < min(stage.last_epoch, until):
                self._run_stage(net, stage, state, until)
        self._check_replicas_agree(net)
        if state.epoch < total:
            self.log(f"stopped after epoch {state.epoch} of {total} as asked; run the same command to continue")
            return None
        best = state.best_val_accuracy if state.best_val_accuracy is not None else float("nan")
        self.log(f"training done: {total} epochs; best val top-1 {best:.4f} at epoch {state.best_epoch}")
        return self.final_evaluation(net, state)

    def _note_other_records(self, state: TrainingState) -> None:
        """Records converted again (other shards, seed or source) since the run began: training
        goes on, but its epoch order from here on is not the one an uninterrupted run would have
        had, which a resume must say rather than hide. The state then names the records in use."""
        current = self.prepared.records
        changed = sorted((r for r in current if r in state.records and state.records[r] != current[r]), key=int)
        if changed:
            self.log(f"resume: the records at {', '.join(r + 'px' for r in changed)} are another conversion than "
                     f"the run began with (other shards, seed or source): training goes on, in another epoch order "
                     f"than an uninterrupted run")
        state.records = current

    def _check_replicas_agree(self, net) -> None:
        """Every process ends with the same weights (data parallelism keeps one copy per device in
        step); a digest of them is compared across processes and shown. One process: nothing to
        compare."""
        if self.runtime.processes == 1:
            return
        digest = hashlib.sha256()
        for weights in net.get_weights():
            digest.update(weights.tobytes())
        hexdigest = digest.hexdigest()
        self.runtime.agree({"weights": int(hexdigest[:7], 16)}, {"weights": "the trained weights"})
        print(f"process {self.runtime.worker_index}: weights sha256 {hexdigest[:16]}, the same in all "
              f"{self.runtime.processes} processes", flush=True)

    def _callbacks(self, stage: StagePlan, state: TrainingState, first_batch: int) -> list:
        """In this order: the CSV row, then the checkpoint, then best.keras (see training/callbacks.py).
        A JAX process other than 0 only follows the state (no files)."""
        run = self.run
        checkpoints = callbacks.Checkpoints(run, state, self.config.runtime.checkpoint_minutes, first_batch,
                                            save=self.writes)
        if not self.writes:
            return [checkpoints]
        listed = [self._input_wait_logs] if self._input_wait_logs else []
        listed += [callbacks.EpochLog(run, stage.index, stage.resolution, stage.batch_size, self.schedule),
                   checkpoints, callbacks.BestModel(run, state), callbacks.Curves(run)]
        if importlib.util.find_spec("tensorboard") is not None:
            listed.append(callbacks.TensorBoard(run.tensorboard, self.schedule))
        return listed + [self._lock_guard]

    def _run_stage(self, net, stage: StagePlan, state: TrainingState, until: int) -> None:
        """Train the stage's epochs that are left before `until`; `state` moves on with them."""
        start = max(state.epoch, stage.first_epoch)
        end = min(stage.last_epoch, until)
        skip = state.batch if state.epoch == start else 0
        self.log(f"stage {stage.index + 1}/{len(self.stages)}: {stage.resolution}px, batch {stage.batch_size}, "
                 f"epochs {start + 1}-{end} of {stage.first_epoch + 1}-{stage.last_epoch}, "
                 f"{stage.steps_per_epoch} steps each")
        if self.runtime.backend == "tensorflow":
            # A step function of its own for each stage: tf.function traces a second image size
            # with height and width relaxed to None (Keras's reduce_retracing), so an uninterrupted
            # run trained every later stage on a shape-generic graph while a run resumed in that
            # stage traced the exact shape: other kernels, and weights apart in the last bits.
            net.make_train_function(force=True)
            net.make_test_function(force=True)
        with naming_corrupt_shards(stage.train, stage.val):
            train, val = self._datasets(stage, start, skip)
            listed = self._callbacks(stage, state, skip)
            if skip:  # finish the epoch a timer checkpoint interrupted, then carry on normally
                net.fit(train, validation_data=val, initial_epoch=start, epochs=start + 1,
                        steps_per_epoch=stage.steps_per_epoch - skip, callbacks=listed, verbose=self.verbose,
                        shuffle=False)
                start += 1
                if start < end:
                    train, val = self._datasets(stage, start, 0)
            if start < end:
                net.fit(train, validation_data=val, initial_epoch=start, epochs=end,
                        steps_per_epoch=stage.steps_per_epoch, callbacks=listed, verbose=self.verbose,
                        shuffle=False)

    def final_evaluation(self, net, state: TrainingState) -> dict:
        """Top-1/top-5 on val (its first batches with runtime.val_steps) at the final resolution with
        the last weights, saved as final.json."""
        final = self.prepared.final
        spec = self._evaluation_spec(self.stages[-1].batch_size)
        started = time.monotonic()
        with naming_corrupt_shards(final):
            val = self._val(final, spec)
            # plain and with each image averaged with its mirror (flip test-time augmentation): three
            # forward passes over val, every real example counted once (the padding's weight is 0)
            scores = evaluation.scores(net, val, scope=self.runtime.scope, label_smoothing=self.config.label_smoothing)
        result = {"resolution": final.resolution, "val_accuracy": scores["accuracy"],
                  "val_top5": scores["top5"], "val_loss": scores["loss"],
                  "val_accuracy_tta": scores["accuracy_tta"], "val_top5_tta": scores["top5_tta"],
                  "epochs": state.epoch, "best_val_accuracy": state.best_val_accuracy,
                  "best_epoch": state.best_epoch, "seconds": round(time.monotonic() - started, 1),
                  "backend": self.runtime.backend, "model": custom.describe(self.config.model),
                  "parameters": state.parameters, "rules_broken": state.rules_broken}
        if self.writes:
            files.write_json(self.run.final, result)
        self.log(f"final evaluation at {final.resolution}px: top-1 {result['val_accuracy']:.4f}, "
                 f"top-5 {result['val_top5']:.4f}; with flips top-1 {result['val_accuracy_tta']:.4f}, "
                 f"top-5 {result['val_top5_tta']:.4f}" + (" (EXPERIMENT)" if state.rules_broken else ""))
        return result

