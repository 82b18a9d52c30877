"""Where the server's files live: a local folder or an S3-compatible bucket (`--object-store`).

`open_object_store(url, data_dir=...)` gives the ObjectStore; ObjectImageStore keeps `response_format=url` images in
one. S3ObjectStore is in `openai_dit.storage.s3` (importing it imports boto3).
"""

from __future__ import annotations

from .base import ObjectStore, ObjectStoreUnreachable, OpenedObject, check_key, open_object_store
from .images import ObjectImageStore
from .local import LocalObjectStore

__all__ = ["LocalObjectStore", "ObjectImageStore", "ObjectStore", "ObjectStoreUnreachable", "OpenedObject",
           "check_key", "open_object_store"]
