"""Command line: `toolkit profiles list|show`, `toolkit teacher train`, `toolkit distill`, `toolkit export`, ..."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from toolkit import profiles as profiles_mod

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
profiles_app = typer.Typer(no_args_is_help=True, help="List and show target profiles.")
app.add_typer(profiles_app, name="profiles")
console = Console()


def _fail(message: str) -> None:
    console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code=2)


@profiles_app.command("list")
def profiles_list() -> None:
    """One line per shipped profile."""
    table = Table("name", "cpu (qemu)", "seq", "budget MB", "latency ms", "artifacts")
    for p in profiles_mod.list_profiles():
        table.add_row(
            p.name,
            f"{p.device.cpu_model} ({p.device.qemu_cpu})",
            str(p.sequence_length),
            str(p.budgets.artifact_mb),
            str(p.budgets.latency_ms),
            ", ".join(a.name for a in p.artifacts),
        )
    console.print(table)


@profiles_app.command("show")
def profiles_show(name: str = typer.Argument(..., help="Shipped profile name or path to a YAML file.")) -> None:
    """Print a validated profile as YAML."""
    import yaml

    try:
        profile = profiles_mod.load_profile(name)
    except profiles_mod.ProfileError as err:
        _fail(str(err))
    console.print(yaml.safe_dump(profile.model_dump(mode="json"), sort_keys=False))


if __name__ == "__main__":
    app()
