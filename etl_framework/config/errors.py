"""Config errors as `file:line:col: message` (SPEC §4): collected, never raised one at a time."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class ConfigError:
    file: str
    line: int  # 1-based
    col: int  # 1-based
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}: {self.message}"


class ConfigErrors(Exception):
    """All config errors of one or more files; the CLI prints them and exits 2."""

    exit_code = 2

    def __init__(self, errors: list[ConfigError]) -> None:
        self.errors = sorted(set(errors))
        super().__init__("\n".join(str(e) for e in self.errors))
