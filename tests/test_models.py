"""OutpaintRequest validation, both sides of every bound, and the Prediction model."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from conftest import MakeTrack, flac_claiming

from wavespeed_outpaint import OutpaintRequest, Prediction, Status, ValidationError
from wavespeed_outpaint._audio.probe import DEFAULT_MAX_UPLOAD_BYTES
from wavespeed_outpaint._engine.identity import FileFacts

URL = "https://cdn.example.com/song.mp3"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("tags", ""),
        ("tags", "   "),
        ("tags", None),
        ("tags", 5),
        ("extend_before_duration", -0.001),
        ("extend_before_duration", 240.001),
        ("extend_before_duration", math.nan),
        ("extend_before_duration", True),
        ("extend_before_duration", "10"),
        ("extend_after_duration", -1),
        ("extend_after_duration", 241),
        ("extend_after_duration", math.inf),
        ("extend_after_duration", None),
        ("lyrics", None),
        ("lyrics", 3),
        ("seed", -2),
        ("seed", 2_147_483_648),
        ("seed", True),
        ("seed", 1.0),
        ("seed", "7"),
    ],
)
def test_invalid_values_name_the_field(field: str, value: object) -> None:
    kwargs: dict[str, object] = {"audio": URL, "tags": "lofi", field: value}
    with pytest.raises(ValidationError) as info:
        OutpaintRequest(**kwargs)  # type: ignore[arg-type]
    assert info.value.field == field
    assert field in str(info.value)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("extend_before_duration", 0),
        ("extend_before_duration", 240),
        ("extend_before_duration", 12.5),
        ("extend_after_duration", 0.001),
        ("extend_after_duration", 240.0),
        ("seed", -1),
        ("seed", 0),
        ("seed", 2_147_483_647),
        ("lyrics", "[inst]"),
    ],
)
def test_values_on_the_bounds_are_accepted(field: str, value: object) -> None:
    request = OutpaintRequest(**{"audio": URL, "tags": "lofi", field: value})  # type: ignore[arg-type]
    assert getattr(request, field) == value


def test_range_error_says_the_allowed_range() -> None:
    with pytest.raises(ValidationError, match="0 to 240"):
        OutpaintRequest(URL, tags="x", extend_after_duration=300)


def test_nothing_to_generate_is_refused() -> None:
    with pytest.raises(ValidationError, match="both are 0"):
        OutpaintRequest(URL, tags="x", extend_before_duration=0, extend_after_duration=0)


@pytest.mark.parametrize(
    "audio",
    [
        "http://cdn.example.com/a.mp3",
        "ftp://x/a.mp3",
        "s3://bucket/",  # a prefix, not an object
        "s3://bucket/music/../a.mp3",
        "s3:///a.mp3",
        "https://",
        42,
        None,
    ],
)
def test_bad_audio_urls_are_refused(audio: object) -> None:
    with pytest.raises(ValidationError) as info:
        OutpaintRequest(audio, tags="x")
    assert info.value.field == "audio"


@pytest.mark.parametrize(
    "audio", [URL, "http://127.0.0.1:8000/a.wav", "http://localhost/a.wav", "http://[::1]:9/a"]
)
def test_https_and_loopback_http_urls_are_accepted(audio: str) -> None:
    assert OutpaintRequest(audio, tags="x").audio == audio


def test_local_files_are_recognised_by_content(make_audio: MakeTrack, tmp_path: Path) -> None:
    for name, fmt in [
        ("a.wav", "wav"),
        ("b.flac", "flac"),
        ("c.mp3", "mp3"),
        ("mp3-named.wav", "mp3"),
    ]:
        path = make_audio(name, seconds=1.0, fmt=fmt)
        request = OutpaintRequest(str(path), tags="x")
        assert request.audio == path
        assert request.is_local


@pytest.mark.anyio
async def test_a_text_file_named_mp3_is_refused(tmp_path: Path) -> None:
    fake = tmp_path / "song.mp3"
    fake.write_text("this is not audio at all\n" * 50)
    request = OutpaintRequest(fake, tags="x")  # plain data: building it opens nothing
    assert request.is_local
    with pytest.raises(ValidationError, match="not MP3, WAV or FLAC"):
        await OutpaintRequest.from_file(fake, tags="x")
    with pytest.raises(ValidationError, match="not MP3, WAV or FLAC"):
        FileFacts().check(fake, DEFAULT_MAX_UPLOAD_BYTES)


@pytest.mark.anyio
async def test_an_empty_wav_is_refused(tmp_path: Path) -> None:
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(ValidationError, match="empty"):
        await OutpaintRequest.from_file(empty, tags="x")


@pytest.mark.anyio
async def test_a_flac_claiming_61_minutes_is_refused(make_audio: MakeTrack) -> None:
    path = flac_claiming(make_audio("long.flac", seconds=1.0), 61 * 60)
    with pytest.raises(ValidationError, match=r"61\.0 minutes"):
        await OutpaintRequest.from_file(path, tags="x")


@pytest.mark.anyio
async def test_a_flac_claiming_59_minutes_is_accepted(make_audio: MakeTrack) -> None:
    path = flac_claiming(make_audio("long.flac", seconds=1.0), 59 * 60)
    assert (await OutpaintRequest.from_file(path, tags="x")).is_local


@pytest.mark.anyio
async def test_missing_file_and_folder_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="no such file"):
        await OutpaintRequest.from_file(tmp_path / "nope.wav", tags="x")
    with pytest.raises(ValidationError, match="folder"):
        await OutpaintRequest.from_file(tmp_path, tags="x")
    with pytest.raises(ValidationError, match="no such file"):
        FileFacts().check(tmp_path / "nope.wav", DEFAULT_MAX_UPLOAD_BYTES)


@pytest.mark.anyio
async def test_a_file_over_the_upload_limit_is_refused(make_audio: MakeTrack) -> None:
    path = make_audio("a.wav", seconds=1.0)
    size = path.stat().st_size
    with pytest.raises(ValidationError, match="over the upload limit"):
        await OutpaintRequest.from_file(path, tags="x", max_upload_bytes=size - 1)
    assert (await OutpaintRequest.from_file(path, tags="x", max_upload_bytes=size)).is_local
    facts = FileFacts()
    with pytest.raises(ValidationError, match="over the upload limit"):
        facts.check(path, size - 1)
    assert facts.check(path, size).size == size


def test_payload_cost_and_seconds() -> None:
    request = OutpaintRequest(
        URL, tags="lofi", extend_before_duration=10, extend_after_duration=20.5, seed=7
    )
    assert request.payload() == {
        "audio": URL,
        "tags": "lofi",
        "extend_before_duration": 10,
        "extend_after_duration": 20.5,
        "lyrics": "",
        "seed": 7,
    }
    assert request.generated_seconds == 30.5
    assert request.cost_usd == pytest.approx(30.5 * 0.0002)


def test_a_local_payload_needs_the_uploaded_url(make_audio: MakeTrack) -> None:
    request = OutpaintRequest(make_audio("a.wav"), tags="x")
    with pytest.raises(ValidationError, match="uploaded first"):
        request.payload()
    assert request.payload("https://u/a.wav")["audio"] == "https://u/a.wav"


def test_prediction_keeps_unknown_status_and_task_codes() -> None:
    odd = Prediction.from_data({"id": "p1", "status": "paused", "surprise": 1})
    assert odd.status == "paused"
    assert not odd.is_final  # waited on (up to task_deadline), never taken as an end
    for final in ("cancelled", "timeout", "deleted"):  # final in the official clients
        assert Prediction.from_data({"id": "p", "status": final}).is_final
    failed = Prediction.from_data(
        {"id": "p2", "status": "failed", "code": 1401, "error": "bad tags"}
    )
    assert failed.status is Status.FAILED
    assert failed.retryable is False
    assert "input must change" in failed.advice
    flaky = Prediction.from_data({"id": "p3", "status": "failed", "code": 5003, "error": "busy"})
    assert flaky.retryable is True
    done = Prediction.from_data(
        {
            "id": "p4",
            "status": "completed",
            "outputs": ["https://o/x.wav"],
            "has_nsfw_contents": [False],
            "created_at": "2026-01-02T03:04:05.678Z",
            "timings": {"inference": 1234},
        }
    )
    assert done.ok
    assert done.outputs == ("https://o/x.wav",)
    assert done.inference_ms == 1234
    assert done.created_at is not None
    assert done.created_at.year == 2026
    assert not Prediction.from_data({"id": "p5", "status": "processing"}).is_final


def test_tasks_downloading_are_not_counted_as_processing() -> None:
    from wavespeed_outpaint import BatchProgress

    progress = BatchProgress(submitted=5, finished=2, skipped=1, downloading=2)
    assert progress.processing == 5 - 1 - 2
