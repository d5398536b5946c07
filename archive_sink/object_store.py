"""An S3-compatible object store (AWS S3, MinIO, Ceph RGW, OSS/COS/OBS in S3 mode) as a place for archive copies.

Configured the way every S3 tool is: credentials, region and endpoint come from boto3's standard chain
(`AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY` or a profile, `AWS_DEFAULT_REGION`, `AWS_ENDPOINT_URL` or
`AWS_ENDPOINT_URL_S3` for a store that is not AWS), never from the `s3://bucket/prefix` location, so no
secret is ever part of a name the hub prints or logs.

An object store has no rename, so nothing here is "published": callers write a package's objects first
and a marker object last, and treat only marked packages as held. Every object is sent with its SHA-256
(`ChecksumSHA256`, which AWS S3 checks on receipt) and read back and re-hashed by the caller before the
marker goes up, because not every S3-compatible store checks what it is sent.

A bucket with S3 Object Lock (WORM) keeps every version of an object and refuses to delete a version
before its retention date, whoever asks (COMPLIANCE mode). `Lock` says how one object is protected: until a
date, or under a legal hold when no end is known (永久).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

READ_CHUNK = 1 << 20


class ObjectStoreError(RuntimeError):
    """The store cannot be reached or refused a request; the message names the location, never a secret."""


@dataclass(frozen=True)
class S3Location:
    """`s3://bucket/prefix`: where a backup lives. The prefix never starts or ends with '/'."""

    bucket: str
    prefix: str = ""

    @classmethod
    def parse(cls, url: str) -> S3Location:
        if not url.startswith("s3://"):
            raise ValueError(f"{url!r} is not an s3://bucket/prefix location")
        bucket, _, prefix = url.removeprefix("s3://").partition("/")
        if not bucket or "@" in bucket or ":" in bucket:
            # not echoed: what stands before an '@' may be a key someone typed into the location
            raise ValueError(
                "an S3 backup is named s3://bucket/prefix, with nothing else in it; credentials and endpoint "
                "come from the AWS_* environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL)"
            )
        return cls(bucket, prefix.strip("/"))

    def key(self, *parts: str) -> str:
        return "/".join(p.strip("/") for p in (self.prefix, *parts) if p.strip("/"))

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"


@dataclass(frozen=True)
class Lock:
    """Object Lock for one object: retained in `mode` until `until`, or under a legal hold when `until` is None."""

    mode: str = "COMPLIANCE"
    until: dt.date | None = None

    def put_args(self) -> dict[str, Any]:
        if self.until is None:
            return {"ObjectLockLegalHoldStatus": "ON"}
        return {
            "ObjectLockMode": self.mode,
            "ObjectLockRetainUntilDate": dt.datetime.combine(self.until, dt.time(), dt.UTC),
        }


class ObjectVersion(NamedTuple):
    key: str
    version_id: str
    modified: Any  # datetime, as the store reports it
    deleted: bool  # a delete marker, not bytes


def is_s3_url(text: str) -> bool:
    return text.startswith("s3://")


def sha256_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")


class ObjectStore:
    """One bucket and prefix, with the few calls a backup needs, each failure turned into one clear line."""

    def __init__(self, location: S3Location, client: Any = None) -> None:
        self.location = location
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3
            from botocore.config import Config

            custom_endpoint = bool(
                os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
            )
            config = Config(
                retries={"mode": "standard", "max_attempts": 5},  # 5xx, throttling, timeouts: with backoff
                # A store that is not AWS (MinIO, moto, a loopback address) is addressed by path, not by a
                # bucket sub-domain its DNS does not have.
                s3={"addressing_style": "path" if custom_endpoint else "auto"},
                # the backup's upload workers plus each managed transfer's own threads share one client
                max_pool_connections=32,
            )
            region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
            self._client = boto3.session.Session().client("s3", region_name=region, config=config)
        return self._client

    def check_access(self) -> None:
        """Fail at once, naming the bucket, when it cannot be reached or written: before any work is done."""
        self._call("reach the bucket", self.client.head_bucket, Bucket=self.location.bucket)

    def lock_default(self) -> tuple[str, bool] | None:
        """When the bucket has Object Lock: the mode to use (its default retention's, else COMPLIANCE) and
        whether a default retention applies to objects put without one. None when it has no Object Lock."""
        from botocore.exceptions import ClientError

        try:
            response = self.client.get_object_lock_configuration(Bucket=self.location.bucket)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ObjectLockConfigurationNotFoundError":
                return None
            raise self._error("read the bucket's Object Lock configuration", exc) from None
        except Exception as exc:
            raise self._error("read the bucket's Object Lock configuration", exc) from None
        config = response.get("ObjectLockConfiguration", {})
        if config.get("ObjectLockEnabled") != "Enabled":
            return None
        default = config.get("Rule", {}).get("DefaultRetention", {})
        return default.get("Mode") or "COMPLIANCE", bool(default)

    def versioned(self) -> bool:
        response = self._call(
            "read the bucket's versioning", self.client.get_bucket_versioning, Bucket=self.location.bucket
        )
        return response.get("Status") in ("Enabled", "Suspended")

    def put(self, key: str, data: bytes, lock: Lock | None = None) -> str | None:
        """Returns the new object's version id in a versioned bucket."""
        response = self._call(
            f"write {key}",
            self.client.put_object,
            Bucket=self.location.bucket,
            Key=key,
            Body=data,
            ChecksumAlgorithm="SHA256",  # Object Lock requires the algorithm be named
            ChecksumSHA256=sha256_b64(data),
            **(lock.put_args() if lock else {}),
        )
        return response.get("VersionId")

    def put_file(
        self, key: str, path: os.PathLike[str] | str, lock: Lock | None = None, part_size: int = 64 << 20
    ) -> str | None:
        """A file sent in parts of `part_size` when larger (boto3's managed transfer), each with its SHA-256."""
        from boto3.s3.transfer import TransferConfig

        self._call(
            f"write {key}",
            self.client.upload_file,
            str(path),
            self.location.bucket,
            key,
            ExtraArgs={"ChecksumAlgorithm": "SHA256", **(lock.put_args() if lock else {})},
            Config=TransferConfig(multipart_threshold=part_size, multipart_chunksize=part_size),
        )
        head = self._call(f"read {key}", self.client.head_object, Bucket=self.location.bucket, Key=key)
        return head.get("VersionId")

    def current_version(self, key: str) -> str | None:
        head = self._call(f"read {key}", self.client.head_object, Bucket=self.location.bucket, Key=key)
        return head.get("VersionId")

    def get(self, key: str, version: str | None = None) -> bytes:
        return b"".join(self.stream(key, version))

    def stream(self, key: str, version: str | None = None) -> Iterator[bytes]:
        extra = {"VersionId": version} if version else {}
        response = self._call(
            f"read {key}", self.client.get_object, Bucket=self.location.bucket, Key=key, **extra
        )
        body = response["Body"]
        try:
            while True:
                try:
                    chunk = body.read(READ_CHUNK)
                except Exception as exc:  # a checksum that does not match, a connection cut mid-object
                    raise self._error(f"read {key}", exc) from None
                if not chunk:
                    return
                yield chunk
        finally:
            body.close()

    def versions(self, prefix: str) -> Iterator[ObjectVersion]:
        """Every version and delete marker under `prefix` (what deleting for good takes), in the store's order."""
        paginator = self.client.get_paginator("list_object_versions")
        try:
            for page in paginator.paginate(Bucket=self.location.bucket, Prefix=prefix):
                for deleted, field in ((False, "Versions"), (True, "DeleteMarkers")):
                    for item in page.get(field, []):
                        yield ObjectVersion(item["Key"], item["VersionId"], item["LastModified"], deleted)
        except Exception as exc:
            raise self._error(f"list the versions under {prefix}", exc) from None

    def versions_of(self, key: str) -> list[ObjectVersion]:
        """The versions of exactly `key` (no delete markers), the first written first."""
        found = [v for v in self.versions(key) if v.key == key and not v.deleted]
        return sorted(found, key=lambda v: v.modified)

    def keys(self, prefix: str) -> Iterator[str]:
        """Every key under `prefix` (a folder: give it a trailing '/'), in the store's order (UTF-8 binary)."""
        paginator = self.client.get_paginator("list_objects_v2")
        pages = paginator.paginate(Bucket=self.location.bucket, Prefix=prefix)
        try:
            for page in pages:
                for item in page.get("Contents", []):
                    yield item["Key"]
        except Exception as exc:
            raise self._error(f"list {prefix}", exc) from None

    def delete(self, keys: list[str | tuple[str, str]]) -> None:
        """Objects deleted: a key (in a versioned bucket that only hides it), or (key, version id) for good."""
        for start in range(0, len(keys), 1000):  # the most one DeleteObjects request takes
            chunk = keys[start : start + 1000]
            objects = [{"Key": k} if isinstance(k, str) else {"Key": k[0], "VersionId": k[1]} for k in chunk]
            response = self._call(
                f"delete {len(chunk)} object(s) under {self.location}",
                self.client.delete_objects,
                Bucket=self.location.bucket,
                Delete={"Objects": objects, "Quiet": True},
            )
            if response.get("Errors"):
                first = response["Errors"][0]
                raise ObjectStoreError(
                    f"{self.location}: cannot delete {first.get('Key')}: {first.get('Code')} "
                    f"{first.get('Message', '')} ({len(response['Errors'])} object(s) not deleted)"
                )

    def _call(self, what: str, method: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except Exception as exc:
            raise self._error(what, exc) from None

    def _error(self, what: str, exc: Exception) -> ObjectStoreError:
        from boto3.exceptions import Boto3Error
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        if isinstance(exc, Boto3Error) and isinstance(exc.__context__, ClientError | BotoCoreError):
            exc = exc.__context__  # upload_file wraps the store's answer in S3UploadFailedError
        if isinstance(exc, NoCredentialsError):
            reason = "no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE)"
        elif isinstance(exc, ClientError):
            error = exc.response.get("Error", {})
            code = error.get("Code", "")
            reason = {
                "404": "no such bucket" if what == "reach the bucket" else "not found",
                "NoSuchBucket": "no such bucket",
                "NoSuchKey": "not found",
                "403": "access denied",
                "AccessDenied": "access denied",
                "InvalidAccessKeyId": "the access key is not known to the store",
                "SignatureDoesNotMatch": "the secret key does not match the access key",
            }.get(code, f"{code} {error.get('Message', '')}".strip())
        elif isinstance(exc, BotoCoreError):
            reason = str(exc)  # endpoint unreachable, read timeout: botocore names the endpoint, not secrets
        elif isinstance(exc, Boto3Error):
            reason = type(exc).__name__
        else:
            raise exc
        return ObjectStoreError(f"{self.location}: cannot {what}: {reason}")
