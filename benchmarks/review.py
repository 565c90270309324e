"""The review page at the size of a library: how long it takes to write, how large it is,
and whether a browser still handles it.

    python benchmarks/review.py                                   # 5,000 rows; 30 tracks
    python benchmarks/review.py --rows 200 --tracks 3 --no-save   # CI smoke size

Two parts:
- writing: `--tracks` outputs of `--seconds` seconds (44.1 kHz stereo, in WAV, FLAC and
  MP3 by turns), the page written with 1 thread, then with one per core;
- the page in headless Chromium: `--rows` rows (short 8 kHz tracks, so that writing them
  is quick), its size, the time from navigation to the load event, and the time to
  scroll from top to bottom and back a screen at a time.
Writes benchmarks/results/review.{md,json}.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))

import soundfile as sf
from _harness import write_results
from support.browser import chromium, find_chromium

from wavespeed_outpaint.emulator._audio import make_track
from wavespeed_outpaint.review import ReviewItem, write_review_page

SCROLL = """
(async () => {
  const started = performance.now();
  for (let y = 0; y < document.body.scrollHeight; y += innerHeight) {
    scrollTo(0, y);
    await new Promise(r => requestAnimationFrame(r));
  }
  scrollTo(0, 0);
  await new Promise(r => requestAnimationFrame(r));
  return performance.now() - started;
})()
"""
LOADED = "performance.getEntriesByType('navigation')[0].loadEventEnd"


def tracks(
    folder: Path, count: int, seconds: float, rate: int, formats: tuple[str, ...]
) -> list[ReviewItem]:
    items = []
    for i in range(count):
        path = folder / f"t{i}.{formats[i % len(formats)]}"
        sf.write(path, make_track(seconds, rate, channels=2, seed=i), rate)
        items.append(ReviewItem(path.name, "completed", f"p{i}", (path,), (), 2.0, 4.0, 0.0012))
    return items


async def writing(folder: Path, count: int, seconds: float) -> list[dict[str, object]]:
    folder.mkdir(parents=True)
    items = tracks(folder, count, seconds, 44_100, ("wav", "flac", "mp3"))
    rows: list[dict[str, object]] = []
    for workers in sorted({1, os.cpu_count() or 1}):
        started, cpu = time.perf_counter(), time.process_time()
        await write_review_page(folder / "page.html", items=items, workers=workers)
        wall = time.perf_counter() - started
        rows.append(
            {
                "part": f"write {count} tracks of {seconds:g} s",
                "workers": workers,
                "wall_s": round(wall, 2),
                "ms_per_track": round(wall / count * 1000, 1),
                "cpu_s": round(time.process_time() - cpu, 2),
            }
        )
        print(rows[-1], flush=True)
    return rows


async def browsing(folder: Path, count: int, executable: str) -> dict[str, object]:
    folder.mkdir(parents=True)
    items = tracks(folder, count, 7.0, 8_000, ("wav", "flac"))
    started = time.perf_counter()
    page = await write_review_page(folder / "page.html", items=items)
    written = time.perf_counter() - started
    async with chromium(executable) as browser:
        await browser.open(page.as_uri())
        loaded_ms = await browser.evaluate(LOADED)
        scroll_ms = await browser.evaluate(SCROLL)
        pictures = await browser.evaluate("document.images.length")
    row: dict[str, object] = {
        "part": f"a page of {count} rows in Chromium",
        "wall_s": round(written, 2),
        "page_mb": round(page.stat().st_size / 1e6, 2),
        "load_ms": round(loaded_ms),
        "scroll_ms": round(scroll_ms),
        "pictures": pictures,
    }
    print(row, flush=True)
    return row


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--tracks", type=int, default=30)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args()
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="outpaint-review-bench-") as tmp:
        rows += await writing(Path(tmp) / "tracks", args.tracks, args.seconds)
        executable = find_chromium()
        if executable is None:
            print("no Chromium here: the browser part is left out")
        else:
            rows.append(await browsing(Path(tmp) / "rows", args.rows, executable))
    if not args.no_save:
        columns = [
            ("part", "part"),
            ("workers", "threads"),
            ("wall_s", "wall s"),
            ("ms_per_track", "ms / track"),
            ("cpu_s", "CPU s"),
            ("page_mb", "page MB"),
            ("load_ms", "load ms"),
            ("scroll_ms", "scroll through ms"),
            ("pictures", "pictures"),
        ]
        print(write_results("review", rows, columns))


if __name__ == "__main__":
    asyncio.run(main())
