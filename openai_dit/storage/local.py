"""The object store in a local folder (`--object-store local`: the data directory), in today's layout: the object
`videos/<storage>/video.mp4` is the file `<data-dir>/videos/<storage>/video.mp4`.

A write goes to a hidden `.<name>.<random>.part` beside the file, then `os.replace`s it (atomic on one file system).
The media type is the one the name's extension stands for; an object stored with another media type, or with an
expiry, has a hidden sidecar `.<name>.meta` (JSON) beside it. Hidden files are never objects (`check_key` refuses
hidden names).
"""

from __future__ import annotations

import contextlib
import json
import mimetypes
import os
import secrets
import shutil
import time
from pathlib import Path

from ..errors import StorageUnavailable
from .base import ObjectStore, ObjectStoreUnreachable, OpenedObject, check_key

__all__ = ["LocalObjectStore"]

_MEDIA_TYPES = {".mp4": "video/mp4", ".webp": "image/webp", ".png": "image/png", ".jpg": "image/jpeg",
                ".jpeg": "image/jpeg", ".json": "application/json"}
_PART = ".part"
_META = ".meta"


def _media_type_of(name: str) -> str:
    """The media type a file name's extension stands for (application/octet-stream if none)."""
    suffix = os.path.splitext(name)[1].lower()
    return _MEDIA_TYPES.get(suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"


def _meta_path(path: Path) -> Path:
    return path.with_name(f".{path.name}{_META}")


class LocalObjectStore(ObjectStore):
    """Objects as files under `root`. Not shared: another replica does not see them."""

    shared = False

    def __init__(self, root: str | os.PathLike) -> None:
        # Lexical, not resolved: a symbolic link the operator put inside the data directory (e.g. videos/ on
        # another disk) is honoured; keys cannot climb out (check_key refuses "..", absolute and hidden names).
        self.root = Path(os.path.abspath(root))
        self.description = f"local folder {self.root}"

    def _path(self, key: str) -> Path:
        path = Path(os.path.normpath(self.root / check_key(key)))
        if path == self.root or self.root not in path.parents:
            raise ValueError(f"not a valid object key: {key!r}")
        return path

    # --- writes ------------------------------------------------------------------------------------------------
    def check(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            self._probe()
        except OSError as exc:
            raise ObjectStoreUnreachable(f"{self.description}: cannot write there ({exc.strerror or exc})") from None

    def _probe(self) -> None:
        probe = self.root / f".object-store-probe-{secrets.token_hex(4)}"
        try:
            with open(probe, "wb") as f:
                f.write(b"\0" * 4096)
                f.flush()
                os.fsync(f.fileno())
        finally:
            with contextlib.suppress(OSError):
                probe.unlink()

    def writable(self) -> bool:
        try:
            self._probe()
            return True
        except OSError:
            return False

    @staticmethod
    def _write_atomic(path: Path, data: bytes) -> None:
        partial = path.with_name(f".{path.name}.{secrets.token_hex(4)}{_PART}")
        try:
            partial.write_bytes(data)
            os.replace(partial, path)
        except BaseException:
            with contextlib.suppress(OSError):
                partial.unlink()
            raise

    def put(self, key: str, data: bytes, media_type: str, *, expires_at: float | None = None) -> None:
        path = self._path(key)
        meta = _meta_path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if expires_at is not None or media_type != _media_type_of(path.name):
                self._write_atomic(meta, json.dumps({"media_type": media_type, "expires_at": expires_at}).encode())
                self._write_atomic(path, data)
            else:
                self._write_atomic(path, data)
                meta.unlink(missing_ok=True)
        except OSError as exc:
            raise StorageUnavailable.of(exc) from exc

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            path.unlink(missing_ok=True)
            _meta_path(path).unlink(missing_ok=True)
        except IsADirectoryError:  # a folder is no object
            pass
        except OSError as exc:
            raise StorageUnavailable.of(exc) from exc

    def delete_prefix(self, prefix: str) -> None:
        try:
            shutil.rmtree(self._path(prefix))
        except FileNotFoundError:
            pass
        except NotADirectoryError:  # a single object at that key: not a folder, nothing under it
            pass
        except OSError as exc:
            raise StorageUnavailable.of(exc) from exc

    def remove_older_than(self, prefix: str, age_seconds: float) -> int:
        top = self._path(prefix)
        cutoff = time.time() - age_seconds
        removed = 0
        try:
            for folder, dirs, files in os.walk(top, topdown=False):
                base = Path(folder)
                for name in files:
                    path = base / name
                    try:
                        if path.stat().st_mtime > cutoff:
                            continue
                        if name.startswith("."):  # a stale partial write or an orphaned sidecar
                            if name.endswith(_PART) or (name.endswith(_META) and
                                                        not (base / name[1:-len(_META)]).exists()):
                                path.unlink()
                            continue
                        path.unlink()
                        _meta_path(path).unlink(missing_ok=True)
                        removed += 1
                    except FileNotFoundError:
                        continue
                for name in dirs:  # emptied folders go too (an object store has no empty folders)
                    with contextlib.suppress(OSError):
                        (base / name).rmdir()
        except OSError as exc:
            raise StorageUnavailable.of(exc) from exc
        return removed

    # --- reads -------------------------------------------------------------------------------------------------
    def open(self, key: str) -> OpenedObject | None:
        path = self._path(key)
        try:
            media_type, expires_at = self._meta(path)
            if expires_at is not None and expires_at <= time.time():
                return None
            reader = open(path, "rb")  # noqa: SIM115 - the caller closes it
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None
        except OSError as exc:
            raise StorageUnavailable(full=False) from exc
        return OpenedObject(reader, os.fstat(reader.fileno()).st_size, media_type, expires_at)

    @staticmethod
    def _meta(path: Path) -> tuple[str, float | None]:
        """The media type and expiry of the object at `path`: from its sidecar, else from its name."""
        try:
            meta = json.loads(_meta_path(path).read_bytes())
        except FileNotFoundError:
            return _media_type_of(path.name), None
        except ValueError:  # a sidecar cut short (a crash mid-write cannot, but a full disk might): ignore it
            return _media_type_of(path.name), None
        expires_at = meta.get("expires_at")
        return str(meta.get("media_type") or _media_type_of(path.name)), (
            float(expires_at) if expires_at is not None else None)

    def children(self, prefix: str, *, older_than: float) -> list[str]:
        top = self._path(prefix)
        cutoff = time.time() - older_than
        try:
            entries = list(os.scandir(top))
        except (FileNotFoundError, NotADirectoryError):
            return []
        except OSError as exc:
            raise StorageUnavailable(full=False) from exc
        names = []
        for entry in entries:
            if entry.name.startswith(".") or not entry.is_dir(follow_symlinks=False):
                continue
            newest = _newest_mtime(Path(entry.path))
            if newest is not None and newest <= cutoff:
                names.append(entry.name)
        return sorted(names)

    def presigned_url(self, key: str, expires_in: int) -> str | None:
        check_key(key)
        return None


def _newest_mtime(folder: Path) -> float | None:
    """The newest modification time of `folder` and of everything in it (partial writes included); None if the
    folder went away meanwhile (being deleted)."""
    try:
        newest = folder.stat().st_mtime
    except FileNotFoundError:
        return None
    for base, dirs, files in os.walk(folder):
        for name in dirs + files:
            with contextlib.suppress(FileNotFoundError):
                newest = max(newest, os.lstat(os.path.join(base, name)).st_mtime)
    return newest
