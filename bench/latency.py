"""Single-thread latency, side by side: the XLNet teacher, the student eager, its .pte programs, and ONNX Runtime int8.

Everything runs in ONE process on ONE thread (torch, ExecuTorch's threadpool / XNNPACK, ORT intra-op), batch 1, at
the profile's sequence length; each figure is the median of many timed runs after a warm-up. The table is printed
and written to BENCHMARKS.md between ``<!-- latency:begin -->`` and ``<!-- latency:end -->`` (other benches keep
their own sections of that file). A second table gives each int8 program's agreement with the fp32 eager student.

    python bench/latency.py                                  # random students/teacher of the default shapes
    python bench/latency.py --student out/student --teacher out/teacher

Adding a contestant (e.g. a .tflite on ai-edge-litert) = one builder returning a :class:`Contestant`, listed in
:func:`contestants`.
"""

from __future__ import annotations

import argparse
import platform
import re
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_section  # noqa: E402

from toolkit.checks import compare_logits
from toolkit.export_pte import export_pte, load_pte_method, set_pte_threads
from toolkit.files import PROJECT_ROOT
from toolkit.profiles import Artifact
from toolkit.student import (
    eager_logits,
    FixedLengthClassifier,
    StudentConfig,
    XLNetStudent,
    input_specs,
    load_student,
    model_inputs,
)



@dataclass
class Contestant:
    """One way of running the classifier: ``infer(sample)`` runs one batch-1 sample (a list of numpy arrays)."""

    name: str
    infer: Callable[[list[np.ndarray]], np.ndarray]
    size_bytes: int | None  # the file a user would ship, or the weights in memory for eager models
    size_note: str = ""
    is_int8_program: bool = False  # gets an agreement row vs the fp32 eager student


# ---------------------------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------------------------


def random_encoded(config: StudentConfig, count: int, seed: int) -> list[np.ndarray]:
    """Tokenizer-shaped inputs: random ids, random left padding, ``<sep> <cls>`` at the end (ids 4, 3; pad 5)."""
    rng = np.random.default_rng(seed)
    length = config.seq_len
    ids = rng.integers(9, config.vocab_size, (count, length)).astype(np.int32)
    mask = np.ones((count, length), dtype=np.int32)
    for row in range(count):
        pads = int(rng.integers(0, length // 2))
        ids[row, :pads], mask[row, :pads] = 5, 0
    ids[:, -2:] = [4, 3]
    types = np.where(mask == 1, 0, 3).astype(np.int32)
    types[:, -1] = 2
    return model_inputs(config, ids, mask, types)


def first(arrays: list[np.ndarray]) -> list[np.ndarray]:
    return [np.ascontiguousarray(a[:1]) for a in arrays]


# ---------------------------------------------------------------------------------------------------------------
# Contestants
# ---------------------------------------------------------------------------------------------------------------


def weight_bytes(module: torch.nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in module.parameters())


def teacher_contestant(teacher_dir: Path | None, num_labels: int) -> Contestant:
    """HF XLNet classifier: the user's fine-tuned teacher, or a random one of xlnet-base-cased's shape."""
    from transformers import XLNetConfig, XLNetForSequenceClassification

    if teacher_dir:
        model = XLNetForSequenceClassification.from_pretrained(teacher_dir)
        label = f"teacher eager fp32 ({teacher_dir.name})"
    else:
        config = XLNetConfig(
            vocab_size=32000, d_model=768, n_layer=12, n_head=12, d_inner=3072, num_labels=num_labels
        )
        model = XLNetForSequenceClassification(config)
        label = "teacher eager fp32 (random, xlnet-base shape)"
    model.config.use_mems_eval, model.config.mem_len = False, None
    model.eval()

    def infer(sample: list[np.ndarray]) -> np.ndarray:
        ids, mask = (torch.from_numpy(a).long() for a in sample[:2])
        with torch.no_grad():
            return model(input_ids=ids, attention_mask=mask, use_mems=False, return_dict=False)[0].numpy()

    return Contestant(label, infer, weight_bytes(model), "weights in memory")


def student_eager_contestant(student: XLNetStudent) -> Contestant:
    module = FixedLengthClassifier(student).eval()

    def infer(sample: list[np.ndarray]) -> np.ndarray:
        with torch.no_grad():
            return module(*(torch.from_numpy(a) for a in sample)).numpy()

    return Contestant("student eager fp32", infer, weight_bytes(student), "weights in memory")


def pte_contestant(student: XLNetStudent, recipe: str, folder: Path, calibration: list[np.ndarray]) -> Contestant:
    path = folder / f"student-{recipe}.pte"
    started = time.perf_counter()
    artifact = Artifact(format="pte", recipe=recipe, runtime="executorch", delegate="xnnpack")
    delegation = export_pte(student, artifact, path, calibration if "static" in recipe else None)["delegation"]
    print(
        f"  exported {path.name} in {time.perf_counter() - started:.0f} s: {path.stat().st_size / 1e6:.2f} MB, "
        f"{delegation['partitions']} XNNPACK calls, {delegation['delegated_nodes']} ops delegated "
        f"({delegation['delegated_linears']} linears), portable: {delegation['portable_ops']}"
    )
    method = load_pte_method(path)

    def infer(sample: list[np.ndarray]) -> np.ndarray:
        return method.execute([torch.from_numpy(a) for a in sample])[0].numpy()

    note = f"{delegation['partitions']} XNNPACK calls"
    return Contestant(f".pte {recipe} (XNNPACK)", infer, path.stat().st_size, note, is_int8_program=recipe != "fp32")


def ort_int8_contestant(student: XLNetStudent, folder: Path) -> Contestant:
    """The outside reference: the same student via torch.onnx.export + ORT dynamic int8 quantization."""
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic

    config = student.config
    names = [spec.name for spec in input_specs(config)]
    example = tuple(torch.from_numpy(a) for a in first(random_encoded(config, 1, seed=0)))
    fp32_path, int8_path = folder / "student.onnx", folder / "student-int8.onnx"
    torch.onnx.export(
        FixedLengthClassifier(student).eval(), example, str(fp32_path), input_names=names,
        output_names=["logits"], dynamo=True, external_data=False,
    )
    quantize_dynamic(str(fp32_path), str(int8_path), weight_type=QuantType.QInt8)

    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(str(int8_path), options, providers=["CPUExecutionProvider"])

    def infer(sample: list[np.ndarray]) -> np.ndarray:
        return session.run(None, dict(zip(names, sample)))[0]

    note = "quantize_dynamic QInt8"
    return Contestant("ONNX Runtime int8 (dynamic)", infer, int8_path.stat().st_size, note, is_int8_program=True)


def tflite_contestant(student: XLNetStudent, recipe: str, folder: Path, calibration: list[np.ndarray]) -> Contestant:
    """A .tflite recipe run by ai-edge-litert with one thread (its default XNNPACK delegate on)."""
    from ai_edge_litert.interpreter import Interpreter

    from toolkit.export_tflite import export_tflite, signature_inputs

    path = folder / f"student-{recipe}.tflite"
    artifact = Artifact(format="tflite", recipe=recipe, runtime="ai-edge-litert", delegate="xnnpack")
    export_tflite(student, artifact, path, calibration if recipe == "full-int8" else None)
    key, names = next(iter(signature_inputs(path.read_bytes()).items()))  # one length: one signature
    runner = Interpreter(model_path=str(path), num_threads=1).get_signature_runner(key)

    def infer(sample: list[np.ndarray]) -> np.ndarray:
        return next(iter(runner(**dict(zip(names, sample))).values())).reshape(1, -1)

    return Contestant(f".tflite {recipe} (LiteRT)", infer, path.stat().st_size, "ai-edge-litert",
                      is_int8_program=recipe != "fp32")


def contestants(args, student: XLNetStudent, folder: Path, calibration: list[np.ndarray]) -> list[Contestant]:
    """The line-up, in table order. A new runtime is one more line here."""
    return [
        teacher_contestant(args.teacher, student.config.num_labels),
        student_eager_contestant(student),
        *(pte_contestant(student, recipe, folder, calibration) for recipe in args.recipes),
        *(tflite_contestant(student, recipe, folder, calibration) for recipe in args.tflite_recipes),
        ort_int8_contestant(student, folder),
    ]


# ---------------------------------------------------------------------------------------------------------------
# Timing and report
# ---------------------------------------------------------------------------------------------------------------


def median_ms(contestant: Contestant, sample: list[np.ndarray], warmup: int, runs: int) -> float:
    for _ in range(warmup):
        contestant.infer(sample)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        contestant.infer(sample)
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e3


def machine_line() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        match = re.search(r"model name\s*:\s*(.+)", Path("/proc/cpuinfo").read_text())
        cpu = match.group(1).strip() if match else cpu
    except OSError:
        pass
    import executorch.version
    import onnxruntime
    import transformers

    return (
        f"{cpu}, {platform.system()} {platform.machine()}, Python {platform.python_version()}; torch "
        f"{torch.__version__}, executorch {executorch.version.__version__}, onnxruntime {onnxruntime.__version__}, "
        f"transformers {transformers.__version__}"
    )


def markdown(args, config: StudentConfig, rows: list[tuple[Contestant, float]], agreement: list[str]) -> str:
    teacher_ms = rows[0][1]
    lines = [
        "## Latency: teacher vs student vs .pte vs .tflite vs ONNX Runtime",
        "",
        f"Student: {config.n_layer} layers, d_model {config.d_model}, vocab {config.vocab_size}, "
        f"{'loaded from ' + str(args.student) if args.student else 'random weights'}. "
        f"Sequence {config.seq_len}, batch 1, 1 thread everywhere; median of {args.runs} runs after "
        f"{args.warmup} warm-up runs.",
        f"Machine: {machine_line()}.",
        "",
        "| contestant | latency ms | speed-up vs teacher | latency vs ONNX Runtime int8 | size MB | note |",
        "|---|---:|---:|---:|---:|---|",
    ]
    ort_ms = next((ms for contestant, ms in rows if contestant.name.startswith("ONNX Runtime")), None)
    for contestant, ms in rows:
        size = f"{contestant.size_bytes / 1e6:.2f}" if contestant.size_bytes else "-"
        versus = f"{ms / ort_ms:.2f}x" if ort_ms else "-"
        lines.append(f"| {contestant.name} | {ms:.2f} | {teacher_ms / ms:.1f}x | {versus} | {size} | "
                     f"{contestant.size_note} |")
    lines += [
        "",
        f"int8 programs vs the fp32 eager student on {args.agreement_samples} "
        f"{'real dev texts' if args.student and args.texts else 'random tokenizer-shaped inputs'} "
        f"({agreement_caveat(args)}):",
        "",
        "| program | argmax agreement | max abs logit diff | rel. RMS error | labels of the fp32 student |",
        "|---|---:|---:|---:|---|",
        *agreement,
        "",
        f"Reproduce: `{args.command}`",
    ]
    return "\n".join(lines) + "\n"


def agreement_caveat(args) -> str:
    if args.student:
        return "trained student; real texts are the stronger check"
    if args.spread_head:
        return "random student with its head fitted to split these inputs between the labels"
    return "random student: its logits are nearly constant, so agreement is trivial; use --student or --spread-head"


def agreement_rows(items: list[Contestant], inputs: list[np.ndarray], reference: np.ndarray) -> list[str]:
    rows = []
    counts = np.bincount(reference.argmax(1), minlength=reference.shape[1]).tolist()
    for contestant in items:
        logits = np.concatenate([contestant.infer(first([a[i:] for a in inputs])) for i in range(len(inputs[0]))])
        result = compare_logits(contestant.name, reference, logits)
        centred = reference - reference.mean(0)
        rel = float(np.sqrt(((logits - reference) ** 2).mean() / max((centred**2).mean(), 1e-12)))
        rows.append(
            f"| {contestant.name} | {result.argmax_agreement:.3f} | {result.max_abs_logit_diff:.4f} | {rel:.3f} "
            f"| {counts} |"
        )
    return rows


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--student", type=Path, help="student folder (save_student); else a random student")
    parser.add_argument("--teacher", type=Path, help="HF XLNet classifier folder; else random xlnet-base shape")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--d-model", type=int, default=256)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--vocab", type=int, default=12000)
    parser.add_argument("--labels", type=int, default=2)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument(
        "--spread-head", action="store_true", help="random student only: fit its head so labels split the inputs"
    )
    parser.add_argument("--recipes", nargs="+", default=["fp32", "int8-dynamic", "int8-static"])
    parser.add_argument("--tflite-recipes", nargs="+", default=["fp32", "dynamic-int8", "full-int8"])
    parser.add_argument("--texts", type=Path, help="with --student: real labelled texts (TSV) for calibration/agreement")
    parser.add_argument("--calibration-samples", type=int, default=32)
    parser.add_argument("--agreement-samples", type=int, default=64)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--output", type=Path, default=PROJECT_ROOT / "BENCHMARKS.md")
    parser.add_argument("--work-dir", type=Path, help="where to keep the exported files (default: a temp folder)")
    args = parser.parse_args()
    args.command = "python bench/latency.py " + " ".join(sys.argv[1:])
    return args


def real_encoded(args, config: StudentConfig) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Calibration and agreement inputs from real texts, tokenized with the student's own tokenizer."""
    from toolkit.data import load_labelled
    from toolkit.tokenizer import XLNetTextEncoder

    encoder = XLNetTextEncoder.from_pretrained(args.student)
    texts = load_labelled(args.texts).texts
    def encode(chunk: list[str]) -> list[np.ndarray]:
        batch = encoder.encode(chunk, seq_len=config.seq_len)
        return model_inputs(config, batch.input_ids, batch.attention_mask, batch.token_type_ids)
    calibration = texts[: args.calibration_samples]
    agreement = texts[args.calibration_samples : args.calibration_samples + args.agreement_samples]
    return encode(calibration), encode(agreement)


def build_student(args) -> XLNetStudent:
    if args.student:
        return load_student(args.student)
    torch.manual_seed(0)
    config = StudentConfig(
        vocab_size=args.vocab, d_model=args.d_model, n_layer=args.layers, n_head=args.heads,
        d_inner=4 * args.d_model, num_labels=args.labels, seq_len=args.seq_len,
    )
    student = XLNetStudent(config).eval()
    return spread_head(student, random_encoded(config, 64, seed=4)) if args.spread_head else student


def spread_head(student: XLNetStudent, inputs: list[np.ndarray]) -> XLNetStudent:
    """Point a random student's head at the direction its pooled states vary most, centred on their mean.

    A random student gives every input nearly the same logits, so int8 agreement would pass trivially; with this
    head the random inputs split between the labels and agreement measures something. Latency is unchanged.
    """
    pooled: list[torch.Tensor] = []
    hook = student.summary.register_forward_hook(lambda module, args, out: pooled.append(torch.tanh(out)))
    eager_logits(student, inputs)
    hook.remove()
    states = torch.cat(pooled)
    _, scale, directions = torch.linalg.svd(states - states.mean(0), full_matrices=False)
    angles = torch.arange(student.config.num_labels) * 2 * torch.pi / student.config.num_labels
    plane = directions[:2] / scale[:2, None]
    weight = 10.0 * (torch.cos(angles)[:, None] * plane[0] + torch.sin(angles)[:, None] * plane[1])
    with torch.no_grad():
        student.logits_proj.weight.copy_(weight)
        student.logits_proj.bias.copy_(-(weight @ states.mean(0)))
    return student


def main() -> None:
    args = parse_args()
    torch.set_num_threads(1)
    set_pte_threads(1)
    student = build_student(args)
    config = student.config
    if args.student and args.texts:
        calibration, agreement_inputs = real_encoded(args, config)
    else:
        calibration = random_encoded(config, args.calibration_samples, seed=1)
        agreement_inputs = random_encoded(config, args.agreement_samples, seed=3)
    sample = first(agreement_inputs)

    with tempfile.TemporaryDirectory() as tmp:
        folder = args.work_dir or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        print("building contestants ...")
        line_up = contestants(args, student, folder, calibration)
        rows = []
        for contestant in line_up:
            ms = median_ms(contestant, sample, args.warmup, args.runs)
            rows.append((contestant, ms))
            print(f"  {contestant.name:45s} {ms:9.2f} ms")
        reference = eager_logits(student, agreement_inputs)
        agreement = agreement_rows([c for c in line_up if c.is_int8_program], agreement_inputs, reference)

    section = markdown(args, config, rows, agreement)
    print("\n" + section)
    write_section("latency", section, args.output)
    print(f"wrote the latency section of {args.output}")


if __name__ == "__main__":
    main()
