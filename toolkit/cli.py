"""Command line: `toolkit profiles list|show`, `toolkit teacher train`, `toolkit distill`, `toolkit export`, ..."""

from __future__ import annotations

import functools
import json
from dataclasses import replace
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from toolkit import profiles as profiles_mod
from toolkit.errors import EXIT_BAD_INPUT, EXIT_CHECKS_FAILED, EXIT_INTERRUPTED, ToolkitError, remember_interrupts
from toolkit.quiet import quiet_output
from toolkit.tables import SUMMARY_HEADER, SUMMARY_RIGHT, export_summary, print_table

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
        remember_interrupts()
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
    """One line per shipped profile (complete when piped: `toolkit profiles list | grep raspberry-pi-4`)."""
    rows = [
        [p.name, f"{p.device.cpu_model} ({p.device.qemu_cpu})", p.sequence_length, f"{p.budgets.artifact_mb:g}",
         f"{p.budgets.latency_ms:g}", ", ".join(a.name for a in p.artifacts)]
        for p in profiles_mod.list_profiles()
    ]  # fmt: skip
    print_table(console, ["name", "cpu (qemu)", "seq", "MB", "ms", "artifacts"], rows, right=(2, 3, 4))


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
Verbose = typer.Option(
    False, "-v", "--verbose",
    help="Show other libraries' output (warnings, converter and compiler logs) live instead of in the log file.",
)
Augment = typer.Option(
    0, "--augment", min=0,
    help="Teacher-labelled variants per training text (masking, teacher-embedding neighbours, n-grams); 0 = off.",
)
Transfer = typer.Option(
    None, "--transfer",
    help="Unlabelled texts for the teacher to label and the student to learn from: .txt (one per line) or the "
    "--text-column of a .tsv/.csv/.jsonl.",
)
HiddenWeight = typer.Option(
    0.0, "--hidden-weight", min=0.0,
    help="Weight of matching every token's hidden state of mapped teacher layers (learned projection); 0 = off.",
)
AttentionWeight = typer.Option(
    0.0, "--attention-weight", min=0.0,
    help="Weight of matching mapped layers' attention distributions (head means if head counts differ); 0 = off.",
)
Route = typer.Option(
    None, "--route", show_default="the profile's student.route",
    help="Student init: fresh (teacher embeddings, new layers when narrower), prune (the teacher's layers pruned to "
    "the budget: heads, FFN neurons, width), prune+lowrank (pruned wider, projections factorised to fit) or "
    "scratch (random init: a baseline).",
)
QatEpochs = typer.Option(
    0, "--qat-epochs", min=0,
    help="After distillation, N more epochs quantization-aware (fake int8) that teach the student to reproduce its "
    "float self, for the full-integer int8 artifacts.",
)
TeacherPrecision = typer.Option(
    "auto", "--teacher-precision",
    help="Teacher logits in fp32, bf16, or auto (bf16 where the CPU/GPU computes it natively, else fp32).",
)


def _is_main_process() -> bool:
    """False in the other processes of a multi-process launch (torchrun / accelerate set RANK): they stay quiet."""
    import os

    return int(os.environ.get("RANK", "0")) == 0


def _single_process() -> bool:
    import os

    return int(os.environ.get("WORLD_SIZE", "1")) == 1


def _load_train_dev(data: Path | None, eval_: Path | None, text: str, pair: str | None, label: str, skip: bool):
    """The user's train/dev files, or the bundled SST-2 demo data when none are given."""
    from toolkit.data import DEMO_DEV, DEMO_TRAIN, Columns, load_labelled, require_two_classes

    columns = Columns(text=text, pair=pair, label=label)
    train = load_labelled(data or DEMO_TRAIN, columns, skip_bad_rows=skip)
    require_two_classes(train)
    dev = load_labelled(eval_ or DEMO_DEV, columns, label_names=train.label_names, skip_bad_rows=skip)
    if _is_main_process():
        console.print(f"[bold]data[/] {train.summary()}\n[bold]eval[/] {dev.summary()}")
    return train, dev


def _bundle_log(bundle: Path) -> Path:
    """Where a command on an existing bundle logs other libraries' output: its work/ folder, else a temporary file."""
    import tempfile

    work = bundle / "work"
    return work / "toolkit.log" if work.is_dir() else Path(tempfile.gettempdir()) / "toolkit.log"


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
    epochs: int = typer.Option(2, help="Training epochs (the best dev epoch is kept)."),
    seed: int = typer.Option(0),
    text_column: str = TextColumn,
    pair_column: str = PairColumn,
    label_column: str = LabelColumn,
    skip_bad_rows: bool = SkipBadRows,
    verbose: bool = Verbose,
) -> None:
    """Fine-tune an XLNet classifier from random initialisation (no pretrained weights can be downloaded here)."""
    from toolkit.teacher import TeacherRecipe, train_teacher

    train, dev = _load_train_dev(data, eval_, text_column, pair_column, label_column, skip_bad_rows)
    recipe = TeacherRecipe(n_layer=layers, d_model=d_model, d_inner=4 * d_model, epochs=epochs, seed=seed)
    with quiet_output(console, Path(f"{out}.log"), verbose):  # beside the folder: save_pretrained replaces it
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
    hidden_weight: float = HiddenWeight,
    attention_weight: float = AttentionWeight,
    augment: int = Augment,
    transfer: Path = Transfer,
    route: str = Route,
    qat_epochs: int = QatEpochs,
    max_param_ratio: float = typer.Option(0.25, help="Largest student, as a share of the teacher's parameters."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the checkpoint in --out."),
    seed: int = typer.Option(0),
    teacher_precision: str = TeacherPrecision,
    text_column: str = TextColumn,
    pair_column: str = PairColumn,
    label_column: str = LabelColumn,
    skip_bad_rows: bool = SkipBadRows,
    verbose: bool = Verbose,
) -> None:
    """Distil an XLNet teacher into a shallow student sized for a target profile."""
    from toolkit.distill import DistillSettings, distill as run_distill
    from toolkit.teacher import demo_teacher

    profile = _load_profile(target)
    train, dev = _load_train_dev(data, eval_, text_column, pair_column, label_column, skip_bad_rows)
    settings = _for_profile(DistillSettings(epochs=epochs, hidden_weight=hidden_weight, attention_weight=attention_weight,
                                            augment=augment, route=route, qat_epochs=qat_epochs, seed=seed,
                                            teacher_precision=teacher_precision), profile)  # fmt: skip
    transfer_texts = _load_transfer(transfer, text_column)
    if teacher is None and not _single_process():
        _fail("several processes would each train the stand-in teacher: pass --teacher (e.g. one made by "
              "`toolkit teacher train --out T`) when distilling on several processes")
    with quiet_output(console, out / "toolkit.log", verbose, announce=_is_main_process()):
        result = run_distill(
            teacher or demo_teacher(train, dev, log=console.print), train, dev, profile, out, settings,
            n_layer=layers, d_model=d_model, max_param_ratio=max_param_ratio, resume=resume, log=console.print,
            transfer=transfer_texts,
        )
    r = result.report
    if _is_main_process():
        console.print(
            f"teacher {r['teacher_dev_accuracy']:.4f} ({r['teacher_parameters']:,} params) -> student "
            f"{r['student_dev_accuracy']:.4f} ({r['student_parameters']:,} params, {r['parameter_ratio']:.1%}); "
            f"retention {r['retention']:.1%}, agreement {r['agreement']:.1%}, {r['wall_seconds']} s"
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
    augment: int = Augment,
    transfer: Path = Transfer,
    route: str = Route,
    qat_epochs: int = QatEpochs,
    hidden_weight: float = HiddenWeight,
    attention_weight: float = AttentionWeight,
    teacher_precision: str = TeacherPrecision,
    text_column: str = TextColumn,
    pair_column: str = PairColumn,
    label_column: str = LabelColumn,
    skip_bad_rows: bool = SkipBadRows,
    verbose: bool = Verbose,
) -> None:
    """The main job: distil, quantize, export .pte + .tflite, check on the host and the emulated device, report."""
    from toolkit.distill import DistillSettings

    settings = DistillSettings(epochs=epochs, teacher_precision=teacher_precision, augment=augment, route=route,
                               qat_epochs=qat_epochs, hidden_weight=hidden_weight,
                               attention_weight=attention_weight)  # fmt: skip
    with quiet_output(console, out / "toolkit.log", verbose):
        _export(target, out, teacher, data, eval_, settings, transfer, emulate, overwrite, text_column,
                pair_column, label_column, skip_bad_rows)  # fmt: skip


def _for_profile(settings, profile):
    """The settings a profile's student is trained with: ``--route`` when given, else the profile's route."""
    return replace(settings, route=settings.route or profile.student.route)


def _load_transfer(path: Path | None, text_column: str) -> list[str] | None:
    """The --transfer texts (None without the flag); read before any slow stage, so a bad file fails at once."""
    if path is None:
        return None
    from toolkit.data import load_texts

    texts = load_texts(path, text_column)
    if _is_main_process():
        console.print(f"[bold]transfer[/] {path}: {len(texts):,} unlabelled texts")
    return texts


def _export(target, out, teacher, data, eval_, settings, transfer, emulate, overwrite, text_column,
            pair_column, label_column, skip_bad_rows) -> None:  # fmt: skip
    from toolkit.pipeline import ExportFailed, RunSpec, export_bundle
    from toolkit.report import write_index

    profiles = profiles_mod.list_profiles() if target == "all" else [_load_profile(target)]
    train, dev = _load_train_dev(data, eval_, text_column, pair_column, label_column, skip_bad_rows)
    transfer_texts = _load_transfer(transfer, text_column)
    manifests, failures = [], []
    for profile in profiles:
        console.print(f"[bold]── {profile.name}[/] — {escape(profile.description)}", highlight=False)
        spec = RunSpec(profile, train, dev, teacher, _for_profile(settings, profile), emulate, transfer_texts)
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
    """Per bundle: one row per artifact (80 columns, nothing cut), the teacher -> student line and what to ship first."""
    from toolkit.report import artifact_rows, suggest_artifact

    for manifest in manifests:
        title, rows, footer = export_summary(manifest)
        console.print()
        print_table(console, SUMMARY_HEADER, rows, SUMMARY_RIGHT, title=title)
        console.print(footer, highlight=False, markup=False, soft_wrap=True)
        _, why = suggest_artifact(artifact_rows(manifest))
        console.print(f"ship first: {why}", highlight=False, markup=False)


@app.command()
@reports_user_errors
def validate(
    bundle: Path = typer.Argument(..., help="A bundle folder written by `toolkit export` (OUT/<profile>)."),
    target: str = typer.Option(None, "--target", help="Profile (default: the one in the bundle's manifest)."),
    eval_: Path = typer.Option(None, "--eval", help="Dev file; default: bundled SST-2 dev."),
    verbose: bool = Verbose,
) -> None:
    """Run every valid artifact of a bundle on the profile's emulated ARM CPU and gate on the result."""
    from toolkit.pipeline import validate_existing_bundle

    manifest_path = bundle / "manifest.json"
    if not manifest_path.is_file():
        _fail(f"{bundle}: no manifest.json; give a bundle folder written by `toolkit export`")
    from toolkit.manifest_schema import load_manifest

    manifest = load_manifest(manifest_path)
    profile = _load_profile(target) if target else profiles_mod.Profile.model_validate(manifest["profile"])
    with quiet_output(console, _bundle_log(bundle), verbose):
        manifest = validate_existing_bundle(bundle, profile, eval_, log=console.print)
        _summary_table([manifest])
    if not manifest["validation"]["passed"]:
        _fail(f"{bundle}: validation failed (see {bundle / 'report.html'})", code=EXIT_CHECKS_FAILED)


@app.command()
@reports_user_errors
def evaluate(
    bundle: Path = typer.Argument(..., help="A bundle folder written by `toolkit export` (OUT/<profile>)."),
    data: Path = typer.Option(..., "--data", help="Labelled file to evaluate on (TSV/CSV/JSONL)."),
    emulate: int = typer.Option(0, "--emulate", help="Also run N rows (seeded subset) on the emulated device."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON (and nothing else) on stdout."),
    text_column: str = TextColumn,
    pair_column: str = PairColumn,
    label_column: str = LabelColumn,
    skip_bad_rows: bool = SkipBadRows,
    verbose: bool = Verbose,
) -> None:
    """Every valid artifact of a bundle on your labelled data: accuracy, macro-F1, confusion, agreement with fp32."""
    from toolkit.data import Columns
    from toolkit.evaluate import evaluate_bundle

    columns = Columns(text=text_column, pair=pair_column, label=label_column)
    log = (lambda message: None) if as_json else console.print
    with quiet_output(console, _bundle_log(bundle), verbose, announce=not as_json):
        result = evaluate_bundle(bundle, data, columns, skip_bad_rows, emulate, log=log)
        if as_json:
            console.file.write(json.dumps(result.to_json(), indent=2) + "\n")
            console.file.flush()
        else:
            _evaluation_table(result)


def _evaluation_table(result) -> None:
    """The evaluation as tables: one row per model, then small confusion matrices."""
    def share(x):
        return "-" if x is None else f"{x:.4f}"

    emulated = any(r.emulated for r in result.artifacts)
    header = ["model", "runtime", "accuracy", "macro-F1", "agree fp32"] + (["emu acc", "emu agree"] if emulated else [])
    rows = []
    for r in [result.student, *result.artifacts]:
        row = [r.name, r.runtime, share(r.accuracy), share(r.macro_f1), share(r.agreement_with_student)]
        if emulated:
            e = r.emulated
            row += [share(e.accuracy), share(e.agreement_with_host)] if e else ["-", "-"]
        rows.append(row)
    skipped = f", {result.skipped_rows} bad rows skipped" if result.skipped_rows else ""
    title = f"{result.profile}: {result.examples} examples of {result.data}{skipped}"
    print_table(console, header, rows, right=tuple(range(2, len(header))), title=title)
    if emulated:
        e = next(r.emulated for r in result.artifacts if r.emulated)
        console.print(f"emu: {e.samples} rows on emulated {e.cpu}; 'emu agree' compares with the same runtime on "
                      "the host", highlight=False, markup=False)  # fmt: skip
        for r in result.artifacts:
            if r.emulated and not r.emulated.passed:
                console.print(f"{r.name}: emulated run FAILED: {'; '.join(r.emulated.failures)}", markup=False)
    for line in result.not_evaluated:
        console.print(f"not evaluated: {line}", highlight=False, markup=False)
    if len(result.labels) <= 8:
        same = [r.name for r in result.artifacts if r.confusion == result.student.confusion]
        for r in [result.student, *result.artifacts]:
            if r.confusion and (r is result.student or r.name not in same):
                print_table(console, ["true \\ predicted", *result.labels],
                            [[name, *counts] for name, counts in zip(result.labels, r.confusion)],
                            right=tuple(range(1, len(result.labels) + 1)), title=f"confusion of {r.name}")
        if same:
            console.print(f"same confusion as the fp32 student: {', '.join(same)}", highlight=False, markup=False)
    else:
        console.print(f"confusion matrices ({len(result.labels)} labels): --json", highlight=False, markup=False)


if __name__ == "__main__":
    app()
