"""One command line per module, run as `python -m tools.NAME`. Importing this package comes first,
so TensorFlow's C++ start-up notices are hidden here, before a tool imports anything
(common/quiet.py: `--verbose` or TIN_VERBOSE=1 shows them, a TF_CPP_MIN_LOG_LEVEL of your own wins)."""

import sys

from common import quiet

if sys.argv[:1] == ["-m"]:  # `python -m tools.X` starting; not an import from a test or a notebook
    quiet.start()
