"""One process per run directory: two `train.py` on the same run would both train it and
interleave their log rows.

`run.lock` names the holder (host, process id, start) and carries a heartbeat that a daemon
thread renews every 30 s. A lock whose holder is gone is taken over: on the same machine when its
process no longer exists, from another machine (a Colab runtime after a disconnect) when its
heartbeat is older than two minutes. Written through tf.io.gfile, so Drive and buckets work; the
write-then-read-back check makes two simultaneous starts see each other.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid

from common import files
from common.errors import UserError
from training.run_dir import RunDir

HEARTBEAT_SECONDS = 30.0
STALE_SECONDS = 120.0


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunLock:
    def __init__(self, run_dir: str):
        self.run_dir = run_dir
        self.path = RunDir(run_dir).lock
        self.token = uuid.uuid4().hex
        self._stop = threading.Event()
        self._thread = None
        self.lost: dict | None = None  # the new holder, once another process has taken over

    def _read(self) -> dict | None:
        try:
            return json.loads(files.read_text(self.path))
        except Exception:  # missing, half written or unreadable: nobody holds it
            return None

    def _write(self, started: float) -> None:
        info = {"token": self.token, "host": socket.gethostname(), "pid": os.getpid(), "started": started,
                "heartbeat": time.time()}
        # a temporary of its own: two processes starting at once must not write into one file
        files.write_text(self.path, json.dumps(info), temporary=f"{self.path}.{self.token}.tmp")

    def _holder_alive(self, info: dict) -> bool:
        fresh = time.time() - float(info.get("heartbeat", 0)) < STALE_SECONDS
        if info.get("host") == socket.gethostname():
            return fresh and _process_exists(int(info.get("pid", -1)))
        return fresh

    def acquire(self) -> RunLock:
        holder = self._read()
        if holder is not None and holder.get("token") != self.token and self._holder_alive(holder):
            raise UserError(f"{self.path}: the run is in use by process {holder.get('pid')} on {holder.get('host')} "
                            f"(started {time.strftime('%Y-%m-%d %H:%M', time.localtime(holder.get('started', 0)))}); "
                            f"one train.py per run directory (a run that died frees it by itself)")
        started = time.time()
        self._write(started)
        time.sleep(0.2)  # a simultaneous start writes too: whoever reads back another token yields
        if (self._read() or {}).get("token") != self.token:
            raise UserError(f"{self.path}: another train.py started on this run directory at the same time")
        self._thread = threading.Thread(target=self._beat, args=(started,), daemon=True, name="run-lock")
        self._thread.start()
        return self

    def _beat(self, started: float) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            try:
                holder = self._read()
                if holder is not None and holder.get("token") != self.token:
                    # Our heartbeat stalled long enough (a hung Drive, a suspended process) for
                    # another train.py to take the run over: stop beating, and stop training.
                    self.lost = holder
                    return
                self._write(started)
            except Exception:  # a Drive hiccup: the next beat tries again
                pass

    def check(self) -> None:
        """Raise if another process has taken the run directory over."""
        if self.lost:
            raise UserError(f"{self.path}: process {self.lost.get('pid')} on {self.lost.get('host')} took this run "
                            "over while this one stalled; stopping so that one process trains it")

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if (self._read() or {}).get("token") == self.token:
            try:
                files.gfile().remove(self.path)
            except Exception:
                pass

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def lock_guard(lock: RunLock):
    """A Keras callback that stops training at the next batch once the lock was taken over."""
    import keras

    class LockGuard(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            lock.check()

        def on_epoch_end(self, epoch, logs=None):
            lock.check()

    return LockGuard()
