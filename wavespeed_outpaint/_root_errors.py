"""The root of the errors and the one the data types raise, below them: `models`
raises `ValidationError` and `errors` names the models' types (a task's request, its
prediction), so these two sit under both. Users import them from `errors`.
"""

from __future__ import annotations

from typing import Any


class OutpaintError(Exception):
    """The root of every error this package raises."""

    __module__ = "wavespeed_outpaint.errors"  # where users import it, and pickles find it


class ValidationError(OutpaintError, ValueError):
    """A request, option or file that cannot be sent. Nothing was sent or charged."""

    __module__ = "wavespeed_outpaint.errors"

    def __init__(self, field: str, value: Any, problem: str) -> None:
        self.field = field
        self.value = value
        self.problem = problem
        super().__init__(f"{field}={_short_repr(value)}: {problem}")


def _short_repr(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
