"""notebooks/colab.ipynb executed for real (nbclient), as a GPU runtime and as a TPU runtime, with
QUICK = True: every cell must succeed, each section must leave what it promises, and a second run
of the whole notebook converts, trains and analyses nothing again.

Both runs are marked `colab`: `make test` runs them once, side by side, under Colab's own
versions (`make test-colab`: TensorFlow 2.19, Keras 3.10, JAX 0.6.2), not also under the newest.

The dataset comes from a server on localhost, like the official URL: the real 10-class slice when
TINY_IMAGENET_ZIP names it, else a synthetic zip of 10 classes in the official layout.
"""

from __future__ import annotations

import datetime
import http.server
import json
import os
import re
import threading

import nbclient
import nbformat
import pytest

from pipeline import synthetic
from tests import compile_cache
from tests.conftest import ROOT

NOTEBOOK = os.path.join(ROOT, "notebooks", "colab.ipynb")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def source_url(tmp_path_factory):
    """A URL serving the dataset zip, as the official host does."""
    path = os.environ.get("TINY_IMAGENET_ZIP")
    if not path or not os.path.exists(path):
        path = str(tmp_path_factory.mktemp("source") / "tiny-imagenet-200.zip")
        synthetic.make_zip(path, num_classes=10, train_per_class=40, val_per_class=10, test_images=10,
                           grayscale_every=9, seed=3)
    payload = open(path, "rb").read()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            self.send_response(200)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    httpd = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/tiny-imagenet-200.zip"
    httpd.shutdown()


def execute(folder, runtime: str, source: str) -> list[str]:
    """Run the whole notebook with papermill's convention (a cell of parameters injected after the
    cell tagged `parameters`); the text each code cell printed, in order."""
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    tagged = [i for i, cell in enumerate(notebook.cells) if "parameters" in cell.metadata.get("tags", [])]
    assert len(tagged) == 1, "exactly one cell is tagged `parameters`"
    parameters = {"PROJECT": ROOT, "WORK": str(folder / "work"), "DRIVE": str(folder / "drive"),
                  "RUNS": str(folder / "runs"), "SOURCE": source, "RUNTIME": runtime, "QUICK": True}
    injected = "\n".join(f"{name} = {value!r}" for name, value in parameters.items())
    notebook.cells.insert(tagged[0] + 1, nbformat.v4.new_code_cell(injected))
    client = nbclient.NotebookClient(notebook, timeout=1200, kernel_name="python3",
                                     resources={"metadata": {"path": str(folder)}})
    with compile_cache.optimised():  # the kernel compiles as Colab's does (tests/compile_cache.py)
        client.execute()  # raises CellExecutionError, naming the cell, when any cell fails
    record_cell_times(notebook, folder / f"cell_seconds_{runtime}.json")
    texts = []
    for cell in notebook.cells:
        if cell.cell_type == "code":
            texts.append("".join(out.get("text", "") for out in cell.get("outputs", []) if out.output_type == "stream"))
    return texts



def record_cell_times(notebook, path) -> None:
    """Seconds each code cell took (nbclient's timing metadata), kept beside the run's folders:
    where the notebook's minutes go when the suite is timed. A second run of the same folder
    appends its own list."""
    def seconds(cell):
        timing = cell.metadata.get("execution", {})
        start, end = timing.get("iopub.execute_input"), timing.get("shell.execute_reply")
        if not (start and end):
            return None
        return round((datetime.datetime.fromisoformat(end.replace("Z", "+00:00"))
                      - datetime.datetime.fromisoformat(start.replace("Z", "+00:00"))).total_seconds(), 1)

    runs = json.loads(path.read_text()) if path.exists() else []
    runs.append([[index, seconds(cell), "".join(cell.source).strip().splitlines()[-1][:100] if cell.source else ""]
                 for index, cell in enumerate(notebook.cells) if cell.cell_type == "code"])
    path.write_text(json.dumps(runs, indent=1))


def manifest_complete(drive, resolution):
    with open(drive / f"{resolution}px" / "manifest.json") as handle:
        return json.load(handle).get("complete") is True


def modified(paths):
    return {str(p): os.stat(p).st_mtime_ns for p in paths}


@pytest.mark.colab
def test_the_notebook_runs_as_a_gpu_runtime_and_again_without_redoing_anything(tmp_path, source_url):
    texts = execute(tmp_path, "gpu", source_url)
    drive, runs, scratch = tmp_path / "drive", tmp_path / "runs" / "quick", tmp_path / "work" / "scratch"
    everything = "\n".join(texts)
    assert all(manifest_complete(drive, r) for r in (32, 48, 64))
    for name in ("resnet34", "my_net", "wide"):
        final = json.loads((runs / name / "final.json").read_text())
        assert 0.0 <= final["val_accuracy"] <= 1.0 and final["epochs"] >= 1 and final["rules_broken"] == [], name
    for picture in (scratch / "augmentations.png", scratch / "bench.png", scratch / "compare.png",
                    scratch / "lr_find" / "lr_find.png", runs / "resnet34" / "report.png",
                    runs / "resnet34" / "analysis" / "most_wrong.png"):
        assert picture.stat().st_size > 1000, picture
    # the log, one row per epoch as it goes, and the graded summary, inline
    # Keras's line per epoch: "2/2 - 18s - 9s/step - accuracy: ... - val_accuracy: ..." (3 + 1 + 1 epochs)
    assert len(re.findall(r"(?m)^\d+/\d+ - .*val_accuracy: ", everything)) >= 5, everything[-3000:]
    assert "course rules: obeyed" in everything and "with flips" in everything
    assert "QUICK CHECK" in everything and "augmentations (13 variants)" in everything
    assert "TPU runtime only: skipped" in everything
    assert not (tmp_path / "runs" / "quick" / "resnet34-tpu").exists()

    kept = modified([drive / f"{r}px" / "manifest.json" for r in (32, 48, 64)]
                    + [runs / name / "final.json" for name in ("resnet34", "my_net", "wide")])
    again = "\n".join(execute(tmp_path, "gpu", source_url))
    assert modified(kept) == kept, "the second run converted or trained again"
    assert "already converted" in again and not re.search(r"done in [\d.]+s -> ", again)  # the converter's last line
    assert re.search(r"done in [\d.]+s -> ", everything)
    assert again.count("finished: ") == 3 and "Epoch 1/" not in again, again[-3000:]
    assert "already analysed: " in again and re.search(r"hard_examples.txt \(\d+ of (500|400) training images\)",
                                                         everything)  # 500 of the real slice's, all 400 synthetic


@pytest.mark.colab
def test_the_notebook_runs_as_a_tpu_runtime_on_the_jax_backend(tmp_path, source_url):
    texts = execute(tmp_path, "tpu", source_url)
    everything = "\n".join(texts)
    run = tmp_path / "runs" / "quick" / "resnet34-tpu"
    final = json.loads((run / "final.json").read_text())
    assert final["backend"] == "jax" and 0.0 <= final["val_accuracy"] <= 1.0
    assert (run / "report.png").stat().st_size > 1000 and (run / "analysis" / "most_wrong.png").stat().st_size > 1000
    assert "GPU runtime only: skipped" in everything
    assert re.search(r"hard_examples.txt \(\d+ of (500|400) training images\)", everything)  # the quick analysis
    assert not (tmp_path / "runs" / "quick" / "resnet34").exists()
