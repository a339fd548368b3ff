"""Augmentations: identities, visible effects, geometry, soft labels, XLA compilation."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from common.errors import UserError
from pipeline import augment
from pipeline import policy as policies
from pipeline.ops import colour, geometric

SEED = tf.constant([3, 7], tf.int64)


def smooth_batch(size=8, res=32, seed=0):
    """Colourful, smooth images with values well inside 0..255, and small boxes."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:res, 0:res] / res
    images = []
    for _ in range(size):
        a, b, c = rng.uniform(0.5, 3, 3)
        channels = [np.sin(a * x * 6 + b), np.cos(b * y * 5 + c), np.sin((x + y) * c * 4)]
        images.append(np.stack(channels, -1) * 70 + rng.uniform(100, 150, 3))
    images = tf.constant(np.array(images), tf.float32)
    labels = tf.one_hot(np.arange(size) % 4, 4)
    bbox = tf.constant([[0.3, 0.25, 0.6, 0.55]] * size, tf.float32)
    return images, labels, bbox


@pytest.mark.parametrize("name", list(augment.REGISTRY))
def test_probability_zero_is_identity_and_one_changes_images(name):
    images, labels, bbox = smooth_batch()
    same, same_labels = augment.Policy(policies.parse(f"{name}:p=0"))(images, labels, SEED, bbox)
    np.testing.assert_allclose(same.numpy(), images.numpy(), atol=1e-3)
    np.testing.assert_array_equal(same_labels.numpy(), labels.numpy())
    # solarize at its default magnitude may draw a threshold above every pixel: make it bite
    strength = ":m=0.9" if name == "solarize" else ""
    changed, new_labels = augment.Policy(policies.parse(f"{name}:p=1{strength}"))(images, labels, SEED, bbox)
    assert changed.shape == images.shape and changed.dtype == tf.float32
    per_image = np.abs(changed.numpy() - images.numpy()).reshape(len(images), -1).max(1)
    assert (per_image > 1.0).mean() >= 0.75, f"{name} changed only {per_image}"
    assert 0.0 <= changed.numpy().min() and changed.numpy().max() <= 255.0
    np.testing.assert_allclose(new_labels.numpy().sum(1), 1.0, atol=1e-5)


def test_at_least_fourteen_documented_augmentations():
    assert len(augment.REGISTRY) >= 14
    for name in ("flip", "translate", "scale", "rotate", "shear", "brightness", "contrast", "saturation",
                 "hue", "grayscale", "cutout", "noise", "mixup", "cutmix"):
        assert name in augment.REGISTRY
        assert len(augment.REGISTRY[name].doc) > 60, f"{name} needs a comment on what and why"
    default = augment.Policy(policies.parse("default"))
    assert len(set(default.names)) >= 10


def test_flip_twice_is_identity_and_flip_mirrors():
    images, labels, _ = smooth_batch()
    flip = augment.Policy(policies.parse("flip:p=1"))
    once, _ = flip(images, labels, SEED)
    np.testing.assert_allclose(once.numpy(), images.numpy()[:, :, ::-1], atol=1e-4)
    twice, _ = flip(once, labels, SEED)
    np.testing.assert_allclose(twice.numpy(), images.numpy(), atol=1e-4)


def marked(res=32, y=10, x=20):
    image = np.zeros((1, res, res, 3), np.float32)
    image[0, y, x] = 255.0
    return tf.constant(image)


def brightest(image):
    index = np.argmax(image[0, ..., 0])
    return divmod(int(index), image.shape[2])


def test_warp_moves_a_marked_pixel_where_the_matrix_says():
    image = marked(y=10, x=20)
    shift = tf.constant([[[1.0, 0.0, 3.0], [0.0, 1.0, -2.0], [0.0, 0.0, 1.0]]])
    out = geometric.warp(image, shift).numpy()  # out(u) = in(u + t): the mark moves by -t
    assert brightest(out) == (12, 17) and out[0, 12, 17, 0] == pytest.approx(255.0)
    quarter_turn = tf.constant([[[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]])
    out = geometric.warp(image, quarter_turn).numpy()
    # input offset from the centre (16,16)-(0.5): (x=+4, y=-6); output p satisfies R p = that.
    assert brightest(out) == (11, 10) and out[0, 11, 10, 0] == pytest.approx(255.0)


@pytest.mark.parametrize("name", ["rotate", "scale", "shear"])  # a flip mirrors: tested on its own above
def test_geometric_ops_keep_the_centre(name):
    image = np.zeros((4, 32, 32, 3), np.float32)
    image[:, 14:18, 14:18] = 255.0  # a block around the centre
    out, _ = augment.Policy(policies.parse(f"{name}:p=1"))(tf.constant(image), tf.one_hot([0] * 4, 2), SEED)
    assert (out.numpy()[:, 15:17, 15:17] > 200).all()


def test_translate_moves_by_whole_pixels_within_the_magnitude():
    image = marked(y=16, x=16)
    batch = tf.tile(image, [16, 1, 1, 1])
    out, _ = augment.Policy(policies.parse("translate:p=1:m=0.125"))(batch, tf.one_hot([0] * 16, 2), SEED)
    for one in out.numpy():
        y, x = brightest(one[None])
        assert one[y, x, 0] == pytest.approx(255.0)  # integer shift: no interpolation blur
        assert abs(y - 16) <= 4 and abs(x - 16) <= 4


def test_gather_warp_matches_tensorflows_projective_transform():
    images, _, _ = smooth_batch(size=2, res=32)
    angle = 0.3
    cos, sin = np.cos(angle), np.sin(angle)
    centred = np.array([[cos, -sin, 0], [sin, cos, 0], [0, 0, 1]], np.float32)
    # TensorFlow maps pixel indices, whose centre is (15.5, 15.5); ours maps offsets from the centre
    to_corner = np.array([[1, 0, 15.5], [0, 1, 15.5], [0, 0, 1]], np.float32)
    corner = to_corner @ centred @ np.linalg.inv(to_corner)
    ours = geometric.warp(images, tf.constant([centred] * 2)).numpy()
    theirs = tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=tf.constant([corner.flatten()[:8]] * 2), output_shape=[32, 32],
        fill_value=0.0, interpolation="BILINEAR", fill_mode="REFLECT").numpy()
    inner = np.s_[:, 8:24, 8:24]  # away from the borders, where reflect conventions differ
    np.testing.assert_allclose(ours[inner], theirs[inner], atol=0.01)


def test_colour_composition_matches_direct_formulas():
    images, labels, _ = smooth_batch(size=4)
    out, _ = augment.Policy(policies.parse("grayscale:p=1"))(images, labels, SEED)
    grey = (images.numpy() * np.array(colour.GRAY)).sum(-1)
    for c in range(3):
        np.testing.assert_allclose(out.numpy()[..., c], grey, atol=1e-3)
    inverted, _ = augment.Policy(policies.parse("invert:p=1"))(images, labels, SEED)
    np.testing.assert_allclose(inverted.numpy(), 255.0 - images.numpy(), atol=1e-3)
    # contrast keeps each image's mean grey level (a small factor, so nothing is clipped)
    contrasted, _ = augment.Policy(policies.parse("contrast:p=1:m=0.2"))(images, labels, SEED)
    grey_after = (contrasted.numpy() * np.array(colour.GRAY)).sum(-1).mean((1, 2))
    np.testing.assert_allclose(grey_after, grey.mean((1, 2)), atol=0.05)


def test_mixup_and_cutmix_soft_labels_sum_to_one_and_track_the_pixels():
    images = tf.constant(np.repeat(np.arange(8, dtype=np.float32)[:, None, None, None] * 30, 32, 1)
                         .repeat(32, 2).repeat(3, 3))
    labels = tf.one_hot(np.arange(8), 8)
    for name in ("mixup", "cutmix"):
        out, soft = augment.Policy(policies.parse(f"{name}:p=1"))(images, labels, SEED)
        soft = soft.numpy()
        np.testing.assert_allclose(soft.sum(1), 1.0, atol=1e-5)
        assert (soft.max(1) < 0.999).sum() >= 4  # most images really were mixed
        # each image's mean value equals its label-weighted mix of the source values
        np.testing.assert_allclose(out.numpy().mean((1, 2, 3)), soft @ (np.arange(8) * 30.0), atol=0.05)


def test_policy_spec_parsing_and_errors():
    steps = policies.parse("flip, rotate:p=0.5:m=20")
    assert steps == (policies.Augmentation("flip", 0.5, 0.0), policies.Augmentation("rotate", 0.5, 20.0))
    tables = policies.parse([{"name": "cutout", "p": 1.0, "m": 0.25}, "hue"])
    assert tables[0] == policies.Augmentation("cutout", 1.0, 0.25) and tables[1].name == "hue"
    assert policies.parse("none") == ()
    with pytest.raises(UserError, match="unknown augmentation 'twirl'"):
        policies.parse("flip, twirl")
    with pytest.raises(UserError, match=r"rotate: p=1.5 outside"):
        policies.parse("rotate:p=1.5")
    with pytest.raises(UserError, match="unknown setting 'q'"):
        policies.parse("rotate:q=1")


@pytest.mark.parametrize("end", [0, 1])
def test_every_op_at_either_end_of_its_magnitude_range_gives_images_in_range(end):
    """The declared ranges end where an op still means something: every op at once (p=1), each
    at its lowest or its highest accepted magnitude, gives finite pixels in 0..255 and labels
    that sum to one."""
    images, labels, bbox = smooth_batch(size=16)
    entries = [{"name": name, "p": 1.0, **({"m": declared.m_range[end]} if declared.m_range else {})}
               for name, declared in policies.DECLARED.items()]
    out, out_labels = augment.Policy(policies.parse(entries))(images, labels, SEED, bbox)
    assert np.isfinite(out.numpy()).all() and out.numpy().min() >= 0.0 and out.numpy().max() <= 255.0
    np.testing.assert_allclose(out_labels.numpy().sum(1), 1.0, atol=1e-5)
    # the policy clips to 0..255 at its end, so also: still pictures (not a clipped flat field)
    assert (out.numpy().reshape(16, -1).std(1) > 1.0).all()


def test_a_saved_policy_from_before_the_ranges_is_still_reported():
    """A run trained with a magnitude the ranges now refuse keeps its report (tools.report)."""
    from training import report

    lines = report.augmentations({"augment": {"policy": "rotate:m=270, flip"}})
    assert lines[0].startswith("rotate (p=0.3, m=270): ") and lines[1].startswith("flip (p=0.5, m=0): ")
    with pytest.raises(UserError, match="rotate: m=270 outside"):
        policies.parse("rotate:m=270, flip")


def test_every_default_magnitude_lies_in_its_range():
    for name, declared in policies.DECLARED.items():
        if declared.m_range is not None:
            assert declared.m_range[0] <= declared.m <= declared.m_range[1], name
        assert policies.parse(name)[0].m == declared.m


@pytest.mark.parametrize("as_dot", [False, True])
def test_the_colour_map_is_a_matrix_and_an_offset_per_image_in_float64(as_dot):
    """Both ways of applying it (three broadcast products on the host's second stage, a dot inside
    the one-function policy) against numpy in float64."""
    images, _, _ = smooth_batch(size=4)
    rng = np.random.default_rng(5)
    matrix, offset = rng.uniform(-1.5, 1.5, (4, 3, 3)), rng.uniform(-40, 40, (4, 3))
    ours = colour.apply_colour(images, (tf.constant(matrix, tf.float32), tf.constant(offset, tf.float32)), as_dot)
    expected = np.einsum("bhwc,bdc->bhwd", images.numpy().astype(np.float64), matrix) + offset[:, None, None, :]
    np.testing.assert_allclose(ours.numpy(), expected, atol=1e-3)


def test_a_policy_without_a_warp_is_one_host_function_that_gives_what_the_one_function_gives():
    """Without geometric ops the host compiles the policy as one function, the colour map fused
    (pipeline/finish.py); inside the train step it is a dot. Same pictures up to rounding."""
    from pipeline.finish import _compiled

    images, labels, bbox = smooth_batch(size=8)
    steps = policies.parse("brightness:p=1, saturation:p=1, cutout:p=1, mixup:p=1")
    host, host_labels = _compiled(steps, 4, None, True)(images, tf.argmax(labels, -1), bbox, SEED)
    device, device_labels = tf.function(lambda x, y, s, b: augment.Policy(steps)(x, y, s, b), jit_compile=True)(
        images, labels, SEED, bbox)
    difference = np.abs(host.numpy().astype(int) - np.round(device.numpy()).astype(int))
    assert difference.max() <= 1 and (difference > 0).mean() < 1e-3, (difference.max(), (difference > 0).mean())
    np.testing.assert_allclose(host_labels.numpy(), device_labels.numpy(), atol=1e-6)
    assert np.abs(host.numpy().astype(float) - images.numpy()).mean() > 5  # the policy did change the pictures


def test_policy_is_deterministic_per_seed_and_compiles_with_xla():
    from pipeline.finish import _compiled

    images, labels, bbox = smooth_batch(size=16)
    policy = augment.Policy(policies.parse("default"))
    compiled = tf.function(lambda x, y, s, b: policy(x, y, s, b), jit_compile=True)
    a = compiled(images, labels, SEED, bbox)
    b = compiled(images, labels, SEED, bbox)
    c = compiled(images, labels, tf.constant([3, 8], tf.int64), bbox)
    eager = policy(images, labels, SEED, bbox)
    np.testing.assert_array_equal(a[0].numpy(), b[0].numpy())
    np.testing.assert_allclose(a[0].numpy(), eager[0].numpy(), atol=0.05)
    assert not np.allclose(a[0].numpy(), c[0].numpy())
    assert a[0].shape == images.shape  # augmentation replaces, never adds
    # pipeline/finish.py compiles the warp and the rest as two XLA functions on the host; the train
    # step with augment.on = "device" calls the policy as one (above). Same seed, same pictures (up
    # to the rounding to uint8 of values that float arithmetic in another order moved across a
    # half) and labels.
    staged, staged_labels = _compiled(policy.steps, 4, None, True)(images, tf.argmax(labels, -1), bbox, SEED)
    difference = np.abs(staged.numpy().astype(int) - np.round(a[0].numpy()).astype(int))
    assert difference.max() <= 1 and (difference > 0).mean() < 1e-3, (difference.max(), (difference > 0).mean())
    np.testing.assert_allclose(staged_labels.numpy(), a[1].numpy(), atol=1e-6)


# ----------------------------------------------------------------------------------------------------
# Geometric ops composed: the box describes the source image, whatever the policy order.
# ----------------------------------------------------------------------------------------------------
GEOMETRIC = [name for name, op in augment.REGISTRY.items() if op.kind == "geometric"]
OBJECT = (0.05, 0.30, 0.35, 0.60)  # xmin, ymin, xmax, ymax of a white square on black


def object_batch(size=16, res=64):
    image = np.zeros((res, res, 3), np.float32)
    x0, y0, x1, y1 = (round(v * res) for v in OBJECT)
    image[y0:y1, x0:x1] = 255.0
    images = tf.constant(np.repeat(image[None], size, 0))
    return images, tf.one_hot(np.zeros(size, int), 2), tf.constant([OBJECT] * size, tf.float32)


def white_share(images):
    """Per image: the share of the frame the white object fills."""
    return (images.numpy().mean(-1) > 127.5).mean((1, 2))


def test_object_crop_frames_the_object_after_a_flip_whatever_the_order():
    # A crop of side max(0.3, 0.35 floor) = 0.35 around a 0.3 x 0.3 object: (0.30 / 0.35)^2 = 73.5% object.
    images, labels, bbox = object_batch()
    for spec in ("object_crop:p=1:m=0", "flip:p=1, object_crop:p=1:m=0", "object_crop:p=1:m=0, flip:p=1"):
        out, _ = augment.Policy(policies.parse(spec))(images, labels, SEED, bbox)
        np.testing.assert_allclose(white_share(out), (0.30 / 0.35) ** 2, atol=0.03, err_msg=spec)
    flipped, _ = augment.Policy(policies.parse("flip:p=1, object_crop:p=1:m=0"))(images, labels, SEED, bbox)
    cropped, _ = augment.Policy(policies.parse("object_crop:p=1:m=0"))(images, labels, SEED, bbox)
    np.testing.assert_allclose(flipped.numpy(), cropped.numpy()[:, :, ::-1], atol=1e-3)  # crop, then mirror


@pytest.mark.parametrize("first,second", [(a, b) for a in GEOMETRIC for b in GEOMETRIC if a != b])
def test_every_geometric_pair_keeps_the_known_object_in_view(first, second):
    """Each op composed with each other (p=1, default magnitudes) on an image whose object is known.
    With object_crop the object fills 73.5% of the frame after the crop alone, and the other ops
    shrink it at most as a zoom-out by e^-0.4 per axis does (73.5% * e^-0.8 = 33%); without the
    crop, it stays near its 9%."""
    images, labels, bbox = object_batch()
    out, _ = augment.Policy(policies.parse(f"{first}:p=1, {second}:p=1"))(images, labels, SEED, bbox)
    share = white_share(out)
    if "object_crop" in (first, second):
        assert share.min() >= (0.30 / 0.35) ** 2 * np.exp(-0.8) - 0.03, f"{first}, {second}: {np.round(share, 2)}"
    else:
        # scale zooms by at most e^0.4 per axis: the share stays within (0.09 / 1.5^2, 0.09 * 1.5^2), and
        # reflected borders at most double what a zoom-out shows
        assert share.min() >= 0.09 / 1.5 ** 2 - 0.01 and share.max() <= 2 * 0.09 * 1.5 ** 2, (first, second, share)


# ----------------------------------------------------------------------------------------------------
# Colour ops against references from outside the code: tf.image, PIL, the NTSC YIQ definition.
# ----------------------------------------------------------------------------------------------------
def mid_range_batch(size=8):
    images, labels, _ = smooth_batch(size)
    images = tf.round(tf.clip_by_value((images - 125.0) * 0.5 + 125.0, 0, 255))  # 90..160: no clipping
    return images, labels


def test_brightness_equals_tf_image_adjust_brightness_with_a_delta_within_the_magnitude():
    images, labels = mid_range_batch()
    out, _ = augment.Policy(policies.parse("brightness:p=1:m=0.25"))(images, labels, SEED)
    deltas = (out.numpy() - images.numpy()).mean((1, 2, 3))
    assert np.all(np.abs(deltas) <= 0.25 * 255 + 1e-3) and np.std(deltas) > 5  # drawn per image
    for image, result, delta in zip(images.numpy(), out.numpy(), deltas):
        reference = tf.image.adjust_brightness(image / 255.0, delta / 255.0).numpy() * 255.0
        np.testing.assert_allclose(result, reference, atol=1e-3)


def test_saturation_equals_pils_colour_enhancement_with_a_factor_within_the_magnitude():
    from PIL import Image, ImageEnhance

    images, labels = mid_range_batch()
    out, _ = augment.Policy(policies.parse("saturation:p=1:m=0.4"))(images, labels, SEED)
    factors = []
    for image, result in zip(images.numpy().astype(np.float64), out.numpy().astype(np.float64)):
        # PIL's Color enhancement blends with its "L" image, ITU-R 601-2 luma: L = R 299/1000 + G 587/1000
        # + B 114/1000; our factor is whatever least squares finds, and must then reproduce PIL everywhere.
        grey = image @ np.array([0.299, 0.587, 0.114])
        away, moved = (image - grey[..., None]).ravel(), (result - grey[..., None]).ravel()
        factor = float(away @ moved / (away @ away))
        factors.append(factor)
        theirs = ImageEnhance.Color(Image.fromarray(image.astype(np.uint8))).enhance(factor)
        np.testing.assert_allclose(result, np.asarray(theirs, np.float64), atol=1.51)  # PIL rounds to uint8
    assert all(0.6 - 1e-4 <= f <= 1.4 + 1e-4 for f in factors) and np.std(factors) > 0.05


def test_hue_rotates_the_yiq_chroma_by_one_angle_per_image_within_the_magnitude():
    # NTSC YIQ (FCC, 1953): luma Y and the chroma plane (I, Q). A hue rotation keeps Y and |(I, Q)|.
    yiq = np.array([[0.299, 0.587, 0.114], [0.5959, -0.2746, -0.3213], [0.2115, -0.5227, 0.3112]])
    images, labels = mid_range_batch()
    out, _ = augment.Policy(policies.parse("hue:p=1:m=0.1"))(images, labels, SEED)
    angles = []
    for image, result in zip(images.numpy().astype(np.float64), out.numpy().astype(np.float64)):
        before, after = image.reshape(-1, 3) @ yiq.T, result.reshape(-1, 3) @ yiq.T
        np.testing.assert_allclose(after[:, 0], before[:, 0], atol=0.05)  # luma kept
        np.testing.assert_allclose(np.hypot(after[:, 1], after[:, 2]), np.hypot(before[:, 1], before[:, 2]),
                                   atol=0.15)  # chroma strength kept
        strong = np.hypot(before[:, 1], before[:, 2]) > 10
        turn = np.angle((after[strong, 1] + 1j * after[strong, 2]) / (before[strong, 1] + 1j * before[strong, 2]))
        assert np.ptp(turn) < 0.02  # one angle for the whole image
        angles.append(float(np.median(turn)))
    assert all(abs(a) <= 0.1 * np.pi + 0.01 for a in angles) and np.std(angles) > 0.03


# ----------------------------------------------------------------------------------------------------
# The policy language (pipeline/policy.py): parsed once, without TensorFlow; the ops register against it.
# ----------------------------------------------------------------------------------------------------
def test_an_op_registered_twice_undeclared_or_under_another_kind_is_refused(monkeypatch):
    def flip(facts, seed, p, m):
        """A second flip."""

    def swirl(facts, seed, p, m):
        """Not in the table."""

    original = policies.implementation("flip")
    with pytest.raises(ValueError, match="'flip' is registered twice"):
        policies.register("geometric")(flip)
    assert policies.implementation("flip") is original
    with pytest.raises(ValueError, match="'swirl' is not declared"):
        policies.register("geometric")(swirl)
    monkeypatch.setattr(policies, "_IMPLEMENTATIONS", {})  # as if flip were not registered yet
    with pytest.raises(ValueError, match="'flip' is declared geometric, registered colour"):
        policies.register("colour")(flip)
    assert list(augment.REGISTRY) == list(policies.names())
    assert all(augment.REGISTRY[name].kind in policies.KINDS for name in policies.names())


BLOCK_HEAVY_IMPORTS = """
import sys
class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "keras", "jax", "numpy"):
            raise ImportError(f"pipeline.policy imported {name}")
sys.meta_path.insert(0, Blocker())
from pipeline import policy
assert [s.name for s in policy.parse("flip, rotate:p=0.5:m=20")] == ["flip", "rotate"]
assert "tensorflow" not in sys.modules
"""


def test_the_policy_language_imports_without_tensorflow():
    import os
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run([sys.executable, "-c", BLOCK_HEAVY_IMPORTS], cwd=root, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": root}, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


def test_the_executor_takes_parsed_steps_only():
    with pytest.raises(TypeError, match=r"call pipeline.policy.parse\(spec\) first"):
        augment.Policy("flip, rotate")
    with pytest.raises(TypeError, match="parsed steps"):
        augment.Policy(None)
    policy = augment.Policy(policies.parse("flip, hue:p=1"))
    assert policy.steps == (policies.Augmentation("flip", 0.5, 0.0), policies.Augmentation("hue", 1.0, 0.1))
    assert policy.names == ["flip", "hue"] and len(policy) == 2
    assert policies.parse(policy.steps) == policy.steps  # parsed steps pass through as they are


def test_cutmix_label_share_is_the_share_of_pasted_pixels_exactly():
    # Constant images with distinct values: every pixel says which image it came from, so the pasted
    # share is counted from the output, and the soft label must give exactly that share.
    size, res = 16, 64
    values = np.arange(size, dtype=np.float32) * 15
    images = tf.constant(np.broadcast_to(values[:, None, None, None], (size, res, res, 3)).copy())
    labels = tf.one_hot(np.arange(size), size)
    for seed in range(4):
        out, soft = augment.Policy(policies.parse("cutmix:p=1"))(images, labels, tf.constant([seed, 1], tf.int64))
        out, soft = out.numpy(), soft.numpy()
        for i in range(size):
            own = (out[i] == values[i]).all(-1).mean()
            assert soft[i, i] == pytest.approx(own, abs=1e-6), (seed, i)


def test_cutout_fills_a_square_with_the_images_mean_colour():
    images, labels, _ = smooth_batch(size=8, res=64)
    out, _ = augment.Policy(policies.parse("cutout:p=1:m=0.25"))(images, labels, SEED)
    for before, after in zip(images.numpy(), out.numpy()):
        erased = np.abs(after - before).max(-1) > 1e-3
        mean = before.astype(np.float64).mean((0, 1))  # the reference: numpy in float64
        np.testing.assert_allclose(after[erased], np.broadcast_to(mean, after[erased].shape), atol=1e-3)
        rows, cols = np.nonzero(erased.any(1))[0], np.nonzero(erased.any(0))[0]
        assert rows.size <= 16 and cols.size <= 16  # a side of m * 64 = 16 px, less where it hangs over
        assert erased.sum() == rows.size * cols.size  # one solid rectangle


def test_cutout_in_a_policy_fills_with_the_source_mean_through_the_colour_map():
    """Inside a policy the fill is the source image's mean colour moved by the colour ops, not a
    second read of the warped batch: the same whether or not the warp moved the mean. Red is 100
    everywhere (so out - 100 is the brightness shift); green and blue are gradients that a shift
    with reflected borders changes the mean of."""
    size = 8
    ramp = np.linspace(60.0, 190.0, 64, dtype=np.float32)  # +-51 of brightness never clips
    image = np.stack([np.full((64, 64), 100.0, np.float32), np.broadcast_to(ramp, (64, 64)),
                      np.broadcast_to(ramp[:, None], (64, 64))], -1)
    before = np.broadcast_to(image, (size, 64, 64, 3)).copy()
    labels = tf.one_hot(np.arange(size), size)

    def run(cutout_p):
        spec = f"translate:p=1:m=0.25, brightness:p=1:m=0.2, cutout:p={cutout_p}:m=0.25"
        return augment.Policy(policies.parse(spec))(tf.constant(before), labels, SEED)[0].numpy()

    plain, erased_out = run(0.0), run(1.0)  # the same draws: cutout is the last step
    moved = 0
    for kept, after in zip(plain, erased_out):
        erased = np.abs(after - kept).max(-1) > 1e-3
        delta = kept[..., 0].mean() - 100.0  # red: 100 everywhere, so this is the shift
        expected = image.astype(np.float64).mean((0, 1)) + delta
        np.testing.assert_allclose(after[erased], np.broadcast_to(expected, after[erased].shape), atol=1e-2)
        moved += np.abs(kept.astype(np.float64).mean((0, 1)) - delta - image.mean((0, 1))).max() > 0.5
    assert moved >= size // 2  # the warp did move the mean of most images: the test tells the two apart


# ----------------------------------------------------------------------------------------------------
# Pixel ops against references (PIL, numpy in float64), and p per image against a binomial draw.
# ----------------------------------------------------------------------------------------------------
def integer_batch(size=8, res=32, low=30, high=220, seed=4):
    """Whole grey levels (what PIL works on) in low..high."""
    rng = np.random.default_rng(seed)
    return tf.constant(rng.integers(low, high + 1, (size, res, res, 3)).astype(np.float32)), tf.one_hot(
        np.arange(size) % 4, 4)


def test_posterize_equals_pils_posterize_with_the_bits_it_kept():
    from PIL import Image, ImageOps

    images, labels = integer_batch(size=48)
    out, _ = augment.Policy(policies.parse("posterize:p=1:m=4"))(images, labels, SEED)
    kept = []
    for image, result in zip(images.numpy().astype(np.uint8), out.numpy()):
        matches = [bits for bits in range(4, 8)  # 8 - k bits kept, k dropped in 1..4
                   if np.array_equal(result, np.asarray(ImageOps.posterize(Image.fromarray(image), bits)))]
        assert len(matches) == 1, matches
        kept.append(matches[0])
    assert set(kept) == {4, 5, 6, 7}  # k drawn per image, every k of 1..m (each missed with chance (3/4)^48)


def test_solarize_equals_pils_solarize_at_a_threshold_within_the_magnitude():
    from PIL import Image, ImageOps

    images, labels = integer_batch(low=0, high=255)
    out, _ = augment.Policy(policies.parse("solarize:p=1:m=0.5"))(images, labels, SEED)
    thresholds = []
    for image, result in zip(images.numpy().astype(np.uint8), out.numpy()):
        changed = result != image
        threshold = int(image[changed].min()) if changed.any() else 256
        assert 255 * 0.5 - 1 <= threshold <= 256  # drawn in [255 (1 - m), 255]
        np.testing.assert_array_equal(result, np.asarray(ImageOps.solarize(Image.fromarray(image), threshold)))
        thresholds.append(threshold)
    assert np.std(thresholds) > 5


def test_autocontrast_equals_pils_autocontrast_per_channel():
    from PIL import Image, ImageOps

    images, labels = integer_batch(low=40, high=180)
    out, _ = augment.Policy(policies.parse("autocontrast:p=1"))(images, labels, SEED)
    for image, result in zip(images.numpy().astype(np.uint8), out.numpy()):
        theirs = np.asarray(ImageOps.autocontrast(Image.fromarray(image)), np.float64)
        np.testing.assert_allclose(result, theirs, atol=1.0)  # PIL truncates its table to whole levels
        assert result.min() == 0.0 and result.max() == 255.0


def test_blur_blends_towards_the_binomial_3x3_blur_by_an_amount_within_the_magnitude():
    images, labels = integer_batch()
    out, _ = augment.Policy(policies.parse("blur:p=1:m=1"))(images, labels, SEED)
    amounts = []
    for image, result in zip(images.numpy().astype(np.float64), out.numpy().astype(np.float64)):
        # numpy float64: [1, 2, 1] / 4 along rows then columns, edges mirrored (symmetric padding)
        padded = np.pad(image, [(1, 1), (1, 1), (0, 0)], mode="symmetric")
        rows = (padded[:-2] + 2 * padded[1:-1] + padded[2:]) / 4
        blurred = (rows[:, :-2] + 2 * rows[:, 1:-1] + rows[:, 2:]) / 4
        towards, moved = (blurred - image).ravel(), (result - image).ravel()
        amount = float(towards @ moved / (towards @ towards))
        np.testing.assert_allclose(result, image + amount * (blurred - image), atol=2e-3)
        amounts.append(amount)
    assert all(-1e-6 <= a <= 1 + 1e-6 for a in amounts) and np.std(amounts) > 0.1


def normal_share_within(k: float) -> float:
    import math

    return math.erf(k / math.sqrt(2))


def test_noise_is_one_gaussian_tile_in_sixteen_variants_at_a_strength_per_image():
    images, labels = integer_batch(size=32, low=100, high=150)
    out, _ = augment.Policy(policies.parse("noise:p=1:m=0.04"))(images, labels, SEED)
    added = out.numpy().astype(np.float64) - images.numpy()
    sigmas = added.reshape(32, -1).std(1)
    assert all(0 < s <= 0.04 * 255 * 1.1 for s in sigmas) and np.std(sigmas) > 1  # drawn per image
    tile = added[0] / np.abs(added[0]).max()
    variants = [tile, tile[::-1], tile[:, ::-1], tile[::-1, ::-1]]
    variants += [v.transpose(1, 0, 2) for v in variants]
    variants += [-v for v in variants]
    for image in added[1:]:
        unit = image / np.abs(image).max()
        assert min(np.abs(unit - v).max() for v in variants) < 1e-3  # one of the tile's 16 variants
    values = (added[0] / added[0].std()).ravel()  # 32 x 32 x 3 draws of one standard normal tile
    for k in (1, 2):
        assert abs(np.mean(np.abs(values) < k) - normal_share_within(k)) < 0.02
    assert abs(values.mean()) < 0.05


# Ops that always change an image they run on (given the batch below): an image changed is an
# image drawn, so the count of changed images is a Binomial(n, p) draw.
ALWAYS_VISIBLE = {"flip": "", "scale": "", "rotate": "", "shear": "", "brightness": "", "contrast": "",
                  "saturation": "", "hue": "", "grayscale": "", "invert": "", "cutout": "", "noise": "",
                  "blur": "", "solarize": ":m=1", "posterize": "", "autocontrast": ""}


@pytest.mark.parametrize("name", list(ALWAYS_VISIBLE))
def test_each_image_is_drawn_with_probability_p(name):
    """p is per image: at p=0.3 over 1,000 images the count of changed images is within 4.5
    standard deviations of 300 (sd = sqrt(1000 * 0.3 * 0.7) = 14.5), and the changed images are
    spread over the batch, not one block of it."""
    size, p = 1000, 0.3
    images, labels = integer_batch(size=size, res=16, low=30, high=220, seed=9)
    images = tf.tensor_scatter_nd_update(images, [[i, 0, 0, 0] for i in range(size)], [255.0] * size)
    out, _ = augment.Policy(policies.parse(f"{name}:p={p}{ALWAYS_VISIBLE[name]}"))(images, labels, SEED)
    changed = np.abs(out.numpy() - images.numpy()).reshape(size, -1).max(1) > 1e-3
    assert abs(changed.sum() - size * p) < 4.5 * np.sqrt(size * p * (1 - p)), changed.sum()
    halves = changed[: size // 2].sum(), changed[size // 2:].sum()
    assert abs(halves[0] - halves[1]) < 4.5 * np.sqrt(size * p * (1 - p)), halves
