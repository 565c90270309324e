"""The data the SDK passes around: frozen, validated when built."""

from __future__ import annotations

import enum
import ipaddress
import math
import numbers
import os
from collections.abc import AsyncIterable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import anyio
import attrs

from ._audio.formats import OUTPUT_FORMATS
from ._audio.probe import DEFAULT_MAX_UPLOAD_BYTES, AudioProblem, probe_audio
from ._root_errors import ValidationError

__all__ = [
    "MODEL_ID",
    "PRICE_PER_SECOND_USD",
    "BatchInput",
    "BatchProgress",
    "OutpaintRequest",
    "OutpaintResult",
    "Prediction",
    "PredictionPage",
    "Status",
]

MODEL_ID = "wavespeed-ai/ace-step/audio-outpaint"
"""The model's id, as the API's paths and the list endpoint name it."""
PRICE_PER_SECOND_USD = 0.0002
"""What the service charges per generated second (`OutpaintRequest.cost_usd`)."""
MAX_EXTEND_SECONDS = 240
MAX_SEED = 2_147_483_647
# A prediction's `created_at` carries milliseconds: a time read from it is this close.
CREATED_AT_RESOLUTION = 0.002


def is_loopback_host(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _is_url(text: str) -> bool:
    return "://" in text[:16]


OBJECT_SCHEME = "s3://"


@attrs.frozen
class ObjectRef:
    """An object (or, with a key ending in `/`, a prefix) in an S3-compatible bucket."""

    bucket: str
    key: str

    @classmethod
    def parse(cls, url: str, *, field: str = "audio") -> ObjectRef:
        """`s3://bucket/key`; `ValidationError` for anything else."""
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc or parts.query or parts.fragment:
            raise ValidationError(field, url, "give s3://bucket/key")
        key = unquote(parts.path).lstrip("/")
        if any(segment in (".", "..") for segment in key.split("/")):
            raise ValidationError(field, url, "an object key cannot hold '.' or '..' segments")
        return cls(parts.netloc, key)

    @classmethod
    def parse_prefix(cls, url: str, *, field: str) -> ObjectRef:
        """`s3://bucket/prefix` as a prefix: its key ends in `/` (or is empty)."""
        return cls.parse(url.rstrip("/") + "/", field=field)

    def __str__(self) -> str:
        return f"{OBJECT_SCHEME}{self.bucket}/{self.key}"


def expand_path(value: str | os.PathLike[str]) -> Path:
    """`~` and `~user` expanded where they can be; a name like `~0` stays as it is."""
    path = value if isinstance(value, Path) else Path(value)  # a Path is not parsed again
    try:
        return path.expanduser()
    except (RuntimeError, ValueError):  # no such user, no home, a NUL byte in the name
        return path


def _audio_converter(value: Any) -> Any:
    """URLs stay text; local paths become Paths so the request carries one form."""
    if isinstance(value, str) and not _is_url(value):
        return expand_path(value)
    if isinstance(value, (Path, os.PathLike)):  # Path first: it skips the ABC check
        return expand_path(value)
    return value


def _check_audio(inst: OutpaintRequest, attribute: attrs.Attribute[Any], value: Any) -> None:
    if isinstance(value, str):
        parts = urlsplit(value)
        if parts.scheme == "https" and parts.hostname:
            return
        if parts.scheme == "s3":
            if not ObjectRef.parse(value).key or value.endswith("/"):
                raise ValidationError("audio", value, "give one object: s3://bucket/key")
            return
        if parts.scheme == "http" and parts.hostname:
            if is_loopback_host(parts.hostname):
                return
            raise ValidationError(
                "audio", value, "plain http:// is only allowed for loopback hosts; use https://"
            )
        raise ValidationError(
            "audio", value, "give an https:// URL, an s3://bucket/key or a local file path"
        )
    if not isinstance(value, Path):
        raise ValidationError(
            "audio", value, "give an https:// URL or s3://bucket/key (str), or a local file path"
        )


def _check_tags(inst: OutpaintRequest, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ValidationError("tags", value, "give non-empty text, e.g. 'lofi, chill'")


def _check_extend(inst: OutpaintRequest, attribute: attrs.Attribute[Any], value: Any) -> None:
    name = attribute.name
    # Plain numbers first: the numbers.Real check walks the ABC machinery each time.
    if (
        type(value) is not float
        and type(value) is not int
        and (isinstance(value, bool) or not isinstance(value, numbers.Real))
    ):
        raise ValidationError(name, value, "give a number of seconds from 0 to 240")
    seconds = float(value)
    if math.isnan(seconds) or not 0 <= seconds <= MAX_EXTEND_SECONDS:
        raise ValidationError(name, value, "must be from 0 to 240 seconds")


def _check_lyrics(inst: OutpaintRequest, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, str):
        raise ValidationError("lyrics", value, "give text; '[inst]' asks for no vocals")


def _check_key(inst: OutpaintRequest, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and (not isinstance(value, str) or not value.strip()):
        raise ValidationError("key", value, "give non-empty text that names the audio")


def _check_output_format(
    inst: OutpaintRequest, attribute: attrs.Attribute[Any], value: Any
) -> None:
    if value not in OUTPUT_FORMATS:
        raise ValidationError(
            "output_format",
            value,
            "give 'service' (the file as the service made it), 'same' (the input's "
            "format) or one of wav, flac, mp3, ogg",
        )


def _check_keep_tags(inst: OutpaintRequest, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, bool):
        raise ValidationError("keep_tags", value, "give true or false")


MAX_TITLE_SUFFIX = 200


def _check_title_suffix(inst: OutpaintRequest, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, str):
        raise ValidationError("title_suffix", value, "give text, such as ' (extended)'")
    if len(value) > MAX_TITLE_SUFFIX or any(ord(c) < 32 for c in value):
        raise ValidationError(
            "title_suffix", value, f"give at most {MAX_TITLE_SUFFIX} characters, on one line"
        )


def _check_seed(inst: OutpaintRequest, attribute: attrs.Attribute[Any], value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError("seed", value, "give an integer: -1 (random) or 0 to 2147483647")
    if value != -1 and not 0 <= value <= MAX_SEED:
        raise ValidationError("seed", value, "must be -1 (random) or 0 to 2147483647")


@attrs.frozen
class OutpaintRequest:
    """One outpaint task: the audio to extend, the style, and how much to add.

    Field names are the API's. `audio` is an https:// URL or a local MP3 / WAV / FLAC
    file (recognised by its content), which the client uploads before submitting.
    An invalid value raises `ValidationError` here, before anything can be sent.
    Building one opens no file: a local file is checked (format, duration, size) by the
    client before it is uploaded, or here by `await OutpaintRequest.from_file(...)`.
    """

    audio: str | Path = attrs.field(converter=_audio_converter, validator=_check_audio)
    tags: str = attrs.field(validator=_check_tags)
    extend_before_duration: float = attrs.field(default=0, validator=_check_extend)
    extend_after_duration: float = attrs.field(default=30, validator=_check_extend)
    lyrics: str = attrs.field(default="", validator=_check_lyrics)
    seed: int = attrs.field(default=-1, validator=_check_seed)
    # What the audio is, when its URL does not say: a URL signed anew for every run is
    # a new string, so a stable name of the content (a catalogue id, a content hash)
    # keeps the task the same task. Not sent to the service.
    key: str | None = attrs.field(default=None, validator=_check_key)
    # What the client makes of the output; not sent, and not part of the task's identity
    # (another format next time downloads and converts again, it charges nothing).
    # "service": the file as the service made it; "same": the input's format (MP3 at its
    # bitrate, FLAC, WAV at its sample width); or "wav", "flac", "mp3", "ogg".
    output_format: str = attrs.field(default="service", validator=_check_output_format)
    # With a format other than "service": the input's tags (title, artist, album, cover
    # art ...) carried over, and `title_suffix` added to the title.
    keep_tags: bool = attrs.field(default=True, validator=_check_keep_tags)
    title_suffix: str = attrs.field(default="", validator=_check_title_suffix)

    def __attrs_post_init__(self) -> None:
        if self.generated_seconds == 0:
            raise ValidationError(
                "extend_before_duration, extend_after_duration",
                (self.extend_before_duration, self.extend_after_duration),
                "both are 0, so nothing would be generated; set at least one above 0",
            )

    @classmethod
    async def from_file(
        cls,
        path: str | os.PathLike[str],
        *,
        max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
        **fields: Any,
    ) -> OutpaintRequest:
        """A request for a local file, checked now (off the event loop): raises
        `ValidationError` when the file is not MP3 / WAV / FLAC audio the model takes,
        or is over `max_upload_bytes`. `fields` are the other fields (`tags`, ...)."""
        request = cls(expand_path(path), **fields)

        def check() -> None:
            try:
                probe_audio(Path(request.audio), max_bytes=max_upload_bytes)
            except AudioProblem as exc:
                raise ValidationError("audio", str(request.audio), str(exc)) from None

        await anyio.to_thread.run_sync(check)
        return request

    @property
    def is_local(self) -> bool:
        return isinstance(self.audio, Path)

    @property
    def is_object(self) -> bool:
        """An object in S3-compatible storage (`s3://bucket/key`)."""
        return isinstance(self.audio, str) and self.audio.startswith(OBJECT_SCHEME)

    @property
    def generated_seconds(self) -> float:
        return float(self.extend_before_duration) + float(self.extend_after_duration)

    @property
    def cost_usd(self) -> float:
        """What the service charges for this task: $0.0002 per generated second."""
        return round(self.generated_seconds * PRICE_PER_SECOND_USD, 10)

    def payload(self, audio_url: str | None = None) -> dict[str, Any]:
        """The submit body. A local file needs the URL its upload returned, an object
        the URL it was signed with."""
        if audio_url is None:
            if isinstance(self.audio, Path):
                raise ValidationError(
                    "audio", str(self.audio), "a local file must be uploaded first; pass its URL"
                )
            if self.is_object:
                raise ValidationError(
                    "audio", self.audio, "an s3:// object is sent as a signed URL; pass it"
                )
            audio_url = self.audio
        return {
            "audio": audio_url,
            "tags": self.tags,
            "extend_before_duration": _json_number(self.extend_before_duration),
            "extend_after_duration": _json_number(self.extend_after_duration),
            "lyrics": self.lyrics,
            "seed": self.seed,
        }


def _json_number(value: float) -> float | int:
    """Whole numbers go out as ints, like the API's own examples."""
    as_float = float(value)
    return int(as_float) if as_float.is_integer() else as_float


class Status(str, enum.Enum):
    """A prediction's status. Unknown strings are kept as plain text, not rejected."""

    CREATED = "created"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    # Final in the official clients, though not in the documented four.
    CANCELLED = "cancelled"
    TIMEOUT = "timeout"
    DELETED = "deleted"
    # Client-side, never sent by the service: a submit whose outcome cannot be known.
    UNKNOWN = "unknown"

    @property
    def is_final(self) -> bool:
        return self not in (Status.CREATED, Status.PROCESSING, Status.UNKNOWN)


def parse_status(value: Any) -> Status | str:
    try:
        return Status(value)
    except ValueError:
        return str(value)


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _str_list(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(str(item) for item in value if isinstance(item, str))


@attrs.frozen
class Prediction:
    """A task as the service reports it. `raw` keeps the whole object it came from."""

    id: str
    status: Status | str
    outputs: tuple[str, ...] = ()
    error: str = ""
    code: int | None = None
    created_at: datetime | None = None
    inference_ms: int | None = None
    has_nsfw_contents: tuple[bool, ...] = ()
    raw: dict[str, Any] = attrs.field(factory=dict, repr=False, eq=False)

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> Prediction:
        """Build from the envelope's `data` (or a webhook body). Needs at least an id."""
        timings = data.get("timings")
        inference = timings.get("inference") if isinstance(timings, dict) else None
        code = data.get("code")
        nsfw = data.get("has_nsfw_contents")
        error = data.get("error")
        return cls(
            id=str(data["id"]),
            status=parse_status(data.get("status", "")),
            outputs=_str_list(data.get("outputs")),
            error=error if isinstance(error, str) else "",
            code=code if isinstance(code, int) and not isinstance(code, bool) else None,
            created_at=_parse_time(data.get("created_at")),
            inference_ms=int(inference) if isinstance(inference, (int, float)) else None,
            has_nsfw_contents=tuple(bool(x) for x in nsfw) if isinstance(nsfw, list) else (),
            raw=data,
        )

    @property
    def status_text(self) -> str:
        return self.status.value if isinstance(self.status, Status) else self.status

    @property
    def is_final(self) -> bool:
        """A status the client does not know is not final: the task may still complete
        (and it is paid for), so it is waited on, up to `task_deadline`, and then
        reported as `unknown` with that status, never as failed."""
        if isinstance(self.status, Status):
            return self.status.is_final
        return False

    @property
    def ok(self) -> bool:
        return self.status is Status.COMPLETED

    @property
    def retryable(self) -> bool | None:
        """For a task that did not complete: can a new submit help?

        The docs: 1xxx codes mean the input must change, 5xxx codes are the service's
        trouble and a retry with back-off may help. None when there is no code to go by.
        """
        if self.code is None or self.code == 0:
            if self.status in (Status.TIMEOUT, Status.CANCELLED):
                return True
            return None
        if 5000 <= self.code < 6000:
            return True
        if 1000 <= self.code < 2000:
            return False
        return None

    @property
    def advice(self) -> str:
        if self.ok:
            return ""
        retryable = self.retryable
        if retryable is True:
            return "The service's own trouble: submitting again later may succeed"
        if retryable is False:
            return "The input must change before submitting again"
        return ""


@attrs.frozen
class PredictionPage:
    """One page of `OutpaintClient.list_predictions`: its number, the total, its items."""

    page: int
    total: int
    items: tuple[Prediction, ...]


# The fields of a request besides its audio: what a manifest line or a dataset's row
# may set.
REQUEST_FIELDS = tuple(f.name for f in attrs.fields(OutpaintRequest) if f.name != "audio")


@attrs.frozen
class OutpaintResult:
    """How one task of a batch ended. A failure is a value here, not an exception.

    `status` is the prediction's final status, or `Status.UNKNOWN` for a submit whose
    outcome could not be settled. `files` are the whole output files in a local `out_dir`;
    `locations` are where every output landed, wherever `out_dir` is (paths, or
    `s3://bucket/key` in a bucket); both are empty without an `out_dir`. `skipped` means
    an earlier run had already finished it (by the journal, or by the outputs' marks).
    `delivered_by` says how the result was learned: "poll", "list", "webhook", "submit",
    "journal", or "output" (its outputs were found whole and marked as its own).
    `format_error` says why an output is the service's file rather than in the request's
    `output_format` (a conversion that failed keeps what was paid for); None otherwise.
    `notes` say what of the input's tags was not carried over (a cover too large).
    """

    request: OutpaintRequest
    status: Status | str
    prediction_id: str | None = None
    outputs: tuple[str, ...] = ()
    files: tuple[Path, ...] = ()
    error: str | None = None
    code: int | None = None
    skipped: bool = False
    delivered_by: str | None = None
    submitted_at: float | None = None
    finished_at: float | None = None
    # The exception behind `error`, as it was raised (None for a task finished by an
    # earlier run, whose error is only text in the journal).
    exception: BaseException | None = attrs.field(default=None, eq=False, repr=False)
    locations: tuple[str, ...] = ()
    format_error: str | None = None
    notes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.status is Status.COMPLETED and self.error is None

    @property
    def outcome(self) -> str:
        """What a report says of it: "completed" when its outputs are written, "failed"
        when the service completed it but its outputs were not, else its status."""
        if self.ok:
            return "completed"
        status = self.status.value if isinstance(self.status, Status) else str(self.status)
        return "failed" if status == "completed" else status

    @property
    def retryable(self) -> bool | None:
        """True when submitting a failed task again may help, False when its input must change."""
        if self.ok:
            return None
        return Prediction(self.prediction_id or "", self.status, code=self.code).retryable


@attrs.define
class BatchProgress:
    """Live counts of a batch, for progress displays. Updated by the engine as it goes.

    `submitted` counts tasks this run sent (or found again after a lost answer);
    `finished` every result handed out, of which `completed`, `failed` (any other final
    status, or a download that did not succeed), `unknown` and `skipped` (finished by an
    earlier run). `downloading` counts tasks whose outputs are being fetched now.
    `charged_usd` is what this run's submits cost. `sent_elsewhere` counts tasks another
    process sharing the task store (a run on the same output prefix, a Ray worker) had
    sent: collected here, not paid for here.
    """

    submitted: int = 0
    finished: int = 0
    completed: int = 0
    failed: int = 0
    unknown: int = 0
    skipped: int = 0
    downloading: int = 0
    charged_usd: float = 0.0
    sent_elsewhere: int = 0

    @property
    def processing(self) -> int:
        """Submitted by this run, not finished yet, and not downloading."""
        fresh_finished = self.finished - self.skipped
        return max(0, self.submitted - fresh_finished - self.downloading)

    def count(self, result: OutpaintResult) -> None:
        self.finished += 1
        if result.skipped:
            self.skipped += 1
        if result.ok:
            self.completed += 1
        elif result.status is Status.UNKNOWN:
            self.unknown += 1
        else:
            self.failed += 1


# What `outpaint_many` takes: requests, or (request, output name) pairs, from any
# iterable or async iterable, read lazily.
BatchInput = (
    Iterable[OutpaintRequest | tuple[OutpaintRequest, str]]
    | AsyncIterable[OutpaintRequest | tuple[OutpaintRequest, str]]
)
