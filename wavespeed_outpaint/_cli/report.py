"""The end of a batch run: a summary table, or one JSON document."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, TextIO

from rich.console import Console
from rich.table import Table

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


def print_table(doc: dict[str, Any], out: TextIO) -> None:
    console = Console(file=out)
    problems = [item for item in doc["items"] if item["status"] != "completed"]
    if problems:
        table = Table(title="Not completed", show_lines=False)
        for column in ("input", "status", "prediction", "error"):
            table.add_column(column, overflow="fold")
        for item in problems:
            table.add_row(
                item["input"], item["status"], item["prediction_id"] or "-", item["error"] or ""
            )
        console.print(table)
    if doc["left_out"]:
        left = Table(title="Left out (--skip-bad-inputs)", show_header=False)
        left.add_column("input and why", overflow="fold")
        for problem in doc["left_out"]:
            left.add_row(problem)
        console.print(left)
    # A row per figure: eight columns side by side do not fit an 80-column terminal.
    summary = Table(title="Summary", show_header=False)
    summary.add_column("figure")
    summary.add_column("value", justify="right")
    for label, value in (
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
    ):
        summary.add_row(label, value)
    if doc["sent_by_another_run"]:
        summary.add_row("sent by another run (collected)", str(doc["sent_by_another_run"]))
    console.print(summary)
