"""Object store port and its S3 adapter."""

from __future__ import annotations

from typing import Any, Protocol

from botocore.exceptions import ClientError


class ObjectStore(Protocol):
    """Where the lake's files go. ``put`` replaces an object atomically (S3 semantics)."""

    async def put(self, key: str, body: bytes) -> None: ...


class S3ObjectStore:
    """``put`` = one PutObject (atomic: readers see the old or the new object, never a part).

    ``kms_key_id`` set: objects are encrypted with that key (SSE-KMS); else the bucket default.
    """

    def __init__(self, client: Any, bucket: str, *, kms_key_id: str | None = None) -> None:
        self._client = client
        self._bucket = bucket
        self._kms_key_id = kms_key_id

    async def put(self, key: str, body: bytes) -> None:
        extra: dict[str, str] = {}
        if self._kms_key_id:
            extra = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": self._kms_key_id}
        await self._client.put_object(
            Bucket=self._bucket,
            Key=key,
            Body=body,
            ContentType="application/vnd.apache.parquet",
            **extra,
        )

    async def ensure_bucket(self) -> None:
        """Create the bucket if missing (local emulators with AUTO_CREATE; Terraform in AWS)."""
        try:
            await self._client.head_bucket(Bucket=self._bucket)
        except ClientError:
            await self._client.create_bucket(Bucket=self._bucket)
