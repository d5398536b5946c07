"""An S3-compatible object store (AWS S3, MinIO, Ceph RGW, OSS/COS/OBS in S3 mode) as a place for archive copies.

Configured the way every S3 tool is: credentials, region and endpoint come from boto3's standard chain
(`AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY` or a profile, `AWS_DEFAULT_REGION`, `AWS_ENDPOINT_URL` or
`AWS_ENDPOINT_URL_S3` for a store that is not AWS), never from the `s3://bucket/prefix` location, so no
secret is ever part of a name the hub prints or logs.

An object store has no rename, so nothing here is "published": callers write a package's objects first
and a marker object last, and treat only marked packages as held. Every object is sent with its SHA-256
(`ChecksumSHA256`, which AWS S3 checks on receipt) and read back and re-hashed by the caller before the
marker goes up, because not every S3-compatible store checks what it is sent.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

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
            )
            region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
            self._client = boto3.session.Session().client("s3", region_name=region, config=config)
        return self._client

    def check_access(self) -> None:
        """Fail at once, naming the bucket, when it cannot be reached or written: before any work is done."""
        self._call("reach the bucket", self.client.head_bucket, Bucket=self.location.bucket)

    def put(self, key: str, data: bytes) -> None:
        self._call(
            f"write {key}",
            self.client.put_object,
            Bucket=self.location.bucket,
            Key=key,
            Body=data,
            ChecksumSHA256=sha256_b64(data),
        )

    def put_file(self, key: str, path: os.PathLike[str] | str) -> None:
        """A file sent in parts when large (boto3's managed transfer), with a SHA-256 checksum per part."""
        from boto3.s3.transfer import TransferConfig

        self._call(
            f"write {key}",
            self.client.upload_file,
            str(path),
            self.location.bucket,
            key,
            ExtraArgs={"ChecksumAlgorithm": "SHA256"},
            Config=TransferConfig(multipart_threshold=64 << 20, multipart_chunksize=64 << 20),
        )

    def get(self, key: str) -> bytes:
        response = self._call(f"read {key}", self.client.get_object, Bucket=self.location.bucket, Key=key)
        return response["Body"].read()

    def stream(self, key: str) -> Iterator[bytes]:
        response = self._call(f"read {key}", self.client.get_object, Bucket=self.location.bucket, Key=key)
        body = response["Body"]
        try:
            while chunk := body.read(READ_CHUNK):
                yield chunk
        finally:
            body.close()

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

    def delete(self, keys: list[str]) -> None:
        for start in range(0, len(keys), 1000):  # the most one DeleteObjects request takes
            chunk = keys[start : start + 1000]
            response = self._call(
                f"delete {len(chunk)} object(s) under {self.location}",
                self.client.delete_objects,
                Bucket=self.location.bucket,
                Delete={"Objects": [{"Key": k} for k in chunk], "Quiet": True},
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
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        if isinstance(exc, NoCredentialsError):
            reason = "no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE)"
        elif isinstance(exc, ClientError):
            error = exc.response.get("Error", {})
            code = error.get("Code", "")
            reason = {
                "404": "no such bucket",
                "NoSuchBucket": "no such bucket",
                "403": "access denied",
                "AccessDenied": "access denied",
                "InvalidAccessKeyId": "the access key is not known to the store",
                "SignatureDoesNotMatch": "the secret key does not match the access key",
            }.get(code, f"{code} {error.get('Message', '')}".strip())
        elif isinstance(exc, BotoCoreError):
            reason = str(exc)  # endpoint unreachable, read timeout: botocore names the endpoint, not secrets
        else:
            raise exc
        return ObjectStoreError(f"{self.location}: cannot {what}: {reason}")
