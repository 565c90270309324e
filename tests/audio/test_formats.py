"""Drop-in outputs: the input's format (or a named one) and its tags, made from the
service's WAV on the client, checked, and never at the cost of the output paid for."""

from __future__ import annotations

import io
import uuid
from pathlib import Path
from typing import Any

import anyio
import attrs
import numpy as np
import pytest
import soundfile as sf
from conftest import fast_client, fast_config
from mutagen.flac import FLAC, Picture
from mutagen.id3 import APIC, TALB, TCON, TDRC, TIT2, TPE1, TPE2, TPOS, TRCK
from mutagen.mp3 import MP3
from mutagen.wave import WAVE
from support.s3server import S3Server

from wavespeed_outpaint import OutpaintRequest, OutpaintResult
from wavespeed_outpaint._audio.tags import (
    MAX_COVER_BYTES,
    MAX_TAG_BYTES,
    Cover,
    TrackTags,
    read_marker,
    read_tags,
    write_tags,
)
from wavespeed_outpaint.emulator import Emulator

pytestmark = pytest.mark.anyio

RATE = 44_100
COVER = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8
FIELDS = {
    "title": ["Night Drive"],
    "artist": ["The Tests"],
    "album": ["Loopback"],
    "albumartist": ["Various"],
    "tracknumber": ["3/12"],
    "discnumber": ["1/2"],
    "date": ["2024"],
    "genre": ["Synthwave"],
}
ID3_FRAMES = {
    "title": TIT2,
    "artist": TPE1,
    "album": TALB,
    "albumartist": TPE2,
    "tracknumber": TRCK,
    "discnumber": TPOS,
    "date": TDRC,
    "genre": TCON,
}


def track(seconds: float, rate: int = RATE) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    tone = 0.3 * np.sin(2 * np.pi * 330 * t)
    return np.stack([tone, tone * 0.5], axis=1).astype(np.float32)


def tagged(path: Path, subtype: str | None = None, rate: int = RATE) -> Path:
    """A second of audio at `path` (its format by its suffix), with every tag and a cover."""
    fmt = path.suffix[1:].upper()
    extra = {"compression_level": (320 - 192) / 288, "bitrate_mode": "CONSTANT"}
    sf.write(
        path, track(1.0, rate), rate, format=fmt, subtype=subtype, **(extra if fmt == "MP3" else {})
    )
    if fmt in ("MP3", "WAV"):
        audio: Any = MP3(path) if fmt == "MP3" else WAVE(path)
        audio.add_tags()
        for name, frame in ID3_FRAMES.items():
            audio.tags.add(frame(encoding=3, text=FIELDS[name]))
        audio.tags.add(APIC(encoding=3, mime="image/png", type=3, desc="front", data=COVER))
        audio.save()
    else:
        flac = FLAC(path)
        for name, values in FIELDS.items():
            flac[name] = values
        picture = Picture()
        picture.type, picture.mime, picture.data = 3, "image/png", COVER
        flac.add_picture(picture)
        flac.save()
    return path


async def run(
    emu: Emulator, requests: list[OutpaintRequest], out: Path, journal: Path | None = None
) -> list[OutpaintResult]:
    async with fast_client(emu) as client:
        with anyio.fail_after(60):
            return [r async for r in client.outpaint_many(requests, out, journal=journal)]


async def test_same_keeps_each_inputs_format_sample_width_bitrate_and_tags(tmp_path: Path) -> None:
    inputs = [
        tagged(tmp_path / "a.mp3"),
        tagged(tmp_path / "b.flac", "PCM_24"),
        tagged(tmp_path / "c.wav", "PCM_24"),
    ]
    requests = [
        OutpaintRequest(
            path,
            tags="lofi",
            extend_before_duration=1,
            extend_after_duration=2,
            output_format="same",
            title_suffix=" (extended)",
        )
        for path in inputs
    ]
    async with Emulator(fast_config()) as emu:
        results = await run(emu, requests, tmp_path / "out")
    assert [r.error for r in results if not r.ok] == []
    by_input = {r.request.audio: r for r in results}
    for path in inputs:
        result = by_input[path]
        (output,) = result.files
        assert output.suffix == path.suffix
        assert result.format_error is None
        made, source = sf.info(output), sf.info(path)
        expected = source.frames + 3 * RATE
        assert abs(made.frames - expected) <= (1152 if path.suffix == ".mp3" else 0)
        assert made.subtype == source.subtype  # PCM_24 stays PCM_24; MP3 stays MP3
        tags = read_tags(output)
        assert tags.fields == {**FIELDS, "title": ["Night Drive (extended)"]}, path
        assert tags.cover is not None
        assert tags.cover.data == COVER
        marker = read_marker(output)
        assert marker == {
            "prediction_id": result.prediction_id,
            "extend_before_duration": 1,
            "extend_after_duration": 2,
            "tags": "lofi",
        }
    mp3: Any = MP3(by_input[inputs[0]].files[0])
    assert round(mp3.info.bitrate / 1000) == 192


@pytest.mark.parametrize("fmt", ["wav", "flac", "mp3", "ogg"])
async def test_a_named_format_is_made_from_any_input(tmp_path: Path, fmt: str) -> None:
    source = tagged(tmp_path / "in.flac")
    request = OutpaintRequest(source, tags="x", extend_after_duration=1, output_format=fmt)
    async with Emulator(fast_config()) as emu:
        (result,) = await run(emu, [request], tmp_path / "out")
    assert result.ok, result.error
    (output,) = result.files
    assert output.name == f"in.{fmt}"
    assert abs(sf.info(output).frames - 2 * RATE) <= (1152 if fmt == "mp3" else 0)
    assert read_tags(output).fields["artist"] == ["The Tests"]


async def test_the_service_format_is_the_file_as_it_was_made(tmp_path: Path) -> None:
    source = tagged(tmp_path / "in.mp3")
    request = OutpaintRequest(source, tags="x", extend_after_duration=1)  # the SDK's default
    async with Emulator(fast_config()) as emu:
        (result,) = await run(emu, [request], tmp_path / "out")
        (url,) = result.outputs
        served = emu.stats()["output_bytes"]
    (output,) = result.files
    assert output.suffix == ".wav"
    assert output.stat().st_size == served  # byte for byte, no tags added
    assert read_tags(output) == TrackTags()
    assert url.endswith(".wav")


async def test_without_keep_tags_only_the_record_of_the_task_is_written(tmp_path: Path) -> None:
    source = tagged(tmp_path / "in.flac")
    request = OutpaintRequest(
        source, tags="x", extend_after_duration=1, output_format="same", keep_tags=False
    )
    async with Emulator(fast_config()) as emu:
        (result,) = await run(emu, [request], tmp_path / "out")
    (output,) = result.files
    assert read_tags(output) == TrackTags()
    assert (read_marker(output) or {})["prediction_id"] == result.prediction_id


async def test_a_conversion_that_fails_keeps_the_output_that_was_paid_for(tmp_path: Path) -> None:
    # A 96 kHz master asked for as MP3, which stops at 48 kHz: libsndfile refuses.
    source = tmp_path / "master.wav"
    sf.write(source, track(0.5, 96_000), 96_000, subtype="PCM_24")
    request = OutpaintRequest(source, tags="x", extend_after_duration=1, output_format="mp3")
    async with Emulator(fast_config()) as emu:
        (result,) = await run(emu, [request], tmp_path / "out", tmp_path / "j.sqlite")
        assert result.ok, result.error
        assert "kept as the service made it" in (result.format_error or "")
        (output,) = result.files
        assert output.name == "master.wav"
        assert sf.info(output).frames == round(1.5 * 96_000)
        # Nothing else: no half-made MP3, no part.
        assert [p.name for p in (tmp_path / "out").rglob("*.*") if p.is_file()] == ["master.wav"]
        # Run again: tried again from the service's output, never paid for again.
        (again,) = await run(emu, [request], tmp_path / "out", tmp_path / "j.sqlite")
        assert again.ok
        assert emu.stats()["submit_requests"] == 1


async def test_tags_that_break_their_format_never_stop_a_paid_batch(tmp_path: Path) -> None:
    """A FLAC whose METADATA_BLOCK_PICTURE comment is not base64: the input checks pass,
    every task is charged, and reading its tags raised binascii.Error outside the tag
    reader's guard, which the download step did not catch: the batch ended in a
    traceback with none of its 5 outputs written, on every run. Now the picture is left
    out and the rest carried over."""
    inputs = []
    for i in range(5):
        path = tagged(tmp_path / f"t{i}.flac")
        flac = FLAC(path)
        flac["metadata_block_picture"] = ["not base64 at all!"]
        flac.save()
        inputs.append(path)
    requests = [OutpaintRequest(p, tags="x", output_format="same") for p in inputs]
    async with Emulator(fast_config()) as emu:
        results = await run(emu, requests, tmp_path / "out")
    assert [r.error for r in results if not r.ok] == []
    for result in results:
        (output,) = result.files
        assert output.suffix == ".flac"
        assert read_tags(output).fields["artist"] == FIELDS["artist"]


async def test_converted_outputs_with_their_journal_lost_are_not_paid_for_again(
    tmp_path: Path,
) -> None:
    inputs = [tagged(tmp_path / "a.mp3"), tagged(tmp_path / "b.flac")]
    requests = [
        OutpaintRequest(p, tags="x", extend_after_duration=1, output_format="same") for p in inputs
    ]
    async with Emulator(fast_config()) as emu:
        first = await run(emu, requests, tmp_path / "out", tmp_path / "one.sqlite")
        lost = await run(emu, requests, tmp_path / "out", tmp_path / "other.sqlite")
        assert emu.stats()["submit_requests"] == 2
    assert all(r.ok for r in first + lost)
    assert {r.delivered_by for r in lost} == {"output"}
    assert sorted(f.name for r in lost for f in r.files) == ["a.mp3", "b.flac"]


async def test_an_object_in_a_bucket_keeps_its_tags_and_a_cover_past_the_first_read(
    s3: S3Server, tmp_path: Path
) -> None:
    # A cover of 400 KB: the tags run past the first ranged read of the object.
    big_cover = bytes(range(256)) * 1600
    for name in ("a.mp3", "b.flac"):
        path = tagged(tmp_path / name)
        tags = read_tags(path)
        write_tags(path, path.suffix[1:], attrs.evolve(tags, cover=Cover("image/png", big_cover)))
    bucket = f"lib-{uuid.uuid4().hex[:12]}"
    s3.make_bucket(bucket)
    requests = []
    for name in ("a.mp3", "b.flac"):
        s3.put(bucket, f"music/{name}", (tmp_path / name).read_bytes())
        requests.append(
            OutpaintRequest(
                f"s3://{bucket}/music/{name}",
                tags="x",
                extend_after_duration=1,
                output_format="same",
            )
        )
    # Into the bucket, converted on the way: each output an object of its input's format.
    async with Emulator(fast_config()) as emu, fast_client(emu) as client:
        with anyio.fail_after(60):
            out = f"s3://{bucket}/extended/"
            results = [r async for r in client.outpaint_many(requests, out)]
    assert [r.error for r in results if not r.ok] == []
    assert sorted(loc for r in results for loc in r.locations) == [
        f"s3://{bucket}/extended/a.mp3",
        f"s3://{bucket}/extended/b.flac",
    ]
    for name in ("a.mp3", "b.flac"):
        made = io.BytesIO(s3.get(bucket, f"extended/{name}"))
        assert sf.info(made).frames == 2 * RATE
        tags = read_tags(made)
        assert tags.fields["album"] == ["Loopback"]
        assert tags.cover is not None
        assert tags.cover.data == big_cover


async def test_a_cover_over_the_cap_is_left_out_and_said_and_the_rest_carried(
    tmp_path: Path,
) -> None:
    """8 MP3s with a 60 MB cover each took 1.5 GB more than untagged (mutagen read each
    tag whole, and the cover was copied on its way to every output). Now a picture over
    MAX_COVER_BYTES is skipped unread: the other tags are carried, the result says so."""
    huge = b"\xff\xd8" + bytes(range(256)) * (MAX_COVER_BYTES // 256 + 1)
    inputs = []
    for name in ("a.mp3", "b.flac", "c.wav"):
        path = tagged(tmp_path / name)
        write_tags(
            path, path.suffix[1:], attrs.evolve(read_tags(path), cover=Cover("image/jpeg", huge))
        )
        inputs.append(path)
    requests = [OutpaintRequest(p, tags="x", output_format="same") for p in inputs]
    async with Emulator(fast_config()) as emu:
        results = await run(emu, requests, tmp_path / "out")
    for result in results:
        assert result.ok, result.error
        (output,) = result.files
        tags = read_tags(output)
        assert tags.fields["artist"] == FIELDS["artist"]
        assert tags.cover is None
        (note,) = result.notes
        assert "its cover" in note
        assert "left out" in note


def test_the_tags_before_a_cover_cut_off_in_an_objects_head_are_read(tmp_path: Path) -> None:
    # A bucket's object is read up to MAX_TAG_BYTES: a 40 MB cover runs past it.
    path = tagged(tmp_path / "a.mp3")
    cover = Cover("image/jpeg", bytes(40 * 1024 * 1024))
    write_tags(path, "mp3", attrs.evolve(read_tags(path), cover=cover))
    with path.open("rb") as file:
        head = io.BytesIO(file.read(MAX_TAG_BYTES))
    tags = read_tags(head)
    assert tags.fields["album"] == FIELDS["album"]
    assert tags.cover is None
    assert tags.cover_left_out > MAX_COVER_BYTES
