"""A network of one's own: a ResNet as a table, a student's Python file, and the wrapper that
feeds either exactly what presets get."""

from __future__ import annotations

import numpy as np
import pytest

from common.errors import UserError
from model import custom, resnet

MEAN, STD = (120.0, 110.0, 100.0), (60.0, 50.0, 40.0)

LOGITS = """
import keras


def build(num_classes):
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(num_classes, 3, padding="same", name="head")(inputs)
    return keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x), name="mine")
"""

SOFTMAX = LOGITS.replace("keras.layers.GlobalAveragePooling2D()(x)",
                         "keras.layers.Activation('softmax')(keras.layers.GlobalAveragePooling2D()(x))")


def write(tmp_path, text, name="mine.py"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_a_table_with_a_presets_fields_builds_that_preset():
    table = {"blocks": [2, 2, 2, 2], "widths": [64, 128, 256, 512]}
    assert custom.spec_from_table(table) == resnet.PRESETS["resnet18"]
    table = {"blocks": [3, 4, 6, 3], "widths": [64, 128, 256, 512], "separable": [False, False, True, True]}
    assert custom.spec_from_table(table) == resnet.PRESETS["resnet34_mixed"]
    net = custom.build_any({"blocks": [1, 1, 1, 1], "widths": [16, 32, 64, 128], "stem_width": 16}, 10, MEAN, STD)
    assert net.count_params() == resnet.build("resnet_tiny", 10).count_params()


@pytest.mark.parametrize("table,message", [
    ({"blocks": [2, 2], "widths": [64, 128], "depth": 3}, "unknown key 'depth'"),
    ({"blocks": [2, 2], "widths": [64]}, "same length"),
    ({"blocks": [2, 2], "widths": [64, 128], "separable": [True]}, "one true/false per stage"),
    ({"blocks": [2, 2], "widths": [64, 128], "shortcut": "1x1"}, "expected conv3x3 or pad"),
])
def test_an_impossible_table_is_named(table, message):
    with pytest.raises(UserError, match=message):
        custom.spec_from_table(table)


@pytest.mark.parametrize("source,kind", [(LOGITS, "logits"), (SOFTMAX, "softmax")])
def test_a_student_file_is_fed_what_presets_get_and_ends_in_probabilities(tmp_path, source, kind):
    net = custom.build_any(f"{write(tmp_path, source)}:build", 4, MEAN, STD)
    assert net.output_kind == kind
    student = net.layers[2]
    images = np.random.default_rng(0).integers(0, 256, size=(3, 16, 16, 3)).astype("uint8")
    # what the student's own network sees: the images normalised with the given statistics, by hand
    normalised = (images.astype("float64") - np.array(MEAN)) / np.array(STD)
    expected = np.asarray(student(normalised.astype("float32")), dtype="float64")
    if kind == "logits":
        expected = np.exp(expected - expected.max(1, keepdims=True))
        expected /= expected.sum(1, keepdims=True)
    got = np.asarray(net(images))
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got.sum(1), 1.0, atol=1e-5)


def test_a_student_file_is_refused_in_one_line_when_it_cannot_work(tmp_path):
    with pytest.raises(UserError, match=r"nowhere.py: model file not found"):
        custom.build_any(f"{tmp_path}/nowhere.py:build", 4, MEAN, STD)
    with pytest.raises(UserError, match=r"defines no function 'make'"):
        custom.build_any(f"{write(tmp_path, LOGITS)}:make", 4, MEAN, STD)
    broken = write(tmp_path, "import keras\ndef build(:\n", "broken.py")
    with pytest.raises(UserError, match=r"broken.py: cannot import it \(SyntaxError"):
        custom.build_any(f"{broken}:build", 4, MEAN, STD)
    with pytest.raises(UserError, match=r"returns shape \(7,\) per image, expected \(4,\)"):
        custom.build_any(f"{write(tmp_path, LOGITS.replace('num_classes, 3', '7, 3'))}:build", 4, MEAN, STD)


def test_a_student_build_that_raises_or_returns_no_model_is_one_line(tmp_path):
    """Trial failure 9: a traceback and exit code 1."""
    raises = write(tmp_path, "def build(num_classes):\n    raise RuntimeError('forgot the stem')\n", "raises.py")
    with pytest.raises(UserError, match=r"raises.py:build: build\(4\) raised RuntimeError: forgot the stem$"):
        custom.build_any(f"{raises}:build", 4, MEAN, STD)
    nothing = write(tmp_path, "def build(num_classes):\n    pass\n", "nothing.py")
    with pytest.raises(UserError, match=r"nothing.py:build: build\(4\) returned NoneType, expected a keras.Model"):
        custom.build_any(f"{nothing}:build", 4, MEAN, STD)


FIXED_INPUT = LOGITS.replace("keras.Input((None, None, 3))", "keras.Input((32, 32, 3))")


def test_a_network_built_for_one_size_is_refused_naming_the_first_size_it_cannot_take(tmp_path):
    """Trial failure 3: built on keras.Input((32, 32, 3)), it passed the checks made at 32 px,
    trained, then crashed in the final evaluation at 64 px on every rerun."""
    model = f"{write(tmp_path, FIXED_INPUT)}:build"
    net = custom.build_any(model, 4, MEAN, STD)
    custom.check_resolutions(net, [32, 32], model)  # the size it was built for
    with pytest.raises(UserError) as caught:
        custom.check_resolutions(net, [32, 48, 64], model)
    assert str(caught.value).startswith(f"model {model}: cannot take 48x48 images (ValueError: Input 0 ")
    assert "expected shape=(None, 32, 32, 3), found shape=(1, 48, 48, 3)" in str(caught.value)
    assert str(caught.value).endswith("build it on keras.Input((None, None, 3)) so that every stage's resolution fits")
    assert "\n" not in str(caught.value) and "\x1b" not in str(caught.value)
    custom.check_resolutions(custom.build_any(f"{write(tmp_path, LOGITS, 'any.py')}:build", 4, MEAN, STD),
                             [32, 48, 64], model)


def test_a_resume_elsewhere_finds_the_run_directorys_copy(tmp_path):
    copy = write(tmp_path, LOGITS, "model.py")
    net = custom.build_any("students/gone.py:build", 4, MEAN, STD, fallback_file=copy)
    assert net.name == "mine"


def test_the_config_takes_all_three_kinds_and_the_rules_mode(tmp_path):
    from training import config as configs

    demo = "configs/demo.toml"
    assert configs.read(demo, ["model=examples/student_net.py:build"]).model == "examples/student_net.py:build"
    table = configs.read("configs/own_resnet.toml")
    assert table.model["widths"] == [48, 96, 192, 384] and table.rules == "enforce"
    with pytest.raises(UserError, match=r"model='resnet99': unknown preset"):
        configs.read(demo, ["model=resnet99"])
    with pytest.raises(UserError, match=r"rules='lenient': expected enforce or experiment"):
        configs.read(demo, ["rules=lenient"])
    table_file = write(tmp_path, "[model]\nblocks = [1]\nwidths = [8]\ndepth = 3\n"
                                 "[[stages]]\nresolution = 32\nepochs = 1\nbatch_size = 8\n", "table.toml")
    with pytest.raises(UserError, match=r"table.toml: model: unknown key 'depth'"):
        configs.read(table_file)
    # the run rules stop an enforced run at the config, and an experiment gets past them
    over = ["stages.0.epochs=501", "augment.policy=flip, cutout"]
    with pytest.raises(UserError, match="at most 500 epochs"):
        configs.read(demo, over)
    assert configs.read(demo, over + ["rules=experiment"]).total_epochs > 500


def test_the_example_student_network_obeys_the_rules():
    from model import rules

    net = custom.build_any("examples/student_net.py:build", 200, MEAN, STD)
    assert rules.check(net) == [] and rules.uses_separable(net)


def test_train_refuses_a_network_built_for_one_size_before_the_first_epoch(tmp_path, capsys):
    import os

    import train
    from pipeline import synthetic
    from tests.conftest import ROOT

    records = synthetic.make_records(str(tmp_path / "data"), [32, 48], shards_per_split=1, num_classes=4,
                                     train_per_class=8, val_per_class=2, test_images=0, seed=1)
    model = f"{write(tmp_path, FIXED_INPUT)}:build"
    code = train.main(["--data", records, "--run-dir", str(tmp_path / "run"), "--backend", "tensorflow", "--quiet",
                       "--config", os.path.join(ROOT, "configs", "demo.toml"), f"--set=model={model}",
                       "--set=stages.0.batch_size=8", "--set=stages.1.batch_size=8"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith(f"error: model {model}: cannot take 48x48 images")
    assert not (tmp_path / "run" / "log.csv").exists()
