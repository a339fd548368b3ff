"""How fresh is each epoch's order, measured on a converted folder: two training epochs read
exactly as train.py reads them (filenames only matter; no augmentation), compared by
`pipeline.epoch_order.order_statistics` with what two independent uniform random orders give.

Library code so that the command line (tools/order_stats.py) and a notebook measure the same way.
"""

from __future__ import annotations

import json
import time

from common import files


def measure(data: str, resolution: int, batch_size: int = 256, cache: bool = False, seed: int = 0,
            json_path: str | None = None, log=print) -> dict:
    """The statistics (and the seconds taken), printed as JSON and written to `json_path`; a
    corrupt shard is named."""
    import numpy as np

    from pipeline import dataset, epoch_order
    from pipeline.data_folder import DataFolder
    from pipeline.input_spec import Training

    start = time.monotonic()
    with DataFolder.open(data, resolution).naming_corrupt_shards(("train",)) as folder:
        spec = dataset.InputSpec(batch_size, cache=cache, with_filenames=True, training=Training(seed=seed, epochs=2))
        ds, info = dataset.build(folder.split("train"), spec)
        names = np.concatenate([batch[2].numpy() for batch in ds])
    per_epoch = info.steps_per_epoch * info.batch_size
    result = epoch_order.order_statistics(names[:per_epoch], names[per_epoch:], batch_size)
    result["seconds"] = round(time.monotonic() - start, 1)
    text = json.dumps(result, indent=1)
    log(text)
    if json_path:
        files.write_text(json_path, text + "\n")
    return result
