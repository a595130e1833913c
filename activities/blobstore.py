"""Large payloads outside history: the SDK's ``ExternalStorage`` with a local-disk driver of ours
for the embedded default, or the SDK's S3 driver for a cluster.

A payload of at least ``HARNESS_BLOB_THRESHOLD`` bytes (default 64 KiB; a long turn text, say) is
written to the blob store and history holds only a small reference to it. The data converter seals a
payload with the codec (``activities.codec``) before it is stored, so with a key set a blob is
ciphertext, wherever it lives. The settings come from this process's environment:

- ``HARNESS_BLOBS=off``: keep every new payload inline, as before (the default is on); payloads
  already stored are still read, so histories that refer to them replay.
- ``HARNESS_BLOB_THRESHOLD``: the size in bytes from which a payload is stored outside.
- ``HARNESS_S3_BUCKET``: store in this S3 bucket (any S3-compatible store; it must exist), under
  ``HARNESS_S3_PREFIX``, at ``HARNESS_S3_ENDPOINT_URL`` (or ``AWS_ENDPOINT_URL``; unset: AWS), in
  ``AWS_REGION``, with the standard AWS credentials. Needs the ``s3`` extra.
- otherwise on local disk, in ``HARNESS_BLOB_DIR`` (default ``.harness/blobs`` under the working
  directory), content-addressed by the sha256 of the payload.

Every client and worker that reads a job must see the same store: the embedded default runs them on
one machine, in one working directory; a cluster shares a bucket.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from temporalio.api.common.v1 import Payload
from temporalio.converter import (
    ExternalStorage,
    StorageDriver,
    StorageDriverClaim,
    StorageDriverRetrieveContext,
    StorageDriverSelectContext,
    StorageDriverStoreContext,
)

__all__ = [
    "BLOBS_ENV",
    "BLOB_DIR_ENV",
    "DEFAULT_BLOB_DIR",
    "DEFAULT_THRESHOLD",
    "S3_BUCKET_ENV",
    "S3_ENDPOINT_ENV",
    "S3_PREFIX_ENV",
    "THRESHOLD_ENV",
    "BlobError",
    "BlobSettingError",
    "DiskBlobDriver",
    "blob_driver_from_env",
    "external_storage_from_env",
]

BLOBS_ENV = "HARNESS_BLOBS"
BLOB_DIR_ENV = "HARNESS_BLOB_DIR"
THRESHOLD_ENV = "HARNESS_BLOB_THRESHOLD"
S3_BUCKET_ENV = "HARNESS_S3_BUCKET"
S3_PREFIX_ENV = "HARNESS_S3_PREFIX"
S3_ENDPOINT_ENV = "HARNESS_S3_ENDPOINT_URL"
DEFAULT_BLOB_DIR = Path(".harness") / "blobs"
DEFAULT_THRESHOLD = 64 * 1024
"""Bytes; the SDK's own default is 256 KiB, but a turn text of 64 KiB already bloats history."""


class BlobSettingError(ValueError):
    """A blob-store setting that cannot be used; the message names the variable."""


class BlobError(RuntimeError):
    """A stored payload that cannot be read back: missing, or not the bytes its reference names."""


class DiskBlobDriver(StorageDriver):
    """Payloads as files under ``root``, named by the sha256 of their bytes (``root/ab/abcd...``).

    The same bytes are stored once (sealed payloads never repeat: each has a fresh nonce). A file is
    written to a temporary name and then renamed, so a reader sees a whole blob or none, never half
    of one (no fsync: a power loss can lose a blob). Files are private to their owner: they hold
    payload data.
    ``root`` is made on the first store, so a worker that never stores a large payload writes
    nothing. A read checks the bytes against the hash in the reference.
    """

    def __init__(self, root: Path, driver_name: str = "harness.disk") -> None:
        # Fixed now: a later chdir of the process must not move the store.
        self.root = root.absolute()
        self._name = driver_name

    def name(self) -> str:
        """The name references carry (one per ``ExternalStorage``)."""
        return self._name

    def type(self) -> str:
        """The driver type, the same for every instance."""
        return "harness.disk"

    def path_of(self, digest: str) -> Path:
        """Where the blob with sha256 ``digest`` (lower-case hex) lives."""
        return self.root / digest[:2] / digest

    async def store(
        self, context: StorageDriverStoreContext, payloads: Sequence[Payload]
    ) -> list[StorageDriverClaim]:
        """Write each payload (unless the same bytes are already stored); one claim per payload."""
        return await asyncio.to_thread(lambda: [self._write(payload) for payload in payloads])

    async def retrieve(
        self, context: StorageDriverRetrieveContext, claims: Sequence[StorageDriverClaim]
    ) -> list[Payload]:
        """Read back each claimed payload, checked against its hash."""
        return await asyncio.to_thread(lambda: [self._read(claim) for claim in claims])

    def _write(self, payload: Payload) -> StorageDriverClaim:
        data = payload.SerializeToString()
        digest = hashlib.sha256(data).hexdigest()
        path = self.path_of(digest)
        if not path.exists():
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{digest[:16]}-", suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as file:
                    file.write(data)
                os.replace(temp, path)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(temp)
                raise
        return StorageDriverClaim(claim_data={"hash_algorithm": "sha256", "hash_value": digest})

    def _read(self, claim: StorageDriverClaim) -> Payload:
        algorithm = claim.claim_data.get("hash_algorithm")
        digest = claim.claim_data.get("hash_value", "")
        if algorithm != "sha256" or len(digest) != 64:
            raise BlobError(f"blob reference {dict(claim.claim_data)} is not a sha256 one")
        path = self.path_of(digest)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise BlobError(
                f"blob {path} is missing: every client and worker must use the same {BLOB_DIR_ENV} "
                f"(the default {DEFAULT_BLOB_DIR} is relative to the working directory)"
            ) from None
        if hashlib.sha256(data).hexdigest() != digest:
            raise BlobError(f"blob {path} does not match its sha256: it was altered or truncated")
        return Payload.FromString(data)


def external_storage_from_env(env: Mapping[str, str] | None = None) -> ExternalStorage:
    """The converter's ``external_storage`` for this environment. With ``HARNESS_BLOBS=off`` it
    stores nothing, but still reads the references histories already hold, so they replay."""
    env = os.environ if env is None else env
    switch = env.get(BLOBS_ENV, "").strip().lower()
    if switch not in ("", "on", "off"):
        raise BlobSettingError(f"{BLOBS_ENV} must be 'on' or 'off', not {switch!r}")
    raw = env.get(THRESHOLD_ENV, "").strip()
    try:
        threshold = int(raw) if raw else DEFAULT_THRESHOLD
    except ValueError:
        threshold = -1
    if threshold < 0:
        raise BlobSettingError(f"{THRESHOLD_ENV} must be a whole number of bytes (0 or more), not {raw!r}")
    return ExternalStorage(
        drivers=[blob_driver_from_env(env)],
        driver_selector=_store_nothing if switch == "off" else None,
        payload_size_threshold=threshold,
    )


def _store_nothing(context: StorageDriverSelectContext, payload: Payload) -> None:
    return None


def blob_driver_from_env(env: Mapping[str, str] | None = None) -> StorageDriver:
    """The S3 driver when ``HARNESS_S3_BUCKET`` is set, else the disk driver in ``HARNESS_BLOB_DIR``."""
    env = os.environ if env is None else env
    bucket = env.get(S3_BUCKET_ENV, "").strip()
    if bucket:
        return _s3_driver(bucket, env)
    where = env.get(BLOB_DIR_ENV, "").strip()
    return DiskBlobDriver(Path(where) if where else DEFAULT_BLOB_DIR)


def _s3_driver(bucket: str, env: Mapping[str, str]) -> StorageDriver:
    try:
        from activities._s3_blobs import s3_driver
    except ModuleNotFoundError as missing:
        raise BlobSettingError(
            f"{S3_BUCKET_ENV} is set but the S3 driver's {missing.name} is not installed: "
            "pip install 'harness[s3]'"
        ) from None
    prefix = env.get(S3_PREFIX_ENV, "").strip().strip("/")
    endpoint, source = env.get(S3_ENDPOINT_ENV, "").strip(), S3_ENDPOINT_ENV
    if not endpoint:
        endpoint, source = env.get("AWS_ENDPOINT_URL", "").strip(), "AWS_ENDPOINT_URL"
    if endpoint and not endpoint.startswith(("http://", "https://")):
        raise BlobSettingError(f"{source} must be an http:// or https:// URL, not {endpoint!r}")
    region = env.get("AWS_REGION", "").strip() or env.get("AWS_DEFAULT_REGION", "").strip()
    return s3_driver(bucket, prefix=f"{prefix}/" if prefix else "", endpoint_url=endpoint, region=region)
