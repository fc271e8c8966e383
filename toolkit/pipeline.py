"""The main job: profile -> teacher -> distill -> quantize + export -> host checks -> emulator -> bundle + report.

Each stage is a function of the previous stages' outputs; the pipeline only composes them. Work is kept under
``OUT/<profile>/work`` so an interrupted run resumes at the last finished stage (``--overwrite`` starts over). The
bundle an app needs is ``OUT/<profile>/``: ``models/`` (only artifacts that passed every check), ``tokenizer.json``,
``labels.json``, ``manifest.json`` and ``report.html``/``report.md``; artifacts that failed a check are moved to
``rejected/`` and recorded as invalid, and the command exits non-zero.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import platform
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Callable

import numpy as np

from toolkit import __version__
from toolkit import manifest
from toolkit.buckets import bucket_of_rows, shares
from toolkit.checks import compare_logits, gate_against_student, pack_correct
from toolkit.data import DEMO_DEV, DEMO_TRAIN, LabelledData, display_names
from toolkit.distill import REPORT as DISTILL_REPORT
from toolkit.distill import CostPrediction, DistillSettings, distill, release_memory
from toolkit.errors import ToolkitError, raise_if_interrupted
from toolkit.export_workers import ExportJob, export_in_order, export_workers
from toolkit.files import atomic_write_json, sha256_file
from toolkit.labels import LabelMatch, match_labels
from toolkit.manifest import ArtifactRecord, methods_json, specs_json
from toolkit.profiles import Artifact, Profile, Tolerances
from toolkit.registry import get_backend, get_recipe
from toolkit.student import (  # noqa: F401  (encode_for, calibration_inputs: re-exported for benches and tests)
    CALIBRATION_SAMPLES,
    StudentConfig,
    XLNetStudent,
    calibration_inputs,
    encode_for,
    input_specs,
    load_student,
    model_inputs,
    output_specs,
)
from toolkit.teacher import TEACHER_CARD, TeacherInfo, TeacherRecipe, demo_teacher, inspect_teacher
from toolkit.tokenizer import XLNetTextEncoder

MIN_CALIBRATION_SAMPLES = 32  # fewer real samples give int8 ranges that real inputs routinely exceed
EMULATOR_WORKERS = max(1, min(2, os.cpu_count() or 1))  # artifacts emulated at once (one qemu process each)
XLNET_BASE = {"n_layer": 12, "d_model": 768, "n_head": 12, "d_inner": 3072, "vocab_size": 32000}
LIBRARIES = ("torch", "executorch", "torchao", "transformers", "litert-torch", "ai-edge-quantizer", "ai-edge-litert")
Log = Callable[[str], None]


class ExportFailed(RuntimeError):
    """At least one artifact failed a check; the bundle and manifest record which and why."""


@dataclass
class RunSpec:
    """Everything that determines a bundle: changing any of it means a different run."""

    profile: Profile
    train: LabelledData
    dev: LabelledData
    teacher_dir: Path | None = None  # None: the demo teacher
    settings: DistillSettings = field(default_factory=DistillSettings)
    emulate: bool = True
    transfer: list[str] | None = None  # unlabelled texts the teacher labels for distillation (--transfer)


@dataclass(frozen=True)
class Plan:
    """What preflight decided before any slow stage; the stages receive it instead of deciding again."""

    train: LabelledData  # labels are the teacher's output indices (see toolkit/labels.py)
    dev: LabelledData
    labels: LabelMatch
    teacher: TeacherInfo | None  # None: a stand-in teacher is trained on the data in stage 1
    student: StudentConfig  # the shape distillation will choose
    cost: CostPrediction


# ---------------------------------------------------------------------------------------------------------------
# Stages
# ---------------------------------------------------------------------------------------------------------------


def stage_teacher(spec: RunSpec, log: Log) -> tuple[Path, bool]:
    """The teacher folder, and whether it came from the cache (a stand-in teacher is trained once per data set)."""
    if spec.teacher_dir is not None:
        return Path(spec.teacher_dir), False
    from toolkit.files import cache_dir

    before = {p for p in cache_dir("demo-teacher").iterdir() if (p / TEACHER_CARD).is_file()}
    folder = demo_teacher(spec.train, spec.dev, log=log)
    return folder, folder in before


def stage_distill(plan: Plan, spec: RunSpec, teacher_dir: Path, work: Path, log: Log) -> Path:
    """The student folder (resumes an interrupted distillation; skips a finished one)."""
    student_dir = work / "student"
    if distilled_already(student_dir):
        log(f"student already distilled in {student_dir}")
        return student_dir
    distill(teacher_dir, plan.train, plan.dev, spec.profile, student_dir, spec.settings, resume=True, log=log,
            transfer=spec.transfer)
    return student_dir


def qat_candidates(records: list[ArtifactRecord], spec: RunSpec) -> list[str]:
    """The post-training static int8 artifacts that failed their host check, when the profile lets the pipeline
    retrain quantization-aware (``student.auto_qat``) and the user did not choose QAT epochs already."""
    if spec.settings.qat_epochs or not spec.profile.student.auto_qat:
        return []
    return [r.name for r in records if not r.valid and get_recipe(r.format, r.recipe).calibrates]


def stage_qat(plan: Plan, spec: RunSpec, teacher_dir: Path, work: Path, log: Log) -> Path:
    """The distilled student trained one more epoch quantization-aware, from where its distillation ended (its
    checkpoint), in ``work/student-qat``: the student every artifact is then exported from (resumes; skips a
    finished one)."""
    from toolkit.distill import CHECKPOINT
    from toolkit.student import STUDENT_CONFIG, STUDENT_WEIGHTS

    student_dir = work / "student-qat"
    if distilled_already(student_dir):
        log(f"quantization-aware student already trained in {student_dir}")
        return student_dir
    student_dir.mkdir(exist_ok=True)
    if not (student_dir / CHECKPOINT).is_file():  # the best student first: QAT starts from it (the checkpoint last)
        for name in (STUDENT_CONFIG, STUDENT_WEIGHTS, CHECKPOINT):
            tmp = student_dir / (name + ".partial")
            shutil.copy2(work / "student" / name, tmp)
            os.replace(tmp, student_dir / name)
    settings = replace(spec.settings, qat_epochs=1)
    distill(teacher_dir, plan.train, plan.dev, spec.profile, student_dir, settings, resume=True, log=log,
            transfer=spec.transfer)
    return student_dir


def first_round_validity(work: Path) -> dict[str, bool]:
    """Whether each artifact of the post-training round passed its host check (its records in ``work``)."""
    return {path.stem: json.loads(path.read_text())["valid"] for path in sorted((work / "records").glob("*.json"))}


def distilled_already(student_dir: Path) -> bool:
    report_path = student_dir / DISTILL_REPORT
    return report_path.is_file() and bool(json.loads(report_path.read_text()).get("finished"))


@dataclass
class Distilled:
    """The distillation stage's hand-off, loaded once: every later stage receives it instead of reloading."""

    folder: Path
    student: XLNetStudent
    encoder: XLNetTextEncoder
    dev_inputs: list[np.ndarray]  # the exported program's inputs for the whole dev set
    reference: np.ndarray  # the fp32 eager student's dev logits: what every artifact is checked against

    @classmethod
    def load(cls, folder: Path, dev: LabelledData, work: Path) -> "Distilled":
        """Load the student and its encoder; the dev reference logits are computed once and kept in ``work``."""
        from toolkit.student import eager_logits

        student = load_student(folder)
        encoder = XLNetTextEncoder.from_pretrained(folder)
        dev_inputs = encode_for(student, encoder, dev)
        cached = work / "student_dev_logits.npy"
        reference = np.load(cached) if cached.is_file() else None
        if reference is None or len(reference) != len(dev):  # the reference must cover this dev set
            reference = eager_logits(student, dev_inputs)
            np.save(cached, reference)
        return cls(Path(folder), student, encoder, dev_inputs, reference)

    def subset_inputs(self, indices: list[int]) -> list[np.ndarray]:
        return [a[indices] for a in self.dev_inputs]


def run_on_host(record: ArtifactRecord, path: Path, inputs: list[np.ndarray]) -> np.ndarray:
    """Logits from the runtime the artifact ships for, on the host, each example in the bucket an app picks."""
    return manifest.run_on_host(record.to_json(), path, inputs)


def confusion_matrix(logits: np.ndarray, labels: np.ndarray, classes: int) -> list[list[int]]:
    matrix = np.zeros((classes, classes), dtype=int)
    np.add.at(matrix, (labels, logits.argmax(1)), 1)
    return matrix.tolist()


def host_check(record, path, inputs, labels, reference, tolerances: Tolerances) -> dict:
    """Whole dev set through the artifact's runtime vs the fp32 eager student; gated on the profile's tolerances."""
    candidate = run_on_host(record, path, inputs)
    result = compare_logits(f"host {record.runtime} vs eager fp32 student", reference, candidate, labels)
    result = gate_against_student(result, tolerances, get_recipe(record.format, record.recipe).exact)
    result.details.update(kind="host", confusion=confusion_matrix(candidate, labels, reference.shape[1]),
                          correct_bits=pack_correct(candidate.argmax(1) == labels),  # for paired comparisons
                          buckets=bucket_figures(record.lengths, inputs, reference, candidate, labels))
    return {"kind": "host", **result.to_json()}


def bucket_figures(lengths, inputs, reference, candidate, labels) -> list[dict]:
    """Per length bucket: how many examples ran in it, their accuracy and max |logit diff| vs the eager student."""
    picked = bucket_of_rows(inputs, lengths)
    figures = []
    for length in lengths:
        rows = picked == length
        figures.append({
            "sequence_length": int(length),
            "examples": int(rows.sum()),
            "accuracy": float((candidate[rows].argmax(1) == labels[rows]).mean()) if rows.any() else None,
            "max_abs_logit_diff": float(np.abs(candidate[rows] - reference[rows]).max()) if rows.any() else None,
        })
    return figures



def qat_hint(record: ArtifactRecord, check: dict, settings: DistillSettings, auto_qat: bool = False) -> str | None:
    """What to do when a post-training static int8 artifact fails its host check (None otherwise, or when the
    pipeline retrains quantization-aware by itself)."""
    recipe = get_recipe(record.format, record.recipe)
    if check["passed"] or not recipe.calibrates or settings.qat_epochs or auto_qat:
        return None
    others = (", or try the profile recipe " + " or ".join(f"`{name}`" for name in recipe.alternatives)
              if recipe.alternatives else "")
    return (f"{record.name}: post-training static int8 lost accuracy or agreement; `--qat-epochs 1` trains the "
            f"student one more epoch quantization-aware{others} (README, Quantization-aware training)")


def move_into(source: Path, target: Path) -> None:
    """Rename within the bundle (one file system: atomic, so no folder ever holds a half-moved file)."""
    target.parent.mkdir(exist_ok=True)
    os.replace(source, target)


def reject(record: ArtifactRecord, bundle: Path) -> None:
    """Move a failed artifact out of models/ so nothing in the bundle looks valid that is not."""
    source = bundle / record.file
    record.file = f"rejected/{source.name}"
    record.valid = False
    if source.exists():
        move_into(source, bundle / record.file)


def stage_export_and_check(spec, distilled: Distilled, bundle: Path, work: Path, log: Log, timings: dict) -> list:
    """Every artifact of the profile: export, host check on the whole dev set, keep or reject. Resumable per file.

    Artifacts are exported side by side (``toolkit.export_workers``); each is checked as soon as it is written.
    ``timings`` receives the seconds spent exporting (the stage's wall time less the checks) and checking.
    """
    started = time.time()
    student, labels = distilled.student, np.asarray(spec.dev.labels)
    records: dict[str, ArtifactRecord] = {}
    jobs = []
    for artifact in spec.profile.artifacts:
        cached = work / "records" / f"{artifact.name}.json"
        if cached.is_file():
            record = ArtifactRecord(**json.loads(cached.read_text()))
            checked = work / "unchecked" / Path(record.file).name
            if not (bundle / record.file).is_file() and checked.is_file() and sha256_file(checked) == record.sha256:
                move_into(checked, bundle / record.file)  # stopped between writing the record and moving the file
            if (bundle / record.file).is_file() and sha256_file(bundle / record.file) == record.sha256:
                log(f"{artifact.name}: already exported and checked")
                records[artifact.name] = record
                continue
        # Exported and checked in work/; only a checked file reaches models/ (or rejected/), so an interrupted
        # run never leaves an unchecked model where an app would look for one.
        suffix = get_backend(artifact.format).suffix
        jobs.append(ExportJob(artifact, work / "unchecked" / f"{artifact.name}.{suffix}"))
    seed = spec.profile.validation.seed
    calibration = calibration_inputs(student, distilled.encoder, spec.train, seed) if jobs else []
    workers = min(export_workers(), len(jobs))
    if len(jobs) > 1 and workers > 1:
        log(f"exporting {len(jobs)} artifacts, {workers} at a time")
    for job in jobs:
        log(f"{job.artifact.name}: exporting ({job.artifact.runtime}, {job.artifact.delegate})")
    raise_if_interrupted()
    checks_seconds = 0.0
    for job, record in export_in_order(jobs, student, distilled.folder, calibration, bundle, spec.profile.lengths,
                                       workers):
        checking = time.time()
        check = host_check(record, job.path, distilled.dev_inputs, labels, distilled.reference,
                           spec.profile.validation.tolerances)
        checks_seconds += time.time() - checking
        record.checks.append(check)
        record.valid = check["passed"]
        log(f"{record.name}: {record.bytes / 1e6:.2f} MB, host accuracy {check['accuracy']:.4f} "
            f"(student {check['reference_accuracy']:.4f}), agreement {check['argmax_agreement']:.4f} -> "
            + ("PASS" if check["passed"] else "FAIL: " + "; ".join(check["failures"])))
        if hint := qat_hint(record, check, spec.settings, spec.profile.student.auto_qat):
            log(hint)
        staged = bundle / record.file
        record.file = f"{'models' if record.valid else 'rejected'}/{staged.name}"
        atomic_write_json(work / "records" / f"{record.name}.json", record.to_json())  # a file in models/ has one
        move_into(staged, bundle / record.file)
        records[record.name] = record
        raise_if_interrupted()
    timings["host_checks"] += checks_seconds
    timings["export"] += time.time() - started - checks_seconds
    return [records[artifact.name] for artifact in spec.profile.artifacts]


def stage_emulate(spec, records, distilled: Distilled, bundle: Path, work: Path, log: Log) -> None:
    """Each valid artifact on the emulated CPU of the profile (resumable per artifact).

    qemu runs a one-thread inference on one host core, so up to ``EMULATOR_WORKERS`` artifacts are emulated at once
    (each in its own qemu process; instruction counts and cycle estimates do not depend on it).
    """
    from concurrent.futures import ThreadPoolExecutor

    from toolkit.emulate import prepare_device
    from toolkit.validate import validate_artifact, validation_subset

    prepare_device()
    subset = validation_subset(len(spec.dev), spec.profile)
    inputs = distilled.subset_inputs(subset)
    labels = np.asarray(spec.dev.labels)[subset]
    todo = []
    for record in records:
        if not record.valid:
            continue
        cached = work / "emulator" / f"{record.name}.json"
        if cached.is_file():
            saved = json.loads(cached.read_text())
            if saved["sha256"] == record.sha256:
                record.checks.append(saved["check"])
                record.emulator = saved["emulator"]
                record.valid = saved["check"]["passed"]
                continue
        todo.append(record)
    if not todo:
        return
    workers = min(EMULATOR_WORKERS, len(todo))
    log(f"{len(todo)} artifacts x {len(subset)} dev samples on emulated {spec.profile.device.qemu_cpu} "
        f"({workers} at a time)")
    lengths = spec.profile.lengths
    eval_shares = shares(bucket_of_rows(distilled.dev_inputs, lengths), lengths)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(validate_artifact, record.to_json(), bundle, spec.profile, inputs, labels,
                               distilled.reference[subset], eval_shares) for record in todo]
        for record, future in zip(todo, futures):  # results in the profile's order
            outcome = future.result()
            check = {"kind": "emulator", **outcome.check.to_json()}
            record.checks.append(check)
            record.emulator = outcome.emulator
            atomic_write_json(work / "emulator" / f"{record.name}.json",
                              {"sha256": record.sha256, "check": check, "emulator": outcome.emulator})
            threads = outcome.emulator.get("threads")
            log(f"{record.name} ({record.runtime}): {outcome.check.summary()}; "
                f"{outcome.emulator['instructions_per_inference']:,} instructions/inference -> "
                f"~{outcome.emulator['estimated_latency_ms']:.2f} ms on 1 thread "
                f"({outcome.emulator.get('estimate_method', 'instructions')} estimate)"
                + (f", ~{threads['estimated_latency_ms']:.2f} ms on {spec.profile.device.threads} threads" if threads else "")
                + (f"; over the dev set's lengths ~{outcome.emulator['expected_latency_ms']:.2f} ms on 1 thread"
                   if outcome.emulator.get("expected_latency_ms") else ""))
            if not check["passed"]:
                reject(record, bundle)


def stage_selftest(spec, plan: Plan, records, distilled: Distilled, bundle: Path) -> dict:
    """selftest.json: golden dev texts, their ids and each valid artifact's host logits (toolkit/selftest.py)."""
    from toolkit.selftest import build_selftest, golden_indices, write_selftest
    from toolkit.validate import validation_subset

    subset = validation_subset(len(spec.dev), spec.profile)  # the emulator's subset: the int8 step is measured on it
    golden = spec.dev.subset(golden_indices(spec.dev.labels, subset))
    document = build_selftest(
        bundle, [r.to_json() for r in records], distilled.encoder, distilled.student.config, golden.texts,
        golden.pairs, [plan.labels.names[i] for i in golden.labels], spec.profile.validation.tolerances,
        step_inputs=distilled.subset_inputs(subset), lengths=spec.profile.lengths,
    )
    return write_selftest(bundle, document)


# ---------------------------------------------------------------------------------------------------------------
# Bundle + manifest
# ---------------------------------------------------------------------------------------------------------------


def library_versions() -> dict[str, str]:
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def xlnet_parameters(n_layer, d_model, d_inner, vocab_size, num_labels=2, **_) -> int:
    from toolkit.distill import layer_parameters

    return vocab_size * d_model + n_layer * layer_parameters(d_model, d_inner) + d_model * d_model + d_model + (
        d_model * num_labels + num_labels
    ) + d_model  # + mask_emb


def data_entry(data: LabelledData) -> dict:
    path = Path(data.source.split("[")[0])
    return {
        "path": data.source,
        "sha256": sha256_file(path) if path.is_file() else "0" * 64,
        "examples": len(data),
        "label_counts": data.counts(),
    }


def teacher_entry(info: TeacherInfo, fingerprint: str, parameters: int, dev_accuracy: float, labels: LabelMatch):
    """The manifest's teacher section: where it came from, its shape, tokenizer and how labels were matched."""
    return {
        "path": str(info.folder),
        "fingerprint": fingerprint,
        "parameters": parameters,
        "bytes_fp32": 4 * parameters,
        "dev_accuracy": dev_accuracy,
        "config": info.shape,
        "tokenizer": info.tokenizer_source,
        "stand_in": info.stand_in,
        "label_match": labels.to_json(),
    }


def student_entry(config: StudentConfig, distilled: dict) -> dict:
    return {
        "config": asdict(config),
        "parameters": distilled["student_parameters"],
        "bytes_fp32": distilled["student_bytes_fp32"],
        "dev_accuracy": distilled["student_dev_accuracy"],
        "retention": distilled["retention"],
        "distill": {k: distilled[k] for k in ("history", "vocab", "wall_seconds", "init", "predicted", "settings")}
        | {k: distilled[k] for k in ("agreement", "training_examples", "epochs_run", "qat_from_epoch",
                                     "agreement_with_float") if k in distilled}  # fmt: skip
        | ({"sizing": distilled["sizing"]} if "sizing" in distilled else {}),  # how choose_shape sized it
    }


def build_manifest(spec, teacher: dict, student: dict, tokenizer: dict, labels, records, stages) -> dict:
    """The manifest from its parts; preflight builds one from predictions and validates it before any slow stage."""
    base_parameters = xlnet_parameters(**XLNET_BASE)
    return {
        "schema_version": 1,
        "created": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "toolkit": {"version": __version__, "libraries": library_versions(), "python": platform.python_version()},
        "profile": spec.profile.model_dump(mode="json"),
        "teacher": teacher,
        "data": {"train": data_entry(spec.train), "eval": data_entry(spec.dev)},
        "labels": labels,
        "tokenizer": tokenizer,
        "student": student,
        "reference_sizes": {"xlnet_base_parameters": base_parameters, "xlnet_base_bytes_fp32": 4 * base_parameters},
        "artifacts": [r.to_json() for r in records],
        "validation": {
            "passed": all(r.valid for r in records),
            "validated": [
                f"{r.name}: host {r.runtime} on all {len(spec.dev)} dev examples"
                + (f"; emulated {r.emulator['cpu']} on {r.emulator['samples']} of them" if r.emulator else "")
                for r in records
            ],
            "not_validated": _not_validated(spec),
        },
        "stages": stages,
        "total_seconds": round(sum(s["seconds"] for s in stages.values()), 1),
    }


def final_manifest(spec, plan: Plan, teacher_dir, student: Distilled, records, stages, tokenizer_path) -> dict:
    """The manifest of a finished run, from the distillation report, the student's config and the records."""
    config = student.student.config
    distilled = json.loads((student.folder / DISTILL_REPORT).read_text())
    info = plan.teacher or inspect_teacher(teacher_dir, stand_in=True)
    fingerprint = hashlib.sha256(
        "".join(sha256_file(p) for p in sorted(Path(teacher_dir).glob("*.safetensors"))).encode()
    ).hexdigest()
    tokenizer = {
        "file": tokenizer_path.name,
        "sha256": sha256_file(tokenizer_path),
        "vocab_size": config.vocab_size,
        "trimmed_from": distilled["vocab"]["teacher"],
    }
    teacher = teacher_entry(
        info, fingerprint, distilled["teacher_parameters"], distilled["teacher_dev_accuracy"], plan.labels
    )
    return build_manifest(spec, teacher, student_entry(config, distilled), tokenizer,
                          plan.labels.names, records, stages)


def draft_manifest(spec, plan: Plan) -> dict:
    """The manifest this run will write, with predicted figures and placeholder digests (preflight validates it)."""
    zero = "0" * 64
    info = plan.teacher or TeacherInfo(Path("stand-in teacher"), _stand_in_config(spec, plan), "bundled", True)
    teacher_params = xlnet_parameters(**info.shape, num_labels=len(plan.labels.names))
    distilled = {
        "student_parameters": plan.cost.parameters,
        "student_bytes_fp32": plan.cost.bytes_fp32,
        "student_dev_accuracy": 0.0,
        "retention": 0.0,
        "history": [],
        "vocab": {"teacher": info.shape["vocab_size"], "student": plan.student.vocab_size},
        "wall_seconds": 0.0,
        "init": {},
        "predicted": asdict(plan.cost),
        "settings": asdict(spec.settings),
    }
    records = [
        ArtifactRecord(
            name=a.name, file=f"models/{a.name}.{a.format}", format=a.format, recipe=a.recipe, runtime=a.runtime,
            delegate=a.delegate, sha256=zero, bytes=1, inputs=specs_json(input_specs(plan.student)),
            outputs=specs_json(output_specs(plan.student)), methods=methods_json(plan.student, spec.profile.lengths),
        )
        for a in spec.profile.artifacts
    ]
    tokenizer = {"file": "tokenizer.json", "sha256": zero, "vocab_size": plan.student.vocab_size,
                 "trimmed_from": info.shape["vocab_size"]}
    teacher = teacher_entry(info, zero, teacher_params, 0.0, plan.labels)
    stages = {name: {"seconds": 0.0} for name in ("teacher", "distill", "export", "host_checks", "bundle")}
    stages["teacher"]["cached"] = False
    stages["emulator"] = {"seconds": 0.0, "skipped": not spec.emulate}
    return build_manifest(spec, teacher, student_entry(plan.student, distilled), tokenizer, plan.labels.names,
                          records, stages)


def _not_validated(spec: RunSpec) -> list[str]:
    from toolkit.validate import not_validated_statements

    statements = not_validated_statements(spec.profile)
    if not spec.emulate:
        statements.insert(0, "Emulator validation was skipped (--no-emulate): artifacts were checked on the host only.")
    return statements


def run_fingerprint(spec: RunSpec) -> str:
    parts = {
        "profile": spec.profile.model_dump(mode="json"),
        "train": data_entry(spec.train),
        "dev": data_entry(spec.dev),
        "teacher": str(spec.teacher_dir),
        "settings": asdict(spec.settings),
    }
    if spec.transfer:  # (absent without it, so the fingerprints of runs without transfer text stay as they were)
        parts["transfer"] = hashlib.sha256("\n".join(spec.transfer).encode()).hexdigest()[:16]
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


class OutputFolderError(ToolkitError, ValueError):
    """The output folder holds something this run must not overwrite or mix with."""


def prepare_out_dir(spec: RunSpec, bundle: Path, overwrite: bool) -> Path:
    """The work folder. Resumes an unfinished run of the same inputs; refuses to overwrite or mix anything else.

    A bundle is finished once its manifest.json exists (written last, after every check): replacing it needs
    ``overwrite``. An unfinished run with other inputs, or a folder the toolkit did not write, is refused too.
    """
    work = bundle / "work"
    marker = work / "run.json"
    if overwrite and bundle.exists():
        shutil.rmtree(bundle)
    if (bundle / "manifest.json").is_file():
        raise OutputFolderError(
            f"{bundle} already holds a finished bundle (manifest.json); pass --overwrite to replace it, "
            "or choose another --out"
        )
    if bundle.is_dir() and any(bundle.iterdir()) and not marker.is_file():
        raise OutputFolderError(
            f"{bundle} is not empty and was not written by `toolkit export`; choose another --out "
            "(or pass --overwrite to delete its contents)"
        )
    fingerprint = run_fingerprint(spec)
    if marker.is_file() and json.loads(marker.read_text())["fingerprint"] != fingerprint:
        raise OutputFolderError(
            f"{bundle} holds an unfinished run with a different profile, data, teacher or settings; "
            "use another --out, or pass --overwrite to discard it"
        )
    work.mkdir(parents=True, exist_ok=True)
    for leftover in bundle.rglob("*.partial"):  # temporaries of writes a kill interrupted; never valid
        leftover.unlink()
    atomic_write_json(marker, {"fingerprint": fingerprint})
    return work


class PreflightError(ToolkitError, ValueError):
    """The profile and inputs cannot produce a valid bundle; found before any slow stage runs."""


def preflight(spec: RunSpec) -> Plan:
    """Refuse, before minutes of distillation, what a later stage would refuse anyway; return what was decided.

    Checks: recipes the device runtime runs wrongly, delegate rules, calibration data, the teacher folder (config,
    weights present, tokenizer), the label match, a student shape within the budgets, the manifest this run would
    write (schema and cross-field rules, with predicted figures), and the emulator tools.
    """
    from transformers import XLNetConfig

    from toolkit.distill import MAX_PARAM_RATIO, choose_shape, trim_vocabulary
    from toolkit.manifest_schema import validate_manifest
    from toolkit.rules import student_problems
    from toolkit.teacher import is_stand_in, load_encoder, resolve_precision

    problems = []
    student = spec.profile.student
    for artifact in spec.profile.artifacts:
        # (the format/recipe/runtime/delegate rules were checked when the profile was loaded)
        problems += [f"{artifact.name}: {problem}" for problem in student_problems(
            artifact.delegate, student.activations, student.normalisations, student.mask_input)]
        if get_recipe(artifact.format, artifact.recipe).calibrates and len(spec.train) < MIN_CALIBRATION_SAMPLES:
            problems.append(
                f"{artifact.name} calibrates int8 ranges on training samples: it needs at least "
                f"{MIN_CALIBRATION_SAMPLES}, the training data has {len(spec.train)}"
            )
    if problems:
        raise PreflightError(f"profile '{spec.profile.name}' cannot be exported as asked:\n  " + "\n  ".join(problems))

    resolve_precision(spec.settings.teacher_precision)  # a bad value is refused here, not after the teacher stage
    from toolkit.prune import ROUTES

    if spec.settings.route not in ROUTES:
        raise PreflightError(f"route '{spec.settings.route}': choose one of {list(ROUTES)}")
    if spec.teacher_dir is not None:
        info = inspect_teacher(spec.teacher_dir, stand_in=is_stand_in(spec.teacher_dir))
        teacher_config = XLNetConfig.from_dict(info.config)
        encoder, _ = load_encoder(info.folder, vocab_size=info.shape["vocab_size"])
        labels = match_labels(info.label_names, spec.train.label_names, str(info.folder))
    else:
        info = None
        teacher_config = XLNetConfig.from_dict(_stand_in_config(spec))
        encoder = XLNetTextEncoder()
        labels = match_labels(display_names(spec.train), spec.train.label_names, "the stand-in teacher")
    train, dev = labels.apply(spec.train), labels.apply(spec.dev)
    if spec.transfer and train.pairs is not None:
        raise PreflightError("transfer text is one text per row; this task classifies text pairs: drop --transfer")
    vocab = trim_vocabulary(encoder, train, spec.settings.vocab_min_count, spec.transfer)
    teacher_parameters = xlnet_parameters(
        teacher_config.n_layer, teacher_config.d_model, teacher_config.d_inner, teacher_config.vocab_size,
        len(labels.names),
    )
    config, cost = choose_shape(spec.profile, teacher_config, len(vocab.kept_ids),
                                int(teacher_parameters * MAX_PARAM_RATIO))
    config = replace(config, uses_pairs=train.pairs is not None, dropout=teacher_config.dropout,
                     labels=list(labels.names))
    plan = Plan(train, dev, labels, info, config, cost)
    validate_manifest(draft_manifest(spec, plan), source="the manifest this run would write")
    if spec.emulate:
        from toolkit.emulate import require_tools

        require_tools()
    return plan


def _stand_in_config(spec: RunSpec, plan: Plan | None = None) -> dict:
    """config.json of the stand-in teacher stage 1 trains when no --teacher is given."""
    from toolkit.teacher import recipe_config

    return recipe_config(TeacherRecipe(), plan.labels.names if plan else display_names(spec.train)).to_dict()


def export_bundle(spec: RunSpec, out_dir: Path, overwrite: bool = False, log: Log = print) -> dict:
    """Run every stage for one profile; returns the manifest (raises ExportFailed after writing it, on failure)."""
    plan = preflight(spec)
    if plan.teacher is not None and plan.teacher.tokenizer_source == "bundled":
        log(f"tokenizer: {plan.teacher.folder} has no tokenizer files; using the bundled xlnet-base-cased vocabulary "
            "(recorded in the manifest)")
    if plan.labels.rule != "by name" or plan.labels.names != spec.train.label_names:
        log(plan.labels.describe())
    bundle = Path(out_dir) / spec.profile.name
    work = prepare_out_dir(spec, bundle, overwrite)
    staged = replace(spec, train=plan.train, dev=plan.dev)  # the data as the teacher's output indices
    stages: dict[str, dict] = {}
    names = ["teacher", "distill", "export + host checks", "emulator", "bundle + report"]

    def timed(index: int, name: str):
        raise_if_interrupted()
        log(f"[{index}/{len(names)}] {name}")
        return time.time()

    start_first_run_builds(spec)
    started = timed(1, names[0])
    teacher_dir, cached = stage_teacher(spec, log)
    stages["teacher"] = {"seconds": round(time.time() - started, 1), "cached": cached}

    started = timed(2, names[1])
    student_dir = stage_distill(plan, spec, teacher_dir, work, log)
    release_memory()  # the teacher's memory goes back to the OS before the exporters need theirs
    stages["distill"] = {"seconds": round(time.time() - started, 1)}

    timed(3, names[2])
    timings = {"export": 0.0, "host_checks": 0.0}
    round_work, failed = work, []
    qat_done = distilled_already(work / "student-qat")  # a run resumed after the QAT retry skips the first round
    if not qat_done:
        distilled = Distilled.load(student_dir, staged.dev, work)
        records = stage_export_and_check(staged, distilled, bundle, work, log, timings)
        failed = qat_candidates(records, staged)
    if qat_done or failed:
        # Post-training static int8 lost too much: one quantization-aware epoch, then every artifact again from
        # that student (the bundle holds one student). The first round's files wait in work/unchecked, where
        # stage_export_and_check takes them back from if the quantization-aware round fails as often.
        started = time.time()
        if failed:
            log(f"{', '.join(failed)}: post-training int8 lost accuracy or agreement beyond the profile's "
                "tolerances; training the student one more epoch quantization-aware (profile: student.auto_qat)")
            for record in records:
                move_into(bundle / record.file, work / "unchecked" / Path(record.file).name)
        student_dir = stage_qat(plan, spec, teacher_dir, work, log)
        release_memory()
        stages["qat"] = {"seconds": round(time.time() - started, 1), "kept": True}
        round_work = work / "qat"  # this round's records, reference logits and emulator results
        round_work.mkdir(exist_ok=True)
        distilled = Distilled.load(student_dir, staged.dev, round_work)
        records = stage_export_and_check(staged, distilled, bundle, round_work, log, timings)
        first_failures = [name for name, valid in first_round_validity(work).items() if not valid]
        still = [r.name for r in records if not r.valid]
        if still and len(still) >= len(first_failures):
            log(f"{', '.join(still)}: still outside the tolerances after quantization-aware training; the bundle "
                "keeps the post-training student and its artifacts")
            for record in records:
                move_into(bundle / record.file, round_work / "unchecked" / Path(record.file).name)
            stages["qat"]["kept"] = False
            round_work = work
            distilled = Distilled.load(work / "student", staged.dev, work)
            records = stage_export_and_check(staged, distilled, bundle, work, log, timings)
    stages.update({name: {"seconds": round(seconds, 1)} for name, seconds in timings.items()})

    started = timed(4, names[3])
    if spec.emulate:
        stage_emulate(staged, records, distilled, bundle, round_work, log)
    stages["emulator"] = {"seconds": round(time.time() - started, 1), "skipped": not spec.emulate}

    started = timed(5, names[4])
    tokenizer_path = distilled.encoder.export_portable(bundle / "tokenizer.json",
                                                       seq_len=distilled.student.config.seq_len,
                                                       lengths=spec.profile.lengths)
    atomic_write_json(bundle / "labels.json", plan.labels.names)
    selftest = stage_selftest(staged, plan, records, distilled, bundle)
    stages["bundle"] = {"seconds": round(time.time() - started, 1)}
    manifest = final_manifest(spec, plan, teacher_dir, distilled, records, stages, tokenizer_path)
    manifest["selftest"] = selftest
    raise_if_interrupted()  # the manifest marks the bundle finished: never after a swallowed Ctrl-C
    write_manifest_and_report(manifest, bundle)
    if not manifest["validation"]["passed"]:
        failed = [r.name for r in records if not r.valid]
        raise ExportFailed(f"{spec.profile.name}: artifacts failed their checks: {failed} (see {bundle}/report.html)")
    return manifest


def start_first_run_builds(spec: RunSpec) -> None:
    """Build what later stages need once per machine (the emulated device, a runtime's host environment) in a
    background thread while the teacher and the student train: on a fresh clone ~30 s of mostly disk and pip. Each
    builder holds a lock (toolkit.files.build_lock), so a stage that needs one sooner waits for it; an error is
    raised again by the stage that needs it."""
    import threading

    from toolkit.emulate import prepare_device

    host_runtimes = sorted({(artifact.format, artifact.runtime) for artifact in spec.profile.artifacts})
    builds = [partial(get_backend(fmt).prepare_host, runtime) for fmt, runtime in host_runtimes]
    builds += [prepare_device] if spec.emulate else []

    def build_all() -> None:
        for build in builds:
            try:
                build()
            except Exception:  # noqa: BLE001 - the stage that needs it builds it again and reports the error
                pass

    threading.Thread(target=build_all, name="first-run-builds", daemon=True).start()


def write_manifest_and_report(manifest: dict, bundle: Path) -> None:
    """Validate the manifest against its schema, write the report, then the manifest (the completion mark)."""
    from toolkit.manifest_schema import validate_manifest
    from toolkit.report import write_report

    validate_manifest(manifest)
    write_report(manifest, bundle)
    atomic_write_json(bundle / "manifest.json", manifest)  # last: its presence marks the bundle finished


def default_data():
    from toolkit.data import load_labelled

    train = load_labelled(DEMO_TRAIN)
    return train, load_labelled(DEMO_DEV, label_names=train.label_names)


def validate_existing_bundle(bundle: Path, profile: Profile, eval_path: Path | None, log: Log = print) -> dict:
    """``toolkit validate``: rerun the emulator stage on a bundle's artifacts and rewrite its manifest and report."""
    from toolkit.data import load_labelled

    from toolkit.files import inside
    from toolkit.manifest_schema import load_manifest

    bundle = Path(bundle)
    manifest = load_manifest(bundle / "manifest.json")
    for entry in manifest["artifacts"]:
        inside(bundle, entry["file"])  # a manifest must not point the toolkit at files outside its bundle
    labels = list(manifest["data"]["train"]["label_counts"])
    recorded = Path(manifest["data"]["eval"]["path"])
    dev = load_labelled(eval_path or (recorded if recorded.is_file() else DEMO_DEV), label_names=labels)
    match = manifest["teacher"].get("label_match")
    if match:  # the data's labels as the teacher's output indices, as the export matched them
        dev = LabelMatch(manifest["labels"], match["data_to_output"], match["rule"]).apply(dev)
    work = bundle / "work"
    student_dir = work / "student"
    if not student_dir.is_dir():
        raise OutputFolderError(f"{bundle}: no work/student folder (the bundle was not written by `toolkit export`)")
    shutil.rmtree(work / "emulator", ignore_errors=True)  # validate means: run again
    records = []
    for entry in manifest["artifacts"]:
        record = ArtifactRecord(**entry)
        record.checks = [c for c in record.checks if c.get("kind") != "emulator"]
        record.emulator = None
        if record.valid and sha256_file(bundle / record.file) != record.sha256:
            record.checks.append({
                "kind": "emulator", "name": "file integrity", "samples": 0, "accuracy": None,
                "reference_accuracy": None, "argmax_agreement": 0.0, "max_abs_logit_diff": 0.0, "passed": False,
                "failures": [f"{record.file} does not match the manifest's sha256 (corrupted or replaced)"],
                "details": {},
            })
            reject(record, bundle)
        records.append(record)
    distilled = Distilled.load(student_dir, dev, work)  # the reference must cover this eval set
    spec = RunSpec(profile, dev, dev)
    started = time.time()
    stage_emulate(spec, records, distilled, bundle, work, log)
    manifest["artifacts"] = [r.to_json() for r in records]
    manifest["validation"]["passed"] = all(r.valid for r in records)
    manifest["stages"]["emulator"] = {"seconds": round(time.time() - started, 1), "skipped": False}
    write_manifest_and_report(manifest, bundle)
    return manifest
