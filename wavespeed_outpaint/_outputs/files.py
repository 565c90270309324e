"""Outputs on the local disk: `LocalFolder`, the default `OutputSink`.

Each output is written to `<name>.part` and renamed into place once it is whole, so a
file at an output's name is always whole: a cut, a crash or a cancel leaves none there.
A `.part` is its writer's alone (`claim_part`): two processes that collect the same task
into one folder at once each write their own, and neither renames the other's away.

Small outputs are written and renamed by one long-lived writer thread (`FileWriter`,
started and stopped by the client): a trip to a worker thread per file costs more CPU
than writing a 100 KB file, and with thousands of outputs that is the client's largest
cost after HTTP. The thread takes every file queued since it last looked and hands the
outcomes back to the event loop in one wake-up. Large outputs stream through aiofiles.
The event loop itself never touches the disk.

Each output carries its task's `OutputMark`: an extended attribute set on the `.part`
file before the rename (so the name holds a marked file or none), or, where the file
system has no extended attributes, a small file under `.outpaint-marks/`.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import logging
import os
import queue
import stat
import threading
from collections import defaultdict
from collections.abc import Callable
from typing import BinaryIO, TypeVar

import anyio
import attrs
from aiofiles.threadpool.binary import AsyncBufferedIOBase

from ..errors import OutputError, ValidationError
from ..seams import OutputMark

try:
    import fcntl
except ImportError:  # Windows: no flock; there one writer of an output at a time is safe
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger("wavespeed_outpaint.files")

PART_SUFFIX = ".part"
# Opening a `.part` never follows a link (where the system has the flag).
NO_FOLLOW = getattr(os, "O_NOFOLLOW", 0)
# `.part` names an output's writers can take at once: `<name>.part`, then `<name>.1.part`
# to `<name>.9.part` (two more bytes of the name, within `naming`'s room).
PART_SLOTS = 10
MARK_ATTRIBUTE = "user.wavespeed-outpaint.task"
MARKS_FOLDER = ".outpaint-marks"
# Bytes held in memory before a large output starts streaming to its `.part` file.
WRITE_BUFFER = 1024 * 1024
# Folders remembered as made: a batch writes thousands of files into a few folders.
MAX_MADE_FOLDERS = 10_000

T = TypeVar("T")


@attrs.define(eq=False)
class _Job:
    data: bytes
    dest: str
    loop: asyncio.AbstractEventLoop
    done: asyncio.Future[None]
    mark: bytes | None
    sidecar: str | None  # where the mark goes, if not in an extended attribute
    # Both set under the writer's lock: a job given up is never renamed into place
    # after, and one renamed just before it was given up is removed again.
    given_up: bool = False
    placed: bool = False


class FileWriter:
    """The thread that writes small outputs whole. `start()` and `stop()` bound its life."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        # Held by the thread while it renames, and by a cancelled write while it gives
        # its job up: so a write that was cancelled never lands afterwards.
        self._renaming = threading.Lock()

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="wavespeed-outpaint-writer", daemon=True
            )
            self._thread.start()

    async def stop(self) -> None:
        """Finish the queued writes, then end the thread."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._jobs.put(None)
            await anyio.to_thread.run_sync(thread.join)

    async def write_whole(
        self,
        data: bytes,
        dest: str,
        mark: bytes | None = None,
        sidecar: str | None = None,
    ) -> None:
        """Write `data` to a `.part` of `dest`, then rename it to `dest`: `dest` is whole
        or absent. `mark` is stored with it (see `place`)."""
        if self._thread is None:
            raise RuntimeError("the file writer is not running (the client is closed)")
        loop = asyncio.get_running_loop()
        job = _Job(data, dest, loop, loop.create_future(), mark, sidecar)
        self._jobs.put(job)
        try:
            await job.done
        except asyncio.CancelledError:
            # A cancelled write leaves no file, whichever side of the rename it came.
            with self._renaming:
                job.given_up = True
                if job.placed:
                    with contextlib.suppress(OSError):
                        os.unlink(dest)
            raise

    def _run(self) -> None:
        while True:
            first = self._jobs.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < 256:
                try:
                    job = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    self._jobs.put(None)  # stop once this batch is written
                    break
                batch.append(job)
            outcomes: defaultdict[
                asyncio.AbstractEventLoop, list[tuple[_Job, Exception | None]]
            ] = defaultdict(list)
            for job in batch:
                outcomes[job.loop].append((job, self._write(job)))
            for loop, results in outcomes.items():
                with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits
                    loop.call_soon_threadsafe(_settle, results)

    def _write(self, job: _Job) -> Exception | None:
        try:
            try:
                part, fd = claim_part(job.dest)
            except FileNotFoundError:
                # Its folder was made when the download began: removed since, make it again.
                os.makedirs(os.path.dirname(job.dest), exist_ok=True)
                part, fd = claim_part(job.dest)
            fill_and_put(part, fd, job.data, functools.partial(self._put, job))
        except Exception as exc:  # noqa: BLE001 - handed to the awaiting download; the thread lives on
            return exc
        return None

    def _put(self, job: _Job, part: str) -> None:
        with self._renaming:
            if job.given_up:
                os.unlink(part)
            else:
                place(part, job.dest, job.mark, job.sidecar)
                job.placed = True


def claim_part(dest: str) -> tuple[str, int]:
    """A `.part` path for `dest`, and a descriptor open for writing on it that holds an
    exclusive lock on it until it is closed: the path is this writer's alone until then.

    The writer renames its `.part` into place before it closes it, so a file at a `.part`
    path that nobody holds was left by a writer that died (or never locked it): it is
    taken over and emptied. One that a live writer holds is left to it, and the next name
    tried. A link or anything but a regular file at a `.part` path is never opened
    through (someone planted it: writing through it would write outside the folder),
    and the next name is tried. Where there is no flock, the one `<name>.part` is opened
    as it is."""
    if fcntl is None:
        part = dest + PART_SUFFIX
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0) | NO_FOLLOW
        return part, os.open(part, flags, 0o666)  # (binary: Windows turns \n into \r\n)
    for slot in range(PART_SLOTS):
        part = f"{dest}.{slot}{PART_SUFFIX}" if slot else dest + PART_SUFFIX
        fd = _take(part)
        if fd is not None:
            return part, fd
    raise OSError(errno.EBUSY, f"{PART_SLOTS} writers are writing this output at once")


def _take(part: str) -> int | None:
    """`part` opened and locked, or None if another writer holds it."""
    for _ in range(3):  # a path renamed away from under us is tried again, a few times
        try:
            fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | NO_FOLLOW, 0o666)
        except OSError as exc:
            if exc.errno != errno.ELOOP:
                raise
            log.warning("%s is a link: left alone, and not written through", part)
            return None
        try:
            held = os.fstat(fd)
            if not stat.S_ISREG(held.st_mode):
                log.warning("%s is not a regular file: left alone", part)
                os.close(fd)
                return None
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if _still_at(held, part):
                # Only a leftover with something in it: a truncation makes ext4 flush the
                # file when it is closed (its `auto_da_alloc`), 40 us a file.
                if held.st_size:
                    os.ftruncate(fd, 0)
                return fd
        except BlockingIOError:
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
    return None


def _still_at(held: os.stat_result, path: str) -> bool:
    """Whether `path` still names the file `held`: its writer may have renamed it into
    place just before letting go, leaving the path free or to another writer."""
    try:
        return os.path.samestat(held, os.stat(path))
    except FileNotFoundError:
        return False


def place(part: str, dest: str, mark: bytes | None, sidecar: str | None) -> None:
    """Rename a whole `part` to `dest`, with its mark: in an extended attribute of the
    part before the rename (one atomic step), or in `sidecar`, removed before the rename
    and written after it (a file without its mark is only not recognised later)."""
    if mark is not None and sidecar is None:
        # A mark that cannot be kept (too large for the file system's attributes) leaves
        # the output unmarked, never unwritten: the mark only saves a later run work.
        with contextlib.suppress(OSError):
            os.setxattr(part, MARK_ATTRIBUTE, mark)
    if mark is not None and sidecar is not None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(sidecar)
    rename_regular(part, dest)
    if mark is not None and sidecar is not None:
        os.makedirs(os.path.dirname(sidecar), exist_ok=True)
        write_whole_file(sidecar, mark)


def write_whole_file(dest: str, data: bytes) -> None:
    """Write `data` to a `.part` of `dest` of this writer's own, then rename it to `dest`
    (a small file at once, from a thread; outputs go through `FileWriter`)."""
    part, fd = claim_part(dest)
    fill_and_put(part, fd, data, lambda part: rename_regular(part, dest))


def rename_regular(part: str, dest: str) -> None:
    """Rename `part` to `dest` if it is still a regular file (never a link put there
    since it was claimed: the link would become the output)."""
    if not stat.S_ISREG(os.lstat(part).st_mode):
        raise OSError(errno.EINVAL, f"{part} is no longer a regular file; not placed")
    os.replace(part, dest)


def fill_and_put(part: str, fd: int, data: bytes, put: Callable[[str], None]) -> None:
    """Write `data` to the claimed `part` (open at `fd`), then `put` it in place while it
    is still held (see `claim_part`); a failure removes it."""
    with open(fd, "wb") as f:
        try:
            f.write(data)
            f.flush()
            if fcntl is None:
                f.close()  # Windows renames no open file; there is no lock to keep
            put(part)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(part)
            raise


def read_mark(path: str, sidecar: str | None) -> OutputMark | None:
    """The mark of the file at `path`, if it has one and is still the length marked."""
    try:
        if sidecar is None:
            if not hasattr(os, "getxattr"):
                return None
            data = os.getxattr(path, MARK_ATTRIBUTE)
        else:
            with open(sidecar, "rb") as f:
                data = f.read(64 * 1024)
        size = os.stat(path).st_size
    except (OSError, ValueError):
        return None
    mark = OutputMark.decode(data)
    return mark if mark is not None and mark.size == size else None


def sidecar_of(root: str, path: str) -> str:
    """Where the mark of the file at `path` under `root` is kept without attributes."""
    return os.path.join(root, MARKS_FOLDER, os.path.relpath(path, root) + ".json")


def is_marked(root: str, path: str) -> bool:
    """Whether the file at `path` under `root` carries a mark, either way it is kept."""
    return read_mark(path, None) is not None or read_mark(path, sidecar_of(root, path)) is not None


def has_extended_attributes(folder: str) -> bool:
    """Whether files in `folder` can carry a mark as an extended attribute."""
    if not hasattr(os, "setxattr"):
        return False  # macOS and Windows builds of Python have none
    probe = os.path.join(folder, f".outpaint-probe-{os.getpid()}-{threading.get_ident()}")
    try:
        with open(probe, "wb"):
            pass
        os.setxattr(probe, MARK_ATTRIBUTE, b"{}")
        return True
    except OSError:
        return False
    finally:
        with contextlib.suppress(OSError):
            os.unlink(probe)


def _is_empty(folder: str) -> bool:
    with os.scandir(folder) as entries:
        return next(entries, None) is None


def _settle(results: list[tuple[_Job, Exception | None]]) -> None:
    for job, error in results:
        if job.done.cancelled():
            continue  # given up: `write_whole` and the thread leave no file behind
        if error is None:
            job.done.set_result(None)
        else:
            job.done.set_exception(error)


class LocalFolder:
    """Outputs as files under `root`; names are relative paths inside it. `marks`:
    where outputs keep their `OutputMark`: "xattr", "sidecar" (files under
    `.outpaint-marks/`), or "auto" (extended attributes where the file system has them)."""

    def __init__(
        self, root: str | os.PathLike[str], writer: FileWriter, *, marks: str = "auto"
    ) -> None:
        if marks not in ("auto", "xattr", "sidecar"):
            raise ValidationError("marks", marks, "give 'auto', 'xattr' or 'sidecar'")
        self.root = os.path.abspath(root)
        self._inside = self.root.rstrip(os.sep) + os.sep
        self._real_root: str | None = None  # the root with its links resolved
        self.writer = writer
        self._made: set[str] = set()
        self._marks = marks
        # Until `prepare` looked: a folder that held nothing holds no marked output.
        self._was_empty = False

    def __repr__(self) -> str:
        return f"LocalFolder({self.root!r})"

    async def prepare(self) -> None:
        await self.make_folder(self.root, again=True)
        if not await anyio.to_thread.run_sync(os.access, self.root, os.W_OK | os.X_OK):
            raise OutputError(self.root, "the folder is not writable; give another --out")
        if self._marks == "auto":
            xattrs = await anyio.to_thread.run_sync(has_extended_attributes, self.root)
            self._marks = "xattr" if xattrs else "sidecar"
        self._was_empty = await anyio.to_thread.run_sync(_is_empty, self.root)

    def sidecar(self, dest: str) -> str | None:
        """Where the mark of the file at `dest` goes when it is not an attribute."""
        return sidecar_of(self.root, dest) if self._marks == "sidecar" else None

    async def mark(self, name: str) -> OutputMark | None:
        if self._was_empty:
            return None  # (the common case of a new batch: no thread trip per task)
        path = self.location(name)
        return await anyio.to_thread.run_sync(read_mark, path, self.sidecar(path))

    def location(self, name: str) -> str:
        path = os.path.normpath(os.path.join(self.root, name))
        # Names are checked where they are made; this holds for names from anywhere.
        if not path.startswith(self._inside):
            raise ValidationError("output name", name, "would land outside the output folder")
        return path

    async def exists(self, name: str) -> bool:
        return await anyio.to_thread.run_sync(os.path.exists, self.location(name))

    async def open_part(self, name: str, mark: OutputMark | None = None) -> LocalPart:
        dest = self.location(name)
        if "\x00" in dest:
            raise OutputError(dest, "a file name cannot hold a NUL byte")
        await self.make_folder(os.path.dirname(dest))
        return LocalPart(dest, self, mark)

    async def make_folder(self, folder: str, *, again: bool = False) -> None:
        if folder in self._made and not again:
            return

        def make() -> str:
            os.makedirs(folder, exist_ok=True)
            if self._real_root is None:
                # (The output folder itself may be a link: that one is the user's.)
                self._real_root = os.path.realpath(self.root)
            return os.path.realpath(folder)

        try:
            real = await anyio.to_thread.run_sync(make)
        except OSError as exc:
            raise OutputError(
                folder, f"cannot create the folder ({exc.strerror}); give another output folder"
            ) from None
        inside = self._real_root
        if real != inside and not real.startswith(str(inside).rstrip(os.sep) + os.sep):
            raise OutputError(
                folder, "a link in the output folder leads outside it; remove the link"
            )
        if len(self._made) >= MAX_MADE_FOLDERS:
            self._made.clear()
        self._made.add(folder)


class LocalPart:
    """An output's `.part` file: a small output is written and renamed by the writer
    thread in one go; a large one streams through aiofiles in `WRITE_BUFFER` pieces to a
    `.part` claimed when the first piece is due (`claim_part`)."""

    def __init__(self, dest: str, folder: LocalFolder, mark: OutputMark | None = None) -> None:
        self.dest = dest
        self._folder = folder
        self._mark = mark
        self._size = 0
        self._pending: list[bytes] = []
        self._pending_size = 0
        # The claimed `.part` and its open file, while a large output streams to it.
        self._part: str | None = None
        self._file: AsyncBufferedIOBase | None = None

    async def write(self, chunk: bytes) -> None:
        self._pending.append(chunk)
        self._pending_size += len(chunk)
        self._size += len(chunk)
        if self._pending_size >= WRITE_BUFFER:
            try:
                if self._file is None:
                    self._file = await self._open()
                await self._file.write(self._take_pending())
            except OSError as exc:
                raise OutputError(self.dest, exc.strerror or str(exc)) from None

    def _take_pending(self) -> bytes:
        # One chunk is handed on as it is (join returns it without a copy).
        data = b"".join(self._pending)
        self._pending.clear()
        self._pending_size = 0
        return data

    async def _open(self) -> AsyncBufferedIOBase:
        claim = functools.partial(_claim_file, self.dest)
        try:
            part, file = await made_in_thread(claim, _let_go)
        except FileNotFoundError:
            # The folder was there when the download began: removed since, make it again.
            await self._folder.make_folder(os.path.dirname(self.dest), again=True)
            part, file = await made_in_thread(claim, _let_go)
        self._part = part
        return AsyncBufferedIOBase(file, loop=None, executor=None)

    async def commit(self) -> str:
        mark = None if self._mark is None else attrs.evolve(self._mark, size=self._size).encode()
        sidecar = self._folder.sidecar(self.dest)
        try:
            if self._file is None:
                await self._folder.writer.write_whole(
                    self._take_pending(), self.dest, mark, sidecar
                )
            else:
                assert self._part is not None
                await self._file.write(self._take_pending())
                await self._file.flush()
                if fcntl is None:
                    await self._file.close()  # as in `fill_and_put`
                # Renamed while still held, then let go: see `claim_part`.
                await anyio.to_thread.run_sync(place, self._part, self.dest, mark, sidecar)
                self._part = None
                await self._file.close()
                self._file = None
        except OSError as exc:
            raise OutputError(self.dest, exc.strerror or str(exc)) from None
        return self.dest

    async def abort(self) -> None:
        """Remove the `.part` (still held, so still this writer's), then let go of it. A
        small output's part is the writer thread's: it removes its own on failure."""
        with anyio.CancelScope(shield=True):
            if self._part is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self._part)
                self._part = None
            if self._file is not None:
                with contextlib.suppress(OSError):
                    await self._file.close()
                self._file = None


def _claim_file(dest: str) -> tuple[str, BinaryIO]:
    part, fd = claim_part(dest)
    return part, os.fdopen(fd, "wb")


def _let_go(claimed: tuple[str, BinaryIO]) -> None:
    """Remove a claimed `.part` nobody will write (while still held), then close it."""
    part, file = claimed
    with contextlib.suppress(OSError):
        os.unlink(part)
    file.close()


async def made_in_thread(make: Callable[[], T], undo: Callable[[T], None]) -> T:
    """`make()` in a worker thread; if this task is cancelled meanwhile, what it made is
    undone once it is made, and the cancel goes on.

    asyncio's own cancel (the batch's `TaskSet` sends it) ends an anyio thread call's wait
    at once, whatever its shield, and drops what the thread returns: a claimed `.part`
    would outlive its cancelled writer. `make` and `undo` are a few system calls each, so
    a cancelled task waits for the one and does the other itself.
    """
    making = asyncio.get_running_loop().run_in_executor(None, make)
    try:
        return await asyncio.shield(making)
    except asyncio.CancelledError:
        while not making.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait({making})
        if making.exception() is None:
            undo(making.result())
        raise
