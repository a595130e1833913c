"""The SDK's S3 driver as ``activities.blobstore`` configures it (imported only when
``HARNESS_S3_BUCKET`` is set: it needs the ``s3`` extra's aioboto3)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence

import aioboto3
from temporalio.api.common.v1 import Payload
from temporalio.contrib.aws.s3driver import S3StorageDriver, S3StorageDriverClient
from temporalio.contrib.aws.s3driver.aioboto3 import new_aioboto3_client
from temporalio.converter import StorageDriverClaim, StorageDriverStoreContext

__all__ = ["s3_driver"]


def s3_driver(bucket: str, prefix: str, endpoint_url: str, region: str) -> S3StorageDriver:
    """The SDK's S3 driver on ``bucket``, storing under ``prefix`` (empty, or ending in ``/``), at
    ``endpoint_url`` and in ``region`` (empty: the AWS defaults)."""
    client = _Aioboto3Client(prefix, endpoint_url or None, region or None)
    return _PrefixedS3Driver(client, bucket, prefix)


class _Aioboto3Client(S3StorageDriverClient):
    """The SDK's aioboto3 adapter on a client opened per operation; stores put ``prefix`` before
    their key, reads take the key as the reference names it (prefix included, see
    ``_PrefixedS3Driver``).

    Per operation because ``data_converter()`` is built outside any event loop and may serve more
    than one, while an aioboto3 client belongs to the loop it was opened in and must be closed;
    payloads over the threshold are rare enough that the set-up does not count.
    """

    def __init__(self, prefix: str, endpoint_url: str | None, region: str | None) -> None:
        self.session = aioboto3.Session()
        self.prefix = prefix
        self.endpoint_url = endpoint_url
        self.region = region

    @contextlib.asynccontextmanager
    async def _opened(self) -> AsyncIterator[S3StorageDriverClient]:
        async with self.session.client("s3", endpoint_url=self.endpoint_url, region_name=self.region) as s3:
            yield new_aioboto3_client(s3)

    async def object_exists(self, *, bucket: str, key: str) -> bool:
        """Whether ``prefix + key`` exists (the driver asks before it stores)."""
        async with self._opened() as client:
            return await client.object_exists(bucket=bucket, key=self.prefix + key)

    async def put_object(self, *, bucket: str, key: str, data: bytes) -> None:
        """Upload ``data`` to ``prefix + key``."""
        async with self._opened() as client:
            await client.put_object(bucket=bucket, key=self.prefix + key, data=data)

    async def get_object(self, *, bucket: str, key: str) -> bytes:
        """Download ``key``, which a reference names whole."""
        async with self._opened() as client:
            return await client.get_object(bucket=bucket, key=key)

    def describe(self) -> dict[str, str]:
        """The endpoint and region, for the driver's error messages."""
        return {"endpoint": self.endpoint_url or "aws", "region": self.region or "default"}


class _PrefixedS3Driver(S3StorageDriver):
    """The SDK's driver, whose references name the object's whole key, prefix included: a reader
    finds the blob whatever its own ``HARNESS_S3_PREFIX`` is."""

    def __init__(self, client: _Aioboto3Client, bucket: str, prefix: str) -> None:
        super().__init__(client=client, bucket=bucket)
        self.prefix = prefix

    async def store(
        self, context: StorageDriverStoreContext, payloads: Sequence[Payload]
    ) -> list[StorageDriverClaim]:
        """Store as the SDK's driver does; name the prefixed key in each claim."""
        claims = await super().store(context, payloads)
        return [
            StorageDriverClaim(claim_data={**claim.claim_data, "key": self.prefix + claim.claim_data["key"]})
            for claim in claims
        ]
