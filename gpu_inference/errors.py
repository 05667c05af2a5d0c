"""Errors the CLI turns into one readable message and exit code 2 (never a traceback)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any


class ConfigError(ValueError):
    """One or more bad stack-config values; each message names the key, the value and what is allowed."""

    def __init__(self, messages: Iterable[str], source: str | None = None) -> None:
        self.messages = list(messages)
        self.source = source
        super().__init__(self.render())

    def render(self) -> str:
        where = f" in {self.source}" if self.source else ""
        if len(self.messages) == 1:
            return f"invalid stack config{where}: {self.messages[0]}"
        lines = "\n".join(f"  - {m}" for m in self.messages)
        return f"invalid stack config{where} ({len(self.messages)} problems):\n{lines}"


class OutputError(ValueError):
    """An output path the command cannot write (a file where a directory is needed, no permission, ...)."""


_BOUNDS = (("gt", ">"), ("ge", "≥"), ("lt", "<"), ("le", "≤"))


def validation_messages(errors: Iterable[Mapping[str, Any]], key: Callable[[tuple[Any, ...]], str] | None = None) -> list[str]:
    """pydantic errors (``ValidationError.errors()``) as the stack config words them: one line each,
    ``key = value is out of range: allowed ≥ 1``, never pydantic's multi-line dump with a URL."""
    messages = []
    for err in errors:
        loc = tuple(err.get("loc", ()))
        name = key(loc) if key else ".".join(str(p) for p in loc) or "value"
        value = err.get("input")
        shown = repr(value) if isinstance(value, str) else str(value)
        shown = shown if len(shown) <= 80 else shown[:77] + "..."
        ctx = err.get("ctx") or {}
        bounds = ", ".join(f"{sym} {ctx[attr]}" for attr, sym in _BOUNDS if attr in ctx)
        etype = err.get("type", "")
        msg = str(err.get("msg", "")).removeprefix("Value error, ")
        if (isinstance(value, float) and not math.isfinite(value)) or etype == "finite_number":
            messages.append(f"{name} = {shown} is not a finite number" + (f": allowed {bounds}" if bounds else ""))
        elif bounds:
            messages.append(f"{name} = {shown} is out of range: allowed {bounds}")
        elif etype == "missing":
            messages.append(f"{name} is required")
        else:
            messages.append(f"{name} = {shown} is invalid: {msg}")
    return messages
