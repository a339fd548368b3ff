"""Write the metadata TensorFlow Datasets needs to open a converted folder, for each resolution.

    python -m tools.tfds_metadata /content/drive/MyDrive/tin

tools.convert writes it by itself; this is for folders converted before it did, or whose metadata
was deleted. Then `tfds.builder_from_directory("<out>/64px").as_dataset(split="train")` reads the
records as they are. Everything comes from each folder's manifest. The work and the mapping of
record keys to TFDS features: pipeline/tfds_metadata.py.
"""

from __future__ import annotations

import sys

from common.cli import command_line
from pipeline import tfds_metadata
from tools import arguments


@command_line
def main(argv: list[str] | None = None) -> int:
    parser = arguments.parser(__doc__)
    parser.add_argument("data", help="the converter's output folder (holding the <res>px folders)")
    args = parser.parse_args(argv)
    for path in tfds_metadata.write_all(args.data):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
