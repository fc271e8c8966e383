"""Command line: `toolkit profiles list|show`, `toolkit teacher train`, `toolkit distill`, `toolkit export`, ..."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from toolkit import profiles as profiles_mod
from toolkit.errors import EXIT_BAD_INPUT, EXIT_CHECKS_FAILED, EXIT_INTERRUPTED, ToolkitError

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
profiles_app = typer.Typer(no_args_is_help=True, help="List and show target profiles.")
app.add_typer(profiles_app, name="profiles")
console = Console()


def _fail(message: str, code: int = EXIT_BAD_INPUT) -> None:
    console.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    raise typer.Exit(code=code)


def reports_user_errors(command):
    """Turn a :class:`ToolkitError` into its message and exit code 2 (no traceback); Ctrl-C into a resume hint."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except ToolkitError as err:
            _fail(str(err))
        except KeyboardInterrupt:
            _fail("interrupted; finished stages and files are kept: run the same command again to resume",
                  code=EXIT_INTERRUPTED)

    return wrapper


@profiles_app.command("list")
@reports_user_errors
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
@reports_user_errors
def profiles_show(name: str = typer.Argument(..., help="Shipped profile name or path to a YAML file.")) -> None:
    """Print a validated profile as YAML."""
    import yaml

    profile = profiles_mod.load_profile(name)
    console.print(yaml.safe_dump(profile.model_dump(mode="json"), sort_keys=False))


# ---------------------------------------------------------------------------------------------------------------
# Shared options
# ---------------------------------------------------------------------------------------------------------------

TextColumn = typer.Option("sentence", "--text-column", help="Column / JSON key holding the text.")
PairColumn = typer.Option(None, "--pair-column", help="Column holding the second text of a pair task.")
LabelColumn = typer.Option("label", "--label-column", help="Column holding the label.")
SkipBadRows = typer.Option(False, "--skip-bad-rows", help="Skip (and count) malformed rows instead of stopping.")


def _load_train_dev(data: Path | None, eval_: Path | None, text: str, pair: str | None, label: str, skip: bool):
    """The user's train/dev files, or the bundled SST-2 demo data when none are given."""
    from toolkit.data import DEMO_DEV, DEMO_TRAIN, Columns, load_labelled, require_two_classes

    columns = Columns(text=text, pair=pair, label=label)
    train = load_labelled(data or DEMO_TRAIN, columns, skip_bad_rows=skip)
    require_two_classes(train)
    dev = load_labelled(eval_ or DEMO_DEV, columns, label_names=train.label_names, skip_bad_rows=skip)
    console.print(f"[bold]data[/] {train.summary()}\n[bold]eval[/] {dev.summary()}")
    return train, dev


def _load_profile(name: str):
    return profiles_mod.load_profile(name)


teacher_app = typer.Typer(no_args_is_help=True, help="Train or inspect an XLNet teacher.")
app.add_typer(teacher_app, name="teacher")


@teacher_app.command("train")
@reports_user_errors
def teacher_train(
    out: Path = typer.Option(..., "--out", help="Folder to save the teacher in (save_pretrained, safetensors)."),
    data: Path = typer.Option(None, "--data", help="Training file (TSV/CSV/JSONL); default: bundled SST-2 sample."),
    eval_: Path = typer.Option(None, "--eval", help="Dev file; default: bundled SST-2 dev."),
    layers: int = typer.Option(6, help="XLNet layers."),
    d_model: int = typer.Option(256, help="Hidden width."),
    epochs: int = typer.Option(3, help="Training epochs (the best dev epoch is kept)."),
    seed: int = typer.Option(0),
    text_column: str = TextColumn,
    pair_column: str = PairColumn,
    label_column: str = LabelColumn,
    skip_bad_rows: bool = SkipBadRows,
) -> None:
    """Fine-tune an XLNet classifier from random initialisation (no pretrained weights can be downloaded here)."""
    from toolkit.teacher import TeacherRecipe, train_teacher

    train, dev = _load_train_dev(data, eval_, text_column, pair_column, label_column, skip_bad_rows)
    recipe = TeacherRecipe(n_layer=layers, d_model=d_model, d_inner=4 * d_model, epochs=epochs, seed=seed)
    card = train_teacher(train, dev, out, recipe)
    console.print(f"teacher saved to {out}: dev accuracy {card['dev_accuracy']:.4f} in {card['train_seconds']} s")


@teacher_app.command("convert")
@reports_user_errors
def teacher_convert(
    source: Path = typer.Argument(..., help="Checkpoint folder with pickle weights (pytorch_model.bin)."),
    target: Path = typer.Argument(..., help="New folder for the safetensors copy."),
    trust_pickle: bool = typer.Option(False, "--trust-pickle", help="Required: you trust where the pickle came from."),
) -> None:
    """Convert a pickle-only teacher to safetensors (explicit opt-in; tensors-only loading)."""
    from toolkit.teacher import convert_pickle_teacher

    if not trust_pickle:
        _fail("pickle checkpoints can run code when loaded; pass --trust-pickle if you trust where this one came from")
    convert_pickle_teacher(source, target)
    console.print(f"converted {source} -> {target} (safetensors); pass --teacher {target}")


@app.command()
@reports_user_errors
def distill(
    target: str = typer.Option(..., "--target", help="Profile name or YAML path."),
    out: Path = typer.Option(..., "--out", help="Folder for the student (weights, tokenizer, report)."),
    teacher: Path = typer.Option(None, "--teacher", help="Fine-tuned XLNet folder; default: the demo teacher."),
    data: Path = typer.Option(None, "--data", help="Training file; default: bundled SST-2 sample."),
    eval_: Path = typer.Option(None, "--eval", help="Dev file; default: bundled SST-2 dev."),
    layers: int = typer.Option(None, help="Override the profile-chosen depth."),
    d_model: int = typer.Option(None, help="Override the profile-chosen width."),
    epochs: int = typer.Option(3, help="Distillation epochs (early stopping on dev accuracy)."),
    hidden_weight: float = typer.Option(0.0, help="Weight of last-position hidden-state matching (0 = off)."),
    max_param_ratio: float = typer.Option(0.25, help="Largest student, as a share of the teacher's parameters."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the checkpoint in --out."),
    seed: int = typer.Option(0),
    text_column: str = TextColumn,
    pair_column: str = PairColumn,
    label_column: str = LabelColumn,
    skip_bad_rows: bool = SkipBadRows,
) -> None:
    """Distil an XLNet teacher into a shallow student sized for a target profile."""
    from toolkit.distill import DistillSettings, distill as run_distill
    from toolkit.teacher import demo_teacher

    profile = _load_profile(target)
    train, dev = _load_train_dev(data, eval_, text_column, pair_column, label_column, skip_bad_rows)
    settings = DistillSettings(epochs=epochs, hidden_weight=hidden_weight, seed=seed)
    result = run_distill(
        teacher or demo_teacher(train, dev, log=console.print), train, dev, profile, out, settings,
        n_layer=layers, d_model=d_model, max_param_ratio=max_param_ratio, resume=resume, log=console.print,
    )
    r = result.report
    console.print(
        f"teacher {r['teacher_dev_accuracy']:.4f} ({r['teacher_parameters']:,} params) -> student "
        f"{r['student_dev_accuracy']:.4f} ({r['student_parameters']:,} params, {r['parameter_ratio']:.1%}); "
        f"retention {r['retention']:.1%}, {r['wall_seconds']} s"
    )


@app.command()
@reports_user_errors
def export(
    target: str = typer.Option(..., "--target", help="Profile name, a YAML path, or 'all' for every shipped profile."),
    out: Path = typer.Option(Path("out"), "--out", help="Output folder; each profile's bundle goes to OUT/<profile>."),
    teacher: Path = typer.Option(
        None, "--teacher",
        help="Fine-tuned XLNet folder; default: a stand-in teacher trained from random init on --data (cached).",
    ),
    data: Path = typer.Option(None, "--data", help="Training file; default: bundled SST-2 sample."),
    eval_: Path = typer.Option(None, "--eval", help="Dev file; default: bundled SST-2 dev."),
    epochs: int = typer.Option(2, help="Distillation epochs (SST-2: the student passes the teacher after 1-2)."),
    emulate: bool = typer.Option(True, "--emulate/--no-emulate", help="Validate on the emulated ARM CPU."),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace a finished bundle in OUT/<profile> (or discard an unfinished run) and start over."
    ),
    text_column: str = TextColumn,
    pair_column: str = PairColumn,
    label_column: str = LabelColumn,
    skip_bad_rows: bool = SkipBadRows,
) -> None:
    """The main job: distil, quantize, export .pte + .tflite, check on the host and the emulated device, report."""
    from toolkit.distill import DistillSettings
    from toolkit.pipeline import ExportFailed, RunSpec, export_bundle
    from toolkit.report import write_index

    profiles = profiles_mod.list_profiles() if target == "all" else [_load_profile(target)]
    train, dev = _load_train_dev(data, eval_, text_column, pair_column, label_column, skip_bad_rows)
    manifests, failures = [], []
    for profile in profiles:
        console.rule(f"[bold]{profile.name}[/] — {profile.description}")
        spec = RunSpec(profile, train, dev, teacher, DistillSettings(epochs=epochs), emulate)
        try:
            manifests.append(export_bundle(spec, out, overwrite=overwrite, log=console.print))
        except ExportFailed as err:
            failures.append(str(err))
            manifests.append(json.loads((out / profile.name / "manifest.json").read_text()))
        except ToolkitError as err:
            _fail(f"{profile.name}: {err}")
    _summary_table(manifests)
    if len(manifests) > 1:
        write_index(manifests, out)
        console.print(f"index: {out / 'index.html'}")
    if failures:
        _fail("\n".join(failures), code=EXIT_CHECKS_FAILED)


def _summary_table(manifests: list[dict]) -> None:
    table = Table("profile", "artifact", "MB", "host acc", "Δ vs student", "emulator", "instr/inf", "est. ms", "valid")
    for manifest in manifests:
        student_acc = manifest["student"]["dev_accuracy"]
        for a in manifest["artifacts"]:
            host = next((c for c in a["checks"] if c.get("kind") == "host"), {})
            emu = a.get("emulator") or {}
            table.add_row(
                manifest["profile"]["name"],
                a["name"],
                f"{a['bytes'] / 1e6:.2f}",
                f"{host.get('accuracy') or 0:.4f}",
                f"{((host.get('accuracy') or 0) - student_acc) * 100:+.2f}",
                f"{emu.get('cpu', '-')}",
                f"{emu['instructions_per_inference']:,}" if emu.get("instructions_per_inference") else "-",
                f"{emu['estimated_latency_ms']:.2f}" if emu.get("estimated_latency_ms") else "-",
                "[green]yes[/]" if a["valid"] else "[red]NO[/]",
            )
    console.print(table)
    for manifest in manifests:
        bundle = f"{manifest['profile']['name']}: teacher {manifest['teacher']['dev_accuracy']:.4f} -> student "
        console.print(bundle + f"{manifest['student']['dev_accuracy']:.4f} in {manifest['total_seconds']} s")


@app.command()
@reports_user_errors
def validate(
    bundle: Path = typer.Argument(..., help="A bundle folder written by `toolkit export` (OUT/<profile>)."),
    target: str = typer.Option(None, "--target", help="Profile (default: the one in the bundle's manifest)."),
    eval_: Path = typer.Option(None, "--eval", help="Dev file; default: bundled SST-2 dev."),
) -> None:
    """Run every valid artifact of a bundle on the profile's emulated ARM CPU and gate on the result."""
    from toolkit.pipeline import validate_existing_bundle

    manifest_path = bundle / "manifest.json"
    if not manifest_path.is_file():
        _fail(f"{bundle}: no manifest.json; give a bundle folder written by `toolkit export`")
    from toolkit.manifest_schema import load_manifest

    manifest = load_manifest(manifest_path)
    profile = _load_profile(target) if target else profiles_mod.Profile.model_validate(manifest["profile"])
    manifest = validate_existing_bundle(bundle, profile, eval_, log=console.print)
    _summary_table([manifest])
    if not manifest["validation"]["passed"]:
        _fail(f"{bundle}: validation failed (see {bundle / 'report.html'})", code=EXIT_CHECKS_FAILED)


if __name__ == "__main__":
    app()
