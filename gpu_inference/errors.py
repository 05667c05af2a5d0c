"""Errors the CLI turns into one readable message and exit code 2 (never a traceback)."""

from __future__ import annotations

from collections.abc import Iterable


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
