"""A quiet start: TensorFlow's C++ start-up notices hidden from every command line, real errors kept.

`start()` runs first in train.py and in every `python -m tools.X` (tools/__init__.py), before
TensorFlow or JAX is imported. TensorFlow 2.21 logs its notices (absl's "All log messages before
absl::InitializeLog()...", "oneDNN custom operations are on", "Could not find cuda drivers") while
its libraries load, before it reads TF_CPP_MIN_LOG_LEVEL, and a machine without a CUDA driver then
gets "failed call to cuInit" at ERROR level: no environment variable hides them (TF_ENABLE_ONEDNN_OPTS=0
would, for one of them, by changing the numerics). So `start()` sets TF_CPP_MIN_LOG_LEVEL=2 (errors
and worse) and passes file descriptor 2 through a small filter process that drops, line by line:

- native INFO and WARNING lines (`I0000 00:00:17.. 123 port.cc:153] ...`, from C++ sources only):
  what level 2 asks for, logged before TensorFlow applied it;
- absl's preamble line and the CPU-feature notice's second line;
- ERROR lines known to be harmless: "failed call to cuInit" on a machine without NVIDIA's driver
  (no GPU to miss: `no_nvidia_driver`, or TensorFlow's "Could not find cuda drivers" before it) and
  the CUDA plugins' "already registered" lines.

Every other line (tracebacks, the tools' own `error:` lines, FATAL and other ERROR lines, Python
warnings, output of child processes) passes unchanged and in order; a line without its newline (a
prompt, a progress bar) passes after 50 ms. The filter is a process of its own, so what was written
just before a crash, an abort or `os._exit` still comes out; it ignores Ctrl-C and ends when the
last writer of the pipe is gone (multiprocessing's resource tracker outlives the command by a
moment). At a normal exit the command gives fd 2 back after the filter acknowledged a marker
written behind its last line: everything it wrote is out before it ends.

Nothing changes when the user set TF_CPP_MIN_LOG_LEVEL (theirs wins), nor with `--verbose` on the
command line or TIN_VERBOSE=1 in the environment: then TensorFlow and JAX print what they always do.
"""

from __future__ import annotations

import os
import re
import sys

LEVEL = "TF_CPP_MIN_LOG_LEVEL"
VERBOSE = "TIN_VERBOSE"

_NATIVE = re.compile(r"(?:(?P<absl>[IWEF])\d{4} \d\d:\d\d:\d+\.\d+ +\d+ "  # absl: I0000 00:00:17.. 7225
                     r"|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: (?P<tsl>[IWEF]) )"  # TF <= 2.18: 2025-.. : I
                     r"\S+\.(?:cc|h|cpp):\d+\] (?P<message>.*)")
_PREAMBLE = re.compile(r"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
                       r"|To enable the following instructions: .*rebuild TensorFlow with the appropriate compiler"
                       r" flags\.")
_HARMLESS_ERRORS = re.compile(r"Unable to register cu(?:DNN|FFT|BLAS) factory: Attempting to register factory"
                              r" for plugin \S+ when one has already been registered"
                              r"|computation placer already registered")
_NO_DRIVER = "Could not find cuda drivers on your machine"
_CUINIT = "failed call to cuInit"

_started: dict = {}


def verbose_requested(argv: list[str], environ) -> bool:
    """--verbose (or an abbreviation argparse would accept) before any `--`, or TIN_VERBOSE=1."""
    if environ.get(VERBOSE, "").strip().lower() not in ("", "0", "false", "no"):
        return True
    for arg in argv:
        if arg == "--":
            return False
        if len(arg) > 3 and "--verbose".startswith(arg):
            return True
    return False


def start(argv: list[str] | None = None) -> None:
    """Hide the start-up notices of this process (and of the processes it starts) unless the user
    set TF_CPP_MIN_LOG_LEVEL or asked for --verbose / TIN_VERBOSE=1. Call before TensorFlow or JAX
    is imported; a second call does nothing."""
    argv = sys.argv[1:] if argv is None else argv
    if _started or LEVEL in os.environ or verbose_requested(argv, os.environ):
        return
    _started["level"] = os.environ[LEVEL] = "2"
    if os.name == "posix" and sys.executable:
        try:
            _filter_stderr()
        except OSError:  # no usable fd 2 (closed, not a file): leave it as it is
            pass


def _filter_stderr() -> None:
    import atexit
    import subprocess

    saved = os.dup(2)  # the real stderr; not inherited by the processes this one starts
    read_end, write_end = os.pipe()
    ack_read, ack_write = os.pipe()
    token = os.urandom(8).hex()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = f"import sys; sys.path.insert(0, {root!r}); from common.quiet import serve; serve({token!r}, {ack_write})"
    try:
        subprocess.Popen([sys.executable, "-I", "-S", "-c", code], stdin=read_end, stdout=saved, stderr=saved,
                         pass_fds=(ack_write,))
    except OSError:
        for fd in (saved, write_end, ack_read):
            os.close(fd)
        raise
    finally:
        os.close(read_end)
        os.close(ack_write)
    sys.stderr.flush()
    os.dup2(write_end, 2)  # inheritable: child processes write through the filter too
    os.close(write_end)
    _started["filter"] = token
    atexit.register(_finish, saved, token, ack_read)


def _marker(token: str) -> bytes:
    return f"\x00common.quiet flush {token}\x00".encode()


def _finish(saved: int, token: str, ack: int) -> None:
    """At a normal exit (registered first, so it runs after every later atexit handler): mark the
    end of what this process wrote, give fd 2 back and wait (5 s at most) until the filter passed
    everything before the mark on."""
    import select

    try:
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    try:
        os.write(2, _marker(token))
    except OSError:  # the filter is gone: nothing to wait for
        pass
    os.dup2(saved, 2)
    os.close(saved)
    select.select([ack], [], [], 5)  # readable on the acknowledgement, or at once if the filter died
    os.close(ack)


def no_nvidia_driver() -> bool:
    """True on a machine without NVIDIA's kernel driver (no GPU to miss): Colab's CPU and TPU
    runtimes, this project's CI. TensorFlow <= 2.19 logs its "Could not find cuda drivers" notice at
    INFO, which the quiet start's level 2 hides, so the machine is asked instead of the log."""
    return not any(os.path.exists(path) for path in ("/proc/driver/nvidia/version", "/dev/nvidiactl", "/dev/nvidia0"))


class Screen:
    """Decides, line by line, what the filter drops; knows whether the CUDA driver is missing (from
    the machine, or from TensorFlow's notice saying so)."""

    def __init__(self, no_driver: bool | None = None):
        self.no_driver = no_nvidia_driver() if no_driver is None else no_driver

    def drop(self, line: str) -> bool:
        if _PREAMBLE.fullmatch(line):
            return True
        native = _NATIVE.fullmatch(line)
        if native is None:
            return False
        severity, message = native["absl"] or native["tsl"], native["message"]
        if message.startswith(_NO_DRIVER):
            self.no_driver = True
        if severity in "IW":
            return True
        if severity == "E":
            return bool(_HARMLESS_ERRORS.match(message) or (self.no_driver and message.startswith(_CUINIT)))
        return False  # FATAL


def serve(token: str, ack: int) -> None:
    """The filter process: stdin is the pipe from the command's fd 2, stdout the real stderr; `ack`
    gets a byte for every end marker of the command (`_finish`)."""
    import select
    import signal

    for name in ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT"):  # it ends with its writers, not before
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_IGN)
    marker = _marker(token)
    screen, pending, passing = Screen(), b"", False  # passing: the start of `pending`'s line went out
    while True:
        ready, _, _ = select.select([0], [], [], 0.05 if pending else None)
        if not ready:  # a line left without its newline: a prompt or a progress bar
            pending, passing = _write(pending), True
            continue
        chunk = os.read(0, 1 << 16)
        if not chunk:
            break
        data = pending + chunk
        marked = marker in data
        *lines, pending = data.replace(marker, b"").split(b"\n")
        for line in lines:
            if passing or not screen.drop(line.decode("utf-8", "replace").rstrip("\r")):
                _write(line + b"\n")
            passing = False
        if marked and pending:  # the command is ending: what it left without a newline goes out now
            pending, passing = _write(pending), True
        elif b"\r" in pending:  # redrawn in place: pass on at once
            done, _, pending = pending.rpartition(b"\r")
            _write(done + b"\r")
            passing = True
        if marked:
            _write_to(ack, b"1")
    _write(pending)


def _write(data: bytes) -> bytes:
    """Write all of `data` to the real stderr; if nobody reads it any more, drop it (keep draining)."""
    _write_to(1, data)
    return b""


def _write_to(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view):]
        except OSError:
            break
