"""How fresh is each epoch's order? Position correlation and batch-mate overlap of two epochs.

    python -m tools.order_stats --data DIR --resolution 64 --batch-size 256 [--cache] [--json PATH]

Reads two training epochs (filenames only matter; no augmentation) exactly as train.py would and
compares them with what two independent uniform random orders give.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from common.cli import command_line


@command_line
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, help="the converter's output folder")
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--cache", action="store_true", help="read through the RAM cache, as cache = true does")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the statistics here")
    args = parser.parse_args(argv)
    import numpy as np

    from pipeline import dataset, epoch_order

    start = time.monotonic()
    ds, info = dataset.build(args.data, "train", args.resolution, args.batch_size, epochs=2, cache=args.cache,
                             seed=args.seed, with_filenames=True)
    with dataset.naming_corrupt_shards(args.data, args.resolution, ("train",)):
        names = np.concatenate([batch[2].numpy() for batch in ds])
    per_epoch = info.steps_per_epoch * info.batch_size
    result = epoch_order.order_statistics(names[:per_epoch], names[per_epoch:], args.batch_size)
    result["seconds"] = round(time.monotonic() - start, 1)
    text = json.dumps(result, indent=1)
    print(text)
    if args.json:
        with open(args.json, "w") as handle:
            handle.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
