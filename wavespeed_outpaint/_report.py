"""The end of a batch run: a summary table, or one JSON document."""

from __future__ import annotations

import json
from typing import Any, TextIO

from rich.console import Console
from rich.table import Table

from .models import OutpaintResult, Status


def status_text(result: OutpaintResult) -> str:
    if result.ok:
        return "completed"
    status = result.status.value if isinstance(result.status, Status) else str(result.status)
    return "failed" if status == "completed" else status  # completed, but not downloaded


def as_json(
    results: list[tuple[str, OutpaintResult]], *, held_back: int, cost_usd: float
) -> dict[str, Any]:
    items = [
        {
            "input": shown,
            "status": status_text(r),
            "prediction_id": r.prediction_id,
            "files": list(r.locations),
            "error": r.error,
            "skipped": r.skipped,
            "delivered_by": r.delivered_by,
        }
        for shown, r in results
    ]
    return {
        "total": len(results) + held_back,
        "completed": sum(r.ok for _, r in results),
        "failed": sum(not r.ok and r.status is not Status.UNKNOWN for _, r in results),
        "unknown": sum(r.status is Status.UNKNOWN for _, r in results),
        "skipped": sum(r.skipped for _, r in results),
        "held_back": held_back,
        "generated_seconds": sum(r.request.generated_seconds for _, r in results),
        "cost_usd": round(cost_usd, 6),
        "items": items,
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
        ("seconds generated", f"{doc['generated_seconds']:g}"),
        ("charged", f"${doc['cost_usd']:.4f}"),
    ):
        summary.add_row(label, value)
    console.print(summary)
