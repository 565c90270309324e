"""Object storage that says no: credentials refused, missing or allowed too little.
Against moto's server with signatures and IAM policies checked (as a real store does),
on loopback; every refusal comes before anything is sent to the service."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

pytest.importorskip("obstore", reason="the s3 extra (obstore 0.12 needs Python 3.11+)")
from conftest import MakeTrack, fast_client, fast_config, run_cli
from support.s3server import GuardedS3, S3Server, guarded_s3_server

from wavespeed_outpaint import OutpaintRequest, OutputError
from wavespeed_outpaint.emulator import Emulator

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def guarded() -> Iterator[GuardedS3]:
    with guarded_s3_server() as server:
        yield server


@pytest.fixture
def library(guarded: GuardedS3, make_audio: MakeTrack) -> str:
    """A bucket holding music/a.wav; its name."""
    bucket = f"lib-{uuid.uuid4().hex[:12]}"
    guarded.make_bucket(bucket)
    guarded.put(bucket, "music/a.wav", make_audio("a.wav", seconds=0.5).read_bytes())
    return bucket


def use(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)


async def outcomes(audio: str, out: str) -> tuple[list[str], int]:
    """The errors of one task's batch, and how many submits the service saw."""
    request = OutpaintRequest(audio, tags="x", extend_after_duration=1)
    async with Emulator(fast_config()) as emu:
        async with fast_client(emu, retry_timeout=2.0, retry_attempts=2) as client:
            with anyio.fail_after(60):
                errors = [r.error or "" async for r in client.outpaint_many([request], out)]
        return errors, emu.stats()["submit_requests"]


async def test_an_input_the_credentials_may_not_read_fails_before_it_is_sent(
    guarded: GuardedS3, library: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    use(monkeypatch, guarded.env(guarded.nobody))
    errors, submits = await outcomes(f"s3://{library}/music/a.wav", str(tmp_path / "out"))
    assert submits == 0
    assert len(errors) == 1
    assert "access denied" in errors[0]
    assert f"s3://{library}/music/a.wav" in errors[0]


async def test_keys_the_store_does_not_know_are_named_as_the_problem(
    guarded: GuardedS3, library: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    use(monkeypatch, guarded.env(guarded.nobody))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIANOTAKEYTHESTOREKNOWS")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret-of-any-key")
    errors, submits = await outcomes(f"s3://{library}/music/a.wav", str(tmp_path / "out"))
    assert submits == 0
    assert "refused the credentials" in errors[0]
    assert "AWS_ACCESS_KEY_ID" in errors[0]
    assert "not-the-secret-of-any-key" not in errors[0]


async def test_an_output_prefix_that_cannot_be_written_stops_the_batch_before_a_submit(
    guarded: GuardedS3, library: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    use(monkeypatch, guarded.env(guarded.reader))  # may read the inputs, not write
    with pytest.raises(OutputError) as refused:
        await outcomes(f"s3://{library}/music/a.wav", f"s3://{library}/extended/")
    assert f"s3://{library}/extended/" in str(refused.value)
    assert "access denied" in str(refused.value)
    assert guarded.keys(library) == ["music/a.wav"]


@pytest.mark.slow
def test_the_command_line_says_what_to_change_when_the_store_refuses(
    guarded: GuardedS3, library: str, tmp_path: Path
) -> None:
    args = ["run", f"s3://{library}/music/", "--tags", "lofi", "--after", "1", "--emulator"]
    state = {"XDG_STATE_HOME": str(tmp_path / "state")}
    reader = {**guarded.env(guarded.reader), **state}
    refused = run_cli(*args, "--out", f"s3://{library}/extended/", cwd=tmp_path, env=reader)
    assert refused.returncode == 2, refused.stderr
    assert "access denied" in refused.stderr
    assert "nothing was sent" in refused.stderr or "nothing was submitted" in refused.stderr
    nobody = {**guarded.env(guarded.nobody), **state}
    unlisted = run_cli(*args, "--out", str(tmp_path / "out"), cwd=tmp_path, env=nobody)
    assert unlisted.returncode == 2, unlisted.stderr
    assert f"s3://{library}/music/: access denied" in unlisted.stderr


async def test_no_credentials_anywhere_is_named_as_the_problem(
    s3: S3Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # No keys in the environment: the store's client asks the instance metadata service
    # (as on a cloud machine); here one on loopback that is not there.
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_METADATA_ENDPOINT", "http://127.0.0.1:9")
    errors, submits = await outcomes("s3://lib/music/a.wav", str(tmp_path / "out"))
    assert submits == 0
    assert "no credentials" in errors[0]
    assert "AWS_ACCESS_KEY_ID" in errors[0]
