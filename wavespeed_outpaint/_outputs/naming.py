"""Where a task's outputs land under `out_dir`: mirrored input paths, never outside it."""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

from ..errors import ValidationError
from ..models import OutpaintRequest

_UNSAFE = re.compile(r"[^A-Za-z0-9._ -]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# 255 bytes a name on common file systems, less room for `-<8 hex>`, `-N`, `.flac.part`.
MAX_STEM_BYTES = 230
# Well under PATH_MAX (4096) and Windows' long paths, with room for the output folder.
MAX_NAME_BYTES = 1024
_RESERVED = {"CON", "PRN", "AUX", "NUL"} | {f"{p}{i}" for p in ("COM", "LPT") for i in range(1, 10)}


def url_path(url: str) -> str:
    """A URL's path, its escapes undone."""
    return unquote(urlsplit(url).path)


def default_stem(request: OutpaintRequest) -> str:
    """A local file keeps its name; a URL gives its last path segment."""
    if isinstance(request.audio, Path):
        return request.audio.stem or "output"
    name = PurePosixPath(url_path(request.audio)).stem
    return _UNSAFE.sub("_", name).strip(" .") or "output"


def checked_stem(stem: str) -> str:
    """A relative output name such as `album/song`: no absolute paths, no `..`, and a
    name every file system the SDK runs on can hold, checked before anything is sent.

    Plain string work, not PurePosixPath: a batch checks one name per task."""
    text = stem.replace("\\", "/")
    parts = [p for p in text.split("/") if p not in ("", ".")]
    if not parts or text.startswith("/") or ".." in parts:
        raise ValidationError(
            "output name", stem, "give a relative name inside out_dir, without '..'"
        )
    if _CONTROL.search(text):
        raise ValidationError("output name", stem, "holds a NUL or control character")
    for part in parts:
        if len(part.encode()) > MAX_STEM_BYTES:
            raise ValidationError(
                "output name",
                stem,
                f"a part of it is over {MAX_STEM_BYTES} bytes; file systems hold 255 a name, "
                "with room kept for the extension and the suffixes the SDK adds",
            )
        if part.split(".")[0].upper() in _RESERVED:
            raise ValidationError("output name", stem, f"{part!r} is a reserved name on Windows")
    if len(text.encode()) > MAX_NAME_BYTES:
        raise ValidationError("output name", stem, f"is over {MAX_NAME_BYTES} bytes in all")
    return "/".join(parts)


_EXTENSION = re.compile(r"\.[a-z0-9]{1,8}")
# What outputs are looked for as, before a task's output URLs are known.
COMMON_OUTPUT_SUFFIXES = (".wav", ".mp3", ".flac", ".ogg")


def output_extension(url: str) -> str:
    suffix = PurePosixPath(url_path(url)).suffix.lower()
    return suffix if _EXTENSION.fullmatch(suffix) else ".wav"


def output_names(stem: str, outputs: tuple[str, ...]) -> list[str]:
    """`stem.ext` for the first output, `stem-1.ext`, `stem-2.ext` ... for the others."""
    return [
        (stem if i == 0 else f"{stem}-{i}") + output_extension(url) for i, url in enumerate(outputs)
    ]
