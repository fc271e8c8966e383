"""The bundle report people read to decide which artifact to ship: ``report.html`` and ``report.md``.

Everything comes from one validated ``manifest.json``; nothing is measured here. The page answers, in order:
did every artifact pass, what was and was NOT validated, how each artifact trades size / accuracy / estimated latency,
what failed and why, how the student compares with the teacher, and which versions made it (to reproduce it).

``report.html`` is one self-contained file (inline CSS, plots as base64 PNG, no external URL) so it can be mailed or
opened offline. ``report.md`` carries the same tables and links the same plots saved under ``report_assets/``.
:func:`write_index` writes one page comparing the profiles of a ``--target all`` run.
"""

from __future__ import annotations

import base64
import io
import math
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import jinja2
import numpy as np
from markupsafe import Markup
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator

from toolkit.files import atomic_write_bytes, atomic_write_text
from toolkit.tables import export_summary_lines

ASSETS_DIR = "report_assets"
MB = 1e6  # budgets are in MB of 10^6 bytes, like the profiles

GREEN, RED, AMBER, GREY, BLUE = "#1a7f37", "#cf222e", "#9a6700", "#6e7781", "#0969da"
PNG_META = {"Software": None}  # keeps matplotlib's URL out of the files

# ---------------------------------------------------------------------------------------------------------------
# Figures derived from the manifest (shared by HTML and Markdown)
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class ArtifactRow:
    """One artifact's line in the summary table, already computed so both renderings agree."""

    name: str
    format_recipe: str
    runtime_delegate: str
    mb: float
    x_smaller_than_base: float
    x_smaller_than_teacher: float
    host_accuracy: float | None
    delta_points: float | None  # host accuracy - eager student accuracy, in points
    agreement: float | None
    max_logit_diff: float | None
    emulator_cpu: str | None
    emulator_samples: int | None
    emulator_accuracy: float | None
    emulator_host_accuracy: float | None  # the host runtime on the same samples
    emulator_max_diff: float | None
    emulator_quant_steps: float | None
    instructions: int | None
    latency_ms: float | None  # an ESTIMATE from the instruction count
    latency_budget_ms: float
    within_latency: bool | None
    within_size: bool
    valid: bool
    failures: list[str]  # "check name: failure" lines
    host_samples: int | None = None  # dev examples of the host check
    correct: np.ndarray | None = None  # per dev example: classified right on the host (for paired comparisons)

    @property
    def fits_budgets(self) -> bool:
        """Inside the size budget and not over the latency budget (an unknown latency does not disqualify)."""
        return self.within_size and self.within_latency is not False


def _first_check(artifact: Mapping, kind: str) -> Mapping | None:
    return next((c for c in artifact["checks"] if c["kind"] == kind), None)


def artifact_rows(manifest: Mapping) -> list[ArtifactRow]:
    """The summary-table figures of every artifact."""
    budgets = manifest["profile"]["budgets"]
    base_bytes = manifest["reference_sizes"]["xlnet_base_bytes_fp32"]
    rows = []
    for a in manifest["artifacts"]:
        host, emu, run = _first_check(a, "host"), _first_check(a, "emulator"), a.get("emulator")
        host_acc = host["accuracy"] if host else None
        reference = (host or {}).get("reference_accuracy") or manifest["student"]["dev_accuracy"]
        rows.append(
            ArtifactRow(
                name=a["name"],
                format_recipe=f"{a['format']} · {a['recipe']}",
                runtime_delegate=f"{a['runtime']} + {a['delegate']}",
                mb=a["bytes"] / MB,
                x_smaller_than_base=base_bytes / a["bytes"],
                x_smaller_than_teacher=manifest["teacher"]["bytes_fp32"] / a["bytes"],
                host_accuracy=host_acc,
                delta_points=None if host_acc is None else (host_acc - reference) * 100,
                agreement=host["argmax_agreement"] if host else None,
                max_logit_diff=host["max_abs_logit_diff"] if host else None,
                emulator_cpu=(emu or {}).get("details", {}).get("cpu") or (run or {}).get("cpu"),
                emulator_samples=emu["samples"] if emu else None,
                emulator_accuracy=emu["accuracy"] if emu else None,
                emulator_host_accuracy=emu["reference_accuracy"] if emu else None,
                emulator_max_diff=emu["max_abs_logit_diff"] if emu else None,
                emulator_quant_steps=(emu or {}).get("details", {}).get("max_diff_quant_steps"),
                instructions=run["instructions_per_inference"] if run else None,
                latency_ms=run["estimated_latency_ms"] if run else None,
                latency_budget_ms=run["latency_budget_ms"] if run else budgets["latency_ms"],
                within_latency=run["within_budget"] if run else None,
                within_size=a["bytes"] / MB <= budgets["artifact_mb"],
                valid=a["valid"],
                failures=[f"{c['name']}: {f}" for c in a["checks"] for f in c["failures"]],
                host_samples=host["samples"] if host else None,
                correct=_host_correct(host),
            )
        )
    return rows


def _host_correct(host: Mapping | None) -> np.ndarray | None:
    """The host check's per-example correctness (``details.correct_bits``), when the manifest records it."""
    from toolkit.checks import unpack_correct

    bits = ((host or {}).get("details") or {}).get("correct_bits")
    return None if bits is None else unpack_correct(bits, host["samples"])


SIGNIFICANCE = 0.05  # two artifacts' dev accuracies differ when a paired test on the same examples says p < this


def mcnemar_exact_p(only_first: int, only_second: int) -> float:
    """Two-sided exact McNemar p-value: of the examples exactly one of two classifiers got right (``only_first`` +
    ``only_second``), is the split further from 50/50 than chance allows? (binomial test with p = 1/2)."""
    n = only_first + only_second
    if n == 0:
        return 1.0
    k = min(only_first, only_second)
    logs = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) - n * math.log(2) for i in range(k + 1)]
    top = max(logs)
    return min(1.0, 2 * math.exp(top) * sum(math.exp(v - top) for v in logs))


@dataclass(frozen=True)
class AccuracyComparison:
    """How a second artifact's dev accuracy compares with a first's, on the same examples."""

    significant: bool  # the first is significantly more accurate
    how: str  # e.g. "1 of 872 dev examples apart, exact McNemar p = 1.00"


def compare_accuracy(first: ArtifactRow, second: ArtifactRow) -> AccuracyComparison:
    """Is ``first`` significantly more accurate than ``second``?

    Paired exact McNemar test on the examples they disagree on when both host checks record per-example correctness
    on the same examples; otherwise (older manifests) "more than one standard error of the first's accuracy apart".
    """
    a, b = first.host_accuracy or 0.0, second.host_accuracy or 0.0
    if first.correct is not None and second.correct is not None and len(first.correct) == len(second.correct):
        n = len(first.correct)
        only_first = int((first.correct & ~second.correct).sum())
        only_second = int((second.correct & ~first.correct).sum())
        p = mcnemar_exact_p(only_first, only_second)
        apart = abs(int(first.correct.sum()) - int(second.correct.sum()))
        return AccuracyComparison(
            a > b and p < SIGNIFICANCE,
            f"{apart} of {n} dev examples apart, exact McNemar p = {p:.2g} on the {only_first + only_second} "
            "they disagree on",
        )
    n = first.host_samples or second.host_samples or 0
    se = math.sqrt(a * (1 - a) / n) if n else 0.0
    return AccuracyComparison(
        a - b > se, f"{(a - b) * 100:.2f} points apart, one standard error is {se * 100:.2f} points"
    )


def suggest_artifact(rows: Sequence[ArtifactRow]) -> tuple[ArtifactRow | None, str]:
    """The artifact to ship first, and one sentence saying why.

    Among the valid artifacts inside the size and (estimated) latency budgets (all valid ones when none fits): those
    whose dev accuracy is not significantly below the most accurate one's (:func:`compare_accuracy`: a paired test on
    the same dev examples) count as equally accurate; of these, the fastest (estimated latency), then the smallest.
    A difference of a few dev examples is noise, and a faster, smaller model is then the better first choice.
    Returns (None, why) when nothing is valid.
    """
    valid = [r for r in rows if r.valid]
    if not valid:
        return None, "No artifact passed validation: none can be recommended."
    fitting = [r for r in valid if r.fits_budgets]
    pool = fitting or valid
    where = "inside the size and estimated-latency budgets" if fitting else "(none fits every budget)"

    def cost(r: ArtifactRow) -> tuple:
        return (r.latency_ms if r.latency_ms is not None else math.inf, r.mb)

    top = min(pool, key=lambda r: (-(r.host_accuracy or 0.0), *cost(r)))
    comparisons = {r.name: compare_accuracy(top, r) for r in pool if r is not top}
    tied = [top] + [r for r in pool if r is not top and not comparisons[r.name].significant]
    best = min(tied, key=cost)
    budget_note = "" if fitting else "; it does NOT fit every budget"
    if len(pool) == 1:
        return best, f"{best.name}: the only valid artifact {where}{budget_note}."
    if best is top and len(tied) == 1:
        closest = max(comparisons, key=lambda name: next(r.host_accuracy or 0.0 for r in pool if r.name == name))
        return best, (
            f"{best.name}: the most accurate valid artifact {where}, significantly more accurate than the others "
            f"(closest: {closest}, {comparisons[closest].how}){budget_note}."
        )
    speed = _speed_phrase(best, [r for r in tied if r is not best])
    if best is top:
        return best, (
            f"{best.name}: the most accurate valid artifact {where}, and {speed} of those whose dev accuracy is not "
            f"significantly different{budget_note}."
        )
    return best, (
        f"{best.name}: {speed} valid artifact {where} whose dev accuracy ({pct(best.host_accuracy)}) is not "
        f"significantly below the most accurate, {top.name} ({pct(top.host_accuracy)}; "
        f"{comparisons[best.name].how}){budget_note}."
    )


def _speed_phrase(best: ArtifactRow, others: Sequence[ArtifactRow]) -> str:
    """ "the fastest (est. ~24.6 ms)" or "the smallest (3.10 MB)", whichever decided between ``best`` and ``others``."""
    faster = best.latency_ms is not None and all(
        r.latency_ms is None or r.latency_ms > best.latency_ms for r in others
    )
    if faster:
        return f"the fastest (est. ~{best.latency_ms:.1f} ms)"
    return f"the smallest ({best.mb:.2f} MB)"


def accuracy_floor(manifest: Mapping) -> float:
    """Lowest host accuracy the tolerances accept: the student's minus the allowed drop."""
    drop = manifest["profile"]["validation"]["tolerances"]["max_accuracy_drop_points"]
    return manifest["student"]["dev_accuracy"] - drop / 100


def nnapi_artifacts(manifest: Mapping) -> list[Mapping]:
    return [a for a in manifest["artifacts"] if "nnapi_coverage" in a.get("details", {})]


# ---------------------------------------------------------------------------------------------------------------
# Plots: each returns a matplotlib Figure (no pyplot, so no global state), or None when it has nothing to show
# ---------------------------------------------------------------------------------------------------------------


def _style(ax, title: str) -> None:
    ax.set_title(title, fontsize=11, loc="left", fontweight="bold")
    ax.grid(True, color="#d8dee4", linewidth=0.6)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def _plain_log_ticks(ax) -> None:
    """Label a log x axis 5, 10, 20 instead of 5x10^0, 10^1, 2x10^1."""
    ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda x, _: ""))


def _spread(values: list[float], gap: float) -> list[float]:
    """Label positions near ``values`` but at least ``gap`` apart, so labels of close points do not overlap."""
    order = sorted(range(len(values)), key=values.__getitem__)
    placed = [0.0] * len(values)
    previous = -math.inf
    for i in order:
        placed[i] = max(values[i], previous + gap)
        previous = placed[i]
    shift = (max(placed) - max(values)) / 2 if values else 0.0  # centre the stack on the points
    return [y - shift for y in placed]


def plot_tradeoff(manifest: Mapping) -> Figure:
    """Accuracy vs size (log) with estimated latency as colour; the fp32 student is the grey reference."""
    rows = [r for r in artifact_rows(manifest) if r.host_accuracy is not None]
    budgets = manifest["profile"]["budgets"]
    student = manifest["student"]
    fig = Figure(figsize=(6.4, 4.3), dpi=110, layout="constrained")
    ax = fig.add_subplot()
    _style(ax, "Accuracy vs size vs estimated latency")
    ax.set_xscale("log")
    ax.scatter(student["bytes_fp32"] / MB, student["dev_accuracy"], s=70, marker="D", color=GREY, zorder=3)
    ax.annotate("student fp32 (eager)", (student["bytes_fp32"] / MB, student["dev_accuracy"]), xytext=(0, 9),
                textcoords="offset points", fontsize=8, color=GREY, ha="center")  # fmt: skip
    vmax = 1.15 * max([r.latency_ms for r in rows if r.latency_ms is not None] + [budgets["latency_ms"]])
    scatter = None
    for r in rows:
        scatter = ax.scatter(
            r.mb, r.host_accuracy, s=120, c=[r.latency_ms if r.latency_ms is not None else math.nan],
            cmap="viridis_r", vmin=0, vmax=vmax, zorder=4, marker="o" if r.valid else "X",
            edgecolors=GREEN if r.valid else RED, linewidths=1.8, plotnonfinite=True,
        )
    floor = accuracy_floor(manifest)
    ax.axhline(floor, color=RED, linestyle=":", linewidth=1.2)
    ax.axvline(budgets["artifact_mb"], color=AMBER, linestyle="--", linewidth=1.2)
    sizes = [r.mb for r in rows] + [student["bytes_fp32"] / MB, budgets["artifact_mb"]]
    ax.set_xlim(min(sizes) / 1.6, max(sizes) * 1.6)
    accs = [r.host_accuracy for r in rows] + [student["dev_accuracy"], floor]
    span = max(accs) - min(accs) or 0.01
    ax.set_ylim(min(accs) - 0.25 * span, max(accs) + 0.25 * span)
    ax.annotate(f"size budget {budgets['artifact_mb']:g} MB", (budgets["artifact_mb"], 0.98), rotation=90,
                xycoords=("data", "axes fraction"), xytext=(-10, 0), textcoords="offset points", fontsize=8,
                color=AMBER, ha="center", va="top")  # fmt: skip
    ax.annotate("accuracy floor (student − allowed drop)", (0.99, floor), xycoords=("axes fraction", "data"),
                xytext=(0, -10), textcoords="offset points", fontsize=8, color=RED, ha="right")  # fmt: skip
    label_y = _spread([r.host_accuracy for r in rows], gap=0.08 * 1.5 * span)  # 8 % of the axis height
    for r, y in zip(rows, label_y):  # labels to the left of the points, leader lines where they were moved
        ax.annotate(r.name + ("" if r.valid else " (FAILED)"), (r.mb, r.host_accuracy), xytext=(r.mb / 1.12, y),
                    textcoords="data", fontsize=8, ha="right", va="center", color="black" if r.valid else RED,
                    arrowprops={"arrowstyle": "-", "color": "#8c959f", "linewidth": 0.7, "shrinkB": 6})  # fmt: skip
    _plain_log_ticks(ax)
    ax.set_xlabel("file size, MB (log scale)")
    ax.set_ylabel("dev accuracy (host run)")
    if scatter is not None:
        bar = fig.colorbar(scatter, ax=ax, pad=0.01)
        bar.set_label("estimated latency, ms (emulator)", fontsize=8)
        bar.ax.axhline(budgets["latency_ms"], color=RED, linewidth=2)
    return fig


def plot_accuracy_bars(manifest: Mapping) -> Figure:
    """Teacher, student and each artifact's host accuracy side by side; failed artifacts hatched red."""
    rows = artifact_rows(manifest)
    labels = ["teacher\nfp32", "student\nfp32"] + [r.name.replace("-", "\n", 1) for r in rows]
    values = [manifest["teacher"]["dev_accuracy"], manifest["student"]["dev_accuracy"]]
    values += [r.host_accuracy or 0.0 for r in rows]
    colours = [GREY, BLUE] + [GREEN if r.valid else RED for r in rows]
    fig = Figure(figsize=(6.4, 4.3), dpi=110, layout="constrained")
    ax = fig.add_subplot()
    _style(ax, "Dev accuracy: teacher, student, each artifact")
    bars = ax.bar(range(len(values)), values, color=colours, width=0.65)
    for bar, row in zip(bars[2:], rows):
        if not row.valid:
            bar.set_hatch("//")
            bar.set_edgecolor("white")
    ax.bar_label(bars, labels=[f"{v:.2%}" if v else "no host check" for v in values], fontsize=8, padding=2)
    floor = accuracy_floor(manifest)
    ax.axhline(floor, color=RED, linestyle=":", linewidth=1.2, label=f"accuracy floor {floor:.2%}")
    low = min([floor] + [v for v in values if v > 0])
    ax.set_ylim(max(0.0, low - 0.05), min(1.0, max(values) + 0.03))
    ax.set_xticks(range(len(values)), labels, fontsize=8)
    ax.set_ylabel("dev accuracy")
    ax.legend(fontsize=8, loc="upper right")
    return fig


def plot_confusions(manifest: Mapping) -> Figure | None:
    """Host-check confusion matrix of each artifact (rows = true label, columns = predicted), side by side."""
    panels = []
    for artifact in manifest["artifacts"]:
        host = _first_check(artifact, "host")
        if host and "confusion" in host["details"]:
            panels.append((artifact, host["details"]["confusion"]))
    if not panels:
        return None
    labels = manifest["labels"]
    fig = Figure(figsize=(2.7 * len(panels), 2.8), dpi=110, layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (artifact, matrix) in zip(axes, panels):
        ax.imshow(matrix, cmap="Greens" if artifact["valid"] else "Reds")
        peak = max(max(r) for r in matrix) or 1
        for i, row in enumerate(matrix):
            for j, n in enumerate(row):
                ax.text(j, i, str(n), ha="center", va="center", fontsize=10,
                        color="white" if n > peak * 0.6 else "black")  # fmt: skip
        names = labels if len(labels) == len(matrix) else [str(i) for i in range(len(matrix))]
        ax.set_xticks(range(len(names)), names, fontsize=8)
        ax.set_yticks(range(len(names)), names, fontsize=8, rotation=90, va="center")
        ax.set_xlabel("predicted", fontsize=8)
        ax.set_ylabel("true", fontsize=8)
        verdict = "" if artifact["valid"] else "  (FAILED)"
        ax.set_title(artifact["name"] + verdict, fontsize=9, color="black" if artifact["valid"] else RED)
    return fig


def plot_nnapi_coverage(manifest: Mapping) -> Figure | None:
    """Per op: nodes the NNAPI delegate accepts vs leaves on the CPU, from its rules (not executed)."""
    artifacts = nnapi_artifacts(manifest)
    if not artifacts:
        return None
    fig = Figure(figsize=(6.4, 0.5 + 3.3 * len(artifacts)), dpi=110, layout="constrained")
    for k, artifact in enumerate(artifacts):
        cov = artifact["details"]["nnapi_coverage"]
        rejected: dict[str, int] = {}
        for r in cov["rejected"]:
            rejected[r["op"]] = rejected.get(r["op"], 0) + r["count"]
        totals = dict(artifact["details"].get("operators") or {})
        for op, n in rejected.items():
            totals[op] = max(totals.get(op, 0), n)
        if not totals:  # no op histogram: accepted nodes can only be shown as one bar
            totals = {**rejected, "(all other ops)": cov["accepted"] + sum(rejected.values())}
        ops = sorted(totals, key=lambda op: (-rejected.get(op, 0), -totals[op]))
        ax = fig.add_subplot(len(artifacts), 1, k + 1)
        _style(ax, f"NNAPI coverage of {artifact['name']} (API {cov['api_level']})")
        accepted = [totals[op] - rejected.get(op, 0) for op in ops]
        ax.barh(ops, accepted, color=GREEN, label="accepted by NNAPI")
        ax.barh(ops, [rejected.get(op, 0) for op in ops], left=accepted, color=RED, label="left on the CPU")
        ax.invert_yaxis()
        ax.tick_params(axis="y", labelsize=7)
        ax.set_xlabel("nodes", fontsize=8)
        ax.legend(fontsize=8, loc="lower right")
        ax.text(0.99, 0.98, f"{cov['accepted']}/{cov['nodes']} nodes ({cov['share']:.1%}) accepted\n"
                f"{cov['partitions']} delegated partition(s)", transform=ax.transAxes, ha="right", va="top",
                fontsize=8, bbox={"facecolor": "white", "edgecolor": "#d0d7de"})  # fmt: skip
    return fig


def plot_distill_history(manifest: Mapping) -> Figure | None:
    """Student dev accuracy (and agreement with the teacher's argmax) per distillation epoch, against the teacher's."""
    history = manifest["student"]["distill"].get("history") or []
    if not history:
        return None
    fig = Figure(figsize=(6.4, 3.3), dpi=110, layout="constrained")
    ax = fig.add_subplot()
    _style(ax, "Distillation: student dev accuracy per epoch")
    epochs = [h["epoch"] for h in history]
    accs = [h["dev_accuracy"] for h in history]
    ax.plot(epochs, accs, marker="o", color=BLUE, label="student")
    ax.axhline(manifest["teacher"]["dev_accuracy"], color=GREY, linestyle="--", label="teacher")
    best = max(range(len(accs)), key=accs.__getitem__)
    ax.scatter([epochs[best]], [accs[best]], s=120, facecolors="none", edgecolors=GREEN, linewidths=2, zorder=5,
               label=f"best {accs[best]:.2%} (epoch {epochs[best]})")  # fmt: skip
    if all(h.get("agreement") is not None for h in history):
        ax.plot(epochs, [h["agreement"] for h in history], marker="s", color=GREEN, linestyle=":",
                label="agreement with the teacher")  # fmt: skip
    ax.set_xlabel("epoch")
    ax.set_ylabel("dev accuracy / agreement")
    ax.set_xticks(epochs)
    ax.legend(fontsize=8, loc="lower right")
    return fig


def plot_buckets(manifest: Mapping) -> Figure | None:
    """Estimated latency per length bucket and over the dev set's lengths, per artifact (bucketed bundles only)."""
    runs = [(a["name"], a["emulator"]) for a in manifest["artifacts"] if (a.get("emulator") or {}).get("buckets")]
    if not runs:
        return None
    lengths = [b["sequence_length"] for b in runs[0][1]["buckets"]]
    fig = Figure(figsize=(6.8, 3.4), dpi=110, layout="constrained")
    ax = fig.add_subplot()
    _style(ax, "Estimated latency per length bucket (1 thread)")
    width = 0.8 / (len(lengths) + 1)
    shades = [BLUE, GREEN, AMBER, GREY]
    for k, length in enumerate(lengths):
        values = [next(b["estimated_latency_ms"] or 0 for b in run["buckets"] if b["sequence_length"] == length)
                  for _, run in runs]  # fmt: skip
        ax.bar([i + k * width for i in range(len(runs))], values, width, color=shades[k % len(shades)], alpha=0.35,
               label=f"{length} tokens")
    expected = [run.get("expected_latency_ms") or 0 for _, run in runs]
    ax.bar([i + len(lengths) * width for i in range(len(runs))], expected, width, color=RED,
           label="expected over the dev set's lengths")
    ax.set_xticks([i + len(lengths) * width / 2 for i in range(len(runs))], [name for name, _ in runs], fontsize=7,
                  rotation=15)
    ax.set_ylabel("estimated ms (emulator)")
    ax.legend(fontsize=7, ncols=2)
    return fig


def bucket_table(manifest: Mapping) -> tuple[list[str], list[list[str]], str] | None:
    """Per artifact: the estimate at each length bucket, the expected latency over the dev set's lengths, and how
    much less that is than running every text at the longest length (the fixed-length figure)."""
    runs = [(a["name"], a["emulator"]) for a in manifest["artifacts"] if (a.get("emulator") or {}).get("buckets")]
    if not runs:
        return None
    buckets = runs[0][1]["buckets"]
    header = (["artifact"] + [f"{b['sequence_length']} tokens ({b['eval_share']:.0%} of dev) ms" for b in buckets]
              + ["expected ms", f"fixed {buckets[-1]['sequence_length']} ÷ expected"])  # fmt: skip
    rows = []
    for name, run in runs:
        expected, fixed = run.get("expected_latency_ms"), run.get("estimated_latency_ms")
        rows.append([name] + [num(b["estimated_latency_ms"], ".2f") for b in run["buckets"]]
                    + [num(expected, ".2f"), f"{fixed / expected:.2f}x" if expected and fixed else "–"])  # fmt: skip
    note = ("Each text runs at the shortest length bucket that holds it (one method/signature per length in the "
            "artifact). Expected = sum over buckets of (share of dev examples an app runs in it) x (its estimate); "
            "the budget check uses the longest bucket, which every text may need.")
    return header, rows, note


@dataclass
class Plot:
    key: str  # file stem under report_assets/
    title: str
    caption: str
    png: bytes

    @property
    def data_uri(self) -> str:
        return "data:image/png;base64," + base64.b64encode(self.png).decode("ascii")


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", facecolor="white", metadata=PNG_META)
    return buffer.getvalue()


PLOTS: list[tuple[str, str, str, Callable[[Mapping], Figure | None]]] = [
    ("tradeoff", "Accuracy vs size vs estimated latency",
     "Each artifact's host accuracy against file size (log scale); colour is the ESTIMATED latency from the "
     "emulated device (red line on the colour bar: latency budget). ✕ = failed validation. Grey diamond: the "
     "eager fp32 student.", plot_tradeoff),
    ("accuracy", "Accuracy: teacher vs student vs artifacts",
     "Host accuracy on the whole dev set; hatched red bars failed validation.", plot_accuracy_bars),
    ("confusion", "Confusion matrices (host check)",
     "Rows: true label; columns: predicted label; on the whole dev set.", plot_confusions),
    ("nnapi", "NNAPI delegate coverage",
     "Computed from the delegate's op rules, not by running the delegate.", plot_nnapi_coverage),
    ("history", "Distillation history", "Best epoch is the one kept.", plot_distill_history),
    ("buckets", "Latency per length bucket",
     "ESTIMATED latency of each length bucket on the emulated device (1 thread), and the expected latency over the "
     "dev set's length distribution (red).", plot_buckets),
]  # fmt: skip


def render_plots(manifest: Mapping) -> list[Plot]:
    """Every plot the manifest has data for, as PNG bytes."""
    plots = []
    for key, title, caption, make in PLOTS:
        fig = make(manifest)
        if fig is not None:
            plots.append(Plot(key, title, caption, _png(fig)))
    return plots


# ---------------------------------------------------------------------------------------------------------------
# Text formatting
# ---------------------------------------------------------------------------------------------------------------


def pct(x: float | None) -> str:
    return "–" if x is None else f"{x:.2%}"


def signed_points(x: float | None) -> str:
    return "–" if x is None else f"{x:+.2f}".replace("-", "−")


def num(x: float | int | None, spec: str = ".3g") -> str:
    return "–" if x is None else format(x, spec)


def millions(n: int) -> str:
    return f"{n / 1e6:.2f} M"


def size_mb(n_bytes: int) -> str:
    return f"{n_bytes / MB:.2f} MB"


def latency_table(manifest: Mapping) -> tuple[list[str], list[list[str]], str]:
    """Budget, the prediction made when the student was sized, and the emulator's estimates, per artifact."""
    distill = manifest["student"]["distill"]
    guess = distill.get("predicted") or {}  # the CostPrediction itself (older bundles: without the sizing record)
    sizing = distill.get("sizing") or (
        {"cost_model": guess["cost_model"], "binding_limit": guess["binding_limit"]} if guess.get("binding_limit") else {}
    )
    predicted = sizing.get("predicted_by_artifact") or guess.get("latency_ms_by_artifact") or {}
    budget = manifest["profile"]["budgets"]["latency_ms"]
    threads = manifest["profile"]["device"].get("threads", 1)
    header = ["artifact", "budget ms", "predicted when sizing ms", "emulator estimate ms (1 thread)",
              f"emulator estimate ms ({threads} threads)", "method"]  # fmt: skip
    rows = []
    for a in manifest["artifacts"]:
        run = a.get("emulator") or {}
        many = run.get("threads") or {}
        rows.append([
            a["name"], f"{budget:g}", num(predicted.get(a["name"]), ".1f") if a["name"] in predicted else "–",
            num(run.get("estimated_latency_ms"), ".1f") if run else "not run",
            (num(many.get("estimated_latency_ms"), ".1f")
             + (" (model: 1 thread / N)" if many.get("method", "").startswith("stated") else " (slowest thread)"))
            if many else "–",
            run.get("estimate_method", "instructions") if run else "–",
        ])  # fmt: skip
    note = (f"Student sized by: {sizing.get('cost_model', '?')}. Binding limit: {sizing.get('binding_limit', '?')}."
            if sizing else "No sizing record (student sized by an older toolkit, or given by flags).")
    return header, rows, note


def _context(manifest: Mapping, plots: Sequence[Plot]) -> dict[str, Any]:
    """Everything the templates print, computed once."""
    rows = artifact_rows(manifest)
    suggested, why = suggest_artifact(rows)
    profile, student, teacher = manifest["profile"], manifest["student"], manifest["teacher"]
    failed = [r for r in rows if not r.valid]
    vocab = student["distill"].get("vocab", {})
    return {
        "m": manifest,
        "profile": profile,
        "device": profile["device"],
        "budgets": profile["budgets"],
        "tolerances": profile["validation"]["tolerances"],
        "rows": rows,
        "failed": failed,
        "verdict_ok": not failed and manifest["validation"]["passed"],
        "verdict": (
            f"All {len(rows)} artifacts passed validation"
            if not failed
            else f"{len(failed)} of {len(rows)} artifacts FAILED validation"
        ),
        "suggested": suggested,
        "suggested_why": why,
        "plots": {p.key: p for p in plots},
        "teacher": teacher,
        "student": student,
        "vocab": vocab,
        "assumptions": sorted({a["emulator"]["assumption"] for a in manifest["artifacts"] if a.get("emulator")}),
        "latency_table": latency_table(manifest),
        "bucket_table": bucket_table(manifest),
        "cycles_estimate": any((a.get("emulator") or {}).get("estimate_method") == "cycles" for a in manifest["artifacts"]),
        "pct": pct,
        "signed_points": signed_points,
        "num": num,
        "millions": millions,
        "size_mb": size_mb,
    }


# ---------------------------------------------------------------------------------------------------------------
# HTML
# ---------------------------------------------------------------------------------------------------------------

CSS = Markup("""
body{font:14px/1.45 -apple-system,"Segoe UI",Roboto,"Helvetica Neue","DejaVu Sans",Arial,sans-serif;color:#1f2328;margin:0;
  background:#f6f8fa}
main{max-width:1200px;margin:0 auto;padding:24px 28px 40px;background:#fff}
h1{font-size:26px;margin:0 0 4px}h2{font-size:19px;margin:30px 0 10px;border-bottom:1px solid #d0d7de;
  padding-bottom:4px}h3{font-size:15px;margin:18px 0 6px}
.sub{color:#57606a;margin:0 0 14px}
.banner{padding:12px 16px;border-radius:6px;font-size:17px;font-weight:600;margin:12px 0}
.ok{background:#dafbe1;color:#116329;border:1px solid #4ac26b}
.bad{background:#ffebe9;color:#a40e26;border:1px solid #ff8182}
.warnbox{background:#fff8c5;border:1px solid #d4a72c;border-radius:6px;padding:8px 14px}
.failbox{background:#ffebe9;border:2px solid #cf222e;border-radius:6px;padding:8px 14px}
.failbox li{color:#a40e26}.failbox code{color:#1f2328}
.cards{display:grid;grid-template-columns:repeat(4,1fr);gap:10px;margin:12px 0}
.card{border:1px solid #d0d7de;border-radius:6px;padding:8px 12px}
.card b{display:block;font-size:11px;text-transform:uppercase;color:#57606a;letter-spacing:.04em}
.card span{font-size:15px}
.two{display:grid;grid-template-columns:1fr 1fr;gap:16px}
table{border-collapse:collapse;width:100%;font-size:12.5px;margin:6px 0}
th,td{border:1px solid #d0d7de;padding:4px 6px;text-align:right;vertical-align:top}
th{background:#f6f8fa;font-weight:600;text-align:center}
td.l,th.l{text-align:left}td.nw{white-space:nowrap}
tr.failed td{background:#fff0ee}
small{color:#57606a}
.pass{color:#116329;font-weight:700}.fail{color:#cf222e;font-weight:700}.warn{color:#9a6700;font-weight:600}
figure{margin:0;border:1px solid #d0d7de;border-radius:6px;padding:8px;background:#fff}
figure img{width:100%;height:auto;display:block}figcaption{font-size:12px;color:#57606a;margin-top:4px}
.est{font-size:10px;font-weight:700;color:#9a6700;border:1px solid #d4a72c;border-radius:3px;padding:0 3px}
details{margin:6px 0}summary{cursor:pointer;font-weight:600}
code{font:12px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;background:#f6f8fa;padding:1px 4px;
  border-radius:3px;word-break:break-all}
footer{margin-top:30px;font-size:12px;color:#57606a;border-top:1px solid #d0d7de;padding-top:10px}
""")  # trusted: autoescaping would turn the font names' quotes into entities

HTML_TEMPLATE = r"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ profile.name }}: XLNet edge bundle report</title>
<style>{{ css }}</style></head>
<body><main>
<h1>{{ profile.name }} <small>bundle report</small></h1>
<p class="sub">{{ profile.description }}</p>
<div class="banner {{ 'ok' if verdict_ok else 'bad' }}">{{ '✔' if verdict_ok else '✘' }} {{ verdict }}
{%- if suggested %} · ship first: <code>{{ suggested.name }}</code>{% endif %}</div>
<p>{{ suggested_why }}</p>

<div class="cards">
 <div class="card"><b>Device</b><span>{{ device.cpu_model }} · {{ device.isa }}</span><br>
   <small>{{ device.cores }} cores @ {{ device.clock_ghz }} GHz · {{ device.os }} · {{ device.memory_mb_min }}–{{ device.memory_mb_max }} MB RAM · qemu <code>{{ device.qemu_cpu }}</code></small></div>
 <div class="card"><b>Budgets</b><span>{{ '%g'|format(budgets.artifact_mb) }} MB · {{ '%g'|format(budgets.latency_ms) }} ms</span><br>
   <small>file size · latency (one core) · {{ '%g'|format(budgets.memory_mb) }} MB working memory (not measured)</small></div>
 <div class="card"><b>Student</b><span>{{ pct(student.dev_accuracy) }} · {{ millions(student.parameters) }} params</span><br>
   <small>{{ pct(student.retention) }} of the teacher's {{ pct(teacher.dev_accuracy) }} · {{ student.config.n_layer }} layers × d{{ student.config.d_model }}</small></div>
 <div class="card"><b>Tolerances</b><span>≤ {{ tolerances.max_accuracy_drop_points }} pts drop · ≥ {{ pct(tolerances.min_argmax_agreement) }} agree</span><br>
   <small>emulator: float ≤ {{ tolerances.emulator_fp32_max_abs_diff }}, int8 ≤ {{ tolerances.emulator_int8_max_steps }} quant steps</small></div>
</div>

{% if failed %}
<h2 style="color:#cf222e">Failures</h2>
<div class="failbox"><ul>
{% for r in failed %}<li><b>{{ r.name }}</b> is NOT valid
  <ul>{% for f in r.failures %}<li><code>{{ f }}</code></li>{% else %}<li>no check recorded a failure string</li>{% endfor %}</ul></li>
{% endfor %}</ul></div>
{% endif %}

<div class="two">
<div><h3>Validated</h3><ul>{% for s in m.validation.validated %}<li>{{ s }}</li>{% endfor %}</ul></div>
<div><h3>NOT validated</h3><div class="warnbox"><ul>{% for s in m.validation.not_validated %}<li>{{ s }}</li>{% else %}<li>nothing listed</li>{% endfor %}</ul></div></div>
</div>

<h2>Artifacts</h2>
<table id="summary">
<tr><th class="l">artifact</th><th class="l">format · recipe<br><small>runtime + delegate</small></th><th>size<br><small>× smaller than xlnet-base / teacher</small></th>
<th>host accuracy</th><th>Δ vs student</th><th>argmax agree</th><th>max |Δlogit|</th>
<th class="l">emulator</th><th>emulator acc<br><small>(host, same samples)</small></th><th>emulator max diff</th>
<th>instructions / inference</th><th>latency <span class="est">ESTIMATE</span><br><small>vs budget</small></th><th>verdict</th></tr>
{% for r in rows %}
<tr class="{{ '' if r.valid else 'failed' }}" id="row-{{ r.name }}">
<td class="l nw"><b>{{ r.name }}</b>{% if suggested and r.name == suggested.name %}<br><span class="pass">★ suggested</span>{% endif %}</td>
<td class="l">{{ r.format_recipe }}<br><small>{{ r.runtime_delegate }}</small></td>
<td><span class="{{ '' if r.within_size else 'fail' }}">{{ '%.2f'|format(r.mb) }} MB</span><br>
  <small>{{ '%.0f'|format(r.x_smaller_than_base) }}× / {{ '%.0f'|format(r.x_smaller_than_teacher) }}×</small></td>
<td>{{ pct(r.host_accuracy) }}</td>
<td>{{ signed_points(r.delta_points) }} pts</td>
<td>{{ pct(r.agreement) }}</td><td>{{ num(r.max_logit_diff) }}</td>
<td class="l nw">{% if r.emulator_cpu %}{{ r.emulator_cpu }}<br><small>{{ r.emulator_samples }} samples</small>{% else %}<span class="warn">not run</span>{% endif %}</td>
<td>{{ pct(r.emulator_accuracy) }}<br><small>({{ pct(r.emulator_host_accuracy) }})</small></td>
<td>{{ num(r.emulator_max_diff) }}{% if r.emulator_quant_steps is not none %}<br><small>{{ num(r.emulator_quant_steps, 'g') }} steps</small>{% endif %}</td>
<td>{{ '{:,}'.format(r.instructions) if r.instructions else '–' }}</td>
<td>{% if r.latency_ms is not none %}<span class="{{ 'pass' if r.within_latency else 'fail' }}">~{{ '%.1f'|format(r.latency_ms) }} ms</span><br><small>budget {{ '%g'|format(r.latency_budget_ms) }} ms</small>{% else %}–{% endif %}</td>
<td>{% if r.valid %}<span class="pass">VALID</span>{% else %}<span class="fail">FAILED</span>{% endif %}
{%- if not r.within_size %}<br><span class="fail">over size budget</span>{% endif %}
{%- if r.within_latency is sameas false %}<br><span class="warn">over latency budget (est.)</span>{% endif %}</td>
</tr>
{% endfor %}
</table>
<p><small>Sizes in MB of 10<sup>6</sup> bytes, and how many times smaller than xlnet-base fp32
({{ size_mb(m.reference_sizes.xlnet_base_bytes_fp32) }}) and the teacher fp32 ({{ size_mb(teacher.bytes_fp32) }}).
Δ and agreement compare each artifact on the host with the eager fp32 student on the same {{ m.data.eval.examples }} dev examples;
the emulator columns compare the emulated run with the same runtime on the host.</small></p>

<h2>Trade-offs</h2>
<div class="two">
{% for key in ['tradeoff', 'accuracy'] if key in plots %}{% set p = plots[key] %}
<figure><img alt="{{ p.title }}" src="{{ p.data_uri }}"><figcaption>{{ p.caption }}</figcaption></figure>
{% endfor %}
</div>
{% if 'confusion' in plots %}{% set p = plots['confusion'] %}
<h3>{{ p.title }}</h3>
<figure><img alt="{{ p.title }}" src="{{ p.data_uri }}" style="width:auto;max-width:100%;margin:auto"><figcaption>{{ p.caption }}</figcaption></figure>
{% endif %}
{% if 'nnapi' in plots %}{% set p = plots['nnapi'] %}
<h3>{{ p.title }}</h3>
<div class="two"><figure><img alt="{{ p.title }}" src="{{ p.data_uri }}"><figcaption>{{ p.caption }}</figcaption></figure>
<div>{% for a in nnapi %}{% set c = a.details.nnapi_coverage %}
<p><b>{{ a.name }}</b>: API {{ c.api_level }}, {{ c.accepted }}/{{ c.nodes }} nodes ({{ pct(c.share) }}) accepted,
 {{ c.partitions }} delegated partition(s){% if c.max_delegated_partitions is defined %} (the delegate keeps the {{ c.max_delegated_partitions }} largest){% endif %}.</p>
<table><tr><th class="l">op left on the CPU</th><th>count</th><th class="l">reason</th></tr>
{% for r in c.rejected %}<tr><td class="l"><code>{{ r.op }}</code></td><td>{{ r.count }}</td><td class="l">{{ r.reason }}</td></tr>
{% else %}<tr><td class="l" colspan="3">every node accepted</td></tr>{% endfor %}</table>
{% endfor %}</div></div>
{% endif %}

<h2>Latency estimate: the assumption</h2>
{% if cycles_estimate %}<p>Latency is <b>not measured on a device</b>: it is an ESTIMATE. The last emulated inference's
translated blocks are timed by llvm-mca's model of the core, a simulated data cache adds miss stalls, and the total
is divided by the clock and multiplied by a factor calibrated against published timings of reference networks on
the same core (its held-out error is stated below and in BENCHMARKS.md).</p>
{% else %}<p>Latency is <b>not measured on a device</b>. The emulator counts the guest instructions retired per inference
(median over the samples) and divides by <code>instructions_per_ns = {{ device.instructions_per_ns }}</code> from the
profile ({{ device.cpu_model }} at {{ device.clock_ghz }} GHz ⇒ an assumed
{{ '%.2f'|format(device.instructions_per_ns / device.clock_ghz) }} instructions per cycle on one core).</p>{% endif %}
<table><tr>{% for h in latency_table[0] %}<th{% if loop.first %} class="l"{% endif %}>{{ h }}</th>{% endfor %}</tr>
{% for r in latency_table[1] %}<tr>{% for v in r %}<td{% if loop.first %} class="l"{% endif %}>{{ v }}</td>{% endfor %}</tr>{% endfor %}</table>
<p><small>{{ latency_table[2] }}</small></p>
{% if bucket_table %}<h3>Length buckets</h3>
<table><tr>{% for h in bucket_table[0] %}<th{% if loop.first %} class="l"{% endif %}>{{ h }}</th>{% endfor %}</tr>
{% for r in bucket_table[1] %}<tr>{% for v in r %}<td{% if loop.first %} class="l"{% endif %}>{{ v }}</td>{% endfor %}</tr>{% endfor %}</table>
<p><small>{{ bucket_table[2] }}</small></p>{% if 'buckets' in plots %}{% set p = plots['buckets'] %}<figure><img alt="{{ p.title }}" src="{{ p.data_uri }}"><figcaption>{{ p.caption }}</figcaption></figure>{% endif %}{% endif %}
<ul>{% for s in assumptions %}<li>{{ s }}</li>{% else %}<li class="warn">No artifact ran under the emulator: no latency estimate.</li>{% endfor %}</ul>

<h2>Teacher and student</h2>
<div class="two"><div>
<table>
<tr><th class="l"></th><th>teacher</th><th>student</th><th>xlnet-base</th></tr>
<tr><td class="l">parameters</td><td>{{ millions(teacher.parameters) }}</td><td>{{ millions(student.parameters) }}</td><td>{{ millions(m.reference_sizes.xlnet_base_parameters) }}</td></tr>
<tr><td class="l">fp32 bytes</td><td>{{ size_mb(teacher.bytes_fp32) }}</td><td>{{ size_mb(student.bytes_fp32) }}</td><td>{{ size_mb(m.reference_sizes.xlnet_base_bytes_fp32) }}</td></tr>
<tr><td class="l">dev accuracy</td><td>{{ pct(teacher.dev_accuracy) }}</td><td>{{ pct(student.dev_accuracy) }}</td><td>–</td></tr>
<tr><td class="l">layers × d_model (heads, d_inner)</td><td>{{ teacher.config.n_layer }} × {{ teacher.config.d_model }} ({{ teacher.config.n_head }}, {{ teacher.config.d_inner }})</td>
  <td>{{ student.config.n_layer }} × {{ student.config.d_model }} ({{ student.config.n_head }}, {{ student.config.d_inner }})</td><td>–</td></tr>
<tr><td class="l">vocabulary</td><td>{{ '{:,}'.format(teacher.config.vocab_size) }}</td><td>{{ '{:,}'.format(student.config.vocab_size) }}</td><td>–</td></tr>
</table>
<p>Retention <b>{{ pct(student.retention) }}</b> of the teacher's accuracy with {{ '%.1f'|format(teacher.parameters / student.parameters) }}× fewer parameters{% if student.distill.agreement is defined and student.distill.agreement is not none %}; the student's answer equals the teacher's on <b>{{ pct(student.distill.agreement) }}</b> of dev texts (agreement){% endif %}.
{% if student.distill.training_examples is defined %}{% set te = student.distill.training_examples %}Trained on {{ '{:,}'.format(te.labelled) }} labelled texts{% if te.augmented %} + {{ '{:,}'.format(te.augmented) }} teacher-labelled variants{% endif %}{% if te.transfer %} + {{ '{:,}'.format(te.transfer) }} teacher-labelled transfer texts{% endif %}. {% endif %}
Student ops: {{ student.config.activation }}, {{ student.config.normalisation }}, mask input <code>{{ student.config.mask_input }}</code>, sequence length {{ student.config.seq_len }}.</p>
<p>Vocabulary trimmed from {{ '{:,}'.format(m.tokenizer.trimmed_from) }} to {{ '{:,}'.format(m.tokenizer.vocab_size) }} tokens
({{ pct(m.tokenizer.vocab_size / m.tokenizer.trimmed_from) }} kept){% if vocab.train_token_coverage is defined %};
the kept tokens cover {{ pct(vocab.train_token_coverage) }} of train tokens and {{ pct(vocab.dev_token_coverage) }} of dev tokens{% endif %}.
{% if student.distill.init is defined %}{% set init = student.distill.init %}Initialisation: {{ init.get('scheme', '?') }}{% if init.get('teacher_layers') %} from teacher layers {{ init.teacher_layers|join(', ') }}{% endif %}. {% endif %}
{% if student.distill.wall_seconds is defined %}Distillation took {{ '%.0f'|format(student.distill.wall_seconds) }} s.{% endif %}
{% if student.distill.get("qat_from_epoch") %}Quantization-aware from epoch {{ student.distill.qat_from_epoch }}{% if m.stages.qat is defined %} (added by the pipeline: post-training static int8 missed the profile's tolerances){% endif %}: every artifact comes from the student on the int8 grid, trained to reproduce its float self{% if student.distill.get("agreement_with_float") is not none %} (int8-simulated dev agreement with it: {{ "%.1f"|format(100 * student.distill.agreement_with_float) }} %){% endif %}.{% endif %}
{% if m.stages.qat is defined and m.stages.qat.get("kept") == false %}Post-training static int8 missed the profile's tolerances; the pipeline trained one more epoch quantization-aware ({{ '%.0f'|format(m.stages.qat.seconds) }} s), whose artifacts failed as often, so the bundle keeps the post-training student and its artifacts.{% endif %}</p>
<p>Data: train <code>{{ m.data.train.path }}</code> ({{ '{:,}'.format(m.data.train.examples) }} examples), eval <code>{{ m.data.eval.path }}</code> ({{ '{:,}'.format(m.data.eval.examples) }}); labels {{ m.labels|join(', ') }}.</p>
</div>
<div>{% if 'history' in plots %}{% set p = plots['history'] %}<figure><img alt="{{ p.title }}" src="{{ p.data_uri }}"><figcaption>{{ p.caption }}</figcaption></figure>{% endif %}</div>
</div>

<h2>Artifact details</h2>
{% for a in m.artifacts %}
<details{% if not a.valid %} open{% endif %}><summary>{{ a.name }} — <code>{{ a.file }}</code> — {% if a.valid %}<span class="pass">valid</span>{% else %}<span class="fail">FAILED</span>{% endif %}</summary>
<p>sha256 <code>{{ a.sha256 }}</code> · {{ '{:,}'.format(a.bytes) }} bytes ·
inputs {% for t in a.inputs %}<code>{{ t.name }} {{ t.dtype }}{{ t.shape }}</code> {% endfor %}·
outputs {% for t in a.outputs %}<code>{{ t.name }} {{ t.dtype }}{{ t.shape }}</code> {% endfor %}</p>
<table><tr><th class="l">check</th><th>kind</th><th>samples</th><th>accuracy (ref)</th><th>argmax agree</th><th>max |Δ|</th><th class="l">result</th></tr>
{% for c in a.checks %}<tr class="{{ '' if c.passed else 'failed' }}"><td class="l">{{ c.name }}</td><td>{{ c.kind }}</td><td>{{ c.samples }}</td>
<td>{{ pct(c.accuracy) }} ({{ pct(c.reference_accuracy) }})</td><td>{{ pct(c.argmax_agreement) }}</td><td>{{ num(c.max_abs_logit_diff) }}</td>
<td class="l">{% if c.passed %}<span class="pass">pass</span>{% else %}<span class="fail">FAIL</span>: {{ c.failures|join('; ') }}{% endif %}</td></tr>
{% endfor %}</table>
{% set d = a.details %}
{% if d.delegation is defined %}<p>XNNPACK delegation: {{ d.delegation.delegated_nodes if d.delegation.delegated_nodes is defined else '?' }} nodes in
{{ d.delegation.partitions if d.delegation.partitions is defined else '?' }} partition(s); outside the delegate:
{% for op, n in d.delegation.get('portable_ops', {}).items() %}<code>{{ op }}</code>×{{ n }} {% else %}nothing{% endfor %}</p>{% endif %}
{% if d.operators is defined %}<p>TFLite operators: {% for op, n in d.operators.items() %}<code>{{ op }}</code>×{{ n }} {% endfor %}</p>{% endif %}
{% if d.quantization is defined %}<p>Quantization: {% if d.quantization is mapping %}{% for k, v in d.quantization.items() %}{{ k }} = {{ v }}{{ '; ' if not loop.last }}{% endfor %}{% else %}{{ d.quantization }}{% endif %}</p>{% endif %}
</details>
{% endfor %}

<footer>
<b>Reproducibility.</b> Created {{ m.created }} by xlnet-edge-toolkit {{ m.toolkit.version }} on Python {{ m.toolkit.python }};
{% for lib, v in m.toolkit.libraries.items() %}{{ lib }} {{ v }}{{ ', ' if not loop.last }}{% endfor %}.<br>
Teacher <code>{{ teacher.path }}</code> fingerprint <code>{{ teacher.fingerprint }}</code><br>
Train data sha256 <code>{{ m.data.train.sha256 }}</code> · eval data sha256 <code>{{ m.data.eval.sha256 }}</code><br>
Tokenizer <code>{{ m.tokenizer.file }}</code> sha256 <code>{{ m.tokenizer.sha256 }}</code><br>
Validation seed {{ profile.validation.seed }}, {{ profile.validation.emulator_samples }} emulator samples ·
stages: {% for name, s in m.stages.items() %}{{ name }} {{ '%.1f'|format(s.seconds) }} s{% if s.get('cached') %} (cached){% endif %}{{ ', ' if not loop.last }}{% endfor %} ·
total {{ '%.1f'|format(m.total_seconds) }} s.
</footer>
</main></body></html>
"""

_ENV = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def render_html(manifest: Mapping, plots: Sequence[Plot]) -> str:
    """The self-contained report page."""
    context = _context(manifest, plots)
    return _ENV.from_string(HTML_TEMPLATE).render(css=CSS, nnapi=nnapi_artifacts(manifest), **context)


# ---------------------------------------------------------------------------------------------------------------
# Markdown
# ---------------------------------------------------------------------------------------------------------------


def md_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A GitHub-flavoured Markdown table; pipes in cells are escaped."""

    def cell(value: Any) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(map(cell, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(cell, row)) + " |" for row in rows]
    return "\n".join(lines)


def summary_table_md(rows: Sequence[ArtifactRow]) -> str:
    header = ["artifact", "format · recipe", "runtime + delegate", "size MB", "× smaller than xlnet-base",
              "× smaller than teacher", "host acc", "Δ vs student (pts)", "argmax agree", "max abs Δlogit",
              "emulator (samples)", "emulator acc (host)", "emulator max diff", "instructions / inference",
              "latency ESTIMATE ms (budget)", "verdict"]  # fmt: skip
    body = []
    for r in rows:
        verdict = "VALID" if r.valid else "**FAILED**"
        if not r.within_size:
            verdict += ", over size budget"
        if r.within_latency is False:
            verdict += ", over latency budget (est.)"
        body.append([
            f"**{r.name}**", r.format_recipe, r.runtime_delegate, f"{r.mb:.2f}", f"{r.x_smaller_than_base:.0f}×",
            f"{r.x_smaller_than_teacher:.0f}×", pct(r.host_accuracy), signed_points(r.delta_points), pct(r.agreement),
            num(r.max_logit_diff), f"{r.emulator_cpu} ({r.emulator_samples})" if r.emulator_cpu else "not run",
            f"{pct(r.emulator_accuracy)} ({pct(r.emulator_host_accuracy)})",
            num(r.emulator_max_diff) + (f" ({r.emulator_quant_steps:g} steps)" if r.emulator_quant_steps is not None else ""),
            f"{r.instructions:,}" if r.instructions else "–",
            f"~{r.latency_ms:.1f} ({r.latency_budget_ms:g})" if r.latency_ms is not None else "–", verdict,
        ])  # fmt: skip
    return md_table(header, body)


def render_markdown(manifest: Mapping, plots: Sequence[Plot]) -> str:
    """The same report as Markdown; plots are linked from ``report_assets/``."""
    c = _context(manifest, plots)
    m, device, teacher, student = manifest, c["device"], c["teacher"], c["student"]
    out = [f"# {c['profile']['name']}: bundle report", "", c["profile"]["description"], ""]
    out += [f"**{'PASSED' if c['verdict_ok'] else 'FAILED'}: {c['verdict']}.** {c['suggested_why']}", ""]
    out += [f"Device: {device['cpu_model']} ({device['isa']}, {device['cores']} cores @ {device['clock_ghz']} GHz, "
            f"{device['os']}), emulated as qemu `{device['qemu_cpu']}`. Budgets: {c['budgets']['artifact_mb']:g} MB, "
            f"{c['budgets']['latency_ms']:g} ms, {c['budgets']['memory_mb']:g} MB memory.", ""]  # fmt: skip
    if c["failed"]:
        out += ["## ❌ Failures", ""]
        for r in c["failed"]:
            out.append(f"- **{r.name} FAILED**")
            out += [f"  - `{f}`" for f in r.failures] or ["  - no check recorded a failure string"]
        out.append("")
    out += ["## Summary", "", "As `toolkit export` prints it:", "", "```text", *export_summary_lines(manifest),
            *textwrap.wrap(f"ship first: {c['suggested_why']}", 80, break_on_hyphens=False), "```", ""]  # fmt: skip
    out += ["## Validated", ""] + [f"- {s}" for s in m["validation"]["validated"]] + [""]
    out += ["## NOT validated", ""] + [f"- {s}" for s in m["validation"]["not_validated"]] + [""]
    out += ["## Artifacts", "", summary_table_md(c["rows"]), ""]
    out += ["Latency is an ESTIMATE from the emulated inference, not a measurement (see below).", ""]
    for plot in plots:
        out += [f"### {plot.title}", "", f"![{plot.title}]({ASSETS_DIR}/{plot.key}.png)", "", plot.caption, ""]
    for a in nnapi_artifacts(manifest):
        cov = a["details"]["nnapi_coverage"]
        out += [f"NNAPI coverage of **{a['name']}** (API {cov['api_level']}): {cov['accepted']}/{cov['nodes']} nodes "
                f"({cov['share']:.1%}) accepted, {cov['partitions']} delegated partition(s).", ""]  # fmt: skip
        out += [md_table(["op left on the CPU", "count", "reason"],
                         [[f"`{r['op']}`", r["count"], r["reason"]] for r in cov["rejected"]]), ""]  # fmt: skip
    if c["cycles_estimate"]:
        out += ["## Latency estimate: the assumption", "",
                "ESTIMATE, not measured on a device: llvm-mca cycles of the last emulated inference's blocks + simulated "
                "cache-miss stalls, / clock, x a factor calibrated against published timings (error below).", ""]  # fmt: skip
    else:
        out += ["## Latency estimate: the assumption", "",
                f"Median retired guest instructions per inference / `instructions_per_ns = {device['instructions_per_ns']}` "
                f"(profile; {device['cpu_model']} at {device['clock_ghz']} GHz). Not measured on a device.", ""]  # fmt: skip
    out += [md_table(c["latency_table"][0], c["latency_table"][1]), "", c["latency_table"][2], ""]
    if c["bucket_table"]:
        out += ["### Length buckets", "", md_table(c["bucket_table"][0], c["bucket_table"][1]), "",
                c["bucket_table"][2], ""]
    out += [f"- {s}" for s in c["assumptions"]] + [""]
    vocab = c["vocab"]
    out += ["## Teacher and student", "", md_table(["", "teacher", "student", "xlnet-base"], [
        ["parameters", millions(teacher["parameters"]), millions(student["parameters"]),
         millions(m["reference_sizes"]["xlnet_base_parameters"])],
        ["fp32 bytes", size_mb(teacher["bytes_fp32"]), size_mb(student["bytes_fp32"]),
         size_mb(m["reference_sizes"]["xlnet_base_bytes_fp32"])],
        ["dev accuracy", pct(teacher["dev_accuracy"]), pct(student["dev_accuracy"]), "–"],
        ["layers × d_model", f"{teacher['config']['n_layer']} × {teacher['config']['d_model']}",
         f"{student['config']['n_layer']} × {student['config']['d_model']}", "–"],
        ["vocabulary", f"{teacher['config']['vocab_size']:,}", f"{student['config']['vocab_size']:,}", "–"],
    ]), ""]  # fmt: skip
    out += [f"Retention {pct(student['retention'])}. Vocabulary trimmed from {m['tokenizer']['trimmed_from']:,} to "
            f"{m['tokenizer']['vocab_size']:,} tokens"
            + (f" (train token coverage {pct(vocab['train_token_coverage'])}, dev {pct(vocab['dev_token_coverage'])})"
               if "train_token_coverage" in vocab else "") + ".", ""]  # fmt: skip
    history = student["distill"].get("history") or []
    if history:
        out += [md_table(["epoch", "dev accuracy", "agreement with the teacher"],
                         [[h["epoch"], pct(h["dev_accuracy"]), pct(h["agreement"]) if h.get("agreement") is not None
                           else "–"] for h in history]), ""]  # fmt: skip
    libs = ", ".join(f"{k} {v}" for k, v in m["toolkit"]["libraries"].items())
    out += ["## Reproducibility", "",
            f"- created {m['created']} by xlnet-edge-toolkit {m['toolkit']['version']}",
            f"- Python {m['toolkit']['python']}",
            f"- libraries: {libs}",
            f"- teacher `{teacher['path']}` fingerprint `{teacher['fingerprint']}`",
            f"- train data `{m['data']['train']['path']}` sha256 `{m['data']['train']['sha256']}`",
            f"- eval data `{m['data']['eval']['path']}` sha256 `{m['data']['eval']['sha256']}`",
            f"- tokenizer `{m['tokenizer']['file']}` sha256 `{m['tokenizer']['sha256']}`"]  # fmt: skip
    out += [f"- `{a['file']}` sha256 `{a['sha256']}`" for a in m["artifacts"]]
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------------------------


def _save_assets(plots: Sequence[Plot], out_dir: Path) -> None:
    for plot in plots:
        atomic_write_bytes(out_dir / ASSETS_DIR / f"{plot.key}.png", plot.png)


def write_report(manifest: dict, out_dir: Path) -> tuple[Path, Path]:
    """Write ``report.html`` (self-contained) and ``report.md`` (+ ``report_assets/*.png``) into ``out_dir``.

    The manifest is validated first, so a broken one fails here with every problem listed, not as a KeyError.
    """
    from toolkit.manifest_schema import validate_manifest

    validate_manifest(manifest)
    out_dir = Path(out_dir)
    plots = render_plots(manifest)
    _save_assets(plots, out_dir)
    markdown = atomic_write_text(out_dir / "report.md", render_markdown(manifest, plots))
    html = atomic_write_text(out_dir / "report.html", render_html(manifest, plots))
    return html, markdown


# ---------------------------------------------------------------------------------------------------------------
# Index page for --target all
# ---------------------------------------------------------------------------------------------------------------

PROFILE_COLOURS = ["#0969da", "#8250df", "#bf3989", "#1a7f37", "#9a6700", "#cf222e"]


def plot_profiles(manifests: Sequence[Mapping]) -> Figure:
    """Every artifact of every profile: accuracy vs size, one colour per profile, ✕ for failed ones."""
    fig = Figure(figsize=(8.0, 4.2), dpi=110, layout="constrained")
    ax = fig.add_subplot()
    _style(ax, "All profiles: accuracy vs size (marker size ∝ estimated latency)")
    for k, m in enumerate(manifests):
        colour = PROFILE_COLOURS[k % len(PROFILE_COLOURS)]
        for r in artifact_rows(m):
            if r.host_accuracy is None:
                continue
            size = 40 + 6 * (r.latency_ms or 0)
            ax.scatter(r.mb, r.host_accuracy, s=size, color=colour, marker="o" if r.valid else "X", alpha=0.8,
                       edgecolors="black" if r.valid else RED, linewidths=0.8)  # fmt: skip
            ax.annotate(r.name, (r.mb, r.host_accuracy), xytext=(6, 4), textcoords="offset points", fontsize=7,
                        color=colour)  # fmt: skip
        ax.scatter([], [], color=colour, label=m["profile"]["name"])
    ax.set_xscale("log")
    _plain_log_ticks(ax)
    ax.set_xlabel("file size, MB (log scale)")
    ax.set_ylabel("dev accuracy (host run)")
    ax.margins(x=0.2, y=0.2)
    ax.legend(fontsize=8, loc="lower right")
    return fig


INDEX_TEMPLATE = r"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>XLNet edge bundles: all profiles</title>
<style>{{ css }}</style></head><body><main>
<h1>All profiles</h1>
<p class="sub">{{ entries|length }} profile bundle(s). Latencies are ESTIMATES from the emulated device (one thread), not device timings.</p>
<div class="banner {{ 'ok' if all_ok else 'bad' }}">{{ '✔ Every artifact of every profile passed validation' if all_ok else '✘ Some artifacts FAILED validation' }}</div>
<table>
<tr><th class="l">profile</th><th class="l">device</th><th>budgets</th><th>student</th><th class="l">ship first</th>
<th>size</th><th>host accuracy</th><th>latency <span class="est">ESTIMATE</span></th><th>artifacts valid</th><th class="l">report</th></tr>
{% for e in entries %}
<tr class="{{ '' if e.ok else 'failed' }}"><td class="l nw"><b>{{ e.m.profile.name }}</b></td>
<td class="l">{{ e.m.profile.device.cpu_model }} · {{ e.m.profile.device.os }}</td>
<td class="nw">{{ '%g'|format(e.m.profile.budgets.artifact_mb) }} MB · {{ '%g'|format(e.m.profile.budgets.latency_ms) }} ms</td>
<td>{{ pct(e.m.student.dev_accuracy) }}<br><small>{{ millions(e.m.student.parameters) }} params</small></td>
<td class="l nw">{% if e.best %}<code>{{ e.best.name }}</code>{% if not e.best.fits_budgets %}<br><span class="warn">outside the budgets</span>{% endif %}{% else %}<span class="fail">none valid</span>{% endif %}</td>
<td class="nw">{{ '%.2f MB'|format(e.best.mb) if e.best else '–' }}</td><td>{{ pct(e.best.host_accuracy) if e.best else '–' }}</td>
<td>{{ '~%.1f ms'|format(e.best.latency_ms) if e.best and e.best.latency_ms is not none else '–' }}</td>
<td><span class="{{ 'pass' if e.ok else 'fail' }}">{{ e.valid }}/{{ e.rows|length }}</span></td>
<td class="l"><a href="{{ e.link }}">{{ e.link }}</a></td></tr>
{% endfor %}</table>
<figure style="max-width:900px;margin:14px auto"><img alt="all profiles" src="{{ plot.data_uri }}"><figcaption>{{ plot.caption }}</figcaption></figure>
<h2>Every artifact</h2>
<table><tr><th class="l">profile</th><th class="l">artifact</th><th class="l">runtime + delegate</th><th>size</th><th>host acc</th>
<th>Δ vs student</th><th>emulator acc (host)</th><th>latency est. (budget)</th><th>verdict</th></tr>
{% for e in entries %}{% for r in e.rows %}
<tr class="{{ '' if r.valid else 'failed' }}"><td class="l">{{ e.m.profile.name }}</td><td class="l">{{ r.name }}</td><td class="l">{{ r.runtime_delegate }}</td>
<td>{{ '%.2f'|format(r.mb) }} MB</td><td>{{ pct(r.host_accuracy) }}</td><td>{{ signed_points(r.delta_points) }} pts</td>
<td>{{ pct(r.emulator_accuracy) }} ({{ pct(r.emulator_host_accuracy) }})</td>
<td>{% if r.latency_ms is not none %}<span class="{{ 'pass' if r.within_latency else 'fail' }}">~{{ '%.1f'|format(r.latency_ms) }}</span>{% else %}–{% endif %} ({{ '%g'|format(r.latency_budget_ms) }})</td>
<td>{% if r.valid %}<span class="pass">VALID</span>{% else %}<span class="fail">FAILED</span>{% endif %}</td></tr>
{% endfor %}{% endfor %}</table>
<footer>Created {{ created }} · xlnet-edge-toolkit {{ version }}</footer>
</main></body></html>
"""


def write_index(
    manifests: list[dict], out_dir: Path, report_links: Sequence[str] | None = None
) -> tuple[Path, Path]:
    """One page comparing profiles (``index.html`` + ``index.md``) for a ``--target all`` run.

    ``report_links`` are the per-profile report paths relative to ``out_dir``, in the manifests' order; by default
    ``<profile name>/report.html``.
    """
    from toolkit.manifest_schema import validate_manifest

    if not manifests:
        raise ValueError("write_index needs at least one manifest")
    for m in manifests:
        validate_manifest(m, f"manifest of {m.get('profile', {}).get('name', '?')}")
    links = list(report_links) if report_links else [f"{m['profile']['name']}/report.html" for m in manifests]
    if len(links) != len(manifests):
        raise ValueError(f"{len(links)} report links for {len(manifests)} manifests")
    out_dir = Path(out_dir)
    entries = []
    for m, link in zip(manifests, links):
        rows = artifact_rows(m)
        best, _ = suggest_artifact(rows)
        valid = sum(r.valid for r in rows)
        entries.append({"m": m, "rows": rows, "best": best, "valid": valid, "ok": valid == len(rows), "link": link})
    plot = Plot("profiles", "All profiles", "Each artifact's host accuracy against its size; ✕ = failed; larger "
                "markers = higher estimated latency.", _png(plot_profiles(manifests)))  # fmt: skip
    _save_assets([plot], out_dir)
    html = _ENV.from_string(INDEX_TEMPLATE).render(
        css=CSS, entries=entries, plot=plot, all_ok=all(e["ok"] for e in entries), pct=pct, millions=millions,
        signed_points=signed_points, created=max(m["created"] for m in manifests),
        version=manifests[0]["toolkit"]["version"],
    )
    md = ["# All profiles", "", "Latencies are ESTIMATES from the emulated device (one thread), not device timings.", ""]
    md.append(md_table(
        ["profile", "device", "ship first", "size MB", "host acc", "latency est. ms", "valid", "report"],
        [[e["m"]["profile"]["name"], e["m"]["profile"]["device"]["cpu_model"],
          (e["best"].name + ("" if e["best"].fits_budgets else " (outside the budgets)")) if e["best"] else "**none valid**", f"{e['best'].mb:.2f}" if e["best"] else "–",
          pct(e["best"].host_accuracy) if e["best"] else "–",
          num(e["best"].latency_ms, ".1f") if e["best"] else "–",
          f"{e['valid']}/{len(e['rows'])}" if e["ok"] else f"**{e['valid']}/{len(e['rows'])}**",
          f"[report]({e['link']})"] for e in entries],
    ))  # fmt: skip
    md += ["", f"![all profiles]({ASSETS_DIR}/{plot.key}.png)", ""]
    for e in entries:
        md += [f"## {e['m']['profile']['name']}", "", summary_table_md(e["rows"]), ""]
    return (
        atomic_write_text(out_dir / "index.html", html),
        atomic_write_text(out_dir / "index.md", "\n".join(md) + "\n"),
    )
