"""Payload encryption: an AES-GCM ``PayloadCodec`` with rotating keys, and the data converter every
client and worker uses.

Keys come from this process's environment, never from Temporal, so they are never in a workflow
input or in history:

- ``HARNESS_CODEC_KEYS``: comma-separated ``id=base64key`` pairs, oldest first, newest last, e.g.
  ``2024a=<base64>,2025a=<base64>``; or
- ``HARNESS_CODEC_KEY_FILE``: a file with one ``id=base64key`` per line, newest last (blank lines and
  ``#`` comments ignored), for keys mounted as a secret.

Each key is 16, 24 or 32 random bytes (AES-128/192/256; 32 recommended). New payloads are sealed
with the newest key and carry its id in their metadata; every listed key still opens the payloads it
sealed, so a key is rotated by appending a new one and dropped only once nothing needs the old one.
With no key configured payloads stay plain JSON, as before.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter, DefaultFailureConverterWithEncodedAttributes, PayloadCodec

from activities.blobstore import external_storage_from_env

__all__ = [
    "ENCODING",
    "KEYS_ENV",
    "KEY_FILE_ENV",
    "KEY_ID_METADATA",
    "AesGcmCodec",
    "CodecError",
    "Keyring",
    "codec_from_env",
    "data_converter",
    "describe",
]

KEYS_ENV = "HARNESS_CODEC_KEYS"
KEY_FILE_ENV = "HARNESS_CODEC_KEY_FILE"
ENCODING = b"binary/encrypted"
"""The ``encoding`` metadata of a sealed payload (the name Temporal's encryption samples use)."""
KEY_ID_METADATA = "encryption-key-id"
"""Metadata naming the key that sealed a payload."""

_NONCE_BYTES = 12  # the size AES-GCM is specified for; random per payload
_KEY_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


class CodecError(ValueError):
    """A key setting that cannot be used, or a payload that cannot be opened. Never holds a key."""


@dataclass(frozen=True)
class Keyring:
    """Named AES keys, oldest first: the last one seals, any of them opens."""

    keys: tuple[tuple[str, bytes], ...]
    """(key id, key bytes) pairs, oldest first."""
    source: str
    """Where the keys came from, for messages (an environment variable or a file path)."""

    def __post_init__(self) -> None:
        if not self.keys:
            raise CodecError(f"{self.source}: no key")
        ids = [key_id for key_id, _ in self.keys]
        for key_id, key in self.keys:
            if not _KEY_ID.fullmatch(key_id):
                raise CodecError(f"{self.source}: key id {key_id!r} is not 1-64 of A-Z a-z 0-9 . _ -")
            if len(key) not in (16, 24, 32):
                raise CodecError(
                    f"{self.source}: key {key_id!r} is {len(key)} bytes; AES-GCM needs 16, 24 or 32"
                )
            if ids.count(key_id) > 1:
                raise CodecError(f"{self.source}: key id {key_id!r} appears twice")

    @property
    def newest(self) -> str:
        """The id of the key new payloads are sealed with."""
        return self.keys[-1][0]

    @classmethod
    def parse(cls, entries: Sequence[str], source: str) -> Keyring:
        """A keyring from ``id=base64key`` entries, oldest first."""
        keys = []
        for entry in entries:
            key_id, sep, encoded = entry.strip().partition("=")
            if not sep:
                raise CodecError(f"{source}: expected id=base64key, got an entry without '='")
            try:
                key = base64.b64decode(encoded.strip(), validate=True)
            except binascii.Error:
                raise CodecError(f"{source}: key {key_id.strip()!r} is not valid base64") from None
            keys.append((key_id.strip(), key))
        return cls(tuple(keys), source)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Keyring | None:
        """The keyring ``HARNESS_CODEC_KEYS`` or ``HARNESS_CODEC_KEY_FILE`` gives; None if neither is set."""
        env = os.environ if env is None else env
        inline, path = env.get(KEYS_ENV, "").strip(), env.get(KEY_FILE_ENV, "").strip()
        if inline and path:
            raise CodecError(f"set {KEYS_ENV} or {KEY_FILE_ENV}, not both")
        if inline:
            return cls.parse([part for part in inline.split(",") if part.strip()], KEYS_ENV)
        if path:
            try:
                text = Path(path).read_text(encoding="utf-8")
            except OSError as error:
                raise CodecError(f"{KEY_FILE_ENV}: cannot read {path}: {error.strerror}") from None
            lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
            return cls.parse(lines, path)
        return None


class AesGcmCodec(PayloadCodec):
    """Seals every payload whole (metadata and data) with AES-GCM under the newest key.

    The sealed payload's data is nonce + ciphertext of the serialized original; the key id is bound
    in as associated data, so a payload relabelled with another key's id does not open. Plain
    payloads are passed through on decode: histories written before a key was set still replay.
    """

    def __init__(self, keyring: Keyring) -> None:
        self.keyring = keyring
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keyring.keys}

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        """Seal each payload with the newest key."""
        key_id = self.keyring.newest
        cipher = self._ciphers[key_id]
        sealed = []
        for payload in payloads:
            nonce = os.urandom(_NONCE_BYTES)
            data = nonce + cipher.encrypt(nonce, payload.SerializeToString(), _associated(key_id))
            sealed.append(
                Payload(metadata={"encoding": ENCODING, KEY_ID_METADATA: key_id.encode()}, data=data)
            )
        return sealed

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        """Open each sealed payload with the key its metadata names; pass plain ones through."""
        return [self._open(payload) for payload in payloads]

    def _open(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") != ENCODING:
            return payload
        key_id = payload.metadata.get(KEY_ID_METADATA, b"").decode(errors="replace")
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            known = ", ".join(key for key, _ in self.keyring.keys)
            raise CodecError(
                f"payload sealed with key {key_id!r}, which {self.keyring.source} does not hold "
                f"(it has {known}): add that key back to decrypt it"
            )
        nonce, ciphertext = payload.data[:_NONCE_BYTES], payload.data[_NONCE_BYTES:]
        try:
            plain = cipher.decrypt(nonce, ciphertext, _associated(key_id))
        except InvalidTag:
            raise CodecError(
                f"payload sealed with key {key_id!r} does not open: the key under that id in "
                f"{self.keyring.source} is not the one that sealed it, or the payload was altered"
            ) from None
        return Payload.FromString(plain)


def _associated(key_id: str) -> bytes:
    return b"harness/aes-gcm/" + key_id.encode()


def codec_from_env(env: Mapping[str, str] | None = None) -> AesGcmCodec | None:
    """The codec for the configured keys, or None when no key is configured."""
    keyring = Keyring.from_env(env)
    return AesGcmCodec(keyring) if keyring is not None else None


def data_converter(env: Mapping[str, str] | None = None) -> DataConverter:
    """The converter for every client and worker: pydantic JSON, sealed by the codec when a key is
    configured, with failure messages and stack traces moved into (sealed) encoded attributes, and
    payloads over the blob threshold stored outside history (``activities.blobstore``).

    The SDK seals a payload before it stores it, so with a key set a blob holds ciphertext."""
    codec = codec_from_env(env)
    changes: dict[str, Any] = {"external_storage": external_storage_from_env(env)}
    if codec is not None:
        changes.update(
            payload_codec=codec, failure_converter_class=DefaultFailureConverterWithEncodedAttributes
        )
    return dataclasses.replace(pydantic_data_converter, **changes)


def describe(env: Mapping[str, str] | None = None) -> str:
    """One line saying whether payloads are encrypted, and with which key."""
    keyring = Keyring.from_env(env)
    if keyring is None:
        return f"payloads: not encrypted (set {KEYS_ENV} or {KEY_FILE_ENV} to encrypt them)"
    count = len(keyring.keys)
    return (
        f"payloads: encrypted with AES-GCM key {keyring.newest!r} "
        f"({count} key{'s' if count != 1 else ''} from {keyring.source})"
    )
