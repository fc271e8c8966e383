"""Tables the CLI prints, complete wherever they are read: a terminal of any width, a pipe, ``grep``, a CI log.

On a terminal wide enough for the whole table it is a rich table; anywhere else (a pipe, a file, a narrow terminal)
the rows are plain text, one line per row with every value whole (never ``raspb…``), so
``toolkit profiles list | grep raspberry-pi-4`` finds its row; a last column that would pass 80 characters (or the
terminal's width) continues on the next lines under itself, broken at spaces only.
:func:`export_summary` is the export's summary, shared by the console and ``report.md``.
"""

from __future__ import annotations

import textwrap
from typing import Mapping, Sequence

WIDTH = 80
GAP = "  "


def plain_table(header: Sequence[str], rows: Sequence[Sequence[object]], right: Sequence[int] = (),
                width: int = WIDTH) -> list[str]:  # fmt: skip
    """Aligned plain-text lines: the header, a rule, one line per row (the last column wraps past ``width``)."""
    cells = [[str(c) for c in header]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    last = len(header) - 1

    def pad(i: int, cell: str) -> str:
        return cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])

    lines = []
    for n, row in enumerate(cells):
        prefix = GAP.join(pad(i, c) for i, c in enumerate(row[:last]))
        prefix = prefix + GAP if last else ""
        value = pad(last, row[last]) if last in right else row[last]
        if len(prefix) + len(value) <= width or not value:
            lines.append((prefix + value).rstrip())
        else:
            room = width - len(prefix)
            indent = " " * len(prefix) if room >= 20 else "    "
            wrapped = textwrap.wrap(value, max(room, 20) if room >= 20 else width - len(indent),
                                    break_long_words=False, break_on_hyphens=False)  # fmt: skip
            if room >= 20:
                lines.append(prefix + wrapped[0])
                lines += [indent + w for w in wrapped[1:]]
            else:
                lines.append(prefix.rstrip())
                lines += [indent + w for w in wrapped]
        if n == 0:
            lines.append("-" * min(width, max(len(line) for line in lines)))
    return lines


def print_table(console, header: Sequence[str], rows: Sequence[Sequence[object]], right: Sequence[int] = (),
                title: str | None = None) -> None:  # fmt: skip
    """A rich table on a terminal wide enough for it; otherwise plain text lines (long last cells wrap at spaces)."""
    if title:
        console.print(title, markup=False, highlight=False, soft_wrap=True)
    natural = sum(max([len(str(h))] + [len(str(r[i])) for r in rows]) for i, h in enumerate(header))
    if console.is_terminal and natural + 3 * (len(header) - 1) <= console.width:
        from rich import box
        from rich.table import Table

        table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
        for i, name in enumerate(header):
            table.add_column(name, justify="right" if i in right else "left", overflow="fold")
        for row in rows:
            table.add_row(*(str(c) for c in row))
        console.print(table)
        return
    width = min(WIDTH, console.width) if console.is_terminal else WIDTH
    # One write: a reader that stops at the row it wants (`| grep -q NAME`, `| head`) does not make the next line's
    # write fail with a broken pipe (exit 1 under `set -o pipefail`).
    console.print("\n".join(plain_table(header, rows, right, width)), markup=False, highlight=False, soft_wrap=True)


SUMMARY_HEADER = ("artifact", "MB", "host acc", "Δ pts", "instr/inf", "est. ms", "valid")
SUMMARY_RIGHT = (1, 2, 3, 4, 5)


def export_summary(manifest: Mapping) -> tuple[str, list[list[str]], str]:
    """(title, rows, footer) of one bundle's summary, each row within 80 columns.

    Columns: artifact, file size (MB), host accuracy on the whole dev set, its difference to the fp32 student in
    points, emulated instructions per inference (millions), estimated latency (ms), valid.
    """
    student_acc = manifest["student"]["dev_accuracy"]
    cpus = sorted({(a.get("emulator") or {}).get("cpu") for a in manifest["artifacts"]} - {None})
    profile = manifest["profile"]["name"]
    title = f"{profile}: " + (f"emulated on {', '.join(cpus)}" if cpus else "emulator not run") + (
        f"; host accuracy on {manifest['data']['eval']['examples']} dev examples"
    )
    rows = []
    for a in manifest["artifacts"]:
        host = next((c for c in a["checks"] if c.get("kind") == "host"), {})
        emu = a.get("emulator") or {}
        accuracy = host.get("accuracy")
        rows.append([
            a["name"],
            f"{a['bytes'] / 1e6:.2f}",
            "-" if accuracy is None else f"{accuracy:.4f}",
            "-" if accuracy is None else f"{(accuracy - student_acc) * 100:+.2f}",
            f"{emu['instructions_per_inference'] / 1e6:.1f}M" if emu.get("instructions_per_inference") else "-",
            f"{emu['estimated_latency_ms']:.2f}" if emu.get("estimated_latency_ms") else "-",
            "yes" if a["valid"] else "NO",
        ])  # fmt: skip
    footer = (f"{profile}: teacher {manifest['teacher']['dev_accuracy']:.4f} -> student {student_acc:.4f} "
              f"in {manifest['total_seconds']} s")  # fmt: skip
    return title, rows, footer


def export_summary_lines(manifest: Mapping) -> list[str]:
    """The summary as plain text (``report.md`` carries it as printed)."""
    title, rows, footer = export_summary(manifest)
    return [title] + plain_table(SUMMARY_HEADER, rows, SUMMARY_RIGHT) + [footer]
