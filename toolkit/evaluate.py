"""``toolkit evaluate BUNDLE --data FILE``: a finished bundle's artifacts on the user's own labelled data.

Every valid artifact of the bundle runs the whole file on the host with the runtime it ships for (the same calls as the
export's host checks: :func:`toolkit.pipeline.run_on_host`), and the bundle's fp32 eager student runs it too. For each
the result holds accuracy, macro-F1, the confusion matrix (rows = true label, columns = predicted) and its argmax
agreement with the fp32 student; ``emulate=N`` also runs a seeded subset of N rows on the emulated CPU of the bundle's
profile (:func:`toolkit.validate.validate_artifact`, as the export's emulator stage does).

The data's labels are matched to the bundle's outputs as the export matched the training data's
(``manifest.teacher.label_match``); the bundle's own label names are accepted too. A label the bundle does not know,
a missing column or a pair column the bundle does not expect is refused with a message (:class:`EvaluateError`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from toolkit.checks import compare_logits
from toolkit.data import Columns, LabelledData, load_labelled
from toolkit.errors import ToolkitError
from toolkit.files import inside, sha256_file

Log = Callable[[str], None]


class EvaluateError(ToolkitError, ValueError):
    """The bundle or the data cannot be evaluated as given; the message says why and what to do."""


@dataclass
class EmulatedResult:
    """A seeded subset of the data on the emulated device vs the same runtime on the host."""

    cpu: str
    samples: int
    accuracy: float | None
    host_accuracy: float  # the host runtime on the same samples
    agreement_with_host: float
    max_abs_logit_diff: float
    passed: bool  # within the profile's emulator tolerances
    failures: list[str]
    instructions_per_inference: int | None
    estimated_latency_ms: float | None  # an ESTIMATE from the instruction count


@dataclass
class ModelResult:
    """One model (an artifact, or the fp32 eager student) on the whole data file."""

    name: str
    runtime: str
    file: str | None  # None for the eager student
    accuracy: float | None  # None when the model produced NaN/inf logits
    macro_f1: float | None
    confusion: list[list[int]]  # [true label][predicted label]
    agreement_with_student: float  # share of rows where its argmax equals the fp32 student's (1.0 for the student)
    max_abs_logit_diff: float  # vs the fp32 student
    emulated: EmulatedResult | None = None


@dataclass
class Evaluation:
    """``toolkit evaluate``'s result (``--json`` prints :meth:`to_json`)."""

    bundle: str
    profile: str
    data: str
    examples: int
    skipped_rows: int
    labels: list[str]  # the bundle's label names, in output order (the confusion matrices' order)
    label_counts: dict[str, int]
    student: ModelResult
    artifacts: list[ModelResult]
    not_evaluated: list[str] = field(default_factory=list)  # artifacts the export rejected

    def to_json(self) -> dict:
        return asdict(self)


def macro_f1(confusion: np.ndarray | list) -> float:
    """Unweighted mean of the per-label F1 over labels that occur in the data or the predictions.

    F1 of a label is 2·TP / (2·TP + FP + FN); a label never true and never predicted is left out (sklearn's
    ``f1_score(average="macro")`` over the labels present).
    """
    matrix = np.asarray(confusion, dtype=np.int64)
    tp = np.diag(matrix)
    fp = matrix.sum(axis=0) - tp
    fn = matrix.sum(axis=1) - tp
    present = (matrix.sum(axis=0) + matrix.sum(axis=1)) > 0
    if not present.any():
        return 0.0
    f1 = 2 * tp[present] / (2 * tp[present] + fp[present] + fn[present])
    return float(f1.mean())


def confusion_matrix(predicted: np.ndarray, labels: np.ndarray, classes: int) -> list[list[int]]:
    matrix = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(matrix, (labels, predicted), 1)
    return matrix.tolist()


# ---------------------------------------------------------------------------------------------------------------
# Opening the bundle and the data
# ---------------------------------------------------------------------------------------------------------------


def open_bundle(bundle: Path) -> dict:
    """The bundle's validated manifest; refuses folders that are not finished bundles or point outside themselves."""
    from toolkit.manifest_schema import load_manifest

    bundle = Path(bundle)
    if not (bundle / "manifest.json").is_file():
        raise EvaluateError(f"{bundle}: no manifest.json; give a bundle folder written by `toolkit export` (OUT/<profile>)")
    manifest = load_manifest(bundle / "manifest.json")
    for entry in manifest["artifacts"]:
        inside(bundle, entry["file"])
    if not (bundle / "work" / "student").is_dir():
        raise EvaluateError(
            f"{bundle}: no work/student folder (the fp32 student and the host tokenizer the export kept); evaluate "
            "the bundle folder `toolkit export` wrote, not a copy of models/ only"
        )
    return manifest


def label_index(manifest: dict) -> dict[str, int]:
    """Every label name the bundle accepts in data files -> its output index.

    The training data's names as the export matched them (``teacher.label_match``), then the bundle's label names.
    """
    names = list(manifest["labels"])
    accepted: dict[str, int] = {}
    match = manifest["teacher"].get("label_match")
    if match:
        accepted.update(match["data_to_output"])
    else:  # manifests before label matching: the training labels were the output indices, in order
        accepted.update({name: i for i, name in enumerate(manifest["data"]["train"]["label_counts"])})
    for i, name in enumerate(names):
        accepted.setdefault(name, i)
    return accepted


def load_eval_data(path: Path, columns: Columns, skip_bad_rows: bool, manifest: dict) -> LabelledData:
    """The file's rows with labels as the bundle's output indices (refusing labels the bundle does not know)."""
    uses_pairs = bool(manifest["student"]["config"].get("uses_pairs"))
    if uses_pairs and not columns.pair:
        raise EvaluateError(
            f"this bundle classifies text pairs; name the column of the second text with --pair-column "
            f"(the first is --text-column, now '{columns.text}')"
        )
    if columns.pair and not uses_pairs:
        raise EvaluateError(f"this bundle classifies single texts; drop --pair-column {columns.pair}")
    data = load_labelled(path, columns, skip_bad_rows=skip_bad_rows)
    accepted = label_index(manifest)
    folded = {}
    for name, index in accepted.items():
        folded.setdefault(name.casefold(), index)
    mapping = {}
    unknown = []
    for name in data.label_names:
        index = accepted.get(name, folded.get(name.casefold()))
        if index is None:
            unknown.append(name)
        else:
            mapping[name] = index
    if unknown:
        shown = sorted(accepted)
        raise EvaluateError(
            f"{path}: labels {unknown[:10]} are not labels of this bundle; it knows {shown[:20]}"
            + (f" ... ({len(shown)} names)" if len(shown) > 20 else "")
            + f" (outputs {list(manifest['labels'])[:20]}); check --label-column ('{columns.label}') and the file"
        )
    names = list(manifest["labels"])
    return LabelledData(
        texts=data.texts,
        pairs=data.pairs,
        labels=[mapping[data.label_names[i]] for i in data.labels],
        label_names=names,
        source=data.source,
        skipped=data.skipped,
    )


# ---------------------------------------------------------------------------------------------------------------
# Evaluating
# ---------------------------------------------------------------------------------------------------------------


def _model_result(name: str, runtime: str, file: str | None, logits, labels, reference, classes: int) -> ModelResult:
    check = compare_logits(name, reference, logits, labels)
    finite = bool(np.all(np.isfinite(logits)))
    confusion = confusion_matrix(np.asarray(logits).argmax(1), labels, classes) if finite else []
    return ModelResult(
        name=name,
        runtime=runtime,
        file=file,
        accuracy=check.accuracy,
        macro_f1=macro_f1(confusion) if finite else None,
        confusion=confusion,
        agreement_with_student=check.argmax_agreement,
        max_abs_logit_diff=check.max_abs_logit_diff,
    )


def evaluate_bundle(
    bundle: Path,
    data_path: Path,
    columns: Columns | None = None,
    skip_bad_rows: bool = False,
    emulate: int = 0,
    log: Log = print,
) -> Evaluation:
    """Every valid artifact of ``bundle`` and its fp32 student on ``data_path`` (see the module doc)."""
    from toolkit.manifest import ArtifactRecord
    from toolkit.pipeline import encode_for, run_on_host
    from toolkit.student import eager_logits, load_student
    from toolkit.tokenizer import XLNetTextEncoder

    bundle = Path(bundle)
    if emulate < 0:
        raise EvaluateError(f"--emulate takes a number of rows (0 = off), not {emulate}")
    manifest = open_bundle(bundle)
    data = load_eval_data(Path(data_path), columns or Columns(), skip_bad_rows, manifest)
    log(f"data {data.source}: {len(data)} examples ({', '.join(f'{k}: {v}' for k, v in data.counts().items())})"
        + (f", {len(data.skipped)} bad rows skipped" if data.skipped else ""))  # fmt: skip
    student_dir = bundle / "work" / "student"
    student = load_student(student_dir)
    encoder = XLNetTextEncoder.from_pretrained(student_dir)
    inputs = encode_for(student, encoder, data)
    labels = np.asarray(data.labels)
    classes = len(manifest["labels"])
    reference = eager_logits(student, inputs)
    student_result = _model_result("student (fp32, eager)", "torch", None, reference, labels, reference, classes)

    valid = [a for a in manifest["artifacts"] if a["valid"]]
    not_evaluated = [f"{a['name']}: not valid in this bundle ({a['file']})" for a in manifest["artifacts"]
                     if not a["valid"]]  # fmt: skip
    if not valid:
        raise EvaluateError(f"{bundle}: no valid artifact to evaluate (every one failed a check at export)")
    results = []
    for entry in valid:
        path = inside(bundle, entry["file"])
        if not path.is_file():
            raise EvaluateError(f"{bundle}: {entry['file']} is missing; the bundle is incomplete")
        if sha256_file(path) != entry["sha256"]:
            raise EvaluateError(
                f"{bundle}: {entry['file']} does not match the manifest's sha256 (corrupted or replaced); "
                "re-export the bundle, or run `toolkit validate` to record it"
            )
        log(f"{entry['name']}: {len(data)} examples on the host ({entry['runtime']})")
        logits = run_on_host(ArtifactRecord(**entry), path, inputs)
        results.append(_model_result(entry["name"], entry["runtime"], entry["file"], logits, labels, reference, classes))

    if emulate:
        _emulate(manifest, bundle, valid, results, inputs, labels, reference, emulate, log)
    return Evaluation(
        bundle=str(bundle),
        profile=manifest["profile"]["name"],
        data=data.source,
        examples=len(data),
        skipped_rows=len(data.skipped),
        labels=list(manifest["labels"]),
        label_counts=data.counts(),
        student=student_result,
        artifacts=results,
        not_evaluated=not_evaluated,
    )


def _emulate(manifest, bundle, entries, results, inputs, labels, reference, rows: int, log: Log) -> None:
    """A seeded subset of ``rows`` rows of every artifact on the profile's emulated CPU (fills ``.emulated``)."""
    from toolkit.emulate import prepare_device, require_tools
    from toolkit.profiles import Profile
    from toolkit.validate import validate_artifact, validation_subset

    profile = Profile.model_validate(manifest["profile"])
    profile = profile.model_copy(
        update={"validation": profile.validation.model_copy(update={"emulator_samples": rows})}
    )
    require_tools()
    prepare_device()
    subset = validation_subset(len(labels), profile)
    sub_inputs = [a[subset] for a in inputs]
    for entry, result in zip(entries, results):
        log(f"{entry['name']}: {len(subset)} examples on emulated {profile.device.qemu_cpu} ({entry['runtime']})")
        outcome = validate_artifact(entry, bundle, profile, sub_inputs, labels[subset], reference[subset])
        check, run = outcome.check, outcome.emulator
        result.emulated = EmulatedResult(
            cpu=run["cpu"],
            samples=len(subset),
            accuracy=check.accuracy,
            host_accuracy=check.details["host_accuracy"],
            agreement_with_host=check.argmax_agreement,
            max_abs_logit_diff=check.max_abs_logit_diff,
            passed=check.passed,
            failures=list(check.failures),
            instructions_per_inference=run["instructions_per_inference"],
            estimated_latency_ms=run["estimated_latency_ms"],
        )
