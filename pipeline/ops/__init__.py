"""The TensorFlow implementations of the augmentations, one module per kind.

Importing this package registers every op against the table in `pipeline/policy.py`; the random
helpers every op draws from are in `draws.py`.
"""

from pipeline.ops import colour, geometric, mix, pixel  # noqa: F401  (registers the ops)
