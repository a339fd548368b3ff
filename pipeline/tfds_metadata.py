"""TFDS metadata beside a converted folder, so that TensorFlow Datasets opens the records as they are:

    tfds.builder_from_directory("<out>/64px").as_dataset(split="train")

Why: other code (a TFDS-based notebook, `tfds.as_numpy`, `as_supervised=True`) can then read the
shards without this project, with no second copy of the data. The converter writes these files
after each folder's manifest is complete (pipeline/convert.py); `python -m tools.tfds_metadata <out>`
writes them for folders converted before. Everything comes from the manifest, nothing from a scan.

Why no `import tensorflow_datasets`: the runtime does not depend on it (only the tests do), so the
JSON is written by hand, shaped as `tfds.folder_dataset.write_metadata` (TFDS 4.9.10) writes it and
kept to the fields TFDS needs. Files, beside manifest.json:

    dataset_info.json  name (tiny_imagenet, config `<res>px`), version, description, homepage, file
                       format, per split its shard lengths, bytes and file name template;
                       supervised keys (image, label), so `as_supervised=True` works
    features.json      one feature per key of the records (pipeline/records.py), same key names
    label.labels.txt   the class names: the wnids, in label order
    metadata.json      {"words": {wnid: words}}, read back as `builder.info.metadata["words"]`

How each key of the records maps to a TFDS feature, byte for byte (no record is rewritten):

- shard names: ours are `train-00003-of-00016.tfrecord`, not TFDS's default
  `<name>-<split>.tfrecord-00003-of-00016`; each split names its own template instead
  (`{SPLIT}-{SHARD_X_OF_Y}.{FILEFORMAT}`, TFDS's SplitInfo.filepath_template).
- image, raw encoding: `Tensor(shape=(res, res, 3), dtype=uint8, encoding="bytes")`, whose decoding is
  `tf.io.decode_raw` and a reshape: what records.decode_images does. TFDS's Image feature cannot
  read raw bytes (it expects PNG/JPEG). JPEG encoding: `Image(shape=(res, res, 3), "jpeg")`.
- label: `ClassLabel` with the wnids as names; the test split's -1 passes through unchecked.
- filename: `Text`.
- bbox: `BBoxFeature` declared with `bbox_format="REL_XYXY"`. The records hold normalised xmin,
  ymin, xmax, ymax; TFDS's default box order is ymin, xmin, ymax, xmax (REL_YXYX), and a feature
  cannot reorder values while reading, so the order is declared instead of moving the values (a
  plain BBoxFeature would silently swap x and y). `tf.gather(bbox, [1, 0, 3, 2])` gives TFDS's
  default order. bbox_format needs TFDS 4.9.7 or newer; older versions refuse features.json.
"""

from __future__ import annotations

from common import files
from pipeline import manifest as manifests
from pipeline.tiny_imagenet import OFFICIAL_URL

VERSION = "1.0.0"  # of the TFDS dataset; the records' own format is the manifest's format_version
FILE_TEMPLATE = "{SPLIT}-{SHARD_X_OF_Y}.{FILEFORMAT}"  # records.shard_name: train-00003-of-00016.tfrecord
NAMES = ("dataset_info.json", "features.json", "label.labels.txt", "metadata.json")
_CLASS = "tensorflow_datasets.core.features."


def write(folder: str, manifest: dict) -> list[str]:
    """Write the TFDS files of one `<res>px` folder from its complete manifest; their paths."""
    contents = {
        "dataset_info.json": dataset_info(manifest),
        "features.json": features(manifest),
        "label.labels.txt": "".join(c["wnid"] + "\n" for c in manifest["classes"]),
        "metadata.json": {"words": {c["wnid"]: c["words"] for c in manifest["classes"]}},
    }
    paths = []
    for name, content in contents.items():
        path = files.join(folder, name)
        if isinstance(content, str):
            files.write_text(path, content)
        else:
            files.write_json(path, content)
        paths.append(path)
    return paths


def write_all(data_dir: str) -> list[str]:
    """Write them for every `<res>px` folder of a converted folder (each manifest complete)."""
    from pipeline.verify import resolutions_in

    paths = []
    for resolution in resolutions_in(data_dir):
        manifest = manifests.read(data_dir, resolution)
        paths += write(manifests.resolution_dir(data_dir, resolution), manifest)
    return paths


def dataset_info(manifest: dict) -> dict:
    """dataset_info.json: int64 fields as strings, as protobuf's JSON (and TFDS) writes them."""
    splits = [{"name": split, "filepathTemplate": FILE_TEMPLATE,
               "shardLengths": [str(s["num_examples"]) for s in info["shards"]],
               "numBytes": str(sum(s["bytes"] for s in info["shards"]))}
              for split, info in sorted(manifest["splits"].items())]
    resolution = manifest["resolution"]
    return {"name": "tiny_imagenet", "configName": f"{resolution}px", "version": VERSION,
            "description": _description(manifest), "location": {"urls": [OFFICIAL_URL]},
            "fileFormat": "tfrecord", "splits": splits,
            "supervisedKeys": {"tuple": {"items": [{"featureKey": "image"}, {"featureKey": "label"}]}}}


def features(manifest: dict) -> dict:
    """features.json: a FeaturesDict whose keys are the records' keys (pipeline/records.py)."""
    res = manifest["resolution"]
    shape = {"dimensions": [str(res), str(res), "3"]}
    if manifest["encoding"] == "raw":
        image = {"pythonClassName": _CLASS + "tensor_feature.Tensor",
                 "tensor": {"shape": shape, "dtype": "uint8", "encoding": "bytes"},
                 "description": f"uint8 {res}x{res}x3, stored as raw bytes"}
    elif manifest["encoding"] == "jpeg":
        image = {"pythonClassName": _CLASS + "image_feature.Image",
                 "image": {"shape": shape, "dtype": "uint8", "encodingFormat": "jpeg"},
                 "description": f"uint8 {res}x{res}x3, stored as JPEG"}
    else:
        raise ValueError(f"unknown encoding {manifest['encoding']!r}")
    return {"pythonClassName": _CLASS + "features_dict.FeaturesDict", "featuresDict": {"features": {
        "image": image,
        "label": {"pythonClassName": _CLASS + "class_label_feature.ClassLabel",
                  "classLabel": {"numClasses": str(len(manifest["classes"]))},
                  "description": "index into the sorted wnids (names); -1 in the unlabeled test split"},
        "filename": {"pythonClassName": _CLASS + "text_feature.Text", "text": {},
                     "description": "the source file name"},
        "bbox": {"pythonClassName": _CLASS + "bounding_boxes.BBoxFeature",
                 "boundingBox": {"shape": {"dimensions": ["4"]}, "dtype": "float32", "bboxFormat": "REL_XYXY"},
                 "description": "the object's box: xmin, ymin, xmax, ymax in [0, 1] (not TFDS's default "
                                "ymin, xmin, ymax, xmax); the whole image when unknown (test)"},
    }}}


def _description(manifest: dict) -> str:
    classes = manifest["classes"]
    return (f"Tiny-ImageNet at {manifest['resolution']} px, {len(classes)} classes, converted by this project's "
            f"tools.convert ({manifest['encoding']} images); manifest.json beside describes it fully. Labels "
            "are indices into the sorted wnids (the ClassLabel names); their words are in "
            "builder.info.metadata['words'] (metadata.json). bbox holds xmin, ymin, xmax, ymax (REL_XYXY), "
            "not TFDS's default ymin, xmin, ymax, xmax.")
