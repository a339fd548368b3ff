"""Files anywhere tf.io.gfile reaches (a local disk, a mounted Drive, a `gs://` bucket), and the
one way this project replaces a file: write under a temporary name beside it, then rename.

A reader never sees half a file, and a kill between the two steps leaves the old file whole
(plus a temporary that the next write replaces). TensorFlow is imported on first use: the
converter's worker processes and the JAX-only parts never pay for it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import posixpath

from common.errors import UserError


def gfile():
    """tf.io.gfile, imported when first needed."""
    import tensorflow as tf

    return tf.io.gfile


def is_remote(path: str) -> bool:
    """A URL-style path (gs://...): libraries that write only local files need a local copy."""
    return "://" in path


@contextlib.contextmanager
def replacing(path: str, temporary: str | None = None):
    """Yield a temporary path beside `path` to write; when the block completes it is renamed over
    `path`. On an error the temporary is removed and `path` keeps its old content.

    `temporary`: a name of the caller's choosing (a suffix Keras insists on, a name unique to a
    process when several may write at once); default `path + ".tmp"`.
    """
    temporary = temporary or path + ".tmp"
    try:
        yield temporary
        gfile().rename(temporary, path, overwrite=True)
    except BaseException as error:
        with contextlib.suppress(Exception):
            if gfile().exists(temporary):
                gfile().remove(temporary)
        reason = _storage_failure(error)
        if reason is not None:  # a full disk or Drive, a read-only folder: name the file being written
            raise UserError(f"{path}: cannot write it ({reason}); the previous version, if any, is kept") from None
        raise


def _storage_failure(error: BaseException) -> str | None:
    """Why the storage refused a write (an OSError, or TensorFlow's file-system errors, which
    often come without a message or a path), or None for any other error."""
    import errno
    import sys

    if isinstance(error, OSError):
        return error.strerror or str(error) or errno.errorcode.get(error.errno or 0) or type(error).__name__
    tf = sys.modules.get("tensorflow")
    errors = getattr(tf, "errors", None)
    storage = () if errors is None else (errors.ResourceExhaustedError, errors.PermissionDeniedError,
                                         errors.NotFoundError, errors.UnavailableError, errors.FailedPreconditionError)
    if storage and isinstance(error, storage):
        text = (error.message or "").strip().splitlines()
        return text[0][:160] if text else {"ResourceExhaustedError": "no space left"}.get(
            type(error).__name__, type(error).__name__)
    return None


def write_bytes(path: str, data: bytes, temporary: str | None = None) -> None:
    with replacing(path, temporary) as partial:
        with gfile().GFile(partial, "wb") as handle:
            handle.write(data)


def write_text(path: str, text: str, temporary: str | None = None) -> None:
    write_bytes(path, text.encode(), temporary)


def write_json(path: str, data) -> None:
    write_text(path, json.dumps(data, indent=1))


def read_text(path: str) -> str | None:
    """The file's text, or None if it does not exist."""
    if not gfile().exists(path):
        return None
    with gfile().GFile(path, "r") as handle:
        return handle.read()


def read_json(path: str):
    """The parsed file, or None if it does not exist; a UserError naming it if it is not JSON."""
    try:
        text = read_text(path)
        return None if text is None else json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UserError(f"{path}: not valid JSON ({error})") from None


def sha256_of(path: str) -> str:
    """The sha256 of a file, read in 4 MiB blocks."""
    digest = hashlib.sha256()
    with gfile().GFile(path, "rb") as handle:
        while block := handle.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


def join(*parts: str) -> str:
    """posixpath.join: the separator of every path gfile takes, on every platform."""
    return posixpath.join(*parts)
