"""matplotlib, only where a picture is drawn, and optional: every chart goes through here.

`pyplot()` gives the headless pyplot module, or None (with one line on stderr) when matplotlib
is missing, so the numbers still get written. `save()` writes a figure anywhere tf.io.gfile
reaches (a Drive folder, a bucket): matplotlib itself only writes local files.
"""

from __future__ import annotations

import io
import sys

from common import files


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

    buffer = io.BytesIO()
    try:
        figure.tight_layout()
        figure.savefig(buffer, format="png", dpi=dpi)
    finally:
        plt.close(figure)
    files.write_bytes(path, buffer.getvalue())
    return path
