"""The object store in an S3-compatible bucket (`--object-store s3://bucket/prefix`), shared by every replica.

Through boto3: the endpoint is the one given (`endpoint_url`), else boto3's own (AWS_ENDPOINT_URL_S3,
AWS_ENDPOINT_URL, the config file); credentials and region come from boto3's default chain. With an endpoint of
one's own (MinIO, moto, Ceph...) addressing is path-style (`http://host/bucket/key`), which works on a bare IP.
An object's key in the bucket is `<prefix>/<key>`. A `put` is one PutObject: S3 never shows half an object.
"""

from __future__ import annotations

import logging
import math
import os
import secrets
import time
from collections.abc import Iterator
from typing import Any, NoReturn
from urllib.parse import urlsplit, urlunsplit

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
)

from ..errors import StorageUnavailable
from .base import ObjectStore, ObjectStoreUnreachable, OpenedObject, check_key

__all__ = ["S3ObjectStore"]

logger = logging.getLogger(__name__)

_MISSING = {"NoSuchKey", "404", "NotFound"}
_FULL = {"XMinioStorageFull", "QuotaExceeded", "StorageFull", "InsufficientStorage"}
_EXPIRES = "expires-at"  # user metadata (x-amz-meta-expires-at): epoch seconds
_PROBE = ".openai-dit-probe"  # a hidden folder under the prefix: no key can name it (check_key)
_BATCH = 1000  # DeleteObjects takes at most 1000 keys
_MAX_PRESIGN = 7 * 24 * 3600  # SigV4's longest validity


def _code(exc: BaseException) -> str:
    """The S3 error code of a ClientError ("NoSuchKey", "AccessDenied", "404"...), else ""."""
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


def _without_userinfo(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class S3ObjectStore(ObjectStore):
    """Objects in `bucket` under `prefix` ("" for the bucket's root). Thread-safe: one boto3 client, made here."""

    shared = True

    def __init__(self, bucket: str, prefix: str = "", endpoint_url: str | None = None, *,
                 connect_timeout: float = 5, read_timeout: float = 30, max_attempts: int = 3) -> None:
        self.bucket = bucket
        self.prefix = check_key(prefix.strip("/")) if prefix.strip("/") else ""
        self.description = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        own_endpoint = endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        s3_options = {"addressing_style": "path"} if own_endpoint else {}

        def config(connect: float, read: float, attempts: int) -> Config:
            return Config(retries={"max_attempts": attempts, "mode": "standard"}, connect_timeout=connect,
                          read_timeout=read, signature_version="s3v4", s3=s3_options)

        session = boto3.session.Session()
        self._client = session.client("s3", endpoint_url=endpoint_url,
                                      config=config(connect_timeout, read_timeout, max_attempts))
        # /ready asks `writable()` often and wants an answer within seconds: one attempt, short timeouts.
        self._probe_client = session.client("s3", endpoint_url=endpoint_url,
                                            config=config(min(connect_timeout, 2), min(read_timeout, 5), 1))

    def _key(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _fail(self, action: str, key: str, exc: BaseException) -> NoReturn:
        """Log why (for operators: the error code and message) and raise the StorageUnavailable it stands for
        (for clients: nothing of the endpoint, bucket or key)."""
        code = _code(exc)
        logger.warning("%s: %s %s failed: %s", self.description, action, key, exc)
        raise StorageUnavailable(full=code in _FULL or "storagefull" in code.lower()) from exc

    # --- start-up and readiness --------------------------------------------------------------------------------
    def check(self) -> None:
        try:
            self._client.head_bucket(Bucket=self.bucket)
        except (ClientError, BotoCoreError) as exc:
            raise ObjectStoreUnreachable(f"{self.description}: {self._reason(exc)}") from None
        probe = self._probe_key()
        try:
            self._client.put_object(Bucket=self.bucket, Key=probe, Body=b"probe", ContentType="text/plain")
            self._client.delete_object(Bucket=self.bucket, Key=probe)
        except (ClientError, BotoCoreError) as exc:
            raise ObjectStoreUnreachable(f"{self.description}: cannot write under the prefix: "
                                         f"{self._reason(exc)}") from None

    def _reason(self, exc: BaseException) -> str:
        """One line saying why `exc` happened, without credentials."""
        code = _code(exc)
        if code in ("404", "NoSuchBucket"):
            return "the bucket does not exist"
        if code in ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AllAccessDisabled"):
            return f"access denied ({code}: check the credentials and the bucket's policy)"
        if isinstance(exc, NoCredentialsError | PartialCredentialsError):
            return ("no credentials found (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or give the "
                    "server a role)")
        if isinstance(exc, EndpointConnectionError | ConnectTimeoutError):
            endpoint = _without_userinfo(self._client.meta.endpoint_url)
            return f"cannot connect to the endpoint ({endpoint}: {type(exc).__name__})"
        if code:
            message = str(exc.response.get("Error", {}).get("Message", "")) if isinstance(exc, ClientError) else ""
            return f"{code}{': ' + message if message else ''}"
        return f"{type(exc).__name__}: {exc}"

    def _probe_key(self) -> str:
        """A fresh key for a probe object, in a hidden folder under the prefix (check_key refuses it: no object's)."""
        return (f"{self.prefix}/" if self.prefix else "") + f"{_PROBE}/{secrets.token_hex(8)}"

    def writable(self) -> bool:
        probe = self._probe_key()
        try:
            self._probe_client.put_object(Bucket=self.bucket, Key=probe, Body=b"probe", ContentType="text/plain")
            self._probe_client.delete_object(Bucket=self.bucket, Key=probe)
            return True
        except Exception:  # noqa: BLE001 - never raises: a probe says yes or no
            return False

    # --- objects -----------------------------------------------------------------------------------------------
    def put(self, key: str, data: bytes, media_type: str, *, expires_at: float | None = None) -> None:
        extra: dict[str, Any] = {}
        if expires_at is not None:
            extra["Metadata"] = {_EXPIRES: str(int(math.ceil(expires_at)))}
        try:
            self._client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, ContentType=media_type,
                                    **extra)
        except (ClientError, BotoCoreError) as exc:
            self._fail("put", key, exc)

    def open(self, key: str) -> OpenedObject | None:
        try:
            response = self._client.get_object(Bucket=self.bucket, Key=self._key(key))
        except (ClientError, BotoCoreError) as exc:
            if _code(exc) in _MISSING:
                return None
            self._fail("get", key, exc)
        expires_at: float | None = None
        raw = response.get("Metadata", {}).get(_EXPIRES)
        if raw is not None:
            try:
                expires_at = float(raw)
            except ValueError:
                expires_at = None
        if expires_at is not None and expires_at <= time.time():
            response["Body"].close()
            return None
        return OpenedObject(response["Body"], int(response["ContentLength"]),
                            response.get("ContentType") or "application/octet-stream", expires_at)

    def _list(self, prefix: str) -> Iterator[dict[str, Any]]:
        """Every object under `prefix/` (the bucket's key, prefix included) as list_objects_v2 describes it."""
        paginator = self._client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key(prefix) + "/"):
            yield from page.get("Contents", [])

    def _delete(self, keys: list[str]) -> None:
        for start in range(0, len(keys), _BATCH):
            batch = keys[start:start + _BATCH]
            response = self._client.delete_objects(
                Bucket=self.bucket, Delete={"Objects": [{"Key": key} for key in batch], "Quiet": True})
            errors = response.get("Errors") or []
            if errors:
                first = errors[0]
                raise ClientError({"Error": {"Code": first.get("Code", ""), "Message": first.get("Message", "")}},
                                  "DeleteObjects")

    def delete(self, key: str) -> None:
        try:
            self._client.delete_object(Bucket=self.bucket, Key=self._key(key))  # S3 answers 204 for a missing key
        except (ClientError, BotoCoreError) as exc:
            if _code(exc) not in _MISSING:
                self._fail("delete", key, exc)

    def delete_prefix(self, prefix: str) -> None:
        try:
            self._delete([item["Key"] for item in self._list(prefix)])
        except (ClientError, BotoCoreError) as exc:
            self._fail("delete", prefix + "/", exc)

    def children(self, prefix: str, *, older_than: float) -> list[str]:
        base = self._key(prefix) + "/"
        cutoff = time.time() - older_than
        newest: dict[str, float] = {}
        try:
            for item in self._list(prefix):
                rest = item["Key"][len(base):]
                if "/" not in rest:
                    continue  # an object right under the prefix: not in a sub-folder
                name = rest.split("/", 1)[0]
                newest[name] = max(newest.get(name, 0.0), item["LastModified"].timestamp())
        except (ClientError, BotoCoreError) as exc:
            self._fail("list", base, exc)
        return sorted(name for name, modified in newest.items() if modified <= cutoff)

    def remove_older_than(self, prefix: str, age_seconds: float) -> int:
        cutoff = time.time() - age_seconds
        try:
            old = [item["Key"] for item in self._list(prefix) if item["LastModified"].timestamp() <= cutoff]
            self._delete(old)
        except (ClientError, BotoCoreError) as exc:
            self._fail("delete", prefix + "/", exc)
        return len(old)

    def presigned_url(self, key: str, expires_in: int) -> str | None:
        """A pre-signed GET URL, valid for `expires_in` seconds (kept within 1 s and 7 days, SigV4's limits). It is
        signed here, without a request: it does not say that the object exists."""
        seconds = max(1, min(int(expires_in), _MAX_PRESIGN))
        try:
            return str(self._client.generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": self._key(key)}, ExpiresIn=seconds))
        except (ClientError, BotoCoreError) as exc:  # no credentials to sign with
            self._fail("presign", key, exc)
