"""From command-line inputs (files, folders, URLs, a JSONL manifest) to a checked plan.

Everything is validated before anything is sent: a plan either holds only valid requests
or is refused with every problem listed, each naming the input and what to change.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from .._audio.probe import DEFAULT_MAX_UPLOAD_BYTES
from .._engine.identity import FileFacts, file_version, fingerprint
from .._engine.journal import Journal
from .._outputs.naming import checked_stem, default_stem
from .._outputs.s3 import ObjectStores, audio_keys, audio_objects
from ..errors import ConfigurationError, ValidationError
from ..models import OBJECT_SCHEME, REQUEST_FIELDS, ObjectRef, OutpaintRequest, expand_path
from ..seams import State

AUDIO_SUFFIXES = {".mp3", ".wav", ".flac"}
MANIFEST_FIELDS = {"audio", "output", *REQUEST_FIELDS}
# States whose task has been sent already: running it again costs nothing more.
PAID_STATES = {State.SUBMITTING, State.SUBMITTED, State.COMPLETED, State.DOWNLOADED, State.UNKNOWN}


class PlanError(Exception):
    """One or more inputs cannot be run; `problems` lists each, ready to print, and
    `planned` holds the inputs that can (what `--skip-bad-inputs` runs)."""

    def __init__(self, problems: list[str], planned: Sequence[Planned] = ()) -> None:
        self.problems = problems
        self.planned = list(planned)
        super().__init__("\n".join(problems))


@attrs.frozen
class PlannedTask:
    request: OutpaintRequest
    name: str  # the output's name under --out, without extension
    input: str  # what the user gave, for reports


@attrs.frozen
class ListedPrefix:
    """The audio objects under a bucket prefix, as tasks: counted (and their names
    checked) when planned, then listed again as the batch takes them, so that a library
    of a million objects is never held in memory. Objects added in between run too,
    unless a `take` (from --max-cost) stops the listing first."""

    prefix: ObjectRef
    fields: Mapping[str, Any]
    count: int = 0

    def task(self, ref: ObjectRef) -> PlannedTask:
        """`ValidationError` when the fields or the object's output name cannot be run."""
        name = ref.key[len(self.prefix.key) :].rsplit(".", 1)[0]
        return PlannedTask(OutpaintRequest(str(ref), **self.fields), checked_stem(name), str(ref))

    @property
    def each(self) -> OutpaintRequest:
        """A request like every object's, but for the audio: what each one costs."""
        audio = ObjectRef(self.prefix.bucket, self.prefix.key + "-.wav")
        return OutpaintRequest(str(audio), **self.fields)

    async def tasks(self, stores: ObjectStores, take: int | None) -> AsyncIterator[PlannedTask]:
        taken = 0
        async for ref in audio_objects(stores, self.prefix):
            if take is not None and taken >= take:
                return
            yield self.task(ref)
            taken += 1


Planned = PlannedTask | ListedPrefix


def _folder_files(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES
    )


def from_inputs(
    inputs: Iterable[str], files: FileFacts, objects: ObjectStores | None = None, **fields: Any
) -> list[Planned]:
    """Files, folders (searched recursively for MP3 / WAV / FLAC), https URLs, objects
    and prefixes in a bucket (`s3://bucket/music/`, listed recursively); each local file
    checked as audio the model takes (objects are checked by the client, from ranged
    reads, before each is sent). Blocking: reads every file's header, lists prefixes."""
    tasks: list[Planned] = []
    problems: list[str] = []

    def add(audio: str | Path, name: str | None, shown: str) -> None:
        try:
            request = OutpaintRequest(audio, **fields)
            if isinstance(request.audio, Path):
                files.check(request.audio, DEFAULT_MAX_UPLOAD_BYTES)
            tasks.append(PlannedTask(request, checked_stem(name or default_stem(request)), shown))
        except ValidationError as exc:
            problems.append(f"{shown}: {exc.problem if exc.field == 'audio' else exc}")

    for text in inputs:
        if text.startswith(OBJECT_SCHEME) and (text.endswith("/") or text.count("/") == 2):
            try:
                prefix = ObjectRef.parse_prefix(text, field="input")
                listed = ListedPrefix(prefix, fields)
                count = 0
                for ref in audio_keys(objects or ObjectStores(), prefix):
                    try:
                        listed.task(ref)
                    except ValidationError as exc:
                        problems.append(f"{ref}: {exc}")
                    count += 1
            except (ValidationError, ConfigurationError) as exc:
                problems.append(
                    f"{text}: {exc.problem if isinstance(exc, ValidationError) else exc}"
                )
                continue
            if not count:
                problems.append(f"{text}: no MP3, WAV or FLAC objects under this prefix")
            tasks.append(attrs.evolve(listed, count=count))
            continue
        if "://" in text[:16]:
            add(text, None, text)
            continue
        path = expand_path(text)
        if path.is_dir():
            found = _folder_files(path)
            if not found:
                problems.append(f"{text}: no MP3, WAV or FLAC files in this folder")
            for file in found:
                add(file, file.relative_to(path).with_suffix("").as_posix(), str(file))
        elif path.exists():
            add(path, path.stem, text)
        else:
            problems.append(f"{text}: no such file or folder")
    if problems:
        raise PlanError(problems, tasks)
    return tasks


def from_manifest(
    manifest: Path, files: FileFacts, defaults: Mapping[str, Any] | None = None
) -> list[PlannedTask]:
    """One JSON object per line, with the API's field names, an optional `output`, and
    what to make of the output (`output_format`, `keep_tags`, `title_suffix`; `defaults`
    for lines that do not say). Blocking: reads the manifest and the header of every
    local file in it."""
    try:
        lines = manifest.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise PlanError([f"{manifest}: cannot be read ({exc.strerror})"]) from None
    except UnicodeDecodeError as exc:
        raise PlanError(
            [f"{manifest}: not UTF-8 text (byte {exc.start}); save it as UTF-8 JSON lines"]
        ) from None
    tasks: list[PlannedTask] = []
    problems: list[str] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{manifest}:{number}"
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(f"{where}: not JSON ({exc.msg})")
            continue
        if not isinstance(item, dict):
            problems.append(f"{where}: give a JSON object per line")
            continue
        unknown = sorted(set(item) - MANIFEST_FIELDS)
        if unknown:
            known = ", ".join(sorted(MANIFEST_FIELDS))
            problems.append(f"{where}: unknown field {', '.join(unknown)}; known: {known}")
            continue
        fields = {**(defaults or {}), **item}
        output = fields.pop("output", None)
        audio = fields.get("audio")
        if isinstance(audio, str) and "://" not in audio[:16]:
            # Relative paths in a manifest are relative to the manifest itself.
            fields["audio"] = manifest.parent / expand_path(audio)
        try:
            if "audio" not in fields or "tags" not in fields:
                missing = [f for f in ("audio", "tags") if f not in fields]
                raise ValidationError(missing[0], None, "is required")
            if output is not None and not isinstance(output, str):
                raise ValidationError("output", output, "give the output's name as text")
            request = OutpaintRequest(**fields)
            if isinstance(request.audio, Path):
                files.check(request.audio, DEFAULT_MAX_UPLOAD_BYTES)
            name = checked_stem(output or default_stem(request))
            tasks.append(PlannedTask(request, name, str(audio)))
        except ValidationError as exc:
            problems.append(f"{where}: {exc}")
        except TypeError as exc:
            problems.append(f"{where}: {exc}")
    if problems:
        raise PlanError(problems, tasks)
    if not tasks:
        raise PlanError([f"{manifest}: no requests in it"])
    return tasks


@attrs.frozen
class Plan:
    run: list[PlannedTask]
    # Prefixes listed as the batch runs, each with how many of its objects to take
    # (None: all; --max-cost may hold back the rest).
    listed: list[tuple[ListedPrefix, int | None]]
    held_back: int  # tasks --max-cost holds back
    held_back_cost_usd: float
    held_back_seconds: float
    new_cost_usd: float  # what the tasks to run will charge (those not sent before)
    paid_before: int  # tasks an earlier run already sent
    generated_seconds: float  # by the tasks to run
    # Inputs left out, each with why (--skip-bad-inputs; else they refuse the run).
    left_out: list[str] = attrs.field(factory=list)

    @property
    def to_run(self) -> int:
        return len(self.run) + sum(p.count if n is None else n for p, n in self.listed)

    @property
    def total(self) -> int:
        return self.to_run + self.held_back

    async def tasks(self, stores: ObjectStores) -> AsyncIterator[PlannedTask]:
        """The tasks to run, in order: those planned one by one, then the prefixes'."""
        for task in self.run:
            yield task
        for prefix, take in self.listed:
            async for task in prefix.tasks(stores, take):
                yield task


def budget(
    tasks: Sequence[Planned], journal_path: Path, max_cost: float | None, files: FileFacts
) -> Plan:
    """Which tasks to run: those already paid for, and new ones until the budget is spent.

    Reads no audio: a local file is known to be paid for when the journal holds its hash
    for this version of it (its path, size, mtime and inode), as the run that read it
    recorded; any other counts as new here, which only ever holds back more under
    --max-cost (the batch hashes it as it goes, and never pays for a task twice).
    Blocking: reads the journal."""
    if not journal_path.exists():
        return _budget(tasks, max_cost, files, None, set())
    journal = Journal(journal_path)
    try:
        paid = {row.fingerprint for row in journal.rows() if row.state in PAID_STATES}
        return _budget(tasks, max_cost, files, journal, paid)
    finally:
        journal.close()


def _recorded_hash(path: Path, files: FileFacts, journal: Journal) -> str | None:
    version = file_version(path)
    digest = files.known_hash(version) or journal.file_hash(version)
    if digest is not None:
        files.remember_hash(version, digest)  # for the engine, once the batch starts
    return digest


def _budget(
    tasks: Sequence[Planned],
    max_cost: float | None,
    files: FileFacts,
    journal: Journal | None,
    paid: set[str],
) -> Plan:
    run: list[PlannedTask] = []
    listed: list[tuple[ListedPrefix, int | None]] = []
    cost = seconds = held_cost = held_seconds = 0.0
    held = paid_before = 0

    def room_for(request: OutpaintRequest, wanted: int) -> int:
        """How many tasks like `request` the budget lets through, of `wanted`."""
        if max_cost is None or request.cost_usd <= 0:
            return wanted
        return max(0, min(wanted, int((max_cost - cost + 1e-12) // request.cost_usd)))

    for task in tasks:
        if isinstance(task, ListedPrefix):
            # Every object under a prefix is asked the same of. (An object's identity
            # needs its ETag, read as the batch runs: a resumed run's objects count as
            # new here, which only ever holds back more.)
            request, wanted = task.each, task.count
            room = room_for(request, wanted)
            listed.append((task, None if room == wanted else room))
        else:
            request, wanted = task.request, 1
            audio = request.audio
            known = True  # whether the task's identity is known without reading audio
            content = None
            if isinstance(audio, Path):
                digest = _recorded_hash(audio, files, journal) if journal and paid else None
                known, content = digest is not None, f"sha256:{digest}"
            if known and not request.is_object and fingerprint(request, content) in paid:
                paid_before += 1
                seconds += request.generated_seconds
                run.append(task)
                continue
            room = room_for(request, 1)
            if room:
                run.append(task)
        cost += room * request.cost_usd
        seconds += room * request.generated_seconds
        held += wanted - room
        held_cost += (wanted - room) * request.cost_usd
        held_seconds += (wanted - room) * request.generated_seconds
    return Plan(
        run=run,
        listed=listed,
        held_back=held,
        held_back_cost_usd=round(held_cost, 6),
        held_back_seconds=held_seconds,
        new_cost_usd=round(cost, 6),
        paid_before=paid_before,
        generated_seconds=seconds,
    )
