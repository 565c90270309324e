"""The end of a batch run: a summary table, or one JSON document."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, TextIO

from .._audio.extras import CLI_EXTRA, installed
from ..models import OutpaintResult, Status


class Report:
    """What a run reports at its end, gathered as the results arrive: counts, and the
    items it prints (every one for --json; for the table, those not completed), so that
    a batch of a million tasks does not keep a million results."""

    def __init__(self, *, every_item: bool) -> None:
        self._every_item = every_item
        self._items: list[dict[str, Any]] = []
        self._counts = {
            "done": 0,
            "completed": 0,
            "failed": 0,
            "unknown": 0,
            "skipped": 0,
            "format_kept": 0,
        }
        self._generated_seconds = 0.0

    def add(self, shown: str, result: OutpaintResult) -> None:
        """A result of a batch on this machine; `shown`, its input as the user gave it."""
        item = {
            "input": shown,
            "status": result.outcome,
            "prediction_id": result.prediction_id,
            "files": list(result.locations),
            "error": result.error,
            "skipped": result.skipped,
            "delivered_by": result.delivered_by,
            "format_error": result.format_error,
            "notes": list(result.notes),
        }
        self._take(item, result.request.generated_seconds)

    def add_row(self, row: Mapping[str, Any]) -> None:
        """A task's result row from a Ray run (`wavespeed_outpaint.ray.RESULT_COLUMNS`)."""
        item = {
            "input": row["audio"],
            "status": row["status"],
            "prediction_id": row["prediction_id"],
            "files": list(row["files"]),
            "error": row["error"],
            "skipped": bool(row["skipped"]),
            "delivered_by": row["delivered_by"],
            "format_error": row["format_error"],
            "notes": [],
        }
        self._take(item, row["generated_seconds"])

    def _take(self, item: dict[str, Any], generated_seconds: float) -> None:
        """Count a task's item, and keep it if it is to be printed."""
        status = item["status"]
        counts = self._counts
        counts["done"] += 1
        counts["completed"] += status == "completed"
        counts["failed"] += status not in ("completed", Status.UNKNOWN.value)
        counts["unknown"] += status == Status.UNKNOWN.value
        counts["skipped"] += item["skipped"]
        counts["format_kept"] += item["format_error"] is not None
        self._generated_seconds += generated_seconds
        if self._every_item or status != "completed" or item["format_error"] or item["notes"]:
            self._items.append(item)

    @property
    def received(self) -> int:
        return self._counts["done"]

    def document(
        self,
        *,
        held_back: int,
        cost_usd: float,
        left_out: list[str] | None = None,
        sent_by_another_run: int = 0,
    ) -> dict[str, Any]:
        """`left_out`: inputs --skip-bad-inputs left out, each with why (not in `total`);
        `sent_by_another_run`: tasks another run on the same output prefix had claimed,
        collected here (not paid for here)."""
        counts = self._counts
        return {
            "total": counts["done"] + held_back,
            "completed": counts["completed"],
            "failed": counts["failed"],
            "unknown": counts["unknown"],
            "skipped": counts["skipped"],
            "held_back": held_back,
            "format_kept": counts["format_kept"],
            "generated_seconds": self._generated_seconds,
            "cost_usd": round(cost_usd, 6),
            "left_out": list(left_out or []),
            "sent_by_another_run": sent_by_another_run,
            "items": self._items,
        }


def print_json(doc: dict[str, Any], out: TextIO) -> None:
    out.write(json.dumps(doc, indent=2) + "\n")


# A table: its title, its column names (None: no header row), its rows.
Section = tuple[str, tuple[str, ...] | None, list[tuple[str, ...]]]


def print_table(doc: dict[str, Any], out: TextIO) -> None:
    """The report as tables: drawn by rich (the `cli` extra), else as plain columns."""
    draw = _draw_rich if installed(CLI_EXTRA) else _draw_plain
    for section in _sections(doc):
        draw(section, out)


def _sections(doc: dict[str, Any]) -> list[Section]:
    sections: list[Section] = []
    problems = [item for item in doc["items"] if item["status"] != "completed"]
    if problems:
        failures: list[tuple[str, ...]] = [
            (item["input"], item["status"], item["prediction_id"] or "-", item["error"] or "")
            for item in problems
        ]
        sections.append(("Not completed", ("input", "status", "prediction", "error"), failures))
    if doc["left_out"]:
        left: list[tuple[str, ...]] = [(problem,) for problem in doc["left_out"]]
        sections.append(("Left out (--skip-bad-inputs)", None, left))
    # A row per figure: eight columns side by side do not fit an 80-column terminal.
    figures: list[tuple[str, ...]] = [
        ("tasks", str(doc["total"])),
        ("completed", str(doc["completed"])),
        ("failed", str(doc["failed"])),
        ("unknown", str(doc["unknown"])),
        ("skipped (done before)", str(doc["skipped"])),
        ("held back (--max-cost)", str(doc["held_back"])),
        ("left out (bad input)", str(len(doc["left_out"]))),
        ("in the service's format (not converted)", str(doc["format_kept"])),
        ("seconds generated", f"{doc['generated_seconds']:g}"),
        ("charged", f"${doc['cost_usd']:.4f}"),
    ]
    if doc["sent_by_another_run"]:
        figures.append(("sent by another run (collected)", str(doc["sent_by_another_run"])))
    sections.append(("Summary", None, figures))
    return sections


def _draw_rich(section: Section, out: TextIO) -> None:
    from rich.console import Console
    from rich.table import Table

    title, header, rows = section
    table = Table(title=title, show_header=header is not None)
    for i, column in enumerate(header or ("",) * len(rows[0])):
        # The summary's figures line up on the right; long texts fold, never cut.
        right = header is None and i == 1
        table.add_column(column, justify="right" if right else "left", overflow="fold")
    for row in rows:
        table.add_row(*row)
    Console(file=out).print(table)


def _draw_plain(section: Section, out: TextIO) -> None:
    title, header, rows = section
    lines = [header, *rows] if header else rows
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    print(title, file=out)
    for line in lines:
        cells = [cell.ljust(width) for cell, width in zip(line, widths, strict=True)]
        print("  " + "  ".join(cells).rstrip(), file=out)
