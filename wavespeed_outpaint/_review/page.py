"""The review page: one static HTML file that says which extended tracks to listen to.

At the top, the batch in figures (tasks, completed, failures grouped by reason, seconds
generated, cost, wall time); then a row per track, worst seam score first (see
`scores.py` for the measure): the output's waveform with the new parts shaded, a player
for the whole output, and a player for ten seconds around each seam (a media fragment,
`#t=start,end`, of the same file: no extra audio is written). Pictures are inline SVG
images; players load nothing until played, and pictures are decoded as they scroll into
view, so a page of thousands of rows stays usable. It needs no server and no network:
open it from the disk, next to the outputs it points at.
"""

from __future__ import annotations

import collections
import html
import os
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

import anyio
import attrs

from .._audio.extras import AUDIO_EXTRA, installed
from .._engine.journal import Journal
from .._outputs.files import write_whole_file
from ..errors import MissingExtraError
from ..models import OutpaintResult, Status, expand_path
from ..seams import State

if TYPE_CHECKING:
    from .scores import TrackView

# Seconds of audio each seam player plays on either side of its seam.
SEAM_CONTEXT = 5.0
# The waveform picture's own units (it is stretched to the row's width).
PICTURE_WIDTH, PICTURE_HEIGHT = 160, 40


@attrs.frozen
class ReviewItem:
    """One task, as the page needs it."""

    input: str
    status: str  # "completed", "failed", "unknown", or a task still on its way
    prediction_id: str | None = None
    files: tuple[Path, ...] = ()  # local outputs (players and pictures need the file)
    locations: tuple[str, ...] = ()  # where every output landed, a bucket's included
    before: float = 0.0
    after: float = 0.0
    cost_usd: float = 0.0  # charged (0 for a task the service never took)
    error: str | None = None
    code: int | None = None


def items_from_results(results: Iterable[OutpaintResult]) -> list[ReviewItem]:
    items = []
    for r in results:
        items.append(
            ReviewItem(
                input=str(r.request.audio),
                status=r.outcome,
                prediction_id=r.prediction_id,
                files=r.files,
                locations=r.locations,
                before=float(r.request.extend_before_duration),
                after=float(r.request.extend_after_duration),
                cost_usd=r.request.cost_usd if r.prediction_id else 0.0,
                error=r.error,
                code=r.code,
            )
        )
    return items


_JOURNAL_STATUS = {
    State.DOWNLOADED: "completed",
    State.FAILED: Status.FAILED.value,
    State.UNKNOWN: Status.UNKNOWN.value,
}


def items_from_journal(path: str | os.PathLike[str]) -> list[ReviewItem]:
    """The tasks a journal holds (it is read, not taken: a run may hold it)."""
    journal = Journal(expand_path(path), reader=True)
    try:
        rows = list(journal.rows())
    finally:
        journal.close()
    items = []
    for row in rows:
        request = row.request
        local = tuple(Path(f) for f in row.files if not f.startswith("s3://"))
        items.append(
            ReviewItem(
                input=row.input,
                status=_JOURNAL_STATUS.get(row.state, row.state),
                prediction_id=row.prediction_id,
                files=local if row.state == State.DOWNLOADED else (),
                locations=row.files,
                before=float(request.get("extend_before_duration", 0)),
                after=float(request.get("extend_after_duration", 0)),
                cost_usd=row.cost_usd if row.prediction_id else 0.0,
                error=row.error,
                code=row.code,
            )
        )
    return items


async def write_review_page(
    page: str | os.PathLike[str],
    *,
    journal: str | os.PathLike[str] | None = None,
    results: Iterable[OutpaintResult] | None = None,
    items: Iterable[ReviewItem] | None = None,
    wall_seconds: float | None = None,
    workers: int | None = None,
) -> Path:
    """Write the review page of a batch to `page`, from one of: its journal, its
    results, or `ReviewItem`s made from records of one's own. Best next to the outputs:
    the page points at them by relative paths. Reads every local output once, in
    `workers` threads (default: one per core). Returns the page's path."""
    given = [source for source in (journal, results, items) if source is not None]
    if len(given) != 1:
        raise ValueError("give one of journal=, results= or items=")
    if not installed(AUDIO_EXTRA):
        raise MissingExtraError("the review page (waveforms, seam scores)", "audio")
    if journal is not None:
        rows = items_from_journal(journal)
    elif results is not None:
        rows = items_from_results(results)
    else:
        rows = list(items or ())
    threads = workers or os.cpu_count() or 1
    return await anyio.to_thread.run_sync(_write, expand_path(page), rows, wall_seconds, threads)


def _write(page: Path, items: list[ReviewItem], wall_seconds: float | None, workers: int) -> Path:
    to_read = [i for i, item in enumerate(items) if item.status == "completed" and item.files]
    # Decoding runs in libsndfile and numpy, mostly outside the GIL.
    with ThreadPoolExecutor(max_workers=workers) as pool:
        views = dict(zip(to_read, pool.map(lambda i: _view(items[i]), to_read), strict=True))
    page.parent.mkdir(parents=True, exist_ok=True)
    # Two runs over one folder may write the page at once: each through its own `.part`.
    write_whole_file(str(page), _render(page.parent, items, views, wall_seconds).encode())
    return page


def _view(item: ReviewItem) -> TrackView | str:
    """The track's waveform and seams, or why its file cannot be read (a row too)."""
    from .scores import analyse  # (numpy: the audio extra, checked by write_review_page)

    try:
        return analyse(item.files[0], item.before, item.after)
    except Exception as exc:  # noqa: BLE001 - libsndfile's and the OS's errors alike
        return f"cannot be read: {exc}"


def _render(
    folder: Path,
    items: list[ReviewItem],
    views: dict[int, TrackView | str],
    wall_seconds: float | None,
) -> str:
    def score(i: int) -> float:
        view = views.get(i)
        return float("inf") if view is None or isinstance(view, str) else view.score

    done = [i for i, item in enumerate(items) if item.status == "completed"]
    done.sort(key=score, reverse=True)
    rows = "\n".join(_row(folder, items[i], views.get(i)) for i in done)
    return PAGE.format(
        summary=_summary(items, wall_seconds),
        failures=_failures(items),
        rows=rows or "<p>No completed tracks yet.</p>",
        written=html.escape(time.strftime("%Y-%m-%d %H:%M:%S %Z")),
    )


def _summary(items: list[ReviewItem], wall_seconds: float | None) -> str:
    completed = [item for item in items if item.status == "completed"]
    failed = sum(item.status == "failed" for item in items)
    unknown = sum(item.status == "unknown" for item in items)
    generated = sum(item.before + item.after for item in completed)
    cost = sum(item.cost_usd for item in items)
    figures = [
        ("tasks", str(len(items))),
        ("completed", str(len(completed))),
        ("failed", str(failed)),
        ("unknown", str(unknown)),
        ("seconds generated", f"{generated:g}"),
        ("cost", f"${cost:.4f}"),
        ("wall time", f"{wall_seconds:.1f} s" if wall_seconds is not None else "not known"),
    ]
    cells = "".join(f"<div><dt>{k}</dt><dd>{html.escape(v)}</dd></div>" for k, v in figures)
    return f'<dl class="figures">{cells}</dl>'


def _reason(item: ReviewItem) -> str:
    text = (item.error or item.status).split("\n", 1)[0][:120]
    return f"{text} (code {item.code})" if item.code is not None else text


def _failures(items: list[ReviewItem]) -> str:
    failed = [item for item in items if item.status not in ("completed",)]
    if not failed:
        return ""
    by_reason = collections.defaultdict(list)
    for item in failed:
        by_reason[_reason(item)].append(item)
    groups = sorted(by_reason.items(), key=lambda kv: -len(kv[1]))
    parts = ["<section class='failures'><h2>Not completed, by reason</h2>"]
    for reason, group in groups:
        names = "".join(f"<li>{html.escape(item.input)}</li>" for item in group)
        parts.append(
            f"<details><summary>{len(group)} × {html.escape(reason)}</summary>"
            f"<ul>{names}</ul></details>"
        )
    parts.append("</section>")
    return "".join(parts)


def _href(folder: Path, file: Path) -> str:
    relative = os.path.relpath(file, folder)
    return quote(Path(relative).as_posix())


def _row(folder: Path, item: ReviewItem, view: TrackView | str | None) -> str:
    name = html.escape(item.input)
    if view is None or isinstance(view, str):
        where = ", ".join(item.locations) or "nowhere"
        why = view if isinstance(view, str) else "not on this machine"
        return (
            f"<section class='track'><h3>{name}</h3>"
            f"<p class='note'>{html.escape(where)}: {html.escape(why)}</p></section>"
        )
    src = _href(folder, item.files[0])
    shown = html.escape(os.path.relpath(item.files[0], folder))
    seams = []
    for n, seam in enumerate(view.seams):
        start = max(0.0, seam.at - SEAM_CONTEXT)
        end = min(view.duration, seam.at + SEAM_CONTEXT)
        where = "start" if item.before > 0 and n == 0 else "end"
        seams.append(
            f"<figure><figcaption>{where} seam at {seam.at:.1f} s: "
            f"{seam.score:.1f} dB (loudness {seam.loudness_jump_db:.1f}, "
            f"spectrum {seam.spectrum_jump_db:.1f})</figcaption>"
            f"<audio class='seam' controls preload='none' "
            f"src='{src}#t={start:.2f},{end:.2f}' data-start='{start:.2f}'></audio></figure>"
        )
    return (
        f"<section class='track' data-score='{view.score:.2f}'>"
        f"<h3>{shown} <span class='score'>{view.score:.1f} dB</span></h3>"
        f"<img class='wave' loading='lazy' decoding='async' alt='waveform of {shown}' "
        # (In double quotes: the SVG inside uses single ones.)
        f'src="{_waveform(view, item.before, item.after)}">'
        f"<audio class='whole' controls preload='none' src='{src}' "
        f"data-duration='{view.duration:.3f}'></audio>"
        f"<div class='seams'>{''.join(seams)}</div>"
        f"<p class='note'>from {name}, prediction {html.escape(item.prediction_id or '-')}</p>"
        "</section>"
    )


def _waveform(view: TrackView, before: float, after: float) -> str:
    """The output's waveform as an SVG data URL: new parts shaded, seams drawn."""
    w, h = PICTURE_WIDTH, PICTURE_HEIGHT
    n = len(view.high)

    def y(value: float) -> int:
        return round(h / 2 - value * (h / 2 - 1))

    top = [f"{round(i * w / n)},{y(v)}" for i, v in enumerate(view.high)]
    bottom = [f"{round(i * w / n)},{y(v)}" for i, v in reversed(list(enumerate(view.low)))]
    shapes = []
    if view.duration > 0:
        if before > 0:
            shapes.append(f"<rect width='{before / view.duration * w:.1f}' height='{h}'/>")
        if after > 0:
            x = (view.duration - after) / view.duration * w
            shapes.append(f"<rect x='{x:.1f}' width='{w - x:.1f}' height='{h}'/>")
    seams = "".join(
        f"<line x1='{s.at / view.duration * w:.1f}' x2='{s.at / view.duration * w:.1f}' y2='{h}'/>"
        for s in view.seams
        if view.duration > 0
    )
    svg = (
        f"<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 {w} {h}' "
        f"preserveAspectRatio='none'><g fill='#f6c343' opacity='.45'>{''.join(shapes)}</g>"
        f"<polygon fill='#1a5fb4' points='{' '.join(top + bottom)}'/>"
        f"<g stroke='#c01c28' stroke-width='.6'>{seams}</g></svg>"
    )
    return "data:image/svg+xml," + quote(svg, safe=" ,='/:.-")  # ('#' would end the URL)


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>wavespeed-outpaint: review</title>
<style>
body {{ font: 15px/1.4 system-ui, sans-serif; margin: 1.5rem auto; max-width: 64rem;
  padding: 0 1rem; color: #222; }}
.figures {{ display: flex; flex-wrap: wrap; gap: .5rem 1.5rem; }}
.figures div {{ background: #f3f3f3; padding: .4rem .8rem; border-radius: .3rem; }}
dt {{ font-size: .8rem; color: #555; }} dd {{ margin: 0; font-weight: 600; }}
.track {{ border-top: 1px solid #ddd; padding: .6rem 0; content-visibility: auto;
  contain-intrinsic-size: auto 16rem; }}
.track h3 {{ margin: 0 0 .3rem; font-size: 1rem; overflow-wrap: anywhere; }}
.score {{ float: right; color: #c01c28; }}
.wave {{ display: block; width: 100%; height: 5rem; background: #fafafa; }}
audio.whole {{ width: 100%; margin: .3rem 0; }}
.seams {{ display: flex; flex-wrap: wrap; gap: 1rem; }}
figure {{ margin: 0; }} figcaption {{ font-size: .8rem; color: #555; }}
.note {{ font-size: .75rem; color: #777; margin: .2rem 0; }}
</style></head><body>
<h1>Extended tracks: which to listen to</h1>
<p class="note">Rows are sorted by seam score, worst first: the jump in loudness plus the
jump in spectral shape (dB) across each join of new audio and original, a second each
side. Shaded: new audio. Red lines: the seams. Written {written}.</p>
{summary}
{failures}
<h2>Completed</h2>
{rows}
</body></html>
"""
