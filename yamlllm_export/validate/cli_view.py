"""The terminal side of ``validate``: the results as a ``rich`` table (colour only where the console has it)."""

from __future__ import annotations

from rich.markup import escape
from rich.table import Table

from yamlllm_export.validate.report import FAIL, NOT_APPLICABLE, PASS, UNSUPPORTED, Report


def render_table(report: Report) -> Table:
    """A table of the results, one row per check and EP, the status coloured."""
    style = {PASS: "green", FAIL: "bold red", UNSUPPORTED: "yellow", NOT_APPLICABLE: "dim"}
    m = report.model
    table = Table(title=escape(f"{m.get('name', '?')} · {m.get('target', '?')} · {m.get('dtype', '?')}"), title_justify="left")
    for col in ("check", "EP", "measured", "tolerance", "result"):
        table.add_column(col, no_wrap=col in ("check", "EP", "result"))
    for r in report.results:
        measured = r.measured + (f" ({r.detail})" if r.detail else "")
        table.add_row(escape(r.check), r.ep, escape(measured), escape(r.tolerance), f"[{style[r.status]}]{r.status}[/]")
    return table
