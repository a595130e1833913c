"""Large payloads outside history: the disk driver, the settings, and a 100 KB turn text kept out of
a real dev server's history by the disk driver and by the SDK's S3 driver on a local S3 (moto)."""

from __future__ import annotations

import asyncio
import base64
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.client import Client
from temporalio.converter import StorageDriverRetrieveContext, StorageDriverStoreContext
from temporalio.testing import WorkflowEnvironment

from activities.blobstore import (
    DEFAULT_BLOB_DIR,
    DEFAULT_THRESHOLD,
    BlobError,
    BlobSettingError,
    DiskBlobDriver,
    blob_driver_from_env,
    external_storage_from_env,
)
from activities.codec import KEYS_ENV, data_converter
from activities.model_call import ModelCallActivities
from contracts.jobs import JobResult, StopReason
from contracts.spec import JobSpec, parse_spec
from harness.sim import SimServer
from tests.helpers import make_worker, start_job, start_worker, stop

CANARY = "canary-5e1b9d-kept-out-of-history"
REFERENCE_TYPE = b"temporal.api.sdk.v1.ExternalStorageReference"
STORE = StorageDriverStoreContext()
RETRIEVE = StorageDriverRetrieveContext()


def big_text(size: int = 100_000) -> str:
    """About ``size`` bytes of text with the canary in it, in words of 1,000 characters (few tokens,
    so the simulator streams it quickly)."""
    words = [CANARY] + ["x" * 999] * (size // 1000)
    return " ".join(words)


def payload(text: str) -> Payload:
    """A plain JSON payload holding ``text``."""
    return Payload(metadata={"encoding": b"json/plain"}, data=text.encode())


def files_under(root: Path) -> list[Path]:
    """Every file below ``root``, temporary ones included."""
    return sorted(path for path in root.rglob("*") if path.is_file())


# --- the disk driver -----------------------------------------------------------------------------


async def test_round_trip_gives_back_the_payload_and_makes_its_directory_on_first_store(
    tmp_path: Path,
) -> None:
    """A stored payload reads back equal; the directory is made only when something is stored."""
    driver = DiskBlobDriver(tmp_path / "blobs")
    assert not (tmp_path / "blobs").exists()
    original = payload(big_text())
    [claim] = await driver.store(STORE, [original])
    assert await driver.retrieve(RETRIEVE, [claim]) == [original]
    [path] = files_under(tmp_path / "blobs")
    assert path == driver.path_of(claim.claim_data["hash_value"])
    assert path.stat().st_mode & 0o077 == 0  # private to its owner: it holds payload data


async def test_the_same_bytes_are_stored_once_and_no_temporary_file_is_left(tmp_path: Path) -> None:
    """Content addressing: the same payload twice is one file under one claim; a different one is
    another file; the write's temporary files are all gone."""
    driver = DiskBlobDriver(tmp_path)
    first, again, other = await driver.store(STORE, [payload("a"), payload("a"), payload("b")])
    assert first == again != other
    paths = files_under(tmp_path)
    assert len(paths) == 2
    assert not [path for path in paths if path.name.endswith(".tmp") or path.name.startswith(".")]


async def test_a_blob_altered_on_disk_is_refused(tmp_path: Path) -> None:
    """A blob whose bytes no longer match the hash in its reference fails to read, naming the file."""
    driver = DiskBlobDriver(tmp_path)
    [claim] = await driver.store(STORE, [payload(CANARY)])
    path = driver.path_of(claim.claim_data["hash_value"])
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(BlobError, match=rf"blob {path} does not match its sha256"):
        await driver.retrieve(RETRIEVE, [claim])


async def test_a_missing_blob_names_its_path_and_the_setting(tmp_path: Path) -> None:
    """A reference whose file is gone (another blob directory, say) fails with the path it looked at."""
    [claim] = await DiskBlobDriver(tmp_path / "one").store(STORE, [payload(CANARY)])
    elsewhere = DiskBlobDriver(tmp_path / "two")
    with pytest.raises(BlobError, match=r"blob .*/two/.* is missing: .* HARNESS_BLOB_DIR"):
        await elsewhere.retrieve(RETRIEVE, [claim])


# --- settings ------------------------------------------------------------------------------------


def test_settings_pick_the_driver_and_threshold(tmp_path: Path) -> None:
    """Default: on, 64 KiB, the disk driver in .harness/blobs of the working directory; a blob dir and a
    threshold are read; HARNESS_S3_BUCKET picks the S3 driver."""
    storage = external_storage_from_env({})
    assert storage.payload_size_threshold == DEFAULT_THRESHOLD == 65536
    [driver] = storage.drivers
    assert isinstance(driver, DiskBlobDriver) and driver.root == Path.cwd() / DEFAULT_BLOB_DIR
    storage = external_storage_from_env({"HARNESS_BLOB_DIR": str(tmp_path), "HARNESS_BLOB_THRESHOLD": "10"})
    assert storage.payload_size_threshold == 10
    assert isinstance(storage.drivers[0], DiskBlobDriver) and storage.drivers[0].root == tmp_path
    pytest.importorskip("aioboto3")
    assert blob_driver_from_env({"HARNESS_S3_BUCKET": "b"}).type() == "aws.s3driver"


def test_bad_settings_name_the_variable() -> None:
    """A threshold that is not a whole number of bytes, an unknown switch or an endpoint that is not a
    URL is refused with the variable's name."""
    cases = {
        ("HARNESS_BLOB_THRESHOLD", "64KB"): "HARNESS_BLOB_THRESHOLD must be a whole number",
        ("HARNESS_BLOB_THRESHOLD", "-1"): "HARNESS_BLOB_THRESHOLD must be a whole number",
        ("HARNESS_BLOBS", "maybe"): "HARNESS_BLOBS must be 'on' or 'off'",
    }
    for (name, value), reason in cases.items():
        with pytest.raises(BlobSettingError, match=reason):
            external_storage_from_env({name: value})
    pytest.importorskip("aioboto3")
    with pytest.raises(BlobSettingError, match="HARNESS_S3_ENDPOINT_URL must be an http"):
        blob_driver_from_env({"HARNESS_S3_BUCKET": "b", "HARNESS_S3_ENDPOINT_URL": "localhost:9000"})


async def test_off_stores_nothing_new_but_reads_what_is_stored(tmp_path: Path) -> None:
    """HARNESS_BLOBS=off keeps a large value inline, and still resolves a reference written while it
    was on (a history recorded then still replays)."""
    on = data_converter({"HARNESS_BLOB_DIR": str(tmp_path)})
    off = data_converter({"HARNESS_BLOB_DIR": str(tmp_path), "HARNESS_BLOBS": "off"})
    text = big_text()
    [reference] = await on.encode([text])
    [inline] = await off.encode([text])
    assert reference.metadata.get("messageType") == REFERENCE_TYPE
    assert CANARY.encode() in inline.data
    assert len(files_under(tmp_path)) == 1
    assert await off.decode([reference], [str]) == [text]


async def test_with_a_key_a_blob_holds_ciphertext(tmp_path: Path) -> None:
    """The converter seals a large payload before it stores it: the blob on disk does not hold the
    plaintext, history holds a reference, and decoding gives the value back."""
    key = base64.b64encode(os.urandom(32)).decode()
    converter = data_converter({KEYS_ENV: f"k={key}", "HARNESS_BLOB_DIR": str(tmp_path)})
    text = big_text()
    [stored] = await converter.encode([text])
    assert stored.metadata.get("messageType") == REFERENCE_TYPE
    [blob] = files_under(tmp_path)
    assert CANARY.encode() not in blob.read_bytes()
    assert b"binary/encrypted" in blob.read_bytes()
    assert await converter.decode([stored], [str]) == [text]


# --- a real job on the dev server ----------------------------------------------------------------


def echo_job(text: str) -> JobSpec:
    """One step whose reply (the turn text) is ``text``, verbatim."""
    return parse_spec(
        {
            "id": f"blob-{uuid.uuid4().hex[:8]}",
            "mode": "sequential",
            "task": f'Repeat it. [[sim reply="{text}"]]',
            "agents": [{"name": "a", "model": "sim:echo"}],
            "steps": [{"id": "say", "agent": "a", "prompt": "{task}"}],
        }
    )


async def run_big_turn(
    dev_env: WorkflowEnvironment, gateway: ModelCallActivities, env: dict[str, str]
) -> bytes:
    """Run a job whose task and turn text are 100 KB with the canary, on a client and worker with the
    converter of ``env``; check its result reads whole; return its history's raw bytes, read by a
    client without external storage (so no reference is resolved)."""
    client = await Client.connect(
        dev_env.client.service_client.config.target_host,
        namespace=dev_env.client.namespace,
        data_converter=data_converter(env),
    )
    text = big_text()
    spec = echo_job(text)
    async with make_worker(client, gateway) as worker:
        handle = await start_job(client, worker.task_queue, spec)
        result: JobResult = await handle.result()
    assert result.stop_reason is StopReason.completed, result.explanation
    assert result.output == text
    history = await dev_env.client.get_workflow_handle(spec.id or "").fetch_history()
    return b"".join(event.SerializeToString() for event in history.events)


async def test_a_100_kb_turn_text_never_enters_history_inline(
    dev_env: WorkflowEnvironment, gateway: ModelCallActivities, tmp_path: Path
) -> None:
    """With the disk driver, the job's input, the model call and its 100 KB reply and the result are
    references in history; the text is in the blob files, and the result still has all of it."""
    raw = await run_big_turn(dev_env, gateway, {"HARNESS_BLOB_DIR": str(tmp_path)})
    assert CANARY.encode() not in raw
    assert REFERENCE_TYPE in raw
    assert len(raw) < 50_000  # four 100 KB values would be over 400 KB inline
    blobs = files_under(tmp_path)
    assert len(blobs) >= 4  # job input, activity input, activity result, job result
    assert any(CANARY.encode() in blob.read_bytes() for blob in blobs)


async def test_a_worker_process_and_a_client_share_the_blob_directory(
    dev_env: WorkflowEnvironment, sim: SimServer
) -> None:
    """A worker in its own process (python worker.py, as a user runs it) and this test's client meet
    in the run's HARNESS_BLOB_DIR: the client stores the 100 KB input, the worker reads it and stores
    the reply, the client reads the result whole."""
    client = await Client.connect(
        dev_env.client.service_client.config.target_host, data_converter=data_converter()
    )
    queue = f"blobs-{uuid.uuid4().hex[:8]}"
    text = big_text()
    worker = start_worker(client, sim, queue)
    try:
        handle = await start_job(client, queue, echo_job(text))
        result: JobResult = await asyncio.wait_for(handle.result(), timeout=30)
    finally:
        stop(worker)
    assert result.output == text
    raw = b"".join(event.SerializeToString() for event in (await handle.fetch_history()).events)
    assert CANARY.encode() not in raw


# --- the SDK's S3 driver on moto -----------------------------------------------------------------


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    """moto's S3-compatible server on a free localhost port, for this module."""
    server_module = pytest.importorskip("moto.server")
    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
async def s3_env(moto_url: str, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[dict[str, Any]]:
    """The environment of a fresh bucket on moto: the blob settings, plus the S3 client to inspect it."""
    aioboto3 = pytest.importorskip("aioboto3")
    # Standard AWS credentials from the environment, as a deployment would give them (moto takes any).
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    bucket = f"blobs-{uuid.uuid4().hex[:8]}"
    async with aioboto3.Session().client("s3", endpoint_url=moto_url, region_name="us-east-1") as s3:
        await s3.create_bucket(Bucket=bucket)
        yield {
            "settings": {
                "HARNESS_S3_BUCKET": bucket,
                "HARNESS_S3_PREFIX": "/team-a/",
                "HARNESS_S3_ENDPOINT_URL": moto_url,
                "AWS_REGION": "us-east-1",
            },
            "s3": s3,
            "bucket": bucket,
        }


async def keys_in(s3_env: dict[str, Any]) -> list[str]:
    """Every object key in the test's bucket."""
    listed = await s3_env["s3"].list_objects_v2(Bucket=s3_env["bucket"])
    return [item["Key"] for item in listed.get("Contents", [])]


async def test_the_s3_driver_stores_under_the_prefix_and_reads_back(s3_env: dict[str, Any]) -> None:
    """Through the converter: a large value goes to the bucket under the prefix and its reference
    names the whole key, so a reader with another prefix still finds it; a small one stays inline."""
    converter = data_converter(s3_env["settings"])
    text = big_text()
    reference, inline = await converter.encode([text, "small"])
    assert reference.metadata.get("messageType") == REFERENCE_TYPE
    assert inline.metadata["encoding"] == b"json/plain"
    [key] = await keys_in(s3_env)
    assert key.startswith("team-a/v0/d/sha256/")
    assert key.encode() in reference.data
    other_reader = data_converter({**s3_env["settings"], "HARNESS_S3_PREFIX": "elsewhere"})
    assert await other_reader.decode([reference, inline], [str, str]) == [text, "small"]


async def test_a_100_kb_turn_text_goes_to_s3_not_history(
    dev_env: WorkflowEnvironment, gateway: ModelCallActivities, s3_env: dict[str, Any]
) -> None:
    """With the S3 driver on moto, the same job keeps the text out of history; the bucket holds it."""
    raw = await run_big_turn(dev_env, gateway, s3_env["settings"])
    assert CANARY.encode() not in raw
    assert REFERENCE_TYPE in raw
    keys = await keys_in(s3_env)
    assert len(keys) >= 4 and all(key.startswith("team-a/v0/ns/default/") for key in keys)
