"""`etl show RUN_ID`'s quality table: one row per expectation, readable in a terminal (rich), no Spark, no GX."""

from __future__ import annotations

import io
from typing import Any

ACTION_STYLE = {"passed": "green", "failed": "bold red", "warned": "yellow"}


def _fmt(value: Any, limit: int = 48) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        text = f"{value:.4g}"
    else:
        text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def quality_table(results: list[dict[str, Any]]) -> Any:
    """The stored per-expectation results (success, observed value, unexpected count and percent, on_fail,
    action) as a rich Table."""
    from rich.table import Table

    table = Table(title="quality gate", title_justify="left", show_lines=False)
    for name, kw in (("rule", {}), ("on_fail", {}), ("success", {}), ("observed", {}),
                     ("unexpected", {"justify": "right"}), ("%", {"justify": "right"}),
                     ("rows", {"justify": "right"}), ("action", {})):
        table.add_column(name, **kw)
    for r in results:
        if not isinstance(r, dict):
            continue
        action = str(r.get("action", ""))
        style = "magenta" if action.startswith("quarantined") else ACTION_STYLE.get(action, "")
        pct = r.get("unexpected_percent")
        table.add_row(
            _fmt(r.get("rule"), 60), _fmt(r.get("on_fail")), "yes" if r.get("success") else "no",
            _fmt(r.get("observed_value")), _fmt(r.get("unexpected_count")),
            "-" if not isinstance(pct, (int, float)) else f"{pct:.3g}", _fmt(r.get("element_count")),
            f"[{style}]{action}[/{style}]" if style else action,
        )
    return table


def format_quality_table(results: list[dict[str, Any]] | None, width: int = 140) -> str:
    """`quality_table` as plain text (no colours), e.g. for logs and tests."""
    from rich.console import Console

    if not results:
        return "quality: no expectations recorded"
    buf = io.StringIO()
    Console(file=buf, width=width, force_terminal=False, color_system=None).print(quality_table(results))
    return buf.getvalue().rstrip("\n")
