"""Read the official Tiny-ImageNet layout from its zip, its unpacked folder or its download URL.

The layout (rooted wherever `wnids.txt` lies, usually `tiny-imagenet-200/`):

    wnids.txt                          class ids, one a line (the real file has no final newline)
    words.txt                          wnid <tab> words, for every WordNet id (82k lines)
    train/<wnid>/images/*.JPEG         500 a class in the full set
    train/<wnid>/<wnid>_boxes.txt      name <tab> x0 y0 x1 y1 (inclusive pixels)
    val/images/*.JPEG                  with val/val_annotations.txt: name wnid x0 y0 x1 y1
    test/images/*.JPEG                 unlabeled

Zips are read in place, never extracted: nothing lands on Drive twice, and an entry whose name
would escape a target folder (absolute, `..`, drive letters) is refused before anything is read.
The class list always comes from `wnids.txt`; copies with 10, 200 or 202 classes circulate.
"""

from __future__ import annotations

import dataclasses
import http.client
import os
import posixpath
import urllib.request
import zipfile
import zlib

from common.errors import UserError

OFFICIAL_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"


@dataclasses.dataclass(frozen=True)
class Entry:
    """One source image: where it is (relative to the root), its label and its box."""

    path: str
    split: str
    wnid: str | None  # None for the unlabeled test split
    box: tuple[int, int, int, int] | None  # inclusive pixel coordinates x0, y0, x1, y1

    @property
    def filename(self) -> str:
        return posixpath.basename(self.path)


def _unsafe_member(name: str) -> bool:
    """True if extracting `name` could write outside the target folder."""
    normalised = name.replace("\\", "/")
    if normalised.startswith("/") or (len(normalised) > 1 and normalised[1] == ":"):
        return True
    return ".." in normalised.split("/")


class Source:
    """Files of one dataset copy, addressed by paths relative to its root (the wnids.txt folder)."""

    def __init__(self, location: str):
        self.location = location
        self._zip: zipfile.ZipFile | None = None
        if os.path.isdir(location):
            self.kind = "folder"
            self.root = self._find_folder_root(location)
        elif os.path.isfile(location):
            if not zipfile.is_zipfile(location):
                raise UserError(f"{location}: not a zip file (expected tiny-imagenet-200.zip or its folder)")
            self.kind = "zip"
            self._open_zip()
        else:
            raise UserError(f"{location}: no such file or folder")

    # -- opening --------------------------------------------------------------------------------
    def _open_zip(self) -> None:
        try:
            archive = zipfile.ZipFile(self.location)
            names = archive.namelist()
        except (zipfile.BadZipFile, OSError) as error:
            raise UserError(f"{self.location}: unreadable zip ({error})") from None
        bad = [n for n in names if _unsafe_member(n)]
        if bad:
            raise UserError(f"{self.location}: refusing zip entry {bad[0]!r} that escapes its folder")
        roots = sorted((n[: -len("wnids.txt")] for n in names if posixpath.basename(n) == "wnids.txt"), key=len)
        if not roots:
            raise UserError(f"{self.location}: no wnids.txt inside; is this Tiny-ImageNet?")
        self.root = roots[0]
        self._zip = archive
        self._names = set(names)

    @staticmethod
    def _find_folder_root(folder: str) -> str:
        for candidate in (folder, os.path.join(folder, "tiny-imagenet-200")):
            if os.path.isfile(os.path.join(candidate, "wnids.txt")):
                return candidate
        raise UserError(f"{folder}: no wnids.txt in this folder; point --source at tiny-imagenet-200/")

    def __getstate__(self):  # worker processes reopen the zip themselves
        state = self.__dict__.copy()
        state["_zip"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        if self.kind == "zip":
            self._zip = zipfile.ZipFile(self.location)

    # -- reading --------------------------------------------------------------------------------
    def describe(self, relative: str) -> str:
        """A path a person can find: `zip:inner/path` or the file path."""
        if self.kind == "zip":
            return f"{self.location}:{self.root}{relative}"
        return os.path.join(self.root, relative)

    def exists(self, relative: str) -> bool:
        if self.kind == "zip":
            return self.root + relative in self._names
        return os.path.isfile(os.path.join(self.root, relative))

    def read(self, relative: str) -> bytes:
        try:
            if self.kind == "zip":
                return self._zip.read(self.root + relative)
            with open(os.path.join(self.root, relative), "rb") as handle:
                return handle.read()
        except (KeyError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as error:
            # zlib.error: a deflated member whose compressed bytes are damaged
            raise UserError(f"{self.describe(relative)}: cannot read ({type(error).__name__}: {error})") from None

    def read_text(self, relative: str) -> str:
        return self.read(relative).decode("utf-8", errors="replace")

    def list_dir(self, relative: str) -> list[str]:
        """File names directly inside a folder (relative to the root), sorted."""
        prefix = relative.rstrip("/") + "/"
        if self.kind == "zip":
            start = self.root + prefix
            found = {n[len(start):] for n in self._names if n.startswith(start) and not n.endswith("/")}
            return sorted(n for n in found if "/" not in n)
        folder = os.path.join(self.root, prefix)
        if not os.path.isdir(folder):
            return []
        return sorted(n for n in os.listdir(folder) if os.path.isfile(os.path.join(folder, n)))

    # -- the layout -----------------------------------------------------------------------------
    def wnids(self) -> list[str]:
        """Class ids from wnids.txt, sorted (labels are indices into this list)."""
        ids = [line.strip() for line in self.read_text("wnids.txt").splitlines() if line.strip()]
        if not ids:
            raise UserError(f"{self.describe('wnids.txt')}: no class ids")
        if len(set(ids)) != len(ids):
            raise UserError(f"{self.describe('wnids.txt')}: repeated class ids")
        return sorted(ids)

    def words(self, wnids: list[str]) -> dict[str, str]:
        """Human words for each wnid (empty string where words.txt is missing or silent)."""
        if not self.exists("words.txt"):
            return {w: "" for w in wnids}
        wanted = set(wnids)
        found = {}
        for line in self.read_text("words.txt").splitlines():
            wnid, _, text = line.partition("\t")
            if wnid in wanted:
                found[wnid] = text.strip()
        return {w: found.get(w, "") for w in wnids}

    def _boxes(self, relative: str) -> dict[str, tuple[int, ...]]:
        boxes = {}
        if not self.exists(relative):
            return boxes
        for number, line in enumerate(self.read_text(relative).splitlines(), 1):
            fields = line.split()
            if not fields:
                continue
            boxes[fields[0]] = self._box(fields[1:], relative, number, line, "expected 'name x0 y0 x1 y1'")
        return boxes

    def _box(self, fields: list[str], relative: str, number: int, line: str, expected: str) -> tuple[int, ...]:
        """Four whole numbers, or a UserError naming the file and line: a short line would be a
        box of fewer corners, a traceback at the first image that used it."""
        try:
            if len(fields) != 4:
                raise ValueError
            return tuple(int(v) for v in fields)
        except ValueError:
            raise UserError(f"{self.describe(relative)}:{number}: bad box line {line.strip()!r} ({expected})") from None

    def train_entries(self, wnids: list[str]) -> list[Entry]:
        entries = []
        for wnid in wnids:
            names = [n for n in self.list_dir(f"train/{wnid}/images") if n.lower().endswith((".jpeg", ".jpg"))]
            if not names:
                raise UserError(f"{self.describe(f'train/{wnid}/images')}: no images for class {wnid}")
            boxes = self._boxes(f"train/{wnid}/{wnid}_boxes.txt")
            entries += [Entry(f"train/{wnid}/images/{n}", "train", wnid, boxes.get(n)) for n in names]
        return entries

    def val_entries(self, wnids: list[str], all_wnids: list[str]) -> list[Entry]:
        """Val images of the classes in `wnids`; an annotation naming a class outside wnids.txt is an error."""
        relative = "val/val_annotations.txt"
        if not self.exists(relative):
            raise UserError(f"{self.describe(relative)}: missing")
        known, wanted = set(all_wnids), set(wnids)
        entries = []
        for number, line in enumerate(self.read_text(relative).splitlines(), 1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) < 2:
                raise UserError(f"{self.describe(relative)}:{number}: expected 'name wnid x0 y0 x1 y1'")
            name, wnid = fields[0], fields[1]
            if wnid not in known:
                raise UserError(f"{self.describe(relative)}:{number}: unknown class {wnid} (not in wnids.txt)")
            if wnid not in wanted:
                continue
            # a name and a class, or those and a box: three to five fields would lose the box silently
            box = self._box(fields[2:], relative, number, line, "expected 'name wnid x0 y0 x1 y1'") \
                if len(fields) > 2 else None
            entries.append(Entry(f"val/images/{name}", "val", wnid, box))
        return sorted(entries, key=lambda e: e.path)

    def test_entries(self) -> list[Entry]:
        names = [n for n in self.list_dir("test/images") if n.lower().endswith((".jpeg", ".jpg"))]
        return [Entry(f"test/images/{n}", "test", None, None) for n in names]


def download(url: str, folder: str, progress=None) -> str:
    """Download `url` into `folder`, resuming a partial `.part` file; return the finished path.

    Colab disconnects: a half-downloaded 248 MB zip continues with an HTTP Range request instead
    of starting over. The file only gets its final name once complete.
    """
    os.makedirs(folder, exist_ok=True)
    final = os.path.join(folder, posixpath.basename(url.split("?")[0]) or "download.zip")
    if os.path.isfile(final):
        return final
    partial = final + ".part"
    have = os.path.getsize(partial) if os.path.exists(partial) else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=60)
    except OSError as error:
        raise UserError(f"{url}: download failed ({error})") from None
    with response:
        if have and response.status != 206:  # server ignored the range: start again
            have = 0
        length = int(response.headers.get("Content-Length", 0))
        total, done = length + have, have
        with open(partial, "ab" if have else "wb") as handle:
            if progress:
                progress.start(total, have)
            while chunk := _read_chunk(response, url, done, total, partial):
                handle.write(chunk)  # a full disk is an OSError of its own, naming the file
                done += len(chunk)
                if progress:
                    progress.advance(len(chunk))
    if length and done < total:
        raise UserError(f"{url}: the server closed the download after {done:,} of {total:,} bytes; "
                        f"run the same command again to resume from {partial}")
    os.replace(partial, final)
    return final


def _read_chunk(response, url: str, done: int, total: int, partial: str) -> bytes:
    """The next MiB of the download; a broken connection (IncompleteRead, reset, timeout) becomes
    one line that says how to resume."""
    try:
        return response.read(1 << 20)
    except (http.client.HTTPException, OSError) as error:
        raise UserError(f"{url}: download interrupted after {done:,} of {total:,} bytes ({type(error).__name__}); "
                        f"run the same command again to resume from {partial}") from None


def open_source(location: str, download_dir: str | None = None, progress=None) -> Source:
    """A Source from a zip path, a folder, or an http(s) URL (downloaded first)."""
    if location.startswith(("http://", "https://")):
        folder = download_dir or os.path.join(os.path.expanduser("~"), ".cache", "tiny_imagenet")
        location = download(location, folder, progress)
    return Source(location)
