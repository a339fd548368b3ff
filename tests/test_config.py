"""Config files and --set overrides: values, and one-line errors naming the file and key."""

from __future__ import annotations

import pytest

from common.errors import UserError
from training import config as configs


def test_shipped_configs_load_and_obey_the_run_rules():
    for name in ("configs/tiny_imagenet.toml", "configs/ten_classes.toml", "configs/demo.toml"):
        config = configs.read(name)
        assert config.total_epochs <= configs.MAX_EPOCHS
    full = configs.read("configs/tiny_imagenet.toml")
    assert [s.resolution for s in full.stages] == [32, 48, 64]
    assert full.schedule.mode.startswith("triangular")
    ten = configs.read("configs/ten_classes.toml")
    assert ten.classes == 10 and ten.stages[0].resolution == 32 and ten.stages[0].batch_size == 128


def test_overrides_reach_nested_keys_and_list_items():
    config = configs.read("configs/demo.toml", ["optimizer.weight_decay=1e-4", "stages.1.epochs=7",
                                                "model=resnet18", "schedule.mode=triangular2",
                                                "runtime.cache=true"])
    assert config.optimizer.weight_decay == 1e-4 and config.stages[1].epochs == 7
    assert config.model == "resnet18" and config.schedule.mode == "triangular2" and config.runtime.cache == "true"


def write(tmp_path, text):
    path = tmp_path / "c.toml"
    path.write_text(text)
    return str(path)


STAGE = "[[stages]]\nresolution = 32\nepochs = 5\nbatch_size = 16\n"


@pytest.mark.parametrize("text,message", [
    ("optimiser = 1\n" + STAGE, r"c.toml: unknown key 'optimiser'"),
    ("[optimizer]\nmomentun = 0.9\n" + STAGE, r"c.toml: optimizer: unknown key 'momentun'"),
    ("model = 3\n" + STAGE, r"model=3: expected a preset name, a table or \"path/to/file.py:function\""),
    ("", r"c.toml: no \[\[stages\]\]"),
    ("[[stages]]\nresolution = 32\nepochs = 300\nbatch_size = 16\n[[stages]]\nresolution = 64\nepochs = 201\n"
     "batch_size = 16\n", r"501 epochs in total breaks the course rule of at most 500 epochs"),
    ("[schedule]\nbase_lr = 0.5\nmax_lr = 0.1\n" + STAGE, r"base_lr <= schedule.max_lr"),
    ('[augment]\npolicy = "flip, rotate, hue"\n' + STAGE,
     r"3 distinct augmentations; the course rule asks for at least 10"),
    ('[augment]\npolicy = "flip, swirl"\n' + STAGE, r"augment.policy: unknown augmentation 'swirl'"),
    ("model = [\n", r"c.toml: not valid TOML"),
])
def test_bad_configs_are_refused_with_the_file_and_key(tmp_path, text, message):
    with pytest.raises(UserError, match=message):
        configs.read(write(tmp_path, text))


def test_missing_file_and_bad_override():
    with pytest.raises(UserError, match="nope.toml: config file not found"):
        configs.read("nope.toml")
    with pytest.raises(UserError, match="expected key=value"):
        configs.read("configs/demo.toml", ["epochs"])
    with pytest.raises(UserError, match="no item 5"):
        configs.read("configs/demo.toml", ["stages.5.epochs=3"])


def test_the_config_holds_the_parsed_policy_and_config_json_keeps_it_as_written(tmp_path):
    import json

    from pipeline import policy

    config = configs.read("configs/demo.toml")
    assert config.augment.steps and config.augment.steps == policy.parse(config.augment.policy)
    data = config.to_dict()
    assert set(data["augment"]) == {"policy", "on", "hard_examples", "hard_fraction"}  # config.json as before
    assert data["augment"]["policy"] == config.augment.policy and json.loads(json.dumps(data)) == data
    other = configs.read("configs/demo.toml", ['augment.policy="default"'])
    assert configs.differences(data, other.to_dict()) == {"augment.policy": (config.augment.policy, "default")}
    with pytest.raises(UserError, match=r"augment: unknown key 'steps' \(known: policy, on, hard_examples, "
                                        r"hard_fraction\)"):
        configs.read(write(tmp_path, '[augment]\nsteps = "flip"\n' + STAGE))


def test_a_run_begun_before_a_setting_existed_resumes_and_a_real_change_is_refused(tmp_path):
    """The checkpoint of a run started before runtime.steps_per_epoch existed holds a config without
    it: that is the default (whole epochs), not a change; a run trained with 2 steps an epoch may
    not resume with whole epochs."""
    import dataclasses
    import json

    import numpy as np

    from training import resume
    from training.run_dir import RunDir, TrainingState

    config = configs.read("configs/demo.toml")
    run = RunDir(str(tmp_path / "run"))

    def checkpoint_with(saved_config):
        state = TrainingState(config.fingerprint(), saved_config)
        text = json.dumps(dataclasses.asdict(state)).encode()
        np.savez(run.checkpoint, state=np.frombuffer(text, np.uint8))

    run.make()
    older = config.to_dict()
    del older["runtime"]["steps_per_epoch"]
    checkpoint_with(older)
    state, changes = resume.check(run, config)
    assert state is not None and changes == {}
    quick = config.to_dict()
    quick["runtime"]["steps_per_epoch"] = 2
    checkpoint_with(quick)
    with pytest.raises(UserError, match=r"runtime.steps_per_epoch: 2 -> 0"):
        resume.check(run, config)
    del older["runtime"]["val_steps"]  # begun before runtime.val_steps: the whole val split, as now
    checkpoint_with(older)
    assert resume.check(run, config)[1] == {}
    quick["runtime"]["steps_per_epoch"] = 0
    quick["runtime"]["val_steps"] = 2  # best.keras was chosen on 2 val batches
    checkpoint_with(quick)
    with pytest.raises(UserError, match=r"runtime.val_steps: 2 -> 0"):
        resume.check(run, config)
