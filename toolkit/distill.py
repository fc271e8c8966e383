"""Distillation: turn a fine-tuned XLNet teacher into a shallow, export-friendly student sized by a target profile.

The stage, in order:
1. size the student from the profile's budgets (:func:`choose_shape`: parameters, bytes, and latency from the
   emulator-fitted, calibrated per-profile model of toolkit/latency_model.py);
2. trim the vocabulary to the tokens the task data uses (the embedding is most of a small model);
3. initialise the student from the teacher (:func:`init_from_teacher`): embeddings of the kept tokens, an even
   spread of teacher layers (first and last included), pooling and head; a narrower student gets its embeddings
   projected on the teacher embedding's top principal directions and fresh layers (documented in the README);
4. knowledge distillation (:func:`distill`): temperature-softened KL to the cached teacher logits plus hard-label
   cross-entropy, optional hidden-state matching through a projection; fixed seeds, progress bar, per-epoch
   checkpoints with ``resume``, early stopping on dev accuracy. The loop is written for Hugging Face Accelerate:
   under ``torchrun --nproc_per_node N -m toolkit distill ...`` or ``accelerate launch --multi_gpu --num_processes N
   -m toolkit distill ...`` it runs data-parallel (DDP; gloo on CPUs, NCCL on GPUs), each process on its own slice of
   every global batch, the main process alone printing and writing files (README, "Distillation on several processes").
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F
from tqdm.auto import tqdm

from toolkit.augment import Augmenter, AugmentRecipe, word_neighbours
from toolkit.data import LabelledData, bucketed_batches, unlabelled
from toolkit.errors import ToolkitError
from toolkit.files import atomic_path, atomic_write_json, cache_dir, sha256_file
from toolkit.labels import head_names, match_labels
from toolkit.profiles import Profile
from toolkit.student import STUDENT_WEIGHTS, StudentConfig, XLNetStudent, hf_layer_state, save_student
from toolkit.teacher import (
    accuracy,
    inference_copy,
    load_teacher,
    predict_logits,
    resolve_precision,
    warmup_linear_schedule,
)
from toolkit.tokenizer import VocabMap, XLNetTextEncoder, collect_used_ids

CHECKPOINT = "checkpoint.pt"
REPORT = "distill_report.json"
# The old uncalibrated assumption (sustained GFLOP/s per GHz), now only the fallback of toolkit/latency_model.py for a
# profile/artifact combination without an emulator-fitted model.
GFLOPS_PER_GHZ = 4.0
MAX_PARAM_RATIO = 0.25  # the largest student, as a share of the teacher's parameters (preflight sizes it the same)
# Quantization-aware epochs: the float student's own logits (train pool and dev) at their start, what they reproduce.
QAT_REFERENCE = "qat-reference-logits.pt"
QAT_LR_SCALE = 0.1  # their learning rate: this share of --learning-rate, decaying linearly to 0


# ---------------------------------------------------------------------------------------------------------------
# 1. Sizing the student from the profile
# ---------------------------------------------------------------------------------------------------------------


class DistillError(ToolkitError, ValueError):
    """Distillation cannot start: no student fits the profile, labels disagree, a foreign checkpoint."""


@dataclass(frozen=True)
class CostPrediction:
    parameters: int
    embedding_parameters: int
    bytes_fp32: int
    bytes_int8: int  # linear weights int8, embedding as the profile's recipes keep it
    flops: int  # per inference at the profile's sequence length
    latency_ms_estimate: float  # the SLOWEST of the profile's artifacts, single thread (toolkit/latency_model.py)
    latency_ms_by_artifact: dict = field(default_factory=dict)  # artifact name -> predicted ms
    cost_model: str = ""  # what the latency prediction rests on
    binding_limit: str = ""  # set by choose_shape: what stopped the student from being larger


def layer_parameters(d_model: int, d_inner: int, config: StudentConfig | None = None) -> int:
    """One XLNet layer: q/k/v/o/r projections, 3 attention biases + 2 segment embeddings, FFN, two norms.

    With ``config``: pruned heads (``inner``), the kept position-table width and factorised projections counted.
    """
    if config is None:
        return 5 * d_model * d_model + 5 * d_model + 2 * d_model * d_inner + d_inner + d_model + 4 * d_model
    from toolkit.latency_model import linear_macs  # a projection's weights = its multiply-adds per token

    inner = config.inner
    projections = 4 * linear_macs(config, d_model, inner) + 2 * linear_macs(config, d_model, d_inner)
    return projections + config.position_width * inner + 5 * inner + d_inner + d_model + 4 * d_model


def predict_cost(config: StudentConfig, profile: Profile, models: dict | None = None) -> CostPrediction:
    """Parameters, bytes and FLOPs of a student shape, and its predicted latency on the profile's device.

    Latency: per artifact, the emulator-fitted, calibrated model of toolkit/latency_model.py (cycles per multiply-add
    + per token-layer element + per inference, from targets/cost_models.json); the estimate is the slowest artifact's.
    """
    from toolkit.latency_model import load_models, multiply_adds, predict_ms

    d = config.d_model
    embedding = config.vocab_size * d
    body = config.n_layer * layer_parameters(d, config.d_inner, config) + d * d + d + d * config.num_labels
    body += config.num_labels
    quantizes_embedding = any(a.recipe.endswith("-embedding") for a in profile.artifacts)
    bytes_int8 = embedding * (1 if quantizes_embedding else 4) + body
    flops = 2 * multiply_adds(config)
    models = load_models() if models is None else models
    predictions = {a.name: predict_ms(config, profile, a, models) for a in profile.artifacts}
    slowest = max(predictions, key=lambda name: predictions[name].ms)
    return CostPrediction(
        embedding + body, embedding, 4 * (embedding + body), bytes_int8, flops, predictions[slowest].ms,
        {name: round(p.ms, 3) for name, p in predictions.items()},
        f"{slowest} (slowest artifact): {predictions[slowest].source}",
    )


def choose_shape(
    profile: Profile,
    teacher_config,
    vocab_size: int,
    max_parameters: int | None = None,
    n_layer: int | None = None,
    d_model: int | None = None,
) -> tuple[StudentConfig, CostPrediction]:
    """The deepest, then widest, student within the profile's constraints and budgets (flags override).

    Width prefers the teacher's (so its layers copy over exactly); depth stays at most half the teacher's. The
    latency budget applies to the slowest of the profile's artifacts (calibrated model, :func:`predict_cost`). The
    returned cost names the limit that stopped a larger student (``binding_limit``).
    """
    from toolkit.latency_model import load_models

    models = load_models()
    constraints = profile.student
    teacher_d = teacher_config.d_model
    step = 4 * constraints.n_head  # head widths in multiples of 4
    widest = min(teacher_d, constraints.max_d_model) // step * step
    narrowest = min(constraints.min_d_model, widest)
    widths = [d_model] if d_model else list(range(widest, narrowest - 1, -step))
    max_depth = max(1, min(constraints.max_layers, teacher_config.n_layer // 2))
    depths = [n_layer] if n_layer else list(range(max_depth, 0, -1))
    candidates = []
    for depth in depths:
        for width in widths:
            config = StudentConfig(
                vocab_size=vocab_size,
                d_model=width,
                n_layer=depth,
                # The teacher's head layout and FFN width when its layers copy over, else the profile's.
                n_head=teacher_config.n_head if width == teacher_d else constraints.n_head,
                d_inner=teacher_config.d_inner if width == teacher_d else constraints.ffn_ratio * width,
                num_labels=teacher_config.num_labels,
                seq_len=profile.sequence_length,
                activation=constraints.activations[0],
                normalisation=constraints.normalisations[0],
                mask_input=constraints.mask_input,
            )
            cost = predict_cost(config, profile, models)
            failed = _failed_limits(cost, profile, max_parameters)
            candidates.append((failed, config, cost))
            if not failed or (n_layer and d_model):
                limit = _binding_limit(candidates, profile, max_parameters, teacher_config, n_layer, d_model)
                return config, replace(cost, binding_limit=limit)
    raise DistillError(
        f"no student shape fits profile '{profile.name}' (artifact ≤ {profile.budgets.artifact_mb} MB, latency ≤ "
        f"{profile.budgets.latency_ms} ms, parameters ≤ {max_parameters}); smallest tried: "
        f"{candidates[-1][1].n_layer} layers × d{candidates[-1][1].d_model} = {candidates[-1][2].parameters} params"
    )


def sizing_record(cost: CostPrediction, profile: Profile, max_parameters: int | None = None) -> dict:
    """How the student was sized, for the distill report and the manifest (``student.distill.sizing``)."""
    return {
        "cost_model": cost.cost_model,
        "binding_limit": cost.binding_limit or "not recorded",
        "predicted_latency_ms": round(cost.latency_ms_estimate, 3),
        "predicted_by_artifact": cost.latency_ms_by_artifact,
        "latency_budget_ms": profile.budgets.latency_ms,
        "predicted_bytes_int8": cost.bytes_int8,
        "artifact_budget_mb": profile.budgets.artifact_mb,
        "parameters": cost.parameters,
        "max_parameters": max_parameters,
    }


def _failed_limits(cost: CostPrediction, profile: Profile, max_parameters: int | None) -> list[str]:
    """The budgets a candidate breaks, in the order they are reported."""
    failed = []
    if cost.latency_ms_estimate > profile.budgets.latency_ms:
        slowest = cost.cost_model.split(" (")[0]
        failed.append(f"latency budget {profile.budgets.latency_ms:g} ms ({slowest}, the slowest artifact, predicted "
                      f"{cost.latency_ms_estimate:.1f} ms)")  # fmt: skip
    if cost.bytes_int8 > profile.budgets.artifact_mb * 1e6:
        failed.append(f"size budget {profile.budgets.artifact_mb:g} MB (predicted {cost.bytes_int8 / 1e6:.1f} MB)")
    if max_parameters is not None and cost.parameters > max_parameters:
        failed.append(f"parameter cap {max_parameters:,} ({MAX_PARAM_RATIO:.0%} of the teacher; "
                      f"{cost.parameters:,} predicted)")  # fmt: skip
    return failed


def _binding_limit(candidates, profile: Profile, max_parameters, teacher_config, n_layer, d_model) -> str:
    """What stopped the chosen (last) candidate from being the larger one tried before it."""
    if n_layer and d_model:
        return "user flags (--layers, --d-model)"
    if len(candidates) == 1:
        s = profile.student
        width = candidates[0][1].d_model
        caps = []
        if not n_layer:
            caps.append(f"depth {candidates[0][1].n_layer} = min(student.max_layers {s.max_layers}, half the "
                        f"teacher's {teacher_config.n_layer} layers)")  # fmt: skip
        if not d_model:
            caps.append(f"width {width} = min(student.max_d_model {s.max_d_model}, the teacher's d_model "
                        f"{teacher_config.d_model})")  # fmt: skip
        return "shape caps: " + "; ".join(caps) if caps else "user flags"
    failed, larger, _ = candidates[-2]
    return f"{' and '.join(failed)} for the next larger shape tried, {larger.n_layer} × d{larger.d_model}"


# ---------------------------------------------------------------------------------------------------------------
# 2-3. Vocabulary trimming and initialisation from the teacher
# ---------------------------------------------------------------------------------------------------------------


def trim_vocabulary(
    encoder: XLNetTextEncoder, data: LabelledData, min_count: int = 1, extra_texts: list[str] | None = None
) -> VocabMap:
    """Keep the token ids the task's texts (and ``extra_texts``: transfer text) use at least ``min_count`` times.

    The specials are always kept. The student's embedding has only these rows; ids not kept map to ``<unk>``.
    ``min_count=1`` keeps every used token; 2 drops the one-off tokens, which on SST-2 halves the embedding for a
    small loss in coverage.
    """
    texts = list(data.texts) + (list(data.pairs) if data.pairs else []) + list(extra_texts or [])
    if min_count <= 1:
        return VocabMap(collect_used_ids(encoder, texts))
    counts = Counter(i for ids in encoder.text_ids(texts) for i in ids)
    return VocabMap.from_used_ids([i for i, n in counts.items() if n >= min_count])


def vocabulary_coverage(encoder: XLNetTextEncoder, vocab_map: VocabMap, data: LabelledData) -> float:
    """Share of the data's tokens the trimmed vocabulary keeps (the rest become <unk>)."""
    texts = list(data.texts) + (list(data.pairs) if data.pairs else [])
    ids = [i for row in encoder.text_ids(texts) for i in row]
    return float((vocab_map.to_student(np.asarray(ids)) != 0).mean()) if ids else 1.0


def spread_layers(teacher_layers: int, student_layers: int) -> list[int]:
    """Evenly spread teacher layer indices, first and last included (one layer: the first)."""
    if student_layers == 1:
        return [0]
    return [round(i * (teacher_layers - 1) / (student_layers - 1)) for i in range(student_layers)]


def random_rotation(size: int, seed: int) -> torch.Tensor:
    """A seeded, uniformly random orthogonal matrix [size, size] (QR of a Gaussian, signs fixed)."""
    gaussian = torch.randn(size, size, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    q, r = torch.linalg.qr(gaussian)
    return (q * torch.sign(torch.diagonal(r))).to(torch.float32)


def init_from_teacher(teacher, config: StudentConfig, vocab_map: VocabMap) -> tuple[XLNetStudent, dict]:
    """A student initialised from the teacher; returns it and a record of what was copied from where."""
    student = XLNetStudent(config).init_like_xlnet(teacher.config.initializer_range)
    hf_state = teacher.state_dict()
    kept = torch.tensor(vocab_map.kept_ids)
    embedding = hf_state["transformer.word_embedding.weight"][kept]
    record: dict = {"vocab_rows": len(kept)}
    if config.d_model == teacher.config.d_model:
        layer_ids = spread_layers(teacher.config.n_layer, config.n_layer)
        state = {"word_embedding.weight": embedding}
        for student_index, teacher_index in enumerate(layer_ids):
            state.update(hf_layer_state(hf_state, teacher_index, student_index))
        for name in ("summary.weight", "summary.bias", "logits_proj.weight", "logits_proj.bias"):
            source = "sequence_summary." + name if name.startswith("summary") else name
            state[name] = hf_state[source]
        missing, unexpected = student.load_state_dict(state, strict=False)
        assert not unexpected and all(k.endswith(("centre",)) for k in missing), (missing, unexpected)
        record.update(scheme="copy", teacher_layers=layer_ids)
    else:
        # Narrower: P = the top principal directions of the teacher's embedding rows ([d_teacher, d_student]),
        # turned by a seeded random rotation. Embeddings and the pooling/head are the teacher's seen through P;
        # layers start fresh (XLNet init). Without the rotation the first principal direction is one coordinate
        # with ~8x the spread of the others, and that outlier sets every per-tensor int8 scale of the residual
        # stream (full-integer int8 then disagreed with fp32 on ~5% of SST-2 dev); rotated, the same subspace
        # spreads evenly over all coordinates.
        centred = embedding - embedding.mean(0, keepdim=True)
        _, _, v = torch.linalg.svd(centred, full_matrices=False)
        projection = v[: config.d_model].t() @ random_rotation(config.d_model, seed=0)
        with torch.no_grad():
            student.word_embedding.weight.copy_(embedding @ projection)
            student.summary.weight.copy_(projection.t() @ hf_state["sequence_summary.summary.weight"] @ projection)
            student.summary.bias.copy_(projection.t() @ hf_state["sequence_summary.summary.bias"])
            student.logits_proj.weight.copy_(hf_state["logits_proj.weight"] @ projection)
            student.logits_proj.bias.copy_(hf_state["logits_proj.bias"])
        record.update(scheme="rotated-pca-projection", teacher_layers=[])
    return student, record


# ---------------------------------------------------------------------------------------------------------------
# 4. Knowledge distillation
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DistillSettings:
    epochs: int = 4
    batch_size: int = 32
    learning_rate: float = 3e-4
    warmup_ratio: float = 0.06
    weight_decay: float = 0.01
    temperature: float = 2.0
    kd_weight: float = 0.7  # alpha: share of the loss from the teacher's soft labels (rest: hard labels)
    hidden_weight: float = 0.0  # > 0: every token's hidden state of mapped layers matched through a projection
    attention_weight: float = 0.0  # > 0: attention distributions of mapped layers matched (head means if counts differ)
    augment: int = 0  # teacher-labelled variants per training text (toolkit/augment.py); 0 = off
    route: str = "fresh"  # fresh | prune | prune+lowrank (toolkit/prune.py)
    prune_steps: int = 3  # pruning steps, each followed by half an epoch of distillation
    qat_epochs: int = 0  # N more epochs after ``epochs``, quantization-aware (toolkit/qat.py); 0 = off
    patience: int = 2  # early stopping: epochs without dev improvement
    seed: int = 0
    vocab_min_count: int = 1  # trimming: keep tokens seen at least this often in the training texts
    teacher_precision: str = "auto"  # teacher logits: fp32, bf16, or auto (bf16 where computed natively)


def kd_loss(
    student_logits, teacher_logits, labels, temperature: float, kd_weight: float, labelled=None
) -> torch.Tensor:
    """Per example alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE(student, label) (Hinton et al.
    2015), averaged over the batch. ``labelled`` (bool [B]; None = all): examples without a label (augmented
    variants, transfer text) learn from the teacher alone, with weight 1 on the soft term."""
    soft = F.kl_div(
        F.log_softmax(student_logits / temperature, dim=-1),
        F.log_softmax(teacher_logits / temperature, dim=-1),
        reduction="none",
        log_target=True,
    ).sum(-1) * (temperature**2)
    hard = F.cross_entropy(student_logits, labels, reduction="none")
    if labelled is None:
        return (kd_weight * soft + (1.0 - kd_weight) * hard).mean()
    labelled = labelled.to(soft.dtype)
    return (labelled * (kd_weight * soft + (1.0 - kd_weight) * hard) + (1.0 - labelled) * soft).mean()


def attention_loss(student_attentions, teacher_attentions, mask) -> torch.Tensor:
    """KL(teacher || student) of each mapped layer's attention rows over keys, at the rows of real tokens.

    Heads are matched one to one when the counts agree; otherwise the head-averaged distributions are (a student
    narrower than the teacher has fewer heads). ``mask``: [B, L] 1 for tokens, 0 for padding.
    """
    rows = mask.to(torch.float32)
    losses = []
    for s, t in zip(student_attentions, teacher_attentions):
        if s.shape[1] != t.shape[1]:
            s, t = s.mean(1, keepdim=True), t.mean(1, keepdim=True)
        t = t.to(s.dtype)
        kl = (t * (torch.log(t.clamp_min(1e-12)) - torch.log(s.clamp_min(1e-12)))).sum(-1)  # [B, n, L]
        losses.append((kl.mean(1) * rows).sum() / rows.sum().clamp_min(1.0))
    return torch.stack(losses).mean()


class HiddenMatcher(torch.nn.Module):
    """Projects each student layer's hidden states onto its teacher layer's (a learned linear map of any width;
    identity at the start when widths match) and scores the mean squared error at the real tokens (TinyBERT)."""

    def __init__(self, d_student: int, d_teacher: int, layers: int) -> None:
        super().__init__()
        self.projections = torch.nn.ModuleList(torch.nn.Linear(d_student, d_teacher) for _ in range(layers))
        if d_student == d_teacher:
            for p in self.projections:
                torch.nn.init.eye_(p.weight)
                torch.nn.init.zeros_(p.bias)

    def forward(self, student_hidden: list[torch.Tensor], teacher_hidden: list[torch.Tensor], mask) -> torch.Tensor:
        """Mean over layers of the per-token MSE; ``mask`` [B, L]: 1 for tokens, 0 for padding."""
        rows = mask.to(torch.float32)[..., None]
        losses = []
        for p, s, t in zip(self.projections, student_hidden, teacher_hidden):
            squared = (p(s) - t.to(s.dtype)) ** 2 * rows
            losses.append(squared.sum() / (rows.sum() * t.shape[-1]).clamp_min(1.0))
        return torch.stack(losses).mean()


def cached_teacher_logits(teacher, encoder, data: LabelledData, fingerprint: str, precision: str = "fp32"):
    """Teacher logits [N, C] on the training set, computed once per (teacher, data, precision) and cached.

    Kept outside the bundle (``.cache/teacher-logits/``), so a changed profile, ``--overwrite`` or a run that
    failed later reuses them; an interrupted computation resumes from its last flushed batch.
    """
    precision = resolve_precision(precision)
    cache = cache_dir("teacher-logits") / f"{fingerprint}-{precision}.npy"
    return predict_logits(teacher, encoder, data.texts, data.pairs, desc=f"teacher logits ({precision}, cached once)",
                          cache=cache, precision=precision)


@torch.no_grad()
def student_logits(student: XLNetStudent, encoder: XLNetTextEncoder, data: LabelledData, batch_size: int = 128):
    """Student logits [N, C], batches padded to their longest member."""
    student.eval()
    out = np.zeros((len(data), student.config.num_labels), dtype=np.float32)
    for start in range(0, len(data), batch_size):
        idx = list(range(start, min(start + batch_size, len(data))))
        batch = encoder.encode_padded_to_longest(
            [data.texts[i] for i in idx],
            None if data.pairs is None else [data.pairs[i] for i in idx],
            max_len=student.config.seq_len,
        )
        device = next(student.parameters()).device
        types = torch.from_numpy(batch.token_type_ids).to(device) if student.config.uses_pairs else None
        ids, mask = torch.from_numpy(batch.input_ids).to(device), torch.from_numpy(batch.attention_mask).to(device)
        out[idx] = student(ids, student.mask_input(mask), types).cpu().numpy()
    return out


@dataclass
class DistillResult:
    out_dir: Path
    report: dict = field(default_factory=dict)


def _fingerprint(*parts: str) -> str:
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def _teacher_fingerprint(folder: Path) -> str:
    return _fingerprint(*(sha256_file(p) for p in sorted(folder.glob("*.safetensors"))))


def distill(
    teacher_dir: Path | str,
    train: LabelledData,
    dev: LabelledData,
    profile: Profile,
    out_dir: Path | str,
    settings: DistillSettings = DistillSettings(),
    n_layer: int | None = None,
    d_model: int | None = None,
    max_param_ratio: float | None = MAX_PARAM_RATIO,
    resume: bool = False,
    stop_after_epochs: int | None = None,
    log=print,
    transfer: list[str] | None = None,
) -> DistillResult:
    """Distil ``teacher_dir`` into a student for ``profile``; writes the student folder ``out_dir``.

    ``transfer``: unlabelled texts the teacher labels and the student learns from too (``--transfer``).
    """
    from accelerate import Accelerator

    started = time.time()
    teacher_dir, out_dir = Path(teacher_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    log = log if accelerator.is_main_process else _silent  # several processes: only the main one prints
    torch.manual_seed(settings.seed)
    np.random.seed(settings.seed)

    from toolkit.prune import ROUTES

    if settings.route not in ROUTES:
        raise DistillError(f"route '{settings.route}': choose one of {list(ROUTES)}")
    if settings.qat_epochs < 0:
        raise DistillError(f"qat epochs {settings.qat_epochs}: choose 0 (off) or more")
    teacher, encoder = load_teacher(teacher_dir)
    # The data's labels as the teacher's output indices (one rule, see toolkit/labels.py); preflight made the
    # same match before any slow stage, so a mismatch never gets this far in `toolkit export`.
    labels_match = match_labels(head_names(teacher.config.to_dict()), train.label_names, str(teacher_dir))
    if train.label_names != labels_match.names:
        log(labels_match.describe())
    train, dev = labels_match.apply(train), labels_match.apply(dev)
    transfer = list(transfer or [])
    if transfer and train.pairs is not None:
        raise DistillError("transfer text is one text per row; this task classifies text pairs: drop --transfer")
    teacher_params = sum(p.numel() for p in teacher.parameters())
    vocab_map = trim_vocabulary(encoder, train, settings.vocab_min_count, transfer)
    student_encoder = encoder.with_vocab_map(vocab_map)
    max_parameters = int(teacher_params * max_param_ratio) if max_param_ratio else None
    config, cost = choose_shape(profile, teacher.config, len(vocab_map.kept_ids), max_parameters, n_layer, d_model)
    config = replace(
        config, uses_pairs=train.pairs is not None, dropout=teacher.config.dropout, labels=list(labels_match.names)
    )
    log(
        f"student: {config.n_layer} layers × d_model {config.d_model} ({config.activation}, {config.normalisation}), "
        f"vocab {config.vocab_size} of {teacher.config.vocab_size} -> {cost.parameters:,} params "
        f"({cost.parameters / teacher_params:.1%} of the teacher), predicted {cost.bytes_fp32 / 1e6:.1f} MB fp32 / "
        f"{cost.bytes_int8 / 1e6:.1f} MB int8, ~{cost.latency_ms_estimate:.1f} ms on {profile.device.cpu_model} (estimate, "
        f"budget {profile.budgets.latency_ms:g} ms); limit: {cost.binding_limit}"
    )

    teacher_fingerprint = _teacher_fingerprint(teacher_dir)
    fingerprint = _fingerprint(teacher_fingerprint, train.fingerprint())
    # What the teacher labels: the labelled texts, their variants (neighbours among the kept pieces, so the
    # student's vocabulary does not grow) and the transfer text. Each set's logits are cached on their own.
    unlabelled_sets = []
    if settings.augment:
        neighbours = word_neighbours(encoder, teacher.transformer.word_embedding.weight.detach(), vocab_map.kept_ids)
        recipe = AugmentRecipe(variants=settings.augment, seed=settings.seed)
        unlabelled_sets.append(Augmenter(recipe, encoder, neighbours).augment(train))
        log(f"augmentation: {len(unlabelled_sets[-1]):,} teacher-labelled variants of {len(train):,} training texts "
            f"(up to {settings.augment} each; {len(neighbours):,} words with an embedding neighbour)")  # fmt: skip
    if transfer:
        unlabelled_sets.append(unlabelled(transfer, train.label_names, "transfer text"))
        log(f"transfer text: {len(transfer):,} unlabelled texts for the teacher to label")
    pool = _concatenate([train] + unlabelled_sets)
    labelled = torch.tensor([True] * len(train) + [False] * (len(pool) - len(train)))
    labels_all = torch.tensor(pool.labels)
    # A resumed checkpoint must have trained on exactly this pool (same variants and transfer text).
    training_fingerprint = fingerprint if not unlabelled_sets else _fingerprint(fingerprint, pool.fingerprint())
    logits_started = time.time()
    # The logits run on the teacher's fast copy alone: transformers' model is dropped meanwhile (its fp32 weights
    # are the largest thing in memory) and loaded again afterwards for the student's init.
    fast_teacher = inference_copy(teacher, settings.teacher_precision)
    del teacher
    release_memory()
    with accelerator.main_process_first():  # the main process computes and caches; the others then load the cache
        soft_targets = torch.from_numpy(np.concatenate([
            cached_teacher_logits(fast_teacher, encoder, part, _fingerprint(teacher_fingerprint, part.fingerprint()),
                                  settings.teacher_precision)
            for part in [train] + unlabelled_sets
        ]))  # fmt: skip
    logits_seconds = round(time.time() - logits_started, 1)
    teacher_accuracy, teacher_dev_labels = None, None
    if accelerator.is_main_process:
        teacher_dev = predict_logits(
            fast_teacher, encoder, dev.texts, dev.pairs, desc="teacher dev", precision=settings.teacher_precision
        )
        teacher_accuracy = accuracy(teacher_dev, dev.labels)
        teacher_dev_labels = teacher_dev.argmax(-1)
    teacher_accuracy = _from_main(accelerator, teacher_accuracy)
    # Intermediate-layer transfer runs the teacher's fast copy on every batch; otherwise it is not needed any more.
    intermediate = settings.hidden_weight > 0 or settings.attention_weight > 0
    if not intermediate:
        del fast_teacher
        fast_teacher = None
        release_memory()
    else:
        fast_teacher = fast_teacher.to(accelerator.device).eval()
    teacher, _ = load_teacher(teacher_dir)
    # Reseed: the student's init and dropout must depend on the seed alone, not on whether the teacher logits came
    # from the cache (computing them builds a model, which draws from the global generator).
    torch.manual_seed(settings.seed)
    checkpoint_path = out_dir / CHECKPOINT
    prune_history: list[dict] = []
    lengths = [len(ids) for ids in encoder.text_ids(pool.texts)]
    training = TrainingSet(student_encoder, pool, soft_targets, labels_all, labelled, lengths, config.seq_len)
    if settings.route == "fresh":
        student, init_record = init_from_teacher(teacher, config, vocab_map)
    elif settings.route == "scratch":  # nothing from the teacher's weights: the baseline a recipe is measured against
        student = XLNetStudent(config).init_like_xlnet(teacher.config.initializer_range)
        init_record = {"vocab_rows": len(vocab_map.kept_ids), "scheme": "random", "teacher_layers": []}
    else:  # the teacher's layers at its width, pruned (and factorised) down to the budgets before training
        from toolkit.prune import pruned_config, route_target, shrink

        if accelerator.num_processes > 1:
            raise DistillError(f"route '{settings.route}' runs on one process; distil it without torchrun/accelerate")
        start = replace(config, d_model=teacher.config.d_model, n_head=teacher.config.n_head,
                        d_inner=teacher.config.d_inner)  # fmt: skip
        student, init_record = init_from_teacher(teacher, start, vocab_map)
        models = None

        def fits(candidate: StudentConfig) -> bool:
            nonlocal models
            from toolkit.latency_model import load_models

            models = models or load_models()
            return not _failed_limits(predict_cost(candidate, profile, models), profile, max_parameters)

        target = route_target(settings.route, student.config, config, fits)
        init_record.update(route=settings.route, target=target.describe(student.config.d_head))
        if resume and checkpoint_path.is_file():  # the checkpoint holds the pruned student: rebuild its shape
            student = XLNetStudent(pruned_config(student.config, target))
        else:
            log(f"{settings.route}: from the teacher's {start.n_layer} mapped layers at width {start.d_model} to "
                f"{target.describe(student.config.d_head)}, {settings.prune_steps} steps")  # fmt: skip
            importance_batches = lambda step: [  # noqa: E731  (16 batches per step, their own seed)
                training.encode(idx)
                for idx in bucketed_batches(lengths, settings.batch_size, seed=settings.seed + 1000 + step)[:16]
            ]
            student, prune_history = shrink(
                student, target, importance_batches, lambda model, batch: training.loss(model, batch, settings),
                lambda model, step: _recover(model, training, settings, dev, teacher_dev_labels, step),
                settings.prune_steps, log,
            )
        config = student.config
        cost = replace(predict_cost(config, profile), binding_limit=cost.binding_limit)
    matcher = HiddenMatcher(config.d_model, teacher.config.d_model, config.n_layer) if settings.hidden_weight else None
    teacher_config = teacher.config
    del teacher  # transformers' copy is not needed any more: give its memory back before training
    release_memory()
    params = list(student.parameters()) + (list(matcher.parameters()) if matcher else [])
    optimizer = torch.optim.AdamW(params, lr=settings.learning_rate, weight_decay=settings.weight_decay,
                                  fused=True)  # one kernel for all tensors: a step's update 19 -> 4.5 ms on CPU
    too_long = [n + 2 for n in lengths[: len(train)] if n + 2 > config.seq_len]  # + <sep> <cls>
    if too_long:
        log(
            f"truncation: {len(too_long)} of {len(train)} training texts are longer than the profile's "
            f"{config.seq_len}-token sequence (longest: {max(too_long)} tokens) and are cut to fit"
        )
    # Data parallel (N processes: torchrun / accelerate launch): ``batch_size`` is the global batch. Every step takes
    # the single-process run's next batch and process r trains on its rows r, r+N, ... (about batch_size/N rows);
    # DDP averages the gradients with each process's loss weighted by its share, so a step's update is the
    # single-process one up to float summation order and dropout masks, with the same schedule for any N.
    world, rank = accelerator.num_processes, accelerator.process_index
    steps_per_epoch = math.ceil(len(pool) / settings.batch_size)  # = len(bucketed_batches(...)) for any seed
    total = steps_per_epoch * settings.epochs  # the distillation's schedule; quantization-aware epochs get their own
    scheduler = warmup_linear_schedule(optimizer, total, settings.warmup_ratio)
    teacher_layers = spread_layers(teacher_config.n_layer, config.n_layer)

    state = {"epoch": 0, "best_accuracy": -1.0, "best_epoch": 0, "stale": 0, "history": [], "pruning": prune_history}
    own_rng = False
    qat_state = None
    if resume and checkpoint_path.is_file():
        saved = torch.load(checkpoint_path, weights_only=True)
        if saved["fingerprint"] != training_fingerprint or saved["config"] != asdict(config):
            raise DistillError(f"{checkpoint_path} belongs to another teacher, data or student shape; remove it")
        student.load_state_dict(saved["student"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        if matcher is not None:
            matcher.load_state_dict(saved["matcher"])
        torch.set_rng_state(saved["rng"])
        rank_rng = saved.get("rank_rng") or []  # every process's dropout stream (saved when several ran)
        if world > 1 and len(rank_rng) == world:
            torch.set_rng_state(rank_rng[rank])
            own_rng = True
        state = json.loads(saved["state"])
        qat_state = saved.get("qat")
        log(f"resuming after epoch {state['epoch']} (best dev accuracy {state['best_accuracy']:.4f})")
    elif resume:
        log(f"no checkpoint in {out_dir}: starting from the beginning")
    if rank and not own_rng:  # each other process: its own dropout stream (DDP makes the weights rank 0's)
        torch.manual_seed(settings.seed + 7919 * rank)

    if settings.route.startswith("prune"):  # the pruning steps, also when they ran before a resume
        init_record["pruning"] = state.get("pruning", [])
    plain_student = student  # before DDP wrapping: its helpers (mask_input) stay reachable
    qat_start = settings.epochs  # the first epoch (0-based) that trains quantization-aware
    if settings.qat_epochs and world > 1:
        raise DistillError("quantization-aware training runs on one process; distil without torchrun/accelerate")
    qat = None
    qat_settings = replace(settings, kd_weight=1.0)  # QAT reproduces the float student: its logits, no hard labels
    reference_dev = None
    # Resumed inside the quantization-aware epochs (a checkpoint of plain epochs starts them afresh: the pipeline's
    # extra QAT epoch continues a finished distillation this way).
    if settings.qat_epochs and state.get("qat_from_epoch"):
        qat, training, reference_dev, scheduler = start_quant_aware(
            plain_student, training, dev, out_dir, optimizer, steps_per_epoch * settings.qat_epochs, log, qat_state
        )
        scheduler.load_state_dict(saved["scheduler"])
    if matcher is not None:  # its gradients are averaged over the processes too
        student, matcher, optimizer = accelerator.prepare(student, matcher, optimizer)
    else:
        student, optimizer = accelerator.prepare(student, optimizer)
    layers = None if fast_teacher is None else LayerTransfer(fast_teacher, matcher, torch.tensor(vocab_map.kept_ids),
                                                             teacher_layers)  # fmt: skip
    progress = tqdm(
        total=total + steps_per_epoch * settings.qat_epochs, initial=state["epoch"] * steps_per_epoch,
        desc="distill", unit="step",
        disable=not accelerator.is_main_process,
    )
    for epoch in range(state["epoch"], settings.epochs + settings.qat_epochs):
        if state["stale"] >= settings.patience and epoch < qat_start:
            if not settings.qat_epochs:
                log(f"early stop: no dev improvement for {settings.patience} epochs")
                break
            continue  # skip to the quantization-aware epochs: they make the student the int8 one
        if epoch >= qat_start and qat is None:
            log(f"quantization-aware training from epoch {epoch + 1}: fake-quantized int8 tensors, learning the float "
                "student's own logits; the best quantization-aware epoch is kept")  # fmt: skip
            best = out_dir / STUDENT_WEIGHTS
            if best.is_file() and not (out_dir / QAT_REFERENCE).is_file():  # from the best epoch, the one exported
                from safetensors.torch import load_file

                plain_student.load_state_dict(load_file(str(best)))
                log(f"quantization-aware training starts from the best distilled epoch ({state['best_epoch']})")
            qat, training, reference_dev, scheduler = start_quant_aware(
                plain_student, training, dev, out_dir, optimizer, steps_per_epoch * settings.qat_epochs, log,
                calibration=calibration_batches(plain_student, student_encoder, train, profile.validation.seed),
            )
            state.update(best_accuracy=-1.0, stale=0, qat_from_epoch=epoch + 1)
        # QAT epochs without dropout: the int8 model they simulate has none, and its fixed ranges were calibrated
        # without it (dropout's 1/(1-p) scaling would push activations past them and clip their gradients).
        student.train(qat is None)
        batches = bucketed_batches(lengths, settings.batch_size, seed=settings.seed + epoch)
        share: list[int] = []  # the training examples this process saw this epoch
        for global_idx in batches:  # every process takes every step (DDP synchronises each backward pass)
            idx = global_idx[rank::world]
            weight = len(idx) * world / len(global_idx)  # exactly 1.0 for one process
            if idx:
                share.extend(idx)
            else:  # a last batch smaller than the number of processes: take part in the step with a zero weight
                idx, weight = global_idx[:1], 0.0
            ids, mask, types, _ = training.encode(idx)
            batch = (ids.to(accelerator.device), mask.to(accelerator.device), types.to(accelerator.device), idx)
            loss = train_step(student, batch, training, settings if qat is None else qat_settings, optimizer,
                              scheduler, params, layers=layers if qat is None else None, plain=plain_student,
                              weight=weight, backward=accelerator.backward, clip=accelerator.clip_grad_norm_)  # fmt: skip
            progress.update(1)
            progress.set_postfix(epoch=epoch + 1, loss=f"{loss:.3f}", best_dev=f"{state['best_accuracy']:.3f}",
                                 refresh=False)  # drawn with the next redraw: a line per step floods piped logs

        plain = accelerator.unwrap_model(student)
        # The main process evaluates and every process takes its result: the same early-stopping decision.
        dev_accuracy, agreement, with_float = None, None, None
        if accelerator.is_main_process:
            dev_logits = student_logits(plain, student_encoder, dev)
            dev_accuracy = accuracy(dev_logits, dev.labels)
            agreement = float((dev_logits.argmax(-1) == teacher_dev_labels).mean())
            if reference_dev is not None:  # QAT: the int8-simulated student against its float self
                with_float = float((dev_logits.argmax(-1) == reference_dev.argmax(-1)).mean())
        dev_accuracy, agreement = _from_main(accelerator, (dev_accuracy, agreement))
        ranks = _rank_shares(accelerator, share, len(pool))
        state["history"].append({"epoch": epoch + 1, "dev_accuracy": dev_accuracy, "agreement": agreement,
                                 "ranks": ranks} | ({} if with_float is None else {"agreement_with_float": with_float}))

        state["epoch"] = epoch + 1
        if dev_accuracy > state["best_accuracy"]:
            state.update(best_accuracy=dev_accuracy, best_epoch=epoch + 1, best_agreement=agreement, stale=0,
                         best_agreement_with_float=with_float)
            if accelerator.is_main_process:
                save_student(plain if qat is None else qat.snapshot(), out_dir)  # QAT: the weights on the int8 grid
                student_encoder.save_pretrained(out_dir)
        else:
            state["stale"] += 1
        progress.set_postfix(epoch=epoch + 1, dev=f"{dev_accuracy:.3f}", best_dev=f"{state['best_accuracy']:.3f}")
        rank_rng = _gather(torch.get_rng_state()) if world > 1 else None
        if accelerator.is_main_process:
            plain_matcher = accelerator.unwrap_model(matcher) if matcher is not None else None
            _save_checkpoint(
                checkpoint_path, plain if qat is None else qat.plain_state_dict(), optimizer, scheduler, plain_matcher,
                state, training_fingerprint, config, rank_rng, None if qat is None else qat.state_dict(),
            )
        if stop_after_epochs is not None and state["epoch"] >= stop_after_epochs:
            break
    progress.close()

    report = {
        "profile": profile.name,
        "teacher": str(teacher_dir),
        "teacher_parameters": teacher_params,
        "teacher_shape": {"n_layer": teacher_config.n_layer, "d_model": teacher_config.d_model},
        "teacher_bytes_fp32": teacher_params * 4,
        # Seconds for the training texts' teacher logits in this run (near 0 when the cache already had them).
        "teacher_logits": {
            "texts": len(train), "seconds": logits_seconds, "device": str(accelerator.device),
            "precision": resolve_precision(settings.teacher_precision),
        },
        "teacher_dev_accuracy": teacher_accuracy,
        "sizing": sizing_record(cost, profile, max_parameters),
        "student_dev_accuracy": state["best_accuracy"],
        # Share of dev texts where the student's argmax equals the teacher's (the best epoch's; per epoch in history).
        "agreement": state.get("best_agreement"),
        "student_best_epoch": state["best_epoch"],
        # The first quantization-aware epoch (the kept student is from one of those), or None without QAT.
        "qat_from_epoch": state.get("qat_from_epoch"),
        # QAT: dev argmax agreement of the kept int8-simulated student with the float student it started from.
        "agreement_with_float": state.get("best_agreement_with_float"),
        "training_examples": {
            "labelled": len(train),
            "augmented": sum(len(d) for d in unlabelled_sets if d.source != "transfer text"),
            "transfer": len(transfer),
        },
        "student_parameters": cost.parameters,
        "student_bytes_fp32": cost.bytes_fp32,
        "parameter_ratio": cost.parameters / teacher_params,
        "retention": state["best_accuracy"] / max(1e-9, teacher_accuracy),
        "shape": asdict(config),
        "predicted": asdict(cost),
        "vocab": {
            "teacher": teacher_config.vocab_size,
            "student": len(vocab_map.kept_ids),
            "min_count": settings.vocab_min_count,
            "train_token_coverage": vocabulary_coverage(encoder, vocab_map, train),
            "dev_token_coverage": vocabulary_coverage(encoder, vocab_map, dev),
        },
        "init": init_record,
        "settings": asdict(settings),
        "history": state["history"],
        "epochs_run": state["epoch"],
        "wall_seconds": round(time.time() - started, 1),
        "finished": state["epoch"] >= settings.epochs + settings.qat_epochs
        or (state["stale"] >= settings.patience and not settings.qat_epochs),
        "data_parallel": {
            "processes": world,
            "distributed_type": str(accelerator.distributed_type).split(".")[-1],
            "global_batch": settings.batch_size,
            "per_process_batch": math.ceil(settings.batch_size / world),
        },
        # What each process trained on in the last epoch run (every epoch's record is in "history").
        "ranks": state["history"][-1].get("ranks", []) if state["history"] else [],
    }
    if accelerator.is_main_process:
        atomic_write_json(out_dir / REPORT, report)
    accelerator.wait_for_everyone()  # every process returns once the student and the report are on disk
    return DistillResult(out_dir, report)


def start_quant_aware(student: XLNetStudent, training: "TrainingSet", dev: LabelledData, out_dir: Path, optimizer,
                      steps: int, log, saved_ranges: dict | None = None, calibration: list[tuple] | None = None):
    """Switch the loop to quantization-aware training: the float student's logits become the target, every op is
    fake-quantized with ranges from ``calibration`` (QAT begins) or ``saved_ranges`` (a resumed run), and the
    learning rate follows the QAT schedule over ``steps``. Returns (QuantAware, training set, float dev logits,
    scheduler)."""
    from toolkit.qat import QuantAware

    reference_train, reference_dev = float_reference(student, training, dev, out_dir, log)
    qat = QuantAware(student)
    if saved_ranges is not None:
        qat.load_state_dict(saved_ranges)
    if calibration is not None:
        qat.calibrate(calibration)
    scheduler = quant_aware_schedule(optimizer, steps)
    return qat, replace(training, soft_targets=reference_train), reference_dev, scheduler


def float_reference(student: XLNetStudent, training: "TrainingSet", dev: LabelledData, out_dir: Path, log):
    """The float student's logits on the training pool and on dev, as quantization-aware training begins: the
    target those epochs train the int8-simulated student to reproduce (self-distillation; the teacher already
    shaped the float student). Cached in ``out_dir`` so a run resumed inside the QAT epochs keeps the same target."""
    path = out_dir / QAT_REFERENCE
    if path.is_file():
        saved = torch.load(path, weights_only=True)
        return saved["train"], saved["dev"].numpy()
    log(f"float student's logits on {len(training.data):,} training texts: the quantization-aware epochs' target")
    train_logits = torch.from_numpy(student_logits(student, training.encoder, training.data))
    dev_logits = torch.from_numpy(student_logits(student, training.encoder, dev))
    with atomic_path(path) as tmp:
        torch.save({"train": train_logits, "dev": dev_logits}, tmp)
    return train_logits, dev_logits.numpy()


def calibration_batches(student: XLNetStudent, encoder: XLNetTextEncoder, train: LabelledData,
                        seed: int = 0) -> list[tuple]:
    """The exporters' static int8 calibration texts (``calibration_inputs`` with the profile's validation ``seed``,
    as the pipeline draws them) as forward arguments, one text at a time at the profile's length:
    quantization-aware training fixes its ranges on exactly these."""
    from toolkit.student import calibration_inputs

    arrays = calibration_inputs(student, encoder, train, seed)
    batches = []
    for i in range(len(arrays[0])):
        ids, mask = torch.from_numpy(arrays[0][i : i + 1]).long(), torch.from_numpy(arrays[1][i : i + 1])
        types = torch.from_numpy(arrays[2][i : i + 1]).long() if student.config.uses_pairs else None
        batches.append((ids, mask, types))  # the mask as the exported program takes it, which forward takes too
    return batches


def quant_aware_schedule(optimizer, steps: int):
    """The quantization-aware epochs' learning rate: ``QAT_LR_SCALE`` of the optimizer's initial rate, decaying
    linearly to 0 (a fine-tuning of a trained student, no warm-up)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: QAT_LR_SCALE * max(0.0, 1 - step / max(1, steps)))


def release_memory() -> None:
    """Collect garbage and hand freed heap pages back to the OS (glibc keeps them otherwise: RSS stays high)."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim
        pass


def _silent(*_args, **_kwargs) -> None:
    """The ``log`` of the processes other than the main one."""


def _gather(value) -> list:
    """Every process's ``value``, in rank order (on every process)."""
    from accelerate.utils import gather_object

    return gather_object([value])


def _from_main(accelerator, value):
    """The main process's ``value`` on every process (decisions every process must take alike)."""
    if accelerator.num_processes == 1:
        return value
    from accelerate.utils import broadcast_object_list

    return broadcast_object_list([value], from_process=0)[0]


def _indices_sha(indices) -> str:
    return hashlib.sha256(",".join(map(str, sorted(indices))).encode()).hexdigest()[:16]


def _rank_shares(accelerator, share: list[int], examples: int) -> list[dict]:
    """Per process: how many training examples it trained on this epoch and a hash of which (sorted indices).

    The shares must be disjoint and together cover the epoch; anything else is a bug in the loop, not a user error.
    """
    shares = _gather(sorted(share)) if accelerator.num_processes > 1 else [sorted(share)]
    seen = [i for s in shares for i in s]
    if len(seen) != examples or set(seen) != set(range(examples)):
        raise RuntimeError(f"data-parallel shares overlap or miss examples: {[len(s) for s in shares]} of {examples}")
    return [{"rank": r, "examples": len(s), "indices_sha": _indices_sha(s)} for r, s in enumerate(shares)]


@torch.no_grad()
def teacher_internals(fast_teacher, teacher_ids, mask, token_type_ids, layers, precision, attentions: bool):
    """The teacher's hidden states (and attention distributions) of the layers the student's layers mirror, on the
    very tokens the student sees (its ids mapped back to the teacher's vocabulary), as float32."""
    bf16 = resolve_precision(precision) == "bf16"
    with torch.autocast(teacher_ids.device.type, dtype=torch.bfloat16, enabled=bf16):
        outputs = fast_teacher(teacher_ids, mask, token_type_ids, output_hidden_states=True,
                               output_attentions=attentions)  # fmt: skip
    hidden = [outputs[1][i + 1].float() for i in layers]
    return hidden, [outputs[2][i].float() for i in layers] if attentions else None


@dataclass
class TrainingSet:
    """What training steps draw from: the texts (labelled ones first), the teacher's logits, labels, token lengths."""

    encoder: XLNetTextEncoder  # the student's
    data: LabelledData
    soft_targets: torch.Tensor
    labels: torch.Tensor
    labelled: torch.Tensor  # bool per row: False for augmented variants and transfer text
    lengths: list[int]
    max_len: int

    def encode(self, idx: list[int]) -> tuple:
        """(input ids, 1/0 mask, token types, idx) of rows ``idx``, padded to their longest."""
        batch = self.encoder.encode_padded_to_longest(
            [self.data.texts[i] for i in idx], None if self.data.pairs is None else [self.data.pairs[i] for i in idx],
            max_len=self.max_len,
        )
        return (torch.from_numpy(batch.input_ids), torch.from_numpy(batch.attention_mask),
                torch.from_numpy(batch.token_type_ids), idx)  # fmt: skip

    def loss(self, model, batch, settings: "DistillSettings", layers: "LayerTransfer | None" = None,
             plain: XLNetStudent | None = None) -> torch.Tensor:
        """The distillation loss of one encoded batch: soft + hard labels, plus the intermediate-layer terms when
        ``layers`` is given. The main loop, pruning's importance scores and its recovery all train on this.

        ``plain``: the student itself when ``model`` is its data-parallel wrapper (which hides its attributes).
        """
        plain = plain or model
        ids, mask, types, idx = batch
        outputs = model(ids, plain.mask_input(mask), types if plain.config.uses_pairs else None,
                        output_hidden_states=layers is not None,
                        output_attentions=layers is not None and settings.attention_weight > 0)  # fmt: skip
        logits = outputs if layers is None else outputs[0]
        loss = kd_loss(logits, self.soft_targets[idx].to(logits.device), self.labels[idx].to(logits.device),
                       settings.temperature, settings.kd_weight, self.labelled[idx].to(logits.device))  # fmt: skip
        if layers is not None:
            loss = loss + layers.loss(outputs, ids, mask, types, settings)
        return loss


@dataclass
class LayerTransfer:
    """Intermediate-layer transfer: the teacher's fast copy run on the student's tokens, the hidden-state matcher."""

    fast_teacher: torch.nn.Module
    matcher: "HiddenMatcher | None"
    kept_ids: torch.Tensor  # student id -> teacher id
    teacher_layers: list[int]  # the teacher layer each student layer mirrors

    def loss(self, outputs, ids, mask, types, settings: "DistillSettings") -> torch.Tensor:
        teacher_hidden, teacher_attentions = teacher_internals(
            self.fast_teacher, self.kept_ids.to(ids.device)[ids], mask, types, self.teacher_layers,
            settings.teacher_precision, settings.attention_weight > 0,
        )
        loss = outputs[0].new_zeros(())
        if self.matcher is not None:
            loss = loss + settings.hidden_weight * self.matcher(outputs[1][1:], teacher_hidden, mask)
        if settings.attention_weight > 0:
            loss = loss + settings.attention_weight * attention_loss(outputs[2], teacher_attentions, mask)
        return loss


def train_step(model, batch, training: TrainingSet, settings, optimizer, scheduler, params, *, layers=None,
               plain=None, weight: float = 1.0, backward=None, clip=torch.nn.utils.clip_grad_norm_) -> float:
    """One optimiser step on one batch (the main loop's and pruning recovery's); returns the loss.

    ``weight``: this process's share of the global batch (1.0 on one process); ``backward``/``clip``: accelerate's
    under data parallelism.
    """
    loss = training.loss(model, batch, settings, layers, plain)
    optimizer.zero_grad()
    (backward or torch.Tensor.backward)(loss * weight)
    clip(params, 1.0)
    optimizer.step()
    scheduler.step()
    return loss.item()


def _recover(model, training: TrainingSet, settings, dev, teacher_dev_labels, step: int) -> dict:
    """Half an epoch of distillation after a pruning step (fresh AdamW, warm-up + linear decay); dev figures."""
    batches = bucketed_batches(training.lengths, settings.batch_size, seed=settings.seed + 2000 + step)
    batches = batches[: max(1, len(batches) // 2)]
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay)
    scheduler = warmup_linear_schedule(optimizer, len(batches), settings.warmup_ratio)
    model.train()
    for idx in tqdm(batches, desc=f"recover after pruning step {step + 1}", unit="step", leave=False):
        train_step(model, training.encode(idx), training, settings, optimizer, scheduler, list(model.parameters()))
    dev_logits = student_logits(model, training.encoder, dev)
    figures = {"dev_accuracy": accuracy(dev_logits, dev.labels)}
    if teacher_dev_labels is not None:
        figures["agreement"] = float((dev_logits.argmax(-1) == teacher_dev_labels).mean())
    return figures


def _concatenate(parts: list[LabelledData]) -> LabelledData:
    """One data set of several (the first's label names; pairs only when every part has them)."""
    if len(parts) == 1:
        return parts[0]
    pairs = None if any(p.pairs is None for p in parts) else [x for p in parts for x in p.pairs]
    return LabelledData(
        [t for p in parts for t in p.texts], pairs, [label for p in parts for label in p.labels],
        parts[0].label_names, " + ".join(p.source for p in parts),
    )


def _save_checkpoint(path, student, optimizer, scheduler, matcher, state, fingerprint, config, rank_rng=None,
                     qat_state=None) -> None:  # fmt: skip
    """Everything a resumed run needs to continue exactly where an uninterrupted run would be.

    ``student``: the model or its state dict (quantization-aware epochs: the un-rounded weights under plain names,
    with the observers' ranges in ``qat_state``).
    """
    payload = {
        "student": student if isinstance(student, dict) else student.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": torch.get_rng_state(),
        "state": json.dumps(state),
        "fingerprint": fingerprint,
        "config": asdict(config),
    }
    if matcher is not None:
        payload["matcher"] = matcher.state_dict()
    if rank_rng is not None:  # several processes: each one's dropout stream, so a resume continues every one
        payload["rank_rng"] = rank_rng
    if qat_state is not None:
        payload["qat"] = qat_state
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
