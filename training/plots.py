"""matplotlib, only where a picture is drawn, and optional: every chart goes through here.

`pyplot()` gives the headless pyplot module, or None (with one line on stderr) when matplotlib
is missing, so the numbers still get written. `save()` writes a figure anywhere tf.io.gfile
reaches (a Drive folder, a bucket): matplotlib itself only writes local files.
"""

from __future__ import annotations

import os
import sys
import tempfile


def pyplot(what: str = "chart"):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(f"matplotlib is not installed: no {what} written", file=sys.stderr)
        return None
    return plt


def save(figure, path: str, dpi: int = 100) -> str:
    import matplotlib.pyplot as plt
    import tensorflow as tf

    handle, local = tempfile.mkstemp(suffix=".png")
    os.close(handle)
    try:
        figure.tight_layout()
        figure.savefig(local, dpi=dpi)
        tf.io.gfile.copy(local, path, overwrite=True)
    finally:
        plt.close(figure)
        os.remove(local)
    return path
