"""Every replica and every input pipeline draws its own augmentation, reproducibly.

On 8 TPU cores or several GPUs the train step runs once per replica: seeded only by (seed, step),
all replicas would flip, crop and mix their batches alike. Likewise two workers' input pipelines.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import tensorflow as tf

from tests.conftest import build_split

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
POLICY = "flip, translate, scale, rotate, brightness, contrast, saturation, hue, cutout, mixup"

REPLICAS = """
import json, sys
import numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from pipeline.augment import Policy
from pipeline.policy import parse
from training.device_augment import replica_seed
strategy = tf.distribute.MirroredStrategy(["CPU:0", "CPU:1"])
policy = Policy(parse(sys.argv[1]))
rng = np.random.default_rng(0)
images = tf.constant(rng.uniform(20, 230, (8, 32, 32, 3)), tf.float32)  # the same batch on both replicas
labels = tf.one_hot(np.arange(8) % 4, 4)

@tf.function
def augment(step):
    return strategy.run(lambda: policy(images, labels, replica_seed(7, step))[0])

runs = []
for _ in range(2):
    out = augment(tf.constant(3, tf.int64))
    runs.append([t.numpy() for t in strategy.experimental_local_results(out)])
print(json.dumps({"replicas_differ": float(np.abs(runs[0][0] - runs[0][1]).mean()),
                  "rerun_differs": max(float(np.abs(a - b).max()) for a, b in zip(runs[0], runs[1]))}))
"""


def test_two_replicas_draw_different_augmentations_and_the_same_again():
    env = {**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run([sys.executable, "-c", REPLICAS, POLICY], env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    assert measured["replicas_differ"] > 5.0, measured  # grey levels: whole different transforms
    assert measured["rerun_differs"] == 0.0, measured  # reproducible: same seed, step and replica


def test_two_input_pipelines_augment_their_batches_differently(tmp_path):
    from tests.conftest import write_split

    data = write_split(str(tmp_path), examples=512, shards=2, classes=4, same_image=True)
    first_batches = []
    for pipeline_id in range(2):
        context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=pipeline_id,
                                             num_replicas_in_sync=2)
        ds, _ = build_split(data, "train", 8, 32, policy=POLICY, epochs=1, input_context=context, seed=3)
        first_batches.append(next(iter(ds))[0].numpy().astype(np.float64))
    # every record holds the same image: only the augmentation can make the batches differ
    assert np.abs(first_batches[0] - first_batches[1]).mean() > 5.0
