"""A quiet start (common/quiet.py): TensorFlow's C++ start-up notices hidden from train.py and the
tools by default, shown with --verbose or a TF_CPP_MIN_LOG_LEVEL of the user's own, and every line
that is not a known notice (the project's own, tracebacks, real C++ errors, child processes' output,
what is written just before os._exit or an abort) passed on unchanged and in order."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import time

import pytest

from common import quiet
from tests.conftest import ROOT, write_split

# As TensorFlow 2.21 writes them on a CPU machine (and as TF <= 2.18 formats its lines).
NOTICES = [
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "I0000 00:00:1796282522.807034    7225 port.cc:153] oneDNN custom operations are on. You may see slightly "
    "different numerical results due to floating-point round-off errors from different computation orders. "
    "To turn them off, set the environment variable `TF_ENABLE_ONEDNN_OPTS=0`.",
    "I0000 00:00:1796282522.809178    7225 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU "
    "will not be used.",
    "I0000 00:00:1796282545.344065    7649 cpu_feature_guard.cc:227] This TensorFlow binary is optimized to use "
    "available CPU instructions in performance-critical operations.",
    "To enable the following instructions: AVX2 AVX512F FMA, in other operations, rebuild TensorFlow with the "
    "appropriate compiler flags.",
    "E0000 00:00:1796282548.482133    7649 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: "
    "Failed call to cuInit: UNKNOWN ERROR (303)",
    "I0000 00:00:1796282554.885089    7727 service.cc:153] XLA service 0x7fa9680277c0 initialized for platform "
    "Host (this does not guarantee that XLA will be used). Devices:",
    "2025-09-17 14:44:05.157831: I external/local_xla/xla/tsl/cuda/cudart_stub.cc:32] Could not find cuda "
    "drivers on your machine, GPU will not be used.",
    "2025-09-17 14:44:05.176998: E external/local_xla/xla/stream_executor/cuda/cuda_fft.cc:467] Unable to "
    "register cuFFT factory: Attempting to register factory for plugin cuFFT when one has already been registered",
    "E0000 00:00:1758131045.228000 3722035 computation_placer.cc:177] computation placer already registered. "
    "Please check linkage and avoid linking the same target more than once.",
]
KEPT = [
    "E0000 00:00:1796282548.482133    7649 cuda_platform.cc:52] failed call to cuInit: CUDA_ERROR_NO_DEVICE",
    "E0000 00:00:1796282548.482133    7649 tf_record_dataset_op.cc:52] a real C++ error",
    "F0000 00:00:1796282548.482133    7649 tensor.cc:52] Check failed: a fatal one",
    "W1203 07:20:00.123456 140123 tf_logging.py:12] a Python warning through absl-py",
    "Traceback (most recent call last):",
    "error: records/32px/manifest.json: missing; convert first",
    "BAD 32px/train-00000-of-00002.tfrecord: sha256 differs",
    "2 more lines of our own: I0000 is not a prefix here",
]
# Any line TensorFlow, XLA or absl wrote (not the project).
NATIVE = re.compile(r"[IWEF]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ |\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWEF] "
                    r"|WARNING: All log messages before absl|To enable the following instructions")


def clean_env(**extra: str) -> dict:
    """The environment of a user who set none of the variables the quiet start reads."""
    env = {k: v for k, v in os.environ.items() if k not in (quiet.LEVEL, quiet.VERBOSE)}
    return {**env, "PYTHONPATH": ROOT, "KERAS_BACKEND": "tensorflow", **extra}


def run(args: list[str], env: dict, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


# As TensorFlow 2.19 (Colab's) writes them on a CPU machine under the quiet start's level 2: its
# "Could not find cuda drivers" notice is INFO and hidden by that level, so no line says the driver is
# missing before the cuInit ERROR.
NOTICES_2_19 = [
    "2026-12-03 18:21:08.224230: E external/local_xla/xla/stream_executor/cuda/cuda_fft.cc:467] Unable to "
    "register cuFFT factory: Attempting to register factory for plugin cuFFT when one has already been registered",
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "E0000 00:00:1796322068.263357   18544 cuda_dnn.cc:8579] Unable to register cuDNN factory: Attempting to "
    "register factory for plugin cuDNN when one has already been registered",
    "W0000 00:00:1796322068.303189   18544 computation_placer.cc:177] computation placer already registered. "
    "Please check linkage and avoid linking the same target more than once.",
    "2026-12-03 18:21:13.847134: E external/local_xla/xla/stream_executor/cuda/cuda_platform.cc:51] failed call "
    "to cuInit: INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)",
]


def test_the_screen_drops_the_known_notices_and_nothing_else():
    screen = quiet.Screen(no_driver=False)  # a machine with NVIDIA's driver, until TF says otherwise
    assert [line for line in KEPT if screen.drop(line)] == []  # before the driver was found missing
    assert [line for line in NOTICES if not screen.drop(line)] == []
    # "failed call to cuInit" is only harmless where the CUDA driver is missing altogether.
    assert quiet.Screen(no_driver=False).drop(NOTICES[5]) is False
    # TensorFlow 2.19 at level 2: nothing says so, the machine does
    assert [line for line in NOTICES_2_19 if not quiet.Screen(no_driver=True).drop(line)] == []
    assert [line for line in NOTICES_2_19 if not quiet.Screen(no_driver=False).drop(line)] == [NOTICES_2_19[-1]]


def test_the_driver_is_looked_for_on_the_machine(monkeypatch):
    present = set()
    monkeypatch.setattr(quiet.os.path, "exists", lambda path: path in present)
    assert quiet.no_nvidia_driver() and quiet.Screen().no_driver
    present.add("/dev/nvidiactl")
    assert not quiet.no_nvidia_driver() and not quiet.Screen().no_driver


@pytest.mark.parametrize(("argv", "env", "verbose"), [
    ([], {}, False), (["--data", "x"], {}, False), (["--verbose"], {}, True), (["--verb"], {}, True),
    (["--", "--verbose"], {}, False), (["--val-per-class", "2"], {}, False), ([], {"TIN_VERBOSE": "1"}, True),
    ([], {"TIN_VERBOSE": "0"}, False),
])
def test_verbose_is_asked_by_the_flag_or_the_environment(argv, env, verbose):
    assert quiet.verbose_requested(argv, env) is verbose


SCRIPT = textwrap.dedent("""
    import os, subprocess, sys, warnings
    from common import quiet
    quiet.start([])
    lines = {lines!r}
    for line in lines:
        os.write(2, (line + "\\n").encode())
    print("a line of our own", file=sys.stderr)
    warnings.warn("a Python warning")
    subprocess.run([sys.executable, "-c", {child!r}])
    os.write(2, b"progress 1\\rprogress 2\\rprompt> ")
    if sys.argv[1] == "raise":
        raise RuntimeError("a bug")
    os.write(2, {fatal!r})
    os._exit(3) if sys.argv[1] == "exit" else os.abort()
""")


@pytest.mark.parametrize("ending", ["raise", "exit", "abort"])
def test_only_the_notices_go_whatever_way_the_process_ends(ending, tmp_path):
    """The same script with a TF_CPP_MIN_LOG_LEVEL of the user's own (nothing filtered) and without
    (filtered): the same stderr, byte for byte, less the notices; the same exit code."""
    script = tmp_path / "script.py"
    child_lines = f"{NOTICES[1]}\nfrom a child process\n".encode()
    child = f"import os; os.write(2, {child_lines!r})"
    fatal = (KEPT[2] + "\n").encode()
    # KEPT[0], cuInit's failure with a driver present, is dropped on a machine without one (this one, CI)
    script.write_text(SCRIPT.format(lines=KEPT[1:2] + NOTICES, child=child, fatal=fatal))
    shown = run([str(script), ending], clean_env(TF_CPP_MIN_LOG_LEVEL="0"), timeout=60)
    quiet_run = run([str(script), ending], clean_env(), timeout=60)
    assert quiet_run.returncode == shown.returncode != 0
    expected = [line for line in shown.stderr.splitlines(keepends=True) if line.rstrip("\n") not in NOTICES]
    assert quiet_run.stderr == "".join(expected)
    assert "from a child process" in quiet_run.stderr and "a line of our own" in quiet_run.stderr
    assert ("RuntimeError: a bug" if ending == "raise" else "Check failed: a fatal one") in quiet_run.stderr


def test_a_command_ends_at_once_while_a_child_still_holds_stderr():
    """multiprocessing's resource tracker outlives the converter: the command must not wait for it,
    and what it wrote itself is out before it ends; the child's late line still comes."""
    late = "import sys, time; time.sleep(4); print('late', file=sys.stderr)"
    code = (f"import subprocess, sys; from common import quiet; quiet.start([]); "
            f"subprocess.Popen([sys.executable, '-c', {late!r}]); print('ours', end='', file=sys.stderr)")
    started = time.monotonic()
    process = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=clean_env(), stderr=subprocess.PIPE,
                               text=True)
    process.wait(timeout=60)
    assert time.monotonic() - started < 3.5
    assert process.communicate(timeout=60)[1] == "ourslate\n"


def test_importing_the_tools_package_changes_nothing():
    """Only `python -m tools.X` starts quietly; a test or a notebook importing a tool keeps its stderr."""
    result = run(["-c", "import os, tools; from common import quiet; "
                        "print(bool(quiet._started), os.environ.get('TF_CPP_MIN_LOG_LEVEL'))"], clean_env(), 60)
    assert result.stdout.split() == ["False", "None"]


def split(stderr: str) -> tuple[list[str], list[str]]:
    """(the project's lines, TensorFlow's and absl's lines)."""
    lines = stderr.splitlines()
    return [line for line in lines if not NATIVE.match(line)], [line for line in lines if NATIVE.match(line)]


def test_train_py_starts_quietly_keeps_its_error_and_shows_notices_with_verbose(tmp_path):
    """train.py imports TensorFlow and sets up the devices (the cuInit ERROR on a CPU machine) before
    it finds that --data holds no records: its own `error:` line, exit code 2, nothing else."""
    args = ["train.py", "--data", str(tmp_path / "none"), "--run-dir", str(tmp_path / "run"), "--config",
            "configs/demo.toml"]
    quiet_run = run(args, clean_env())
    verbose_run = run([*args, "--verbose"], clean_env())
    assert quiet_run.returncode == verbose_run.returncode == 2
    ours, native = split(quiet_run.stderr)
    assert native == [] and len(ours) == 1 and ours[0].startswith("error: ") and "manifest.json" in ours[0]
    assert split(verbose_run.stderr)[0] == ours
    assert len(verbose_run.stderr.splitlines()) >= len(quiet_run.stderr.splitlines())
    assert quiet_run.stdout.splitlines() == verbose_run.stdout.splitlines()


def test_a_tool_starts_quietly_and_a_log_level_of_the_users_own_wins(tmp_path):
    """`python -m tools.verify` on records with a damaged shard: only its BAD line by default; with
    TF_CPP_MIN_LOG_LEVEL=0 set by the user, TensorFlow's notices are back where this machine has them."""
    data = write_split(str(tmp_path), examples=40, shards=2, classes=2)
    with open(os.path.join(data, "8px", "train-00001-of-00002.tfrecord"), "ab") as shard:
        shard.write(b"damaged")
    quiet_run = run(["-m", "tools.verify", data], clean_env())
    users_run = run(["-m", "tools.verify", data], clean_env(TF_CPP_MIN_LOG_LEVEL="0"))
    assert quiet_run.returncode == users_run.returncode == 1
    ours, native = split(quiet_run.stderr)
    assert native == [] and len(ours) == 1 and ours[0].startswith("BAD ") and "00001-of-00002" in ours[0]
    users_ours, users_native = split(users_run.stderr)
    assert users_ours == ours
    assert len(users_native) >= len(native)
    if users_native:  # this machine has notices: the quiet start hid exactly those
        assert not any(line in quiet_run.stderr for line in users_native)
