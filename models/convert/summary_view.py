"""The rich rendering of a ConvertSummary (kept apart so the summary stays plain data)."""
from __future__ import annotations

from rich.table import Table

from .summary import ConvertSummary


def render(summary: ConvertSummary, written_to: str | None = None) -> Table:
    """A two-column table: what was converted, its interface, ops and notes."""
    table = Table(title=f"converted {summary.source} ({summary.framework})", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    if written_to:
        table.add_row("written", str(written_to))
    table.add_row("opset / IR", f"{summary.opset} / {summary.ir_version}")
    table.add_row("ops", f"{summary.node_count}: " + ", ".join(f"{op} x{n}" for op, n in sorted(summary.op_counts.items())))
    table.add_row("parameters", f"{summary.parameters:,}")
    for spec in summary.inputs:
        table.add_row("input", str(spec))
    for spec in summary.outputs:
        table.add_row("output", str(spec))
    if summary.host_ops:
        table.add_row("runs on host under fpga", ", ".join(summary.host_ops), style="yellow")
    for note in summary.notes:
        table.add_row("note", note)
    return table
