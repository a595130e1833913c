"""The AES-GCM payload codec and the data converter built from the environment."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.api.failure.v1 import Failure
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DefaultFailureConverterWithEncodedAttributes
from temporalio.exceptions import ApplicationError

from activities.codec import (
    ENCODING,
    KEY_FILE_ENV,
    KEY_ID_METADATA,
    KEYS_ENV,
    AesGcmCodec,
    CodecError,
    Keyring,
    codec_from_env,
    data_converter,
    describe,
)
from contracts.spec import parse_spec

CANARY = "canary-7f3a0c-do-not-leak"


def key() -> str:
    """A fresh random AES-256 key, base64."""
    return base64.b64encode(os.urandom(32)).decode()


def codec(keys: str) -> AesGcmCodec:
    """The codec ``HARNESS_CODEC_KEYS=keys`` configures."""
    made = codec_from_env({KEYS_ENV: keys})
    assert made is not None
    return made


def plain(text: str) -> Payload:
    """A JSON payload as the pydantic converter writes it."""
    [payload] = pydantic_data_converter.payload_converter.to_payloads([{"task": text}])
    return payload


async def test_round_trip_restores_the_payload_and_hides_its_bytes() -> None:
    """A sealed payload carries neither its data nor its metadata in the clear, and opens to the original."""
    seal = codec(f"k1={key()}")
    original = plain(CANARY)
    [sealed] = await seal.encode([original])
    assert sealed.metadata["encoding"] == ENCODING
    assert CANARY.encode() not in sealed.SerializeToString()
    assert b"json/plain" not in sealed.SerializeToString()
    [opened] = await seal.decode([sealed])
    assert opened == original


async def test_each_payload_gets_its_own_nonce() -> None:
    """The same payload sealed twice gives two different ciphertexts (a fresh nonce each time)."""
    seal = codec(f"k1={key()}")
    first, second = await seal.encode([plain(CANARY), plain(CANARY)])
    assert first.data != second.data


async def test_rotation_old_payloads_open_and_new_ones_use_the_newest_key() -> None:
    """After a key is appended, payloads sealed with the old one still open; new ones carry the new id."""
    old_key, new_key = key(), key()
    [old] = await codec(f"2024={old_key}").encode([plain("sealed before rotation")])
    rotated = codec(f"2024={old_key},2025={new_key}")
    assert old.metadata[KEY_ID_METADATA] == b"2024"
    [opened] = await rotated.decode([old])
    assert opened == plain("sealed before rotation")
    [new] = await rotated.encode([plain("sealed after rotation")])
    assert new.metadata[KEY_ID_METADATA] == b"2025"
    with pytest.raises(CodecError, match="key '2025'"):
        await codec(f"2024={old_key}").decode([new])


async def test_missing_key_names_the_key_it_needs() -> None:
    """A payload sealed with a key the keyring dropped fails with the missing id, not a decode error."""
    [sealed] = await codec(f"old={key()}").encode([plain(CANARY)])
    with pytest.raises(CodecError, match=r"sealed with key 'old', which HARNESS_CODEC_KEYS does not hold"):
        await codec(f"new={key()}").decode([sealed])


async def test_wrong_key_under_the_same_id_is_refused() -> None:
    """Another key under the same id does not open the payload, and says so."""
    [sealed] = await codec(f"k1={key()}").encode([plain(CANARY)])
    with pytest.raises(CodecError, match="does not open"):
        await codec(f"k1={key()}").decode([sealed])


async def test_tampered_ciphertext_is_rejected() -> None:
    """Flipping one bit of the ciphertext, or relabelling the key id, makes the payload refuse to open."""
    one, two = key(), key()
    seal = codec(f"a={one},b={two}")
    [sealed] = await seal.encode([plain(CANARY)])
    flipped = Payload()
    flipped.CopyFrom(sealed)
    data = bytearray(sealed.data)
    data[-1] ^= 0x01
    flipped.data = bytes(data)
    with pytest.raises(CodecError, match="altered"):
        await seal.decode([flipped])
    relabelled = Payload()
    relabelled.CopyFrom(sealed)
    relabelled.metadata[KEY_ID_METADATA] = b"a"  # sealed with b; a's id bound as associated data fails
    with pytest.raises(CodecError, match="does not open"):
        await seal.decode([relabelled])


async def test_plain_payloads_pass_through_decode() -> None:
    """Payloads written before a key was set (recorded histories) decode unchanged."""
    original = plain("written in the clear")
    assert await codec(f"k={key()}").decode([original]) == [original]


def test_bad_key_settings_are_refused_without_showing_the_key(tmp_path: Path) -> None:
    """Bad base64, a short key, a duplicate id and both variables set are refused with the reason;
    no message repeats key material."""
    short = base64.b64encode(b"x" * 10).decode()
    cases = {
        "k=not base64!": "not valid base64",
        f"k={short}": "10 bytes; AES-GCM needs 16, 24 or 32",
        f"k={key()},k={key()}": "appears twice",
        f"bad id={key()}": "is not 1-64 of",
        "just-a-key": "expected id=base64key",
    }
    for value, reason in cases.items():
        with pytest.raises(CodecError, match=reason) as raised:
            Keyring.from_env({KEYS_ENV: value})
        assert short not in str(raised.value)
    with pytest.raises(CodecError, match="not both"):
        Keyring.from_env({KEYS_ENV: f"k={key()}", KEY_FILE_ENV: str(tmp_path / "keys")})
    with pytest.raises(CodecError, match="cannot read"):
        Keyring.from_env({KEY_FILE_ENV: str(tmp_path / "absent")})


async def test_a_key_file_holds_one_key_per_line_newest_last(tmp_path: Path) -> None:
    """HARNESS_CODEC_KEY_FILE: comments and blank lines skipped, the last line's key seals."""
    path = tmp_path / "keys"
    path.write_text(f"# rotated yearly\nold={key()}\n\nnew={key()}\n")
    keyring = Keyring.from_env({KEY_FILE_ENV: str(path)})
    assert keyring is not None
    assert [key_id for key_id, _ in keyring.keys] == ["old", "new"]
    [sealed] = await AesGcmCodec(keyring).encode([plain(CANARY)])
    assert sealed.metadata[KEY_ID_METADATA] == b"new"


def test_without_a_key_the_converter_is_the_plain_pydantic_one() -> None:
    """No key configured: the pydantic converter with no codec (only the blob store added), and the
    one-line notice says so."""
    converter = data_converter({})
    assert converter.payload_converter_class is pydantic_data_converter.payload_converter_class
    assert converter.payload_codec is None
    assert converter.failure_converter_class is pydantic_data_converter.failure_converter_class
    assert describe({}).startswith("payloads: not encrypted")
    assert "encrypted with AES-GCM key 'b' (2 keys from HARNESS_CODEC_KEYS)" in describe(
        {KEYS_ENV: f"a={key()},b={key()}"}
    )


async def test_with_a_key_values_and_failures_are_sealed() -> None:
    """With a key, a job spec and an error's message and stack trace leave the converter sealed,
    and come back whole."""
    converter = data_converter({KEYS_ENV: f"k={key()}"})
    assert isinstance(converter.payload_codec, AesGcmCodec)
    assert isinstance(converter.failure_converter, DefaultFailureConverterWithEncodedAttributes)
    spec = parse_spec(
        {
            "task": CANARY,
            "agents": [{"name": "a", "model": "sim:writer"}],
            "steps": [{"id": "s", "agent": "a"}],
        }
    )
    payloads = await converter.encode([spec])
    assert CANARY.encode() not in b"".join(p.SerializeToString() for p in payloads)
    assert await converter.decode(payloads, [type(spec)]) == [spec]

    failure = Failure()
    try:
        raise ApplicationError(f"model refused: {CANARY}")
    except ApplicationError as error:
        await converter.encode_failure(error, failure)
    assert CANARY.encode() not in failure.SerializeToString()
    decoded = await converter.decode_failure(failure)
    assert CANARY in str(decoded)
