"""The files of video jobs in the object store: `videos/<storage>/` holds `job.json` (the job's settings, written
first: a store that takes no writes refuses the job before it is accepted), `video.mp4`, `thumbnail.webp`,
`spritesheet.jpg` and `reference.png` (the input image, kept for remixes and resumed jobs). `<storage>` is a random
name chosen by the server and kept in the job's record. Blocking calls: callers run them off the event loop."""

from __future__ import annotations

import secrets

from ..errors import StorageUnavailable
from ..jobs.records import ARTIFACTS, REFERENCE_FILE
from ..storage import ObjectStore, OpenedObject

__all__ = ["JobFiles"]

_PROBE = "videos/write-probe"
_ORPHAN_AGE = 600.0  # a folder without a record for this long was left by a crash (not a job being created)


class JobFiles:
    def __init__(self, objects: ObjectStore) -> None:
        self.objects = objects

    @staticmethod
    def new_storage() -> str:
        return secrets.token_hex(16)

    @staticmethod
    def _key(storage: str, name: str) -> str:
        return f"videos/{storage}/{name}"

    def write_settings(self, storage: str, data: bytes) -> None:
        self.objects.put(self._key(storage, "job.json"), data, "application/json")

    def write_reference(self, storage: str, data: bytes) -> None:
        self.objects.put(self._key(storage, REFERENCE_FILE), data, "image/png")

    def read_reference(self, storage: str) -> bytes | None:
        return self.objects.read(self._key(storage, REFERENCE_FILE))

    def write_artifact(self, storage: str, variant: str, data: bytes) -> None:
        name, media_type = ARTIFACTS[variant]
        self.objects.put(self._key(storage, name), data, media_type)

    def remove_artifacts(self, storage: str) -> None:
        """After a failed write: none of the outputs stays (the job fails as a whole); the reference does."""
        for name, _ in ARTIFACTS.values():
            try:
                self.objects.delete(self._key(storage, name))
            except StorageUnavailable:
                pass

    def open_artifact(self, storage: str, variant: str) -> OpenedObject | None:
        return self.objects.open(self._key(storage, ARTIFACTS[variant][0]))

    def remove(self, storage: str) -> None:
        try:
            self.objects.delete_prefix(f"videos/{storage}")
        except StorageUnavailable:  # the orphan sweep removes it later
            pass

    def remove_orphans(self, known: set[str]) -> int:
        """Folders no record names (left by a crash between writing files and recording them). In a shared store
        only those older than a few minutes: younger ones may belong to a job another replica is creating now."""
        age = _ORPHAN_AGE if self.objects.shared else 0.0
        orphans = [name for name in self.objects.children("videos", older_than=age) if name not in known]
        for name in orphans:
            self.remove(name)
        return len(orphans)

    def writable(self) -> bool:
        """Whether the jobs' folder takes a write now (a probe object written and removed; on a local disk this also
        creates the folder)."""
        try:
            self.objects.put(_PROBE, b"\0" * 4096, "application/octet-stream")
            self.objects.delete(_PROBE)
            return True
        except StorageUnavailable:
            return False
