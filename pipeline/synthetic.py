"""A small dataset in the official Tiny-ImageNet zip layout, with learnable classes.

Why: tests and `make demo` need data that behaves like the real set (same folder layout,
boxes files, val annotations, an unlabeled test folder, a few single-channel JPEGs, a
`wnids.txt` without a final newline) but is small, made offline in seconds, and learnable, so
that "the model learned" is a meaningful assertion. Each class is a shape drawn in a colour
over a textured background, at a random place and scale; the box is the shape's extent.
Library code so that the tests' fixtures and the command line (tools/make_synthetic.py) make the
same data. No TensorFlow here.
"""

from __future__ import annotations

import io
import os
import zipfile

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("ellipse", "rectangle", "triangle", "cross", "ring", "diamond", "bar", "chevron")
PALETTE = (
    (230, 40, 40), (40, 200, 60), (50, 90, 230), (240, 200, 30), (200, 60, 220),
    (30, 210, 220), (250, 130, 20), (245, 245, 245), (120, 70, 20), (20, 20, 20),
)
ROOT = "tiny-imagenet-200"


def wnid_for(index: int) -> str:
    """A WordNet-style id that cannot collide with real ones (they never start with n09999)."""
    return f"n0999{index:04d}"


def class_style(index: int) -> tuple[str, tuple[int, int, int], int]:
    """Shape, colour and background texture of a class: distinct for the first 80 classes."""
    return SHAPES[index % len(SHAPES)], PALETTE[(index // len(SHAPES)) % len(PALETTE)], index % 3


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, box: tuple[int, int, int, int],
                colour: tuple[int, int, int]) -> None:
    x0, y0, x1, y1 = box
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    w = max(2, (x1 - x0) // 4)
    if shape == "ellipse":
        draw.ellipse(box, fill=colour)
    elif shape == "rectangle":
        draw.rectangle(box, fill=colour)
    elif shape == "triangle":
        draw.polygon([(cx, y0), (x1, y1), (x0, y1)], fill=colour)
    elif shape == "cross":
        draw.rectangle((cx - w / 2, y0, cx + w / 2, y1), fill=colour)
        draw.rectangle((x0, cy - w / 2, x1, cy + w / 2), fill=colour)
    elif shape == "ring":
        draw.ellipse(box, outline=colour, width=w)
    elif shape == "diamond":
        draw.polygon([(cx, y0), (x1, cy), (cx, y1), (x0, cy)], fill=colour)
    elif shape == "bar":
        draw.rectangle((x0, cy - w / 2, x1, cy + w / 2), fill=colour)
    else:  # chevron
        draw.line([(x0, y0), (cx, y1), (x1, y0)], fill=colour, width=w)


def draw_image(class_index: int, rng: np.random.Generator, size: int = 64):
    """One image of a class and its box (x0, y0, x1, y1), inclusive pixel coordinates."""
    shape, colour, texture = class_style(class_index)
    base = rng.integers(40, 200, size=3)
    noise = rng.normal(0, 18, size=(size, size, 3))
    if texture == 1:  # horizontal stripes
        noise += 25 * np.sin(np.arange(size) / 2.0)[:, None, None]
    elif texture == 2:  # a gradient
        noise += np.linspace(-30, 30, size)[None, :, None]
    pixels = np.clip(base + noise, 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels, "RGB")
    extent = int(rng.integers(size // 3, size - 4))
    x0 = int(rng.integers(0, size - extent))
    y0 = int(rng.integers(0, size - extent))
    box = (x0, y0, x0 + extent - 1, y0 + extent - 1)
    jitter = rng.integers(-25, 26, size=3)
    _draw_shape(ImageDraw.Draw(image), shape, box, tuple(int(v) for v in np.clip(np.array(colour) + jitter, 0, 255)))
    return image, box


def _jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def make_zip(path: str, num_classes: int = 10, train_per_class: int = 50, val_per_class: int = 10,
             test_images: int = 20, grayscale_every: int = 17, seed: int = 0,
             extra_files: dict[str, bytes] | None = None) -> dict:
    """Write the zip and return what it holds (counts, grayscale names) for tests to check against.

    Every `grayscale_every`-th image (counted over train, val and test together) is stored as a
    single-channel JPEG, as about 0.6% of the real set is.
    """
    rng = np.random.default_rng(seed)
    wnids = [wnid_for(i) for i in range(num_classes)]
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    grayscale: set[str] = set()
    counter = 0

    def encode(image: Image.Image, name: str) -> bytes:
        nonlocal counter
        counter += 1
        if grayscale_every and counter % grayscale_every == 0:
            grayscale.add(name)
            image = image.convert("L")
        return _jpeg(image)

    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        # The real wnids.txt ends without a final newline.
        archive.writestr(f"{ROOT}/wnids.txt", "\n".join(reversed(wnids)))
        words = [f"n0000{i:04d}\tunrelated entry {i}" for i in range(5)]
        words += [f"{w}\tsynthetic {class_style(i)[0]} {i}" for i, w in enumerate(wnids)]
        archive.writestr(f"{ROOT}/words.txt", "\n".join(words) + "\n")
        for index, wnid in enumerate(wnids):
            lines = []
            for k in range(train_per_class):
                name = f"{wnid}_{k}.JPEG"
                image, box = draw_image(index, rng)
                archive.writestr(f"{ROOT}/train/{wnid}/images/{name}", encode(image, name))
                lines.append(f"{name}\t" + "\t".join(map(str, box)))
            archive.writestr(f"{ROOT}/train/{wnid}/{wnid}_boxes.txt", "\n".join(lines) + "\n")
        annotations = []
        for k in range(val_per_class * num_classes):
            index = k % num_classes
            name = f"val_{k}.JPEG"
            image, box = draw_image(index, rng)
            archive.writestr(f"{ROOT}/val/images/{name}", encode(image, name))
            annotations.append(f"{name}\t{wnids[index]}\t" + "\t".join(map(str, box)))
        archive.writestr(f"{ROOT}/val/val_annotations.txt", "\n".join(annotations) + "\n")
        for k in range(test_images):
            name = f"test_{k}.JPEG"
            image, _ = draw_image(int(rng.integers(num_classes)), rng)
            archive.writestr(f"{ROOT}/test/images/{name}", encode(image, name))
        for name, data in (extra_files or {}).items():
            archive.writestr(name, data)
    return {"wnids": sorted(wnids), "train": num_classes * train_per_class,
            "val": num_classes * val_per_class, "test": test_images, "grayscale": grayscale}


def summary(path: str, info: dict) -> str:
    """The line the command line prints about a zip `make_zip` wrote."""
    return (f"wrote {path}: {info['train']} train, {info['val']} val, {info['test']} test images, "
            f"{len(info['grayscale'])} grayscale, {len(info['wnids'])} classes")


def make_records(folder: str, resolutions, shards_per_split: int = 2, **zip_options) -> str:
    """A small converted folder in one call (tests, quick checks): a zip made by `make_zip(**zip_options)`
    in `folder`, converted at `resolutions` into `folder/records`, whose path is returned. `make demo`
    does the same with two tools."""
    from pipeline import convert

    source = os.path.join(folder, "tiny.zip")
    make_zip(source, **zip_options)
    out = os.path.join(folder, "records")
    convert.convert(source, out, list(resolutions),
                    convert.ConvertOptions(shards_per_split=shards_per_split, workers=1, show_progress=False))
    return out
