"""The batch engine against the emulator: many tasks, faults, resume, shared polling."""

from __future__ import annotations

import collections
import contextlib
import itertools
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import pytest
import soundfile as sf
from conftest import RATE, MakeTrack, fast_client, fast_config

from wavespeed_outpaint import (
    InsufficientBalanceError,
    JournalError,
    OutpaintClient,
    OutpaintRequest,
    OutpaintResult,
    Status,
    TaskFailedError,
    ValidationError,
)
from wavespeed_outpaint.emulator import DEFAULT_API_KEY, FAULT_KINDS, Emulator, Faults

pytestmark = pytest.mark.anyio


def frames(path: Path) -> int:
    return int(sf.info(path).frames)


async def collect(results: AsyncIterator[OutpaintResult]) -> list[OutpaintResult]:
    with anyio.fail_after(60):
        return [r async for r in results]


async def test_a_batch_of_nested_files_lands_whole_at_mirrored_paths(
    emulator: Emulator, make_audio: MakeTrack, tmp_path: Path
) -> None:
    sources = [make_audio(f"in/album{i % 3}/song{i}.wav", seconds=0.5 + i % 2) for i in range(12)]
    requests = [
        (
            OutpaintRequest(
                p, tags="lofi", extend_before_duration=0.5, extend_after_duration=1, seed=1
            ),
            str(p.relative_to(tmp_path / "in").with_suffix("")),
        )
        for p in sources
    ]
    async with fast_client(emulator) as client:
        results = await collect(client.outpaint_many(requests, tmp_path / "out"))
    assert len(results) == 12
    for result in results:
        assert result.ok, result.error
        source = result.request.audio
        assert isinstance(source, Path)
        expected = tmp_path / "out" / source.relative_to(tmp_path / "in")
        assert result.files == (expected,)
        assert frames(expected) == frames(source) + round(1.5 * RATE)
    assert not list((tmp_path / "out").rglob("*.part"))
    stats = emulator.stats()
    assert stats["tasks_created"] == 12
    assert stats["duplicate_submissions"] == 0


async def test_one_upload_per_file_content(
    emulator: Emulator, make_audio: MakeTrack, tmp_path: Path
) -> None:
    one = make_audio("a.wav")
    copy = tmp_path / "copy-of-a.wav"
    copy.write_bytes(one.read_bytes())
    requests = [OutpaintRequest(p, tags="x", seed=s) for p in (one, copy) for s in range(3)]
    async with fast_client(emulator) as client:
        results = await collect(client.outpaint_many(requests))
    assert all(r.ok for r in results)
    assert emulator.stats()["upload_requests"] == 1


async def test_requests_are_read_lazily_and_breaking_out_stops_everything(
    emulator: Emulator, tmp_path: Path
) -> None:
    pulled = itertools.count()

    def endless() -> Iterator[OutpaintRequest]:
        for seed in range(100_000):
            next(pulled)
            yield OutpaintRequest("https://x.invalid/a.wav", tags="x", seed=seed)

    async with fast_client(emulator, max_in_flight=8, parallel_downloads=2) as client:
        seen = 0
        async for _ in client.outpaint_many(endless(), journal=tmp_path / "j.sqlite"):
            seen += 1
            if seen == 5:
                break
    # Read: those taken, in flight, finished but not taken (as many again), downloading.
    assert next(pulled) <= 5 + 2 * 8 + 2 + 1
    created = emulator.stats()["tasks_created"]
    await anyio.sleep(0.2)
    assert emulator.stats()["tasks_created"] == created  # nothing goes on after the break


async def test_a_slow_consumer_slows_the_reading_of_requests(
    emulator: Emulator, make_audio: MakeTrack
) -> None:
    source = make_audio("a.wav")
    pulled = 0

    def requests() -> Iterator[OutpaintRequest]:
        nonlocal pulled
        for seed in range(12):
            pulled += 1
            yield OutpaintRequest(source, tags="x", extend_after_duration=1, seed=seed)

    taken = 0
    most_ahead = 0
    async with fast_client(emulator, max_in_flight=4, parallel_downloads=1) as client:
        with anyio.fail_after(60):
            async for _ in client.outpaint_many(requests()):
                taken += 1
                await anyio.sleep(0.1)  # every admitted task finishes meanwhile
                most_ahead = max(most_ahead, pulled - taken)
    assert taken == 12
    # Results not yet taken hold their admission: twice the 4 in flight + 1
    # downloading, and the one read next waits.
    assert 4 <= most_ahead <= 2 * 4 + 1 + 1


async def test_async_iterables_are_accepted(emulator: Emulator) -> None:
    async def source() -> AsyncIterator[OutpaintRequest]:
        for seed in range(4):
            yield OutpaintRequest("https://x.invalid/a.wav", tags="x", seed=seed)

    async with fast_client(emulator) as client:
        results = await collect(client.outpaint_many(source()))
    assert len(results) == 4
    assert {r.status for r in results} == {Status.FAILED}  # the emulator cannot fetch that URL
    assert all("media access failed" in (r.error or "") for r in results)
    assert all(r.retryable is False for r in results)


async def test_task_failures_come_back_with_the_server_error(make_audio: MakeTrack) -> None:
    async with Emulator(
        fast_config(faults=Faults({"task_failed": 1.0}, failure_codes=(1401,)))
    ) as emu:
        async with fast_client(emu) as client:
            results = await collect(
                client.outpaint_many(
                    [OutpaintRequest(make_audio("a.wav"), tags="x", seed=s) for s in range(3)]
                )
            )
        for result in results:
            assert result.status is Status.FAILED
            assert result.code == 1401
            assert result.error == emu.service.tasks[result.prediction_id or ""].error
            assert result.retryable is False


@pytest.mark.slow
async def test_every_fault_kind_loses_nothing_and_charges_nothing_twice(
    make_audio: MakeTrack, tmp_path: Path
) -> None:
    # Every kind of fault (lying answers have tests of their own, in test_lies.py).
    kinds = [k for k in FAULT_KINDS if not k.startswith(("webhook", "lie_"))]
    faults = Faults(dict.fromkeys(kinds, 0.2), seed=7, retry_after=0.02, slow_seconds=0.05)
    source = make_audio("a.wav", seconds=0.5)
    count = 120
    async with Emulator(fast_config(faults=faults)) as emu:
        async with fast_client(emu, read_timeout=2.0) as client:
            results = await collect(
                client.outpaint_many(
                    [
                        (
                            OutpaintRequest(source, tags="x", extend_after_duration=1, seed=s),
                            f"t{s}",
                        )
                        for s in range(count)
                    ],
                    tmp_path / "out",
                    journal=tmp_path / "j.sqlite",
                )
            )
        stats = emu.stats()
        assert len(results) == count
        assert stats["duplicate_submissions"] == 0
        assert stats["tasks_created"] <= count
        by_status = collections.Counter(r.status for r in results)
        for result in results:
            if result.status is Status.UNKNOWN:
                assert result.prediction_id is None
                continue
            task = emu.service.tasks[result.prediction_id or ""]
            if task.final_status == "completed" and not task.expired_output:
                # A task that could complete did, with a whole file.
                assert result.ok, result.error
                assert frames(result.files[0]) == frames(source) + RATE
            else:
                assert not result.ok
                assert result.error
        assert by_status[Status.COMPLETED] > 0
        assert not list((tmp_path / "out").rglob("*.part"))


async def test_a_lost_submit_answer_is_settled_through_the_list(
    make_audio: MakeTrack, tmp_path: Path
) -> None:
    async with Emulator(fast_config(faults=Faults({"submit_lost": 1.0}))) as emu:
        async with fast_client(emu) as client:
            result = await client.outpaint(OutpaintRequest(make_audio("a.wav"), tags="x"), tmp_path)
        stats = emu.stats()
    assert result.ok
    assert result.files[0].exists()
    assert stats["submit_requests"] == 1
    assert stats["tasks_created"] == 1


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_after_a_lost_answer_the_submits_queued_behind_it_go_one_at_a_time(
    seed: int,
) -> None:
    """Half the answers lost, 24 tasks asked for at once, 4 submits at a time: only the
    first 4 can share the wire with a lost answer; each later one goes alone, so the list
    tells which task it created. When careful was decided before a submit waited for its
    place, every queued submit went out 4 at a time, and lost answers side by side stayed
    unknown."""
    config = fast_config(faults=Faults({"submit_lost": 0.5}, seed=seed))
    async with Emulator(config) as emu, fast_client(emu, parallel_submits=4) as client:
        with anyio.fail_after(60):
            results = await collect(
                client.outpaint_many(
                    [
                        OutpaintRequest("https://x.invalid/a.wav", tags="x", seed=s)
                        for s in range(24)
                    ]
                )
            )
        stats = emu.stats()
    unknown = [r for r in results if r.status is Status.UNKNOWN]
    assert len(unknown) <= 4, [r.error for r in unknown]
    assert stats["tasks_created"] == 24
    assert stats["duplicate_submissions"] == 0


async def test_a_submit_refused_before_creation_is_sent_again_once_proven_absent(
    make_audio: MakeTrack,
) -> None:
    faults = Faults({"submit_5xx": 0.5}, seed=3, error_statuses=(500,))
    async with Emulator(fast_config(faults=faults)) as emu:
        async with fast_client(emu) as client:
            results = await collect(
                client.outpaint_many(
                    [OutpaintRequest(make_audio("a.wav"), tags="x", seed=s) for s in range(6)]
                )
            )
        stats = emu.stats()
    assert all(r.ok for r in results), [r.error for r in results]
    assert stats["tasks_created"] == 6
    assert stats["duplicate_submissions"] == 0
    assert stats["submit_requests"] > 6


async def test_the_same_journal_resumes_without_submitting_again(
    emulator: Emulator, make_audio: MakeTrack, tmp_path: Path
) -> None:
    requests = [OutpaintRequest(make_audio(f"s{i}.wav"), tags="x") for i in range(5)]
    journal = tmp_path / "journal.sqlite"
    async with fast_client(emulator) as client:
        first = await collect(client.outpaint_many(requests, tmp_path / "out", journal=journal))
        assert all(r.ok and not r.skipped for r in first)
        first[0].files[0].unlink()
        second = await collect(client.outpaint_many(requests, tmp_path / "out", journal=journal))
    stats = emulator.stats()
    assert stats["submit_requests"] == 5
    assert stats["downloads_completed"] == 6  # the deleted file, fetched again
    assert all(r.ok for r in second)
    assert sum(r.skipped for r in second) == 4
    assert all(f.exists() for r in second for f in r.files)


async def test_insufficient_balance_stops_submitting_and_collects_in_flight(
    make_audio: MakeTrack,
) -> None:
    config = fast_config(balance_usd=5 * 30 * 0.0002 + 1e-9)
    async with Emulator(config) as emu:
        async with fast_client(emu, parallel_submits=1) as client:
            got: list[OutpaintResult] = []

            async def drain() -> None:
                requests = [
                    OutpaintRequest(make_audio("a.wav"), tags="x", seed=s) for s in range(10)
                ]
                async for result in client.outpaint_many(requests):
                    got.append(result)

            with pytest.raises(InsufficientBalanceError, match="top up"):
                await drain()

        stats = emu.stats()
    assert stats["tasks_created"] == 5
    assert len(got) == 5
    assert all(r.ok for r in got)


async def test_concurrent_outpaint_calls_share_one_poller(
    emulator: Emulator, make_audio: MakeTrack
) -> None:
    url_source = make_audio("a.wav")
    count = 200
    async with fast_client(emulator, min_check_interval=2.0) as client:
        url = await client.upload(url_source)
        results: list[OutpaintResult] = []

        async def one(seed: int) -> None:
            results.append(
                await client.outpaint(
                    OutpaintRequest(url, tags="x", extend_after_duration=2, seed=seed)
                )
            )

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                for seed in range(count):
                    tg.start_soon(one, seed)
    stats = emulator.stats()
    assert len(results) == count
    assert all(r.ok for r in results)
    # One loop asking in bulk: far fewer status requests than tasks.
    assert stats["list_requests"] > 0
    assert stats["status_requests"] < count / 4


async def test_outpaint_raises_on_task_failure(make_audio: MakeTrack) -> None:
    async with (
        Emulator(fast_config(faults=Faults({"task_failed": 1.0}, failure_codes=(5003,)))) as emu,
        fast_client(emu) as client,
    ):
        with pytest.raises(TaskFailedError, match="5003") as info:
            await client.outpaint(OutpaintRequest(make_audio("a.wav"), tags="x"))
    assert info.value.retryable is True


async def test_duplicate_requests_in_a_batch_run_once(
    emulator: Emulator, make_audio: MakeTrack, tmp_path: Path
) -> None:
    request = OutpaintRequest(make_audio("a.wav"), tags="x", seed=1)
    async with fast_client(emulator) as client:
        results = await collect(client.outpaint_many([request, request, request], tmp_path))
    assert len(results) == 3
    assert all(r.ok for r in results)
    assert emulator.stats()["tasks_created"] == 1


async def test_output_names_never_collide_or_escape(
    emulator: Emulator, make_audio: MakeTrack, tmp_path: Path
) -> None:
    a = make_audio("x/song.wav", seed=1)
    b = make_audio("y/song.wav", seed=2)
    async with fast_client(emulator) as client:
        results = await collect(
            client.outpaint_many(
                [
                    OutpaintRequest(a, tags="x"),
                    OutpaintRequest(b, tags="x"),
                    (OutpaintRequest(a, tags="y"), "../evil"),
                    (OutpaintRequest(b, tags="y"), "/abs/path"),
                    # Refused before its submit, not after it was charged.
                    (OutpaintRequest(a, tags="z"), "\\abs\\path"),
                ],
                tmp_path / "out",
            )
        )
    ok = [r for r in results if r.ok]
    assert len(ok) == 2
    assert len({r.files[0] for r in ok}) == 2
    assert all(r.files[0].parent == tmp_path / "out" for r in ok)
    refused = [r for r in results if not r.ok]
    assert all("output name" in (r.error or "") for r in refused)
    assert emulator.stats()["tasks_created"] == 2
    assert not (tmp_path / "evil.wav").exists()


async def test_journal_rows_agree_with_the_files(
    emulator: Emulator, make_audio: MakeTrack, tmp_path: Path
) -> None:
    import sqlite3

    async with fast_client(emulator) as client:
        await collect(
            client.outpaint_many(
                [OutpaintRequest(make_audio(f"{i}.wav"), tags="x") for i in range(3)],
                tmp_path / "out",
                journal=tmp_path / "j.sqlite",
            )
        )
    rows = (
        sqlite3.connect(tmp_path / "j.sqlite").execute("SELECT state, files FROM tasks").fetchall()
    )
    assert [state for state, _ in rows] == ["downloaded"] * 3
    for _, files in rows:
        assert all(Path(f).exists() for f in json.loads(files))


async def test_breaking_out_leaves_no_part_files_and_a_journal_that_resumes(
    emulator: Emulator, make_audio: MakeTrack, tmp_path: Path
) -> None:
    # Large outputs (over a megabyte each), so downloads are under way at the break.
    requests = [
        OutpaintRequest(make_audio(f"{i}.wav"), tags="x", extend_after_duration=80)
        for i in range(8)
    ]
    journal = tmp_path / "j.sqlite"
    async with fast_client(emulator, parallel_downloads=4) as client:
        async for _ in client.outpaint_many(requests, tmp_path / "out", journal=journal):
            break
    assert not list((tmp_path / "out").rglob("*.part"))
    async with fast_client(emulator) as client:
        results = await collect(client.outpaint_many(requests, tmp_path / "out", journal=journal))
    assert all(r.ok for r in results)
    assert all(frames(r.files[0]) == 81 * RATE for r in results)
    assert emulator.stats()["duplicate_submissions"] == 0
    assert emulator.stats()["submit_requests"] == 8  # each task sent once over both runs


async def test_a_task_past_its_deadline_is_collected_by_the_next_run(
    make_audio: MakeTrack, tmp_path: Path
) -> None:
    async with Emulator(fast_config(time_scale=0.05)) as emu:  # 30 s generated: 1.5 s
        request = OutpaintRequest(make_audio("a.wav"), tags="x")
        journal = tmp_path / "j.sqlite"
        async with fast_client(emu, task_deadline=0.3) as client:
            (late,) = await collect(client.outpaint_many([request], tmp_path, journal=journal))
        assert not late.ok
        assert late.prediction_id is not None
        assert "task_deadline" in (late.error or "")
        async with fast_client(emu) as client:
            (done,) = await collect(client.outpaint_many([request], tmp_path, journal=journal))
        assert done.ok
        assert done.prediction_id == late.prediction_id
        assert emu.stats()["submit_requests"] == 1


async def test_errors_leave_the_client_as_they_are(make_audio: MakeTrack) -> None:
    async with Emulator(fast_config(faults=Faults({"task_failed": 1.0}))) as emu:
        with pytest.raises(TaskFailedError):  # not wrapped in an ExceptionGroup
            async with fast_client(emu) as client:
                await client.outpaint(OutpaintRequest(make_audio("a.wav"), tags="x"))


async def test_a_file_that_disappears_or_changes_fails_alone(
    emulator: Emulator, make_audio: MakeTrack, tmp_path: Path
) -> None:
    gone = OutpaintRequest(make_audio("gone.wav"), tags="x")
    changed_path = make_audio("changed.wav", seconds=1.0)
    changed = OutpaintRequest(changed_path, tags="x")
    kept = OutpaintRequest(make_audio("kept.wav"), tags="x")
    assert isinstance(gone.audio, Path)
    gone.audio.unlink()
    changed_path.write_bytes(make_audio("other.wav", seconds=1.5).read_bytes())
    async with fast_client(emulator) as client:
        results = {
            Path(str(r.request.audio)).name: r
            for r in await collect(client.outpaint_many([gone, changed, kept], tmp_path / "out"))
        }
    assert "disappeared" in (results["gone.wav"].error or "")
    assert results["kept.wav"].ok
    # The content is what counts: the changed file runs as the content it now has.
    assert results["changed.wav"].ok
    assert frames(results["changed.wav"].files[0]) == round(1.5 * RATE) + 30 * RATE


async def test_items_that_are_not_requests_stop_the_batch(emulator: Emulator) -> None:
    from wavespeed_outpaint import ValidationError

    async with fast_client(emulator) as client:
        with pytest.raises(ValidationError, match="OutpaintRequest items"):
            await collect(client.outpaint_many(["song.wav"]))  # type: ignore[list-item]


async def test_a_request_iterator_that_raises_stops_the_batch_with_its_error(
    emulator: Emulator,
) -> None:
    def broken() -> Iterator[OutpaintRequest]:
        yield OutpaintRequest("https://x.invalid/a.wav", tags="x")
        raise RuntimeError("the manifest reader broke")

    async with fast_client(emulator) as client:
        with pytest.raises(RuntimeError, match="manifest reader broke"):
            await collect(client.outpaint_many(broken()))


async def test_a_long_lived_client_keeps_no_record_of_finished_outpaint_calls(
    emulator: Emulator, make_audio: MakeTrack, tmp_path: Path
) -> None:
    # A web backend runs outpaint() for days: finished tasks leave nothing behind.
    async with fast_client(emulator) as client:
        for seed in range(12):
            result = await client.outpaint(
                OutpaintRequest(make_audio(f"{seed % 3}.wav"), tags="x", seed=seed), tmp_path
            )
            assert result.ok
        assert list(client._journal.rows()) == []  # type: ignore[union-attr]
    assert emulator.stats()["tasks_created"] == 12


@pytest.mark.slow
async def test_leaving_a_batch_with_aclosing_stops_it_at_once(
    emulator: Emulator, make_audio: MakeTrack, tmp_path: Path
) -> None:
    source = make_audio("a.wav")
    requests = [OutpaintRequest(source, tags="x", seed=s) for s in range(40)]
    async with fast_client(emulator, max_in_flight=4) as client:
        async with contextlib.aclosing(
            client.outpaint_many(requests, journal=tmp_path / "j.sqlite")
        ) as results:
            async for _ in results:
                break
        # Closed here, with the client still open: nothing of that batch goes on (a submit
        # already on the wire may still land; the journal has it as sent).
        await anyio.sleep(0.1)
        created = emulator.stats()["tasks_created"]
        assert created < 40
        await anyio.sleep(0.3)
        assert emulator.stats()["tasks_created"] == created
        # Its journal was closed too: the same batch resumes it, paying nothing twice.
        again = [r async for r in client.outpaint_many(requests, journal=tmp_path / "j.sqlite")]
    # A submit cut off on the wire is settled through the list, or reported unknown.
    assert all(r.ok or r.status is Status.UNKNOWN for r in again), [r.error for r in again]
    stats = emulator.stats()
    assert stats["duplicate_submissions"] == 0
    unknown = sum(r.status is Status.UNKNOWN for r in again)
    assert sum(r.ok for r in again) <= stats["tasks_created"] <= sum(r.ok for r in again) + unknown


async def test_two_batches_on_one_journal_in_one_process_are_refused(
    emulator: Emulator, make_audio: MakeTrack, tmp_path: Path
) -> None:
    requests = [OutpaintRequest(make_audio("a.wav"), tags="x", seed=s) for s in range(3)]
    journal = tmp_path / "j.sqlite"
    async with fast_client(emulator) as client:
        first = client.outpaint_many(requests, journal=journal)
        async with contextlib.aclosing(first):
            assert (await first.__anext__()).ok
            with pytest.raises(JournalError, match="in use by this process"):
                async for _ in client.outpaint_many(requests, journal=journal):
                    pass
            rest = [r async for r in first]
        # Once the first is closed, the journal is free again: nothing left to pay for.
        again = [r async for r in client.outpaint_many(requests, journal=journal)]
    assert len(rest) == 2
    assert all(r.skipped for r in again)
    assert emulator.stats()["tasks_created"] == 3


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("album/a\x00b", "NUL"),
        ("x" * 300, "over 230 bytes"),
        ("/".join(["deep" * 50] * 6), "over 1024 bytes in all"),
        ("songs/CON", "reserved name"),
    ],
)
async def test_an_output_name_no_file_system_can_hold_is_refused_before_the_charge(
    emulator: Emulator, make_audio: MakeTrack, tmp_path: Path, name: str, problem: str
) -> None:
    request = OutpaintRequest(make_audio("a.wav"), tags="x")
    async with fast_client(emulator) as client:
        results = [r async for r in client.outpaint_many([(request, name)], tmp_path / "out")]
    assert results[0].status is Status.FAILED
    assert problem in (results[0].error or "")
    assert emulator.stats()["submit_requests"] == 0


async def test_tasks_that_all_fail_at_once_are_found_by_the_first_looks(
    make_audio: MakeTrack,
) -> None:
    # Nothing completes, so nothing teaches the poller when tasks end: its first looks
    # at the list must cover failed tasks too (it once waited 30 s, then asked by GET).
    async with Emulator(fast_config(faults=Faults({"task_failed": 1.0}))) as emu:
        async with OutpaintClient(DEFAULT_API_KEY, emu.base_url) as client:  # default options
            with anyio.fail_after(20):
                requests = [
                    OutpaintRequest(make_audio("a.wav"), tags="x", seed=s) for s in range(3)
                ]
                results = [r async for r in client.outpaint_many(requests)]
        stats = emu.stats()
    assert [r.status for r in results] == [Status.FAILED] * 3
    assert stats["result_gets"] == 0
    assert all(r.delivered_by == "list" for r in results)


@pytest.mark.parametrize("offset", [5.0, -5.0, 30.0])
async def test_a_lost_first_submit_is_found_on_a_service_whose_clock_is_off(
    offset: float,
) -> None:
    # No answered submit yet to learn the offset from: the first one's answer is lost.
    # The service's clock shows in every answer's Date header (here: only the list's).
    config = fast_config(clock_offset=offset, faults=Faults({"submit_lost": 1.0}))
    async with Emulator(config) as emu, fast_client(emu) as client:
        with anyio.fail_after(30):
            results = [
                r
                async for r in client.outpaint_many(
                    [OutpaintRequest("https://x.invalid/a.wav", tags="x")]
                )
            ]
        stats = emu.stats()
    assert results[0].prediction_id is not None  # adopted, not unknown
    assert stats["tasks_created"] == 1
    assert stats["duplicate_submissions"] == 0


@pytest.mark.parametrize("offset", [5.0, -5.0])
async def test_a_lost_submit_is_never_sent_again_when_the_services_clocks_disagree(
    offset: float,
) -> None:
    """`created_at` comes from a clock 5 s off the one in the `Date` header (an API edge
    and a database on two machines): the lost first submit's window, on the `Date`
    clock, missed its task, which was then judged absent and sent again (2 tasks for 1
    request, either way). Now a prediction nobody explains near it keeps it unknown."""
    config = fast_config(date_offset=offset, faults=Faults({"submit_lost": 1.0}))
    async with Emulator(config) as emu, fast_client(emu) as client:
        with anyio.fail_after(30):
            results = [
                r
                async for r in client.outpaint_many(
                    [OutpaintRequest("https://x.invalid/a.wav", tags="x")]
                )
            ]
        stats = emu.stats()
    assert stats["tasks_created"] == 1
    assert results[0].status is Status.UNKNOWN, results[0].error


async def test_tasks_of_one_file_share_its_name_with_suffixes(
    emulator: Emulator, make_audio: MakeTrack, tmp_path: Path
) -> None:
    source = make_audio("song.wav")
    requests = [OutpaintRequest(source, tags="x", seed=s) for s in range(3)]
    async with fast_client(emulator) as client:
        results = [r async for r in client.outpaint_many(requests, tmp_path / "out")]
    assert all(r.ok for r in results), [r.error for r in results]
    names = sorted(r.files[0].name for r in results)
    assert names[-1] == "song.wav"
    assert all(n.startswith("song-") for n in names[:-1])


async def test_a_url_signed_anew_is_the_same_task_when_the_request_names_its_key(
    make_audio: MakeTrack, tmp_path: Path
) -> None:
    journal = tmp_path / "j.sqlite"
    async with Emulator(fast_config()) as emu:
        async with fast_client(emu) as client:
            url = await client.upload(make_audio("a.wav"))
        for signature in ("1", "2"):  # the same audio behind a URL signed for each run
            request = OutpaintRequest(f"{url}?sig={signature}", tags="x", key="catalogue/42")
            async with fast_client(emu) as client:
                (result,) = await collect(client.outpaint_many([request], journal=journal))
            assert result.ok, result.error
        assert result.skipped
        assert emu.stats()["submit_requests"] == 1
    with pytest.raises(ValidationError, match="key"):
        OutpaintRequest(url, tags="x", key=" ")


async def test_byte_identical_inputs_are_paid_once_and_delivered_to_each_name(
    make_audio: MakeTrack, tmp_path: Path
) -> None:
    """An album's tracks again on a compilation: the same bytes under two folders and
    names. One task each pair (paid once), and every input's output at its own name: the
    second input's was never written and its result listed the first's file."""
    album = [make_audio(f"lib/album/t{i}.wav", seconds=0.5, seed=i) for i in range(3)]
    compilation = []
    for i, track in enumerate(album):
        copy = tmp_path / "lib" / "best of" / f"{i:02d} hit.wav"
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_bytes(track.read_bytes())
        compilation.append(copy)
    out, journal = tmp_path / "out", tmp_path / "j.sqlite"
    requests = [
        (OutpaintRequest(p, tags="x"), str(p.relative_to(tmp_path / "lib").with_suffix("")))
        for p in album + compilation
    ]
    async with Emulator(fast_config()) as emu:
        for run in range(2):  # the second run finds everything in place
            async with fast_client(emu) as client:
                results = [r async for r in client.outpaint_many(requests, out, journal=journal)]
            assert all(r.ok for r in results), [r.error for r in results]
            by_name = {r.request.audio: r for r in results}
            for request, name in requests:
                (written,) = by_name[request.audio].files
                assert written == out / f"{name}.wav"
                assert written.is_file()
            if run == 1:
                assert all(r.skipped for r in results)
        assert emu.stats()["tasks_created"] == 3
