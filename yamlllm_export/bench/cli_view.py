"""The terminal side of ``bench``: a progress bar over the rounds, then the table and where the report went."""

from __future__ import annotations

import sys
from pathlib import Path

from rich.table import Table

from yamlllm_export.bench.report import COLUMNS, BenchReport, cells, header
from yamlllm_export.bench.runner import BenchOptions, run_bench


def run_and_show(paths: list[Path], options: BenchOptions) -> None:
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
    with Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), console=console, transient=True) as bar:
        task = bar.add_task("bench", total=None)
        report, out_dir = run_bench(paths, options, progress=lambda what: bar.update(task, description=what, advance=1))
    console.print(render_table(report))
    failed = [row for row in report.rows if row.error]
    for row in failed:
        console.print(f"{row.label}: failed ({row.error})", markup=False)
    if not (out_dir / "decode_tok_s.png").exists():
        console.print("note: no plots (pip install 'yamlllm-export[bench]' for matplotlib)", markup=False)
    console.print(f"report in {out_dir}", markup=False)
    if failed and len(failed) == len(report.rows):
        sys.exit(1)


def render_table(report: BenchReport) -> Table:
    table = Table(title="yamlllm-export bench", caption=header(report), caption_justify="left")
    for title, name, _ in COLUMNS:
        table.add_column(title, justify="left" if name in ("label", "kind", "ep") else "right")
    for row in report.rows:
        table.add_row(*cells(row))
    return table
