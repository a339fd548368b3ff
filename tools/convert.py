"""Convert Tiny-ImageNet into sharded TFRecords, one folder per resolution, once.

    python -m tools.convert --source tiny-imagenet-200.zip --out /content/drive/MyDrive/tin \
        --resolutions 32,48,64

SRC may be the official zip, its unpacked folder or the official URL (downloaded, resumable).
Every shard is written under a temporary name and renamed when complete, and the manifest is
updated after each shard, so running the same command again after a disconnect skips the shards
already complete (checked by sha256) and loses only the one in progress. Output paths go through
`tf.io.gfile`: a Drive folder and a `gs://` bucket work the same. The work: pipeline/convert.py.
"""

from __future__ import annotations

import os
import sys

from common.cli import command_line
from pipeline import convert
from pipeline.tiny_imagenet import OFFICIAL_URL
from tools import arguments


@command_line
def main(argv: list[str] | None = None) -> int:
    parser = arguments.parser(__doc__)
    parser.add_argument("--source", required=True,
                        help=f"tiny-imagenet-200.zip, its unpacked folder, or a URL such as {OFFICIAL_URL}")
    parser.add_argument("--out", required=True, help="output folder (local, Drive or gs://)")
    parser.add_argument("--resolutions", default="32,48,64", help="comma-separated sizes in px")
    parser.add_argument("--encoding", default="raw", choices=["raw", "jpeg"],
                        help="raw uint8 reads ~4x faster than JPEG decoding (default raw)")
    parser.add_argument("--shards-per-split", type=int, default=16)
    parser.add_argument("--classes", help="a count (the first N sorted wnids) or comma-separated wnids")
    parser.add_argument("--include-test", action="store_true", help="also write the unlabeled test split")
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="processes decoding images")
    parser.add_argument("--seed", type=int, default=0, help="seed of the train shuffle across shards")
    parser.add_argument("--skip-bad", action="store_true", help="skip unreadable images, listed in the manifest")
    parser.add_argument("--download-dir", help="where a URL source is downloaded (default ~/.cache/tiny_imagenet)")
    args = parser.parse_args(argv)
    resolutions = sorted(set(arguments.sizes(parser, "--resolutions", args.resolutions)))
    options = convert.ConvertOptions(
        encoding=args.encoding, shards_per_split=args.shards_per_split, classes=args.classes,
        include_test=args.include_test, workers=args.workers, seed=args.seed, skip_bad=args.skip_bad,
        download_dir=args.download_dir)
    convert.run(args.source, args.out, resolutions, options)
    return 0


if __name__ == "__main__":
    sys.exit(main())
