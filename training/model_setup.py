"""The model a run trains: built from the config, checked against the course's rules, compiled
with the optimizer and the staged cyclical schedule, under the runtime's precision and strategy."""

from __future__ import annotations

import keras

from common.errors import UserError
from model import custom, rules
from pipeline.data_folder import Split
from training.config import Config
from training.device_augment import augment_in_train_step, build_from_a_plain_batch
from training.runtime import Runtime
from training.schedules import StagedCyclicalLearningRate

TPU_STEPS_PER_EXECUTION = 32  # steps per call into the TPU: amortises the host round trip


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
    names = list(dict.fromkeys(s.name for s in config.augment.steps))
    violations = [*violations, *rules.run_violations(config.total_epochs, names)]
    broken = [str(v) for v in violations]
    lines = [text, f"epochs: {config.total_epochs} in total (limit 500)",
             f"augmentations: {len(names)} named variants ({', '.join(names)})",
             f"learning rate: cyclical ({config.schedule.mode}, bonus)",
             "data: trains on the train split only; test records are never opened; no pretrained weights"]
    if broken and config.rules == "experiment":
        lines += [f"EXPERIMENT: this run breaks {len(broken)} course rule(s) and is not a submission:",
                  *(f"  - {b}" for b in broken)]
    return broken, "\n".join(lines)


def schedule_for(config: Config, stages) -> StagedCyclicalLearningRate:
    """The cyclical learning rate over the stages' steps (one clock across all of them)."""
    return StagedCyclicalLearningRate(
        config.schedule.base_lr, config.schedule.max_lr, config.schedule.step_size_epochs,
        [(s.first_step, s.first_epoch, s.steps_per_epoch) for s in stages], config.schedule.mode,
        config.schedule.gamma)


def build_model(config: Config, runtime: Runtime, train: Split, num_classes: int, schedule, log=print,
                model_file: str | None = None):
    """The compiled model, its optimizer built, normalising inputs with the train split's mean and std, and
    the course rules it breaks (refused unless `rules = "experiment"`). `model_file`: the run
    directory's copy of a student's model file, used when its own path is gone."""
    keras.mixed_precision.set_global_policy(runtime.mixed_precision)
    with runtime.scope():
        net = custom.build_any(config.model, num_classes, list(train.mean), list(train.std), fallback_file=model_file)
        if custom.kind_of(config.model) == "file":
            custom.check_resolutions(net, config.resolutions, config.model)
        if hasattr(net, "output_kind"):
            log(f"model {custom.describe(config.model)}: its output read as {net.output_kind}"
                + (" (a softmax is added)" if net.output_kind == "logits" else ""))
        broken, report = run_rules(config, net)
        log(report)
        if broken and config.rules == "enforce":
            raise UserError("the model breaks the course rules: " + "; ".join(broken)
                            + ' (rules = "experiment" trains it anyway, marked as an experiment)')
        settings = config.runtime
        steps_per_execution = settings.steps_per_execution or (TPU_STEPS_PER_EXECUTION if runtime.kind == "tpu" else 1)
        jit = {"auto": "auto", "true": True, "false": False}[settings.jit_compile]
        net.compile(optimizer=make_optimizer(config, schedule),
                    loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
                    # weighted: evaluation batches padded for JAX's DataParallel carry weight 0
                    weighted_metrics=[keras.metrics.CategoricalAccuracy(name="accuracy"),
                                      keras.metrics.TopKCategoricalAccuracy(5, name="top5")],
                    steps_per_execution=steps_per_execution, jit_compile=jit)
        net.optimizer.build(net.trainable_variables)  # a loss-scale wrapper builds its inner optimizer too
        if config.augment.on == "device":  # builds the model from a plain batch, as multiworker needs too
            augment_in_train_step(net, config.augment.steps, config.seed, runtime.backend,
                                  config.stages[0].resolution, num_classes)
        elif runtime.kind == "multiworker":
            build_from_a_plain_batch(net, config.stages[0].resolution, num_classes)
    return net, broken

