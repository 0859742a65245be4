"""Render a `Report` as one self-contained static HTML file: inline CSS and SVG, no script, no font, no
image, no
link to anything outside the file, so it opens offline, can be mailed or archived as a CI artifact, and
makes no
network request.

The workflow graph is laid out here by topological layers (longest path from the start triggers), left to
right;
the timeline is a Gantt chart of node attempts and of the stages of each job run.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from etl_framework.report.model import (
    BookmarkState,
    Edge,
    ExpectationResult,
    JobRun,
    Node,
    Report,
    Stage,
    WorkflowRun,
    sort_stages,
)

# state -> (fill, text colour). Every state is also written as text: colour is never the only signal.
STATE_COLORS: dict[str, tuple[str, str]] = {
    "SUCCEEDED": ("#2e7d32", "#ffffff"),
    "COMPLETED": ("#2e7d32", "#ffffff"),
    "FAILED": ("#c62828", "#ffffff"),
    "ERROR": ("#8e0000", "#ffffff"),
    "TIMEOUT": ("#e65100", "#ffffff"),
    "STOPPED": ("#616161", "#ffffff"),
    "CANCELLED": ("#616161", "#ffffff"),
    "RUNNING": ("#1565c0", "#ffffff"),
    "STARTING": ("#42a5f5", "#0d1b2a"),
    "STOPPING": ("#90a4ae", "#0d1b2a"),
    "WAITING": ("#90caf9", "#0d1b2a"),
    "SKIPPED": ("#eceff1", "#37474f"),
    "NOT_RUN": ("#eceff1", "#37474f"),
    "FIRED": ("#fff8e1", "#5d4037"),
    "NOT_FIRED": ("#fafafa", "#9e9e9e"),
    "UNKNOWN": ("#bdbdbd", "#212121"),
}

CSS = """
:root { --fg:#1d2733; --muted:#5f6b7a; --line:#d8dee6; --bg:#ffffff; --panel:#f6f8fa; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;
       color:var(--fg); background:var(--bg); }
header.top { padding:18px 28px 12px; border-bottom:1px solid var(--line); background:var(--panel); }
header.top h1 { margin:0 0 6px; font-size:20px; }
main { padding:8px 28px 40px; max-width:1280px; }
h2 { font-size:17px; margin:26px 0 8px; border-bottom:1px solid var(--line); padding-bottom:4px; }
h3 { font-size:15px; margin:18px 0 6px; }
h4 { font-size:13px; margin:14px 0 4px; color:var(--muted); text-transform:uppercase; letter-spacing:.04em; }
.meta { color:var(--muted); font-size:13px; }
.meta span { margin-right:16px; white-space:nowrap; }
.badge { display:inline-block; padding:1px 8px; border-radius:10px; font-size:12px; font-weight:600;
         letter-spacing:.02em; vertical-align:middle; }
.banner { margin:12px 0; padding:10px 14px; border-radius:6px; border:1px solid; }
.banner.running { background:#e3f2fd; border-color:#90caf9; }
.banner.error { background:#ffebee; border-color:#ef9a9a; }
.banner.note { background:#fffde7; border-color:#fff59d; }
table { border-collapse:collapse; margin:6px 0 10px; font-size:13px; }
th, td { border:1px solid var(--line); padding:4px 8px; text-align:left; vertical-align:top; }
th { background:var(--panel); font-weight:600; }
td.num { text-align:right; font-variant-numeric:tabular-nums; }
.err { color:#8e0000; white-space:pre-wrap; }
table.stages td:last-child { max-width:460px; font-size:12px; }
details pre { margin:4px 0; white-space:pre-wrap; word-break:break-all; }
code, .mono { font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace; font-size:12px; }
pre.error { background:#ffebee; border:1px solid #ef9a9a; padding:8px 10px; white-space:pre-wrap;
            margin:6px 0; }
section.jobrun { border:1px solid var(--line); border-radius:8px; padding:4px 16px 10px; margin:16px 0; }
section.jobrun > h3 { margin-top:12px; }
.svgwrap { overflow-x:auto; border:1px solid var(--line); border-radius:6px; background:#fff; padding:6px; }
.legend span { margin-right:10px; }
details summary { cursor:pointer; color:var(--muted); }
.empty { color:var(--muted); font-style:italic; }
footer { color:var(--muted); font-size:12px; padding:16px 28px; border-top:1px solid var(--line); }
"""


# ----------------------------------------------------------------------------------------------- formatting


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def colors(state: str) -> tuple[str, str]:
    return STATE_COLORS.get(state.upper(), STATE_COLORS["UNKNOWN"])


def badge(state: str) -> str:
    fill, text = colors(state)
    return (
        f'<span class="badge state-{esc(state.lower())}" style="background:{fill};color:{text}">'
        f"{esc(state)}</span>"
    )


def fmt_time(dt: datetime | None) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if dt else "—"


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    m, s = divmod(round(seconds), 60)
    if m < 60:
        return f"{m} min {s:02d} s"
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min"


def fmt_number(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "—" if value is None else str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.0f}" if value.is_integer() and abs(value) >= 1000 else f"{value:,.4g}"
    return esc(value)


def fmt_bytes(value: Any) -> str:
    try:
        n = float(value)
    except (TypeError, ValueError):
        return esc(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    return esc(value)


def fmt_value(value: Any, limit: int = 160) -> str:
    """Any JSON-ish value, shortened; the full text stays in a tooltip."""
    if value is None:
        return "—"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return fmt_number(value)
    text = value if isinstance(value, str) else json.dumps(value, default=str, sort_keys=True)
    if len(text) <= limit:
        return f'<span class="mono">{esc(text)}</span>'
    return f'<span class="mono" title="{esc(text)}">{esc(text[:limit])}…</span>'


def anchor(kind: str, name: str) -> str:
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in name)
    return f"{kind}-{safe}"


# ---------------------------------------------------------------------------------------------- graph (SVG)

NODE_W, NODE_H, TRIG_W, TRIG_H = 160, 50, 150, 44
COL_GAP, ROW_GAP, PAD = 76, 18, 12


def layers(nodes: list[str], edges: list[Edge]) -> list[list[str]]:
    """Topological layers by longest path from the roots (`workflow_graph.layered`, the one graph walker)."""
    from etl_framework.workflow_graph import layered

    return layered(nodes, [(e.src, e.dst) for e in edges])


def _shorten(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def graph_svg(wf: WorkflowRun) -> str:
    nodes = {n.key: n for n in wf.nodes}
    for e in wf.edges:  # an edge may name a node the record never saw start
        for name in (e.src, e.dst):
            if name not in nodes:
                nodes[name] = Node(name=name)
    names = list(nodes)
    if not names:
        return '<p class="empty">no nodes recorded</p>'
    cols = layers(names, wf.edges)

    def size(n: Node) -> tuple[int, int]:
        return (TRIG_W, TRIG_H) if n.kind == "trigger" else (NODE_W, NODE_H)

    col_h = [sum(size(nodes[n])[1] for n in col) + ROW_GAP * (len(col) - 1) for col in cols]
    height = max(col_h) + 2 * PAD + 14
    width = sum(max(size(nodes[n])[0] for n in col) for col in cols) + COL_GAP * (len(cols) - 1) + 2 * PAD
    box: dict[str, tuple[float, float, int, int]] = {}
    x = PAD
    for ci, col in enumerate(cols):
        cw = max(size(nodes[n])[0] for n in col)
        y = PAD + (height - 2 * PAD - 14 - col_h[ci]) / 2
        for n in col:
            w, h = size(nodes[n])
            box[n] = (x + (cw - w) / 2, y, w, h)
            y += h + ROW_GAP
        x += cw + COL_GAP

    parts = [
        (
            f'<svg xmlns="http://www.w3.org/2000/svg" class="graph" width="{width}" height="{height}" '
            'style="max-width:100%;height:auto" '
            f'viewBox="0 0 {width} {height}" role="img" aria-label="workflow graph">'
        ),
        (
            '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
            'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#78909c"/></marker></defs>'
        ),
    ]
    for e in wf.edges:
        if e.src not in box or e.dst not in box:
            continue
        sx, sy, sw, sh = box[e.src]
        dx, dy, dw, dh = box[e.dst]
        x1, y1, x2, y2 = sx + sw, sy + sh / 2, dx, dy + dh / 2
        if x2 <= x1:  # same or earlier layer (cycle): loop below
            x1, y1, x2, y2 = sx + sw / 2, sy + sh, dx + dw / 2, dy + dh
            path = f"M{x1:.1f},{y1:.1f} C{x1:.1f},{y1 + 40:.1f} {x2:.1f},{y2 + 40:.1f} {x2:.1f},{y2:.1f}"
        else:
            mx = (x1 + x2) / 2
            path = f"M{x1:.1f},{y1:.1f} C{mx:.1f},{y1:.1f} {mx:.1f},{y2:.1f} {x2 - 2:.1f},{y2:.1f}"
        parts.append(
            f'<path class="edge" d="{path}" fill="none" stroke="#78909c" stroke-width="1.4" '
            f'marker-end="url(#arrow)"><title>{esc(e.src)} → {esc(e.dst)} {esc(e.label)}</title></path>'
        )
        if e.label:
            lx, ly = (x1 + x2) / 2, (y1 + y2) / 2 - 4
            parts.append(
                f'<text x="{lx:.1f}" y="{ly:.1f}" font-size="10" fill="#546e7a" text-anchor="middle" '
                f'paint-order="stroke" stroke="#fff" stroke-width="3">{esc(_shorten(e.label, 22))}</text>'
            )
    for name in names:
        n = nodes[name]
        x0, y0, w, h = box[name]
        fill, text = colors(n.state)
        tip = f"{n.kind} {n.name}: {n.state}"
        if n.attempts:
            tip += f", {len(n.attempts)} attempt(s)"
        if n.duration is not None:
            tip += f", {fmt_duration(n.duration)}"
        if n.detail:
            tip += f" ({n.detail})"
        if n.error:
            tip += f"\n{n.error}"
        link = f"#{anchor('node', n.name)}" if n.kind != "trigger" else ""
        parts.append(
            f'<g class="node" data-node="{esc(n.name)}" data-kind="{esc(n.kind)}" '
            f'data-state="{esc(n.state)}">'
        )
        if link:
            parts.append(f'<a href="{link}">')
        parts.append(f"<title>{esc(tip)}</title>")
        if n.kind == "trigger":
            parts.append(
                f'<rect x="{x0:.1f}" y="{y0:.1f}" width="{w}" height="{h}" rx="{h / 2}" fill="{fill}" '
                f'stroke="#a1887f" stroke-dasharray="4 3"/>'
            )
            parts.append(
                f'<text x="{x0 + w / 2:.1f}" y="{y0 + 14:.1f}" font-size="11" text-anchor="middle" '
                f'fill="{text}" font-weight="600">{esc(_shorten(n.name, 22))}</text>'
            )
            parts.append(
                f'<text x="{x0 + w / 2:.1f}" y="{y0 + 26:.1f}" font-size="9.5" text-anchor="middle" '
                f'fill="{text}">{esc(_shorten(n.detail, 28))}</text>'
            )
            parts.append(
                f'<text class="state" x="{x0 + w / 2:.1f}" y="{y0 + 38:.1f}" font-size="9.5" '
                f'text-anchor="middle" fill="{text}" font-weight="600">'
                f"{esc(n.state.replace('_', ' '))}</text>"
            )
        else:
            stroke = {"job": "#37474f", "maintain": "#1b5e20"}.get(n.kind, "#4e342e")
            parts.append(
                f'<rect x="{x0:.1f}" y="{y0:.1f}" width="{w}" height="{h}" rx="7" fill="{fill}" '
                f'stroke="{stroke}" stroke-width="1.2"/>'
            )
            kind = n.kind if n.kind in ("crawler", "maintain") else "job"
            parts.append(
                f'<text x="{x0 + 8:.1f}" y="{y0 + 13:.1f}" font-size="9.5" fill="{text}" '
                f'opacity="0.85">{kind}</text>'
            )
            parts.append(
                f'<text x="{x0 + w / 2:.1f}" y="{y0 + 28:.1f}" font-size="13" text-anchor="middle" '
                f'fill="{text}" font-weight="600">{esc(_shorten(n.name, 22))}</text>'
            )
            extra = f" ×{len(n.attempts)}" if len(n.attempts) > 1 else ""
            parts.append(
                f'<text class="state" x="{x0 + w / 2:.1f}" y="{y0 + 43:.1f}" font-size="11" '
                f'text-anchor="middle" fill="{text}">{esc(n.state)}{esc(extra)}</text>'
            )
        if link:
            parts.append("</a>")
        parts.append("</g>")
    parts.append("</svg>")
    return "".join(parts)


# ------------------------------------------------------------------------------------------- timeline (SVG)


class _Row:
    def __init__(
        self, label: str, bars: list[tuple[datetime | None, datetime | None, str, str]], indent: int = 0
    ) -> None:
        self.label, self.bars, self.indent = label, bars, indent  # bars: (start, end, state, tooltip)


def gantt_svg(rows: list[_Row], now: datetime) -> str:
    times = [t for r in rows for b in r.bars for t in (b[0], b[1]) if t is not None]
    if not times:
        return '<p class="empty">no start or end times recorded</p>'
    t0, t1 = min(times), max(times)
    if any(b[0] and not b[1] for r in rows for b in r.bars):
        t1 = max(t1, now)
    span = max((t1 - t0).total_seconds(), 0.001)
    label_w, chart_w, row_h, top = 220, 700, 20, 26
    width, height = label_w + chart_w + 50, top + row_h * len(rows) + 10

    def xpos(t: datetime) -> float:
        return label_w + (t - t0).total_seconds() / span * chart_w

    parts = [
        (
            f'<svg xmlns="http://www.w3.org/2000/svg" class="gantt" width="{width}" height="{height}" '
            'style="max-width:100%;height:auto" '
            f'viewBox="0 0 {width} {height}" role="img" aria-label="timeline">'
        ),
        (
            '<defs><pattern id="running" width="8" height="8" patternUnits="userSpaceOnUse" '
            'patternTransform="rotate(45)"><rect width="8" height="8" fill="#1565c0"/>'
            '<rect width="4" height="8" fill="#64b5f6"/></pattern></defs>'
        ),
    ]
    for i in range(6):  # axis: 5 intervals, labelled as offsets from the start
        x = label_w + chart_w * i / 5
        parts.append(f'<line x1="{x:.1f}" y1="{top - 6}" x2="{x:.1f}" y2="{height - 6}" stroke="#eceff1"/>')
        parts.append(
            f'<text x="{x:.1f}" y="{top - 10}" font-size="10" fill="#607d8b" text-anchor="middle">'
            f"+{esc(fmt_duration(span * i / 5) if i else '0 s')}</text>"
        )
    for ri, row in enumerate(rows):
        y = top + ri * row_h
        if ri % 2 == 0:
            parts.append(f'<rect x="0" y="{y}" width="{width}" height="{row_h}" fill="#fafbfc"/>')
        weight = "600" if row.indent == 0 else "400"
        parts.append(
            f'<text x="{6 + 14 * row.indent}" y="{y + 14}" font-size="{12 - row.indent}" '
            f'font-weight="{weight}" fill="#263238">{esc(_shorten(row.label, 30 - 2 * row.indent))}'
            f"<title>{esc(row.label)}</title></text>"
        )
        for start, end, state, tip in row.bars:
            if start is None:
                continue
            running = end is None
            x1, x2 = xpos(start), xpos(end or now)
            bw = max(x2 - x1, 2.0)
            fill = "url(#running)" if running else colors(state)[0]
            h = row_h - 6 if row.indent == 0 else row_h - 10
            by = y + (row_h - h) / 2
            parts.append(
                f'<rect class="bar" x="{x1:.1f}" y="{by:.1f}" width="{bw:.1f}" height="{h}" rx="2" '
                f'fill="{fill}" data-state="{esc(state)}"><title>{esc(tip)}</title></rect>'
            )
    parts.append("</svg>")
    return "".join(parts)


def _stage_rows(run: JobRun, indent: int) -> list[_Row]:
    rows = []
    several = len({s.attempt for s in run.stages}) > 1
    for s in sort_stages(run.stages):
        if s.started_at is None and s.status == "SKIPPED":
            continue  # nothing ran: the stages table says why
        start = s.started_at
        end = s.ended_at
        if start and not end and s.duration_s is not None:
            end = start + timedelta(seconds=s.duration_s)
        label = f"{s.name} (attempt {s.attempt})" if several else s.name
        tip = f"{label}: {s.status}, {fmt_duration(s.duration)}"
        rows.append(
            _Row(
                label,
                [(start, end if s.status not in ("RUNNING", "STARTING") else None, s.status, tip)],
                indent,
            )
        )
    return rows


def workflow_rows(wf: WorkflowRun, runs: dict[str, JobRun]) -> list[_Row]:
    rows: list[_Row] = []
    ordered = sorted(
        (n for n in wf.nodes if n.kind != "trigger"),
        key=lambda n: (n.started_at is None, n.started_at or datetime.max.replace(tzinfo=UTC)),
    )
    for n in ordered:
        bars: list[tuple[datetime | None, datetime | None, str, str]] = []
        if n.attempts and any(a.started_at for a in n.attempts):
            for a in n.attempts:
                bars.append(
                    (
                        a.started_at,
                        a.ended_at if a.state not in ("RUNNING", "STARTING") else None,
                        a.state,
                        f"{n.name} attempt {a.number}: {a.state}"
                        + (
                            f", {fmt_duration((a.ended_at - a.started_at).total_seconds())}"
                            if a.started_at and a.ended_at
                            else ""
                        )
                        + (f"\n{a.error}" if a.error else ""),
                    )
                )
        else:
            bars.append(
                (
                    n.started_at,
                    n.ended_at if n.state not in ("RUNNING", "STARTING") else None,
                    n.state,
                    f"{n.name}: {n.state}, {fmt_duration(n.duration)}",
                )
            )
        label = n.name + (f" ({len(n.attempts)} attempts)" if len(n.attempts) > 1 else "")
        rows.append(_Row(label, bars))
        for i, rid in enumerate(n.job_run_ids):
            if rid in runs:
                sub = _stage_rows(runs[rid], 1)
                if len(n.job_run_ids) > 1:
                    for r in sub:
                        r.label = f"{r.label} (attempt {runs[rid].attempt or i + 1})"
                rows.extend(sub)
    return rows


# ------------------------------------------------------------------------------------------------- sections


def _table(
    headers: list[str], rows: Iterable[list[str]], numeric: set[int] | None = None, cls: str = ""
) -> str:
    numeric = numeric or set()
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = []
    for r in rows:
        cells = []
        for i, c in enumerate(r):
            css = ' class="num"' if i in numeric else ""
            cells.append(f"<td{css}>{c}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _scalar_text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.4g}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def stage_details(s: Stage) -> str:
    """Metrics beyond the headline columns: short scalars inline, the rest (sources, paths, partition lists)
    in a
    fold-out, so that the table stays readable whatever a stage records."""
    extra = s.other_metrics
    if not extra:
        return ""
    inline = [
        f"{esc(k)}={esc(_shorten(_scalar_text(v), 40))}"
        for k, v in extra.items()
        if isinstance(v, str | int | float | bool) and k not in ("path",) and len(str(v)) <= 40
    ]
    text = ", ".join(inline)
    folded = {
        k: v
        for k, v in extra.items()
        if not (isinstance(v, str | int | float | bool) and k != "path" and len(str(v)) <= 40)
    }
    if folded:
        body = esc(json.dumps(folded, indent=1, default=str, sort_keys=True))
        text += (
            f"<details><summary>{', '.join(esc(k) for k in folded)}</summary>"
            f'<pre class="mono">{body}</pre></details>'
        )
    return f'<span class="mono">{text}</span>' if not folded else text


def stages_table(stages: list[Stage]) -> str:
    if not stages:
        return '<p class="empty">no stage records</p>'
    stages = sort_stages(stages)
    several = len({s.attempt for s in stages}) > 1
    rows = []
    for s in stages:
        started = (
            f'<span title="{esc(fmt_time(s.started_at))}">{esc(s.started_at.strftime("%H:%M:%S"))}</span>'
            if s.started_at
            else "—"
        )
        error = f'<div class="err">{esc(s.error)}</div>' if s.error else ""
        rows.append(
            [
                f"<b>{esc(s.name)}</b>"
                + (f" <span class=meta>(attempt {s.attempt})</span>" if several else ""),
                badge(s.status),
                started,
                esc(fmt_duration(s.duration)),
                fmt_number(s.rows_in),
                fmt_number(s.rows_out),
                fmt_bytes(s.bytes) if s.bytes is not None else "—",
                fmt_number(s.files),
                fmt_number(s.partitions),
                error + stage_details(s),
            ]
        )
    return _table(
        [
            "stage",
            "status",
            "started (UTC)",
            "duration",
            "rows in",
            "rows out",
            "bytes",
            "files",
            "partitions",
            "details / error",
        ],
        rows,
        numeric={4, 5, 6, 7, 8},
        cls="stages",
    )


def quality_table(results: list[ExpectationResult]) -> str:
    if not results:
        return '<p class="empty">no quality results recorded (no quality block, or the gate did not run)</p>'
    rows = []
    for q in results:
        outcome = "UNKNOWN" if q.success is None else ("SUCCEEDED" if q.success else "FAILED")
        label = "passed" if q.success else ("unknown" if q.success is None else "failed")
        fill, text = colors(outcome)
        pct = "—" if q.unexpected_percent is None else f"{q.unexpected_percent:.2f} %"
        rows.append(
            [
                f'<b>{esc(q.name)}</b><br><span class="mono">{esc(q.expect)}</span>'
                if q.expect and q.expect != q.name
                else f"<b>{esc(q.name)}</b>",
                esc(q.column or "—"),
                f'<span class="badge" style="background:{fill};color:{text}">{label}</span>',
                fmt_value(q.observed_value),
                fmt_number(q.unexpected_count),
                esc(pct),
                esc(q.action or "—"),
            ]
        )
    return _table(
        ["expectation", "column", "outcome", "observed value", "unexpected count", "unexpected %", "action"],
        rows,
        numeric={4, 5},
        cls="quality",
    )


def _cursor(c: Any) -> str:
    if c is None:
        return '<span class="empty">none</span>'
    if isinstance(c, dict):
        mode = c.get("mode")
        if mode == "files":
            files = c.get("files") or {}
            listing = "".join(f"<li class=mono>{esc(p)}</li>" for p in sorted(files)[:200])
            more = f"<li>… {len(files) - 200} more</li>" if len(files) > 200 else ""
            return f"{len(files)} file(s)" + (
                f"<details><summary>files</summary><ul>{listing}{more}</ul></details>" if files else ""
            )
        if mode == "watermark":
            return f'<span class="mono">{esc(c.get("column"))} = {esc(c.get("watermark"))}</span>'
    return fmt_value(c)


def bookmarks_table(bms: list[BookmarkState]) -> str:
    if not bms:
        return '<p class="empty">no incremental sources (no bookmark)</p>'
    return _table(
        ["source", "before", "after"],
        [[f"<b>{esc(b.source)}</b>", _cursor(b.before), _cursor(b.after)] for b in bms],
        cls="bookmarks",
    )


def quarantine_block(run: JobRun) -> str:
    out = ""
    if run.bad_records:
        where = f" to <code>{esc(run.bad_records_path)}</code>" if run.bad_records_path else ""
        out += (
            f"<p><b>{fmt_number(run.bad_records)}</b> malformed input row(s) set aside{where} "
            "(<code>bad_records: quarantine</code>)</p>"
        )
    q = run.quarantine
    if not q:
        return out or '<p class="empty">no rows quarantined</p>'
    if run.quarantine_path:
        out += f'<p class="meta">quarantine table: <code>{esc(run.quarantine_path)}</code></p>'
    return out + _quality_quarantine(q)


def _quality_quarantine(q: dict[str, int]) -> str:
    total = q.get("rows", q.get("total"))
    rows = [[esc(k), fmt_number(v)] for k, v in q.items() if k not in ("rows", "total")]
    head = (
        f"<p><b>{fmt_number(total)}</b> row(s) quarantined by the quality gate</p>"
        if total is not None
        else ""
    )
    if rows:
        head += (
            '<p class="meta">per rule: the rows it set aside (a row that breaks two rules counts in both)</p>'
        )
    return head + (_table(["rule / reason", "rows"], rows, numeric={1}, cls="quarantine") if rows else "")


def job_run_section(run: JobRun, standalone: bool, now: datetime) -> str:
    out = [f'<section class="jobrun" id="{anchor("run", run.run_id)}" data-job="{esc(run.job)}">']
    out.append(f"<h3>job <code>{esc(run.job)}</code> {badge(run.status)}</h3>")
    meta = [
        f"run <code>{esc(run.run_id)}</code>",
        f"started {esc(fmt_time(run.started_at))}",
        f"ended {esc(fmt_time(run.ended_at))}",
        f"duration {esc(fmt_duration(run.duration))}",
    ]
    if run.env:
        meta.append(f"env <code>{esc(run.env)}</code>")
    if run.attempt:
        meta.append(f"attempt {run.attempt}")
    if run.workflow_run_id and standalone:
        meta.append(f"part of workflow run <code>{esc(run.workflow_run_id)}</code>")
    out.append('<div class="meta">' + "".join(f"<span>{m}</span>" for m in meta) + "</div>")
    if run.running:
        out.append(
            '<div class="banner running">This job run is still running: the report shows what is '
            "known so far.</div>"
        )
    if run.error:
        where = f"stage <b>{esc(run.error_stage)}</b>: " if run.error_stage else ""
        out.append(f'<pre class="error">{where}{esc(run.error)}</pre>')
    if run.message:
        out.append(f"<p>{esc(run.message)}</p>")
    for note in run.notes:
        out.append(f'<div class="banner note">{esc(note)}</div>')
    if run.params:
        out.append(
            "<details><summary>params</summary>"
            + _table(
                ["param", "value"], [[f"<code>{esc(k)}</code>", fmt_value(v)] for k, v in run.params.items()]
            )
            + "</details>"
        )
    out.append("<h4>stages</h4>" + stages_table(run.stages))
    if standalone and run.stages:
        out.append("<h4>timeline</h4><div class=svgwrap>" + gantt_svg(_stage_rows(run, 0), now) + "</div>")
    out.append("<h4>quality gate</h4>" + quality_table(run.quality))
    out.append("<h4>quarantine</h4>" + quarantine_block(run))
    out.append("<h4>bookmarks</h4>" + bookmarks_table(run.bookmarks))
    out.append("</section>")
    return "".join(out)


def nodes_table(wf: WorkflowRun, runs: dict[str, JobRun]) -> str:
    rows = []
    for n in wf.nodes:
        if n.kind == "trigger":
            continue
        links = (
            ", ".join(
                f'<a href="#{anchor("run", r)}"><code>{esc(r)}</code></a>'
                if r in runs
                else f"<code>{esc(r)}</code>"
                for r in n.job_run_ids
            )
            or "—"
        )
        attempts = "; ".join(f"#{a.number} {a.state}" for a in n.attempts) if n.attempts else "—"
        rows.append(
            [
                f'<b id="{anchor("node", n.name)}">{esc(n.name)}</b>',
                esc(n.kind),
                badge(n.state) + (f' <span class="meta">{esc(n.detail)}</span>' if n.detail else ""),
                esc(attempts),
                esc(fmt_time(n.started_at)),
                esc(fmt_duration(n.duration)),
                links,
                f'<span class="err">{esc(n.error)}</span>' if n.error else "",
            ]
        )
    return _table(
        ["node", "kind", "state", "attempts", "started", "duration", "job runs", "error"], rows, cls="nodes"
    )


def _change_text(c: Any) -> str:
    if not isinstance(c, dict):
        return esc(c)
    kind = c.get("change") or c.get("type") or "change"

    def text(v: Any) -> str:
        return json.dumps(v, default=str) if isinstance(v, list | dict) else _scalar_text(v)

    rest = ", ".join(
        f"{esc(k)}={esc(_shorten(text(v), 80))}" for k, v in c.items() if k not in ("change", "type")
    )
    return f"<b>{esc(kind)}</b>" + (f" <span class=mono>{rest}</span>" if rest else "")


def maintenance_table(wf: WorkflowRun) -> str:
    """What each maintain node did, one row per table (`engine.maintain`'s MaintainResult metrics)."""
    rows = []
    for n in wf.nodes:
        if n.kind != "maintain" or n.result is None:
            continue
        tables = n.maintained
        if not tables:
            rows.append([f"<b>{esc(n.name)}</b>", badge(n.state), "—", "", "", "", "", "",
                         esc(str((n.result or {}).get("note") or ""))])
        for t in tables:
            rows.append([
                f"<b>{esc(n.name)}</b>",
                badge(n.state),
                f"<code>{esc(t.get('table', '?'))}</code> <span class=meta>{esc(t.get('format', ''))}</span>",
                f"{esc(fmt_number(t.get('files_before')))} → {esc(fmt_number(t.get('files_after')))}",
                esc(fmt_number(t.get("rows"))) if t.get("rows") is not None else "—",
                esc(fmt_number(t.get("files_deleted", 0))),
                esc(fmt_number(t.get("snapshots_expired", 0))),
                esc(f"{t['retain_hours']:g} h") if isinstance(t.get("retain_hours"), int | float) else "—",
                esc("; ".join(str(o) for o in t.get("operations") or [])),
            ])
    return _table(["node", "state", "table", "files before → after", "rows", "files deleted", "snapshots expired",
                   "retention", "operations"], rows, numeric={4, 5, 6}, cls="maintenance")


def crawler_runs_table(wf: WorkflowRun) -> str:
    rows = []
    for c in wf.crawler_runs:
        changes = "<br>".join(_change_text(x) for x in c.changes[:20]) or "—"
        if len(c.changes) > 20:
            changes += f"<br>… {len(c.changes) - 20} more"
        table = f"{c.database}.{c.table}" if c.database and c.table else (c.table or "—")
        rows.append(
            [
                f'<b id="{anchor("crawl", c.crawler)}">{esc(c.crawler)}</b>',
                badge(c.state),
                f"<code>{esc(table)}</code>",
                esc(
                    fmt_duration(
                        (c.ended_at - c.started_at).total_seconds() if c.started_at and c.ended_at else None
                    )
                ),
                esc(c.message or "—"),
                changes,
            ]
        )
    return _table(["crawler", "state", "table", "duration", "result", "changes"], rows, cls="crawlers")


def legend() -> str:
    shown = ["SUCCEEDED", "FAILED", "TIMEOUT", "STOPPED", "RUNNING", "NOT_RUN"]
    return '<div class="legend meta">' + "".join(f"<span>{badge(s)}</span>" for s in shown) + "</div>"


def render(report: Report) -> str:
    """The whole page as text."""
    now = report.generated_at
    wf = report.workflow
    runs = {r.run_id: r for r in report.job_runs}
    status = wf.status if wf else (report.job_runs[0].status if report.job_runs else "UNKNOWN")
    body: list[str] = []
    body.append(f'<header class="top"><h1>{esc(report.title)} {badge(status)}</h1>')
    if wf:
        meta = [
            f"workflow run <code>{esc(wf.run_id)}</code>",
            f"started {esc(fmt_time(wf.started_at))}",
            f"ended {esc(fmt_time(wf.ended_at))}",
            f"duration {esc(fmt_duration(wf.duration))}",
        ]
        if wf.resumed_from:
            meta.append(f"resumes run <code>{esc(wf.resumed_from)}</code>")
    else:
        r = report.job_runs[0] if report.job_runs else None
        meta = [f"job run <code>{esc(r.run_id)}</code>" if r else "no run"]
    if report.project:
        meta.append(f"project <code>{esc(report.project)}</code>")
    body.append('<div class="meta">' + "".join(f"<span>{m}</span>" for m in meta) + "</div></header><main>")
    if report.running:
        body.append(
            '<div class="banner running" id="running-banner"><b>This run is still running.</b> The report '
            f"shows what was known at {esc(fmt_time(now))}; run <code>etl report</code> again for a "
            "newer picture.</div>"
        )
    if wf:
        if wf.error:
            body.append(f'<pre class="error">{esc(wf.error)}</pre>')
        for note in wf.notes:
            body.append(f'<div class="banner note">{esc(note)}</div>')
        if wf.statistics:
            keys = list(wf.statistics)
            body.append(
                "<h2>statistics</h2>"
                + _table(
                    keys,
                    [[fmt_number(wf.statistics[k]) for k in keys]],
                    numeric=set(range(len(keys))),
                    cls="stats",
                )
            )
        if wf.run_properties:
            body.append(
                "<details><summary>run properties</summary>"
                + _table(
                    ["property", "value"],
                    [[f"<code>{esc(k)}</code>", fmt_value(v)] for k, v in wf.run_properties.items()],
                )
                + "</details>"
            )
        body.append("<h2>graph</h2>" + legend() + '<div class="svgwrap">' + graph_svg(wf) + "</div>")
        body.append("<h2>nodes</h2>" + nodes_table(wf, runs))
        body.append(
            '<h2>timeline</h2><div class="svgwrap">' + gantt_svg(workflow_rows(wf, runs), now) + "</div>"
        )
        if wf.crawler_runs:
            body.append("<h2>crawler runs</h2>" + crawler_runs_table(wf))
        if any(n.kind == "maintain" and n.result is not None for n in wf.nodes):
            body.append("<h2>table maintenance</h2>" + maintenance_table(wf))
        body.append("<h2>job runs</h2>")
        if not report.job_runs:
            body.append('<p class="empty">no job run of this workflow run was found in the state store</p>')
    for run in report.job_runs:
        body.append(job_run_section(run, standalone=wf is None, now=now))
    body.append("</main>")
    body.append(
        f"<footer>generated by etl_framework at {esc(fmt_time(now))} · one self-contained file: no "
        "script, no network</footer>"
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(report.title)}</title><style>{CSS}</style></head><body>"
        + "".join(body)
        + "</body></html>\n"
    )
