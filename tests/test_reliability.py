"""Hostile input, the disk, and secrets: what must hold whatever users and servers do."""

from __future__ import annotations

import json
import logging
import math
import resource
import shutil
import signal
import struct
from pathlib import Path

import anyio
import pytest
from conftest import MakeTrack, against, fast_client, fast_config, run_cli
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from wavespeed_outpaint import (
    AuthenticationError,
    OutpaintClient,
    OutpaintRequest,
    OutputError,
    Status,
    TaskFailedError,
    ValidationError,
)
from wavespeed_outpaint._audio.probe import DEFAULT_MAX_UPLOAD_BYTES, AudioProblem, probe_audio
from wavespeed_outpaint._cli.plan import PlanError, from_manifest
from wavespeed_outpaint._engine.identity import FileFacts
from wavespeed_outpaint.emulator import Emulator, Faults

URL = "https://cdn.example.com/a.mp3"
FIELDS = ("tags", "extend_before_duration", "extend_after_duration", "lyrics", "seed")

# -- requests: every invalid value is refused, naming its field -----------------------------

anything = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.lists(st.integers(), max_size=3),
)


def valid(field: str, value: object) -> bool:
    """The rules, written again independently of the code under test."""
    if field == "tags":
        return isinstance(value, str) and value.strip() != ""
    if field == "lyrics":
        return isinstance(value, str)
    if field == "seed":
        return type(value) is int and (value == -1 or 0 <= value <= 2_147_483_647)
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return number and not math.isnan(value) and 0 <= value <= 240  # type: ignore[operator,arg-type]


@settings(max_examples=300, deadline=None)
@given(field=st.sampled_from(FIELDS), value=anything)
def test_every_field_accepts_exactly_its_valid_values(field: str, value: object) -> None:
    base: dict[str, object] = {
        "tags": "lofi",
        "extend_before_duration": 5,
        "extend_after_duration": 5,
    }
    base[field] = value
    if valid(field, value):
        OutpaintRequest(URL, **base)  # type: ignore[arg-type]
    else:
        with pytest.raises(ValidationError) as info:
            OutpaintRequest(URL, **base)  # type: ignore[arg-type]
        assert info.value.field == field


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=40))
@example(text="~0")  # a home directory that does not exist
@example(text="\x00")  # a NUL byte
@example(text="~\x00")  # both
def test_any_text_as_audio_is_a_url_a_path_or_refused(text: str) -> None:
    try:
        request = OutpaintRequest(text, tags="x")
    except ValidationError as exc:
        assert exc.field == "audio"  # noqa: PT017 - valid text is accepted, not raised
    else:
        if isinstance(request.audio, str):
            assert request.audio.startswith(
                ("https://", "http://127.", "http://localhost", "http://[::1]")
            )
        else:  # a local path: no such audio file here, so checking it refuses it
            with pytest.raises(ValidationError) as info:
                FileFacts().check(request.audio, DEFAULT_MAX_UPLOAD_BYTES)
            assert info.value.field == "audio"


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    lines=st.lists(
        st.one_of(
            st.dictionaries(
                st.sampled_from([*FIELDS, "audio", "output", "colour"]), anything, max_size=6
            ),
            st.text(max_size=20),
        ),
        min_size=1,
        max_size=4,
    )
)
def test_a_manifest_is_read_whole_or_refused_with_line_numbers(
    lines: list[object], tmp_path: Path
) -> None:
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n")
    try:
        tasks = from_manifest(manifest, FileFacts())
    except PlanError as exc:
        # Refusing is right for most generated manifests; what matters is how.
        problems = exc.problems
        assert problems
        assert all(p.startswith(str(manifest)) for p in problems)
    else:
        assert all(isinstance(t.request, OutpaintRequest) for t in tasks)


# -- the disk ---------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_an_out_dir_that_cannot_be_created_is_a_clear_error_before_any_charge(
    emulator: Emulator, make_audio: MakeTrack, tmp_path: Path
) -> None:
    blocker = tmp_path / "out"
    blocker.write_text("a file where the folder should be")
    async with fast_client(emulator) as client:
        with pytest.raises(OutputError, match="cannot create the folder"):
            async for _ in client.outpaint_many(
                [OutpaintRequest(make_audio("a.wav"), tags="x")],
                blocker / "sub",
                journal=tmp_path / "j.sqlite",
            ):
                pass
        with pytest.raises(OutputError, match="give another output folder"):
            await client.outpaint(OutpaintRequest(make_audio("a.wav"), tags="x"), blocker)
        assert emulator.stats()["submit_requests"] == 0
        # The refusal held nothing: the same journal takes the batch with a good out_dir.
        again = [
            r
            async for r in client.outpaint_many(
                [OutpaintRequest(make_audio("a.wav"), tags="x")],
                tmp_path / "good",
                journal=tmp_path / "j.sqlite",
            )
        ]
    assert [r.ok for r in again] == [True]


@pytest.mark.anyio
async def test_an_output_folder_removed_during_a_run_is_made_again(
    emulator: Emulator, make_audio: MakeTrack, tmp_path: Path
) -> None:
    # Outputs over 1 MB stream to their .part through aiofiles: a folder removed after
    # the batch made it is made again (it once failed with "cannot be written").
    emulator.config.base_seconds = 1.0  # the second task ends well after the first
    out = tmp_path / "out"
    requests = [
        (
            OutpaintRequest(make_audio("a.wav"), tags="x", extend_after_duration=90, seed=i),
            f"album/{i}",
        )
        for i in range(2)
    ]
    async with fast_client(emulator, max_in_flight=1) as client:
        results = []
        async for result in client.outpaint_many(requests, out):
            results.append(result)
            if len(results) == 1:
                shutil.rmtree(out)
    assert [r.ok for r in results] == [True, True], [r.error for r in results]
    assert results[1].files[0].stat().st_size > 1024 * 1024


@pytest.mark.anyio
async def test_a_write_the_disk_refuses_is_a_clear_error_and_leaves_nothing_behind(
    emulator: Emulator, make_audio: MakeTrack, tmp_path: Path
) -> None:
    # The system refuses to write past 64 KB (RLIMIT_FSIZE), as a full disk refuses any
    # write. (A .part linked to /dev/full played the full disk before: a planted link is
    # never written through any more, see below.)
    source = make_audio("a.wav")
    out = tmp_path / "out"
    out.mkdir()
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # (else the signal kills us)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, limit[1]))
    try:
        async with fast_client(emulator, retry_attempts=2) as client:
            results = [
                r async for r in client.outpaint_many([OutpaintRequest(source, tags="x")], out)
            ]
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limit)
        signal.signal(signal.SIGXFSZ, handler)
    assert not results[0].ok
    assert "File too large" in (results[0].error or "")
    assert list(out.iterdir()) == []


@pytest.mark.anyio
async def test_a_planted_link_is_never_written_through(
    emulator: Emulator, make_audio: MakeTrack, tmp_path: Path
) -> None:
    """A `.part` linked to a file elsewhere, and a subfolder linked elsewhere: the
    output went through the link (the file elsewhere overwritten with audio, and the
    output became a link to it). Now the linked `.part` is left alone and another taken,
    and an output under the linked folder fails on its own."""
    source = make_audio("a.wav")
    out = tmp_path / "out"
    out.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"keep me")
    (out / "a.wav.part").symlink_to(victim)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (out / "album").symlink_to(elsewhere)
    requests = [
        (OutpaintRequest(source, tags="x"), "a"),
        (OutpaintRequest(source, tags="y"), "album/b"),
    ]
    async with fast_client(emulator) as client:
        results = {r.request.tags: r async for r in client.outpaint_many(requests, out)}
    assert victim.read_bytes() == b"keep me"
    assert results["x"].ok, results["x"].error
    assert (out / "a.wav").is_file()
    assert not (out / "a.wav").is_symlink()
    assert (out / "a.wav.part").is_symlink()  # left as it was found
    assert not results["y"].ok
    assert "leads outside" in (results["y"].error or "")
    assert list(elsewhere.iterdir()) == []


# -- secrets ----------------------------------------------------------------------------------

SECRET_KEY = "sk-live-7f3a9c0e5b1d4a8e"


@pytest.mark.anyio
async def test_the_key_appears_nowhere(
    make_audio: MakeTrack, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    faults = Faults(
        {"result_5xx": 0.3, "submit_lost": 0.3, "truncated_download": 0.3, "task_failed": 0.3},
        seed=9,
    )
    config = fast_config(api_keys=frozenset({SECRET_KEY}), faults=faults)
    async with Emulator(config) as emu:
        async with OutpaintClient(
            SECRET_KEY, emu.base_url, settle_grace=0.3, retry_wait_initial=0.01
        ) as client:
            assert SECRET_KEY not in repr(client)
            with anyio.fail_after(60):
                results = [
                    r
                    async for r in client.outpaint_many(
                        [OutpaintRequest(make_audio("a.wav"), tags="x", seed=s) for s in range(12)],
                        tmp_path / "out",
                        journal=tmp_path / "j.sqlite",
                    )
                ]
        async with OutpaintClient("sk-wrong-0000", emu.base_url) as wrong:
            with pytest.raises(AuthenticationError) as info:
                await wrong.balance()
            assert "sk-wrong-0000" not in str(info.value)
        assert emu.stats()["outputs_asked_with_key"] == 0
    assert SECRET_KEY not in caplog.text
    assert all(SECRET_KEY not in repr(r) for r in results)
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert SECRET_KEY.encode() not in path.read_bytes(), path


def test_the_key_is_not_in_the_command_lines_output(make_audio: MakeTrack, tmp_path: Path) -> None:
    from support.processes import emulator_process_at

    make_audio("in/a.wav")
    with emulator_process_at(time_scale=0.01) as url:
        done = run_cli(
            "run",
            "in",
            "--out",
            "out",
            "--tags",
            "x",
            *against(url, SECRET_KEY),
            "--json",
            cwd=tmp_path,
        )
    assert done.returncode == 2  # the emulator does not know this key
    assert "refused the API key" in done.stderr
    assert SECRET_KEY not in done.stdout + done.stderr


@pytest.mark.anyio
async def test_a_service_that_echoes_the_key_back_does_not_leak_it(
    make_audio: MakeTrack, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Its failed predictions carry the submit's Authorization header in their error text.
    caplog.set_level(logging.DEBUG)
    config = fast_config(api_keys=frozenset({SECRET_KEY}), faults=Faults({"lie_echo_key": 1.0}))
    async with (
        Emulator(config) as emu,
        OutpaintClient(
            SECRET_KEY, emu.base_url, initial_work_per_second=0.001, min_check_interval=0.05
        ) as client,
    ):
        with anyio.fail_after(30):
            with pytest.raises(TaskFailedError) as info:
                await client.outpaint(OutpaintRequest(make_audio("a.wav"), tags="x", seed=9))
            assert SECRET_KEY not in str(info.value)
            results = [
                r
                async for r in client.outpaint_many(
                    [OutpaintRequest(make_audio("a.wav"), tags="x", seed=s) for s in range(2)],
                    journal=tmp_path / "j.sqlite",
                )
            ]
    assert [r.status for r in results] == [Status.FAILED, Status.FAILED]
    assert all("upstream refused" in (r.error or "") for r in results)
    texts = [str(info.value), caplog.text, *(repr(r) + str(r.exception) for r in results)]
    assert all(SECRET_KEY not in text for text in texts)
    assert SECRET_KEY.encode() not in (tmp_path / "j.sqlite").read_bytes()


@pytest.mark.parametrize(
    "junk", [b"ID3\x04\x00\x00\x7f\x7f\x7f\x7f" + bytes(20), b"ID3\x09\x09\x00\x00\x00\x00\x05bad"]
)
def test_a_wav_whose_tag_chunk_is_garbage_is_taken_by_its_audio(
    junk: bytes, make_audio: MakeTrack
) -> None:
    # It was refused as "header is broken ()", with an empty reason.
    path = make_audio("a.wav", seconds=1.0)
    data = bytearray(path.read_bytes())
    data += b"id3 " + struct.pack("<I", len(junk)) + junk
    struct.pack_into("<I", data, 4, len(data) - 8)
    path.write_bytes(bytes(data))
    assert probe_audio(path).duration == pytest.approx(1.0)


def test_a_broken_header_always_says_why(tmp_path: Path) -> None:
    path = tmp_path / "a.wav"
    path.write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt ")
    with pytest.raises(AudioProblem, match=r"header is broken \(.+\)"):
        probe_audio(path)
