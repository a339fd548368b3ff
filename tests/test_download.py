"""The URL source: download with resume (HTTP Range) from a server on localhost, then convert."""

from __future__ import annotations

import http.server
import os
import threading

import pytest

from common.errors import UserError
from pipeline import convert
from pipeline.tiny_imagenet import download


class RangeHandler(http.server.BaseHTTPRequestHandler):
    """Serves one file and honours `Range: bytes=N-`, like the official host."""

    payload = b""
    requests: list = []
    cut_after: int | None = None  # bytes sent before the connection drops (as a flaky network does)

    def do_GET(self):  # noqa: N802 (http.server's name)
        if self.path != "/tiny-imagenet-200.zip":
            self.send_error(404)
            return
        start = 0
        header = self.headers.get("Range")
        if header:
            start = int(header.split("=")[1].rstrip("-"))
        type(self).requests.append(header)
        body = self.payload[start:]
        self.send_response(206 if header else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if type(self).cut_after is not None:
            self.wfile.write(body[:type(self).cut_after])
            self.wfile.flush()
            self.connection.shutdown(2)  # socket.SHUT_RDWR: the client sees the body end early
            return
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server(synthetic_zip):
    RangeHandler.payload = open(synthetic_zip[0], "rb").read()
    RangeHandler.requests = []
    RangeHandler.cut_after = None
    httpd = http.server.HTTPServer(("127.0.0.1", 0), RangeHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_an_interrupted_download_resumes_where_it_stopped(server, tmp_path):
    folder = tmp_path / "cache"
    folder.mkdir()
    half = len(RangeHandler.payload) // 2
    (folder / "tiny-imagenet-200.zip.part").write_bytes(RangeHandler.payload[:half])
    path = download(f"{server}/tiny-imagenet-200.zip", str(folder))
    assert open(path, "rb").read() == RangeHandler.payload
    assert RangeHandler.requests == [f"bytes={half}-"]  # only the missing half was fetched
    assert not os.path.exists(folder / "tiny-imagenet-200.zip.part")
    download(f"{server}/tiny-imagenet-200.zip", str(folder))  # finished: no second request
    assert len(RangeHandler.requests) == 1


def test_convert_from_a_url(server, synthetic_zip, tmp_path):
    options = convert.ConvertOptions(classes="2", workers=1, show_progress=False, download_dir=str(tmp_path / "cache"))
    result = convert.convert(f"{server}/tiny-imagenet-200.zip", str(tmp_path / "out"), [32], options)[32]
    assert result["splits"]["train"]["num_examples"] == 60
    with pytest.raises(UserError, match="missing.zip: download failed"):
        download(f"{server}/missing.zip", str(tmp_path / "cache"))


def test_a_download_cut_mid_way_is_one_line_and_the_next_run_resumes(server, tmp_path):
    folder = str(tmp_path / "cache")
    RangeHandler.cut_after = 5_000
    size = f"{len(RangeHandler.payload):,}"
    with pytest.raises(UserError, match=rf"(download interrupted|the server closed the download) after 5,000 of "
                                        rf"{size} bytes.*run the same command again to resume"):
        download(f"{server}/tiny-imagenet-200.zip", folder)
    assert os.path.getsize(os.path.join(folder, "tiny-imagenet-200.zip.part")) == 5_000
    RangeHandler.cut_after = None
    path = download(f"{server}/tiny-imagenet-200.zip", folder)
    assert open(path, "rb").read() == RangeHandler.payload
    assert RangeHandler.requests[-1] == "bytes=5000-"
