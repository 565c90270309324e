"""A track's tags carried from its input to its extended output, with mutagen: title,
artist, album, album artist, track and disc number, year, genre and cover art, across
ID3 (MP3, and WAV's `id3 ` chunk) and Vorbis comments (FLAC, OGG); plus a record of
what was done (`WAVESPEED_OUTPAINT`: the prediction, the seconds added, the style).

Blocking: the client runs these in worker threads.
"""

from __future__ import annotations

import base64
import io
import json
import logging
from pathlib import Path
from typing import IO, Any

import attrs
import mutagen
from mutagen.flac import FLAC, Picture
from mutagen.id3 import APIC, ID3, TXXX, Frames
from mutagen.mp3 import MP3
from mutagen.oggvorbis import OggVorbis
from mutagen.wave import WAVE

from .probe import binary_stream

log = logging.getLogger("wavespeed_outpaint.tags")

# The fields carried over, by their Vorbis comment names, and their ID3 frames.
ID3_FRAMES = {
    "title": "TIT2",
    "artist": "TPE1",
    "album": "TALB",
    "albumartist": "TPE2",
    "tracknumber": "TRCK",
    "discnumber": "TPOS",
    "date": "TDRC",
    "genre": "TCON",
}
MARKER = "WAVESPEED_OUTPAINT"
FRONT_COVER = 3  # the picture type of ID3 and FLAC alike


@attrs.frozen
class Cover:
    mime: str
    data: bytes = attrs.field(repr=lambda data: f"<{len(data)} bytes>")


@attrs.frozen
class TrackTags:
    """The tags of a track, by their Vorbis comment names (values as lists of text), and
    the size of a cover left out for being over `MAX_COVER_BYTES` (0: none was)."""

    fields: dict[str, list[str]] = attrs.Factory(dict)
    cover: Cover | None = None
    cover_left_out: int = 0

    def __bool__(self) -> bool:
        return bool(self.fields) or self.cover is not None


# The most of an object's start read for its tags (ID3v2 allows 256 MB; covers are far less).
MAX_TAG_BYTES = 32 * 1024 * 1024
# The largest cover carried over: real covers are a few MB, and a FLAC block holds less
# than 16 MiB. Pictures over it are skipped unread (the output's result says so): 8 MP3s
# with a 60 MB cover each took 1.5 GB more than untagged, read whole by mutagen and
# copied on the way to each output.
MAX_COVER_BYTES = 12 * 1024 * 1024
ID3_PICTURE = b"APIC"
FLAC_PICTURE, FLAC_PADDING = 6, 1


def tags_span(head: bytes) -> int:
    """How many bytes from a file's start hold its tags (an ID3v2 tag, FLAC's metadata
    blocks), as far as `head`, the first bytes, tells; 0 when it has none there."""
    if head[:3] == b"ID3" and len(head) >= 10:
        size = _synchsafe(head[6:10])
        footer = 10 if head[5] & 0x10 else 0
        return min(10 + size + footer, MAX_TAG_BYTES)
    if head[:4] == b"fLaC":
        at = 4
        while at + 4 <= len(head):
            last, length = head[at] & 0x80, int.from_bytes(head[at + 1 : at + 4], "big")
            at += 4 + length
            if last:
                return min(at, MAX_TAG_BYTES)
        return min(at + 4, MAX_TAG_BYTES)  # more blocks beyond `head`: read on
    return 0


def read_tags(audio: Path | IO[bytes], max_cover: int = MAX_COVER_BYTES) -> TrackTags:
    """The tags of a file, or of an object's first bytes; none when there are none or
    they cannot be read (a track without tags is not an error; nor are tags that break
    their format, which mutagen may answer with any error: a truncated ID3 head, say).
    Tags longer than `max_cover` are read without their pictures over it (never read)."""
    try:
        with binary_stream(audio) as stream:
            slim = _slimmed(stream, max_cover)
            if slim is not None:
                found, left_out = slim
                return attrs.evolve(_tags_of(found), cover_left_out=left_out)
            stream.seek(0)
            return _tags_of(mutagen.File(stream))
    except Exception:
        log.info("the tags of %s cannot be read: none are carried over", audio, exc_info=True)
        return TrackTags()


def _tags_of(found: Any) -> TrackTags:
    tags = getattr(found, "tags", found)
    if isinstance(tags, ID3):
        return _from_id3(tags)
    if tags is not None and hasattr(tags, "as_dict"):  # Vorbis comments
        every = {k.lower(): list(v) for k, v in tags.as_dict().items()}
        comments = {k: v for k, v in every.items() if k in ID3_FRAMES}
        # FLAC keeps pictures in blocks of their own, OGG in a comment.
        pictures = list(getattr(found, "pictures", ()))
        for encoded in every.get("metadata_block_picture", []):
            try:
                pictures.append(Picture(base64.b64decode(encoded, validate=True)))
            except Exception:  # noqa: BLE001 - not base64, or not a picture block
                log.info("a cover picture that cannot be read is left out")
        return TrackTags(comments, _front(pictures))
    return TrackTags()


def _slimmed(stream: IO[bytes], max_cover: int) -> tuple[Any, int] | None:
    """The tags at the stream's start (ID3, FLAC's blocks, a WAV's `id3 ` chunk), parsed
    without the pictures that would take them over `max_cover`, and the size of the
    largest picture left out; None when the tags are no longer than that (mutagen reads
    them whole, as it does every other format's)."""
    stream.seek(0)
    head = stream.read(12)
    if head[:3] == b"ID3":
        return _slim_id3(stream, 0, max_cover)
    if head[:4] == b"fLaC":
        return _slim_flac(stream, max_cover)
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        at = 12
        while len(chunk := stream.read(8)) == 8:
            size = int.from_bytes(chunk[4:], "little")
            if chunk[:4] in (b"id3 ", b"ID3 "):
                return _slim_id3(stream, at + 8, max_cover)
            at += 8 + size + (size & 1)
            stream.seek(at)
    return None


def _synchsafe(data: bytes) -> int:
    """ID3's "synchsafe" integer: 7 bits a byte."""
    value = 0
    for byte in data:
        value = (value << 7) | (byte & 0x7F)
    return value


def _slim_id3(stream: IO[bytes], at: int, max_cover: int) -> tuple[Any, int] | None:
    stream.seek(at)
    header = stream.read(10)
    size = _synchsafe(header[6:10])
    major, flags = header[3], header[5]
    if size <= max_cover:
        return None
    if major not in (3, 4) or flags & 0x80:
        # ID3v2.2's frames, or a tag unsynchronised as a whole: its frames cannot be
        # walked apart, and it is too long to read whole.
        raise ValueError(f"a tag of {size} bytes in a form that can only be read whole")
    end = at + 10 + size
    kept: list[bytes] = []
    if flags & 0x40:  # an extended header: kept as it is
        length = stream.read(4)
        n = _synchsafe(length) if major == 4 else 4 + int.from_bytes(length, "big")
        stream.seek(at + 10)
        kept.append(stream.read(n))
    pictures = left_out = 0
    while stream.tell() + 10 <= end:
        frame = stream.read(10)
        if len(frame) < 10 or frame[0] == 0:  # padding, or the end of what was read
            break
        n = _synchsafe(frame[4:8]) if major == 4 else int.from_bytes(frame[4:8], "big")
        if frame[:4] == ID3_PICTURE and pictures + n > max_cover:
            left_out = max(left_out, n)
            stream.seek(n, io.SEEK_CUR)
            continue
        if (data := _read_whole(stream, n)) is None:
            break
        pictures += n if frame[:4] == ID3_PICTURE else 0
        kept.append(frame + data)
    body = b"".join(kept)
    # The same tag, its size what is kept and no footer.
    length = bytes((len(body) >> shift) & 0x7F for shift in (21, 14, 7, 0))
    return ID3(io.BytesIO(header[:5] + bytes([flags & ~0x10]) + length + body)), left_out


def _slim_flac(stream: IO[bytes], max_cover: int) -> tuple[Any, int] | None:
    stream.seek(4)
    kept: list[tuple[int, int, int]] = []  # the blocks kept: kind, offset, length
    total = pictures = left_out = 0
    last = 0
    # Block headers only, first: metadata no longer than the cap is read once, by mutagen.
    while not last and len(block := stream.read(4)) == 4:
        last, kind, n = block[0] & 0x80, block[0] & 0x7F, int.from_bytes(block[1:4], "big")
        total += 4 + n
        picture = kind == FLAC_PICTURE
        # Padding, pictures past the cap, and any block over it (a comment holding a
        # picture, or an application's own) are skipped unread.
        if kind == FLAC_PADDING or n > max_cover or (picture and pictures + n > max_cover):
            left_out = left_out if kind == FLAC_PADDING else max(left_out, n)
        else:
            pictures += n if picture else 0
            kept.append((kind, stream.tell(), n))
        stream.seek(n, io.SEEK_CUR)
    if total <= max_cover:
        return None
    blocks: list[tuple[int, bytes]] = []
    for kind, offset, n in kept:
        stream.seek(offset)
        if (data := _read_whole(stream, n)) is None:
            break
        blocks.append((kind, data))
    out = [b"fLaC"]
    for i, (kind, data) in enumerate(blocks):
        flag = 0x80 if i == len(blocks) - 1 else 0
        out.append(bytes([flag | kind]) + len(data).to_bytes(3, "big") + data)
    return FLAC(io.BytesIO(b"".join(out))), left_out


def _read_whole(stream: IO[bytes], n: int) -> bytes | None:
    """The next `n` bytes; None where an object's head was cut inside them."""
    data = stream.read(n)
    return data if len(data) == n else None


def _from_id3(tags: ID3) -> TrackTags:
    fields: dict[str, list[str]] = {}
    for name, frame_id in ID3_FRAMES.items():
        frame = tags.get(frame_id)
        if frame is not None:
            fields[name] = [str(text) for text in frame.text]
    pictures = [_picture(frame.mime, frame.type, frame.data) for frame in tags.getall("APIC")]
    return TrackTags(fields, _front(pictures))


def _picture(mime: str, kind: int, data: bytes) -> Picture:
    picture = Picture()
    picture.mime, picture.type, picture.data = mime, kind, data
    return picture


def _front(pictures: list[Picture]) -> Cover | None:
    if not pictures:
        return None
    chosen = next((p for p in pictures if p.type == FRONT_COVER), pictures[0])
    return Cover(chosen.mime or "image/jpeg", bytes(chosen.data))


def write_tags(
    path: Path,
    fmt: str,
    tags: TrackTags,
    marker: dict[str, Any] | None = None,
    title_suffix: str = "",
) -> None:
    """Write `tags` (the title with `title_suffix`) and the record of what was done
    (`marker`, if given) into the file at `path`, of format `fmt` ("mp3", "wav", "flac",
    "ogg")."""
    fields = dict(tags.fields)
    if title_suffix and fields.get("title"):
        fields["title"] = [fields["title"][0] + title_suffix, *fields["title"][1:]]
    record = json.dumps(marker, sort_keys=True) if marker is not None else None
    if fmt in ("mp3", "wav"):
        audio: Any = MP3(path) if fmt == "mp3" else WAVE(path)
        if audio.tags is None:
            audio.add_tags()
        for name, values in fields.items():
            audio.tags.add(Frames[ID3_FRAMES[name]](encoding=3, text=values))
        if tags.cover is not None:
            audio.tags.delall("APIC")  # one cover: this one
            audio.tags.add(
                APIC(
                    encoding=3,
                    mime=tags.cover.mime,
                    type=FRONT_COVER,
                    desc="cover",
                    data=tags.cover.data,
                )
            )
        if record is not None:
            audio.tags.add(TXXX(encoding=3, desc=MARKER, text=[record]))
        audio.save()
        return
    audio = FLAC(path) if fmt == "flac" else OggVorbis(path)
    if audio.tags is None:
        audio.add_tags()
    for name, values in fields.items():
        audio[name] = values
    if record is not None:
        audio[MARKER] = [record]
    if tags.cover is not None:
        picture = _picture(tags.cover.mime, FRONT_COVER, tags.cover.data)
        if fmt == "flac":
            audio.clear_pictures()
            audio.add_picture(picture)
        else:
            encoded = base64.b64encode(picture.write()).decode("ascii")
            audio["metadata_block_picture"] = [encoded]
    audio.save()


def read_marker(path: Path) -> dict[str, Any] | None:
    """The record of what was done, as `write_tags` left it; None when there is none."""
    found: Any = mutagen.File(path)
    tags = getattr(found, "tags", None)
    if isinstance(tags, ID3):
        frame = tags.get(f"TXXX:{MARKER}")
        text = frame.text[0] if frame is not None else None
    elif tags is not None:
        text = (tags.get(MARKER) or [None])[0]
    else:
        text = None
    return json.loads(text) if text else None
