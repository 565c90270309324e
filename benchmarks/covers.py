"""What covers cost in memory: MP3 inputs with a large cover, extended and written back
in their own format with their tags, against the same run untagged.

    python benchmarks/covers.py                        # 8 x 60 MB, 16 x 11 MB, 8 x 150 MB
    python benchmarks/covers.py --cells 8x60 --no-save

Each cell runs the client in a fresh child process against the emulator in its own
process (so its memory is the client's alone) and reports the child's peak RSS over an
untagged run of the same inputs, beside the covers' total. Covers over the cap
(`_audio.tags.MAX_COVER_BYTES`) are left out unread; those under it are carried.
Writes benchmarks/results/covers.{md,json}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from _harness import TimeModel, emulator_process, row_from_child, write_results
from _procs import peak_rss_mb

KEY = "emulator-key"
CELLS = "8x60,16x11,8x150"
COLUMNS = [
    ("files", "files"),
    ("cover_mb", "cover MB each"),
    ("carried", "covers carried"),
    ("peak_rss_mb", "peak RSS MB"),
    ("untagged_rss_mb", "untagged peak RSS MB"),
    ("over_untagged_mb", "over untagged MB"),
    ("over_per_cover_mb", "over untagged / covers MB"),
]


def make_inputs(folder: Path, files: int, cover_mb: float) -> list[Path]:
    from wavespeed_outpaint._audio.tags import Cover, TrackTags, write_tags

    paths = []
    for i in range(files):
        path = folder / f"t{i}.mp3"
        tone = 0.3 * np.sin(2 * np.pi * 330 * np.arange(22050) / 22050)
        sf.write(path, tone.astype(np.float32), 22050, format="MP3")
        if cover_mb:
            cover = Cover("image/jpeg", b"\xff\xd8" + bytes(int(cover_mb * 1e6)))
            write_tags(path, "mp3", TrackTags({"artist": ["A"]}, cover))
        paths.append(path)
    return paths


async def extend(base_url: str, inputs: list[Path], out: Path) -> list[Any]:
    from wavespeed_outpaint import OutpaintClient, OutpaintRequest

    requests = [OutpaintRequest(p, tags="x", output_format="same") for p in inputs]
    async with OutpaintClient(KEY, base_url) as client:
        return [r async for r in client.outpaint_many(requests, out)]


def child(files: int, cover_mb: float, result_file: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp, emulator_process(TimeModel()) as base_url:
        inputs = make_inputs(Path(tmp), files, cover_mb)
        # The run's own peak, not the making of its inputs: Linux resets the peak here.
        Path("/proc/self/clear_refs").write_text("5")
        results = asyncio.run(extend(base_url, inputs, Path(tmp) / "out"))
        peak = peak_rss_mb(os.getpid())
        assert all(r.ok for r in results), [r.error for r in results if not r.ok]
        row = {
            "peak_rss_mb": peak,
            "carried": sum(not r.notes for r in results) if cover_mb else 0,
        }
        result_file.write_text(json.dumps(row))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", default=CELLS, help="FILESxMB, comma-separated")
    parser.add_argument("--no-save", action="store_true")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(int(args.child[0]), float(args.child[1]), Path(args.child[2]))
        return
    rows = []
    for cell in args.cells.split(","):
        files, cover_mb = (float(x) for x in cell.split("x"))
        plain = row_from_child(__file__, str(int(files)), "0", timeout=600)
        tagged = row_from_child(__file__, str(int(files)), str(cover_mb), timeout=600)
        over = tagged["peak_rss_mb"] - plain["peak_rss_mb"]
        row = {
            "files": int(files),
            "cover_mb": cover_mb,
            "carried": tagged["carried"],
            "peak_rss_mb": round(tagged["peak_rss_mb"], 1),
            "untagged_rss_mb": round(plain["peak_rss_mb"], 1),
            "over_untagged_mb": round(over, 1),
            "over_per_cover_mb": round(over / (files * cover_mb), 3),
        }
        rows.append(row)
        print(row, flush=True)
    if not args.no_save:
        print(write_results("covers", rows, COLUMNS))


if __name__ == "__main__":
    main()
