"""Students cut from the teacher's own layers: structured pruning and low-rank factorisation (distillation routes).

A student narrower than the teacher that starts from fresh layers (route ``fresh``) throws away what the teacher's
layers know. The ``prune`` route instead starts from the teacher's layers at the teacher's width (the even spread of
:func:`toolkit.distill.spread_layers`) and removes, step by step with distillation in between, the least important
attention heads, FFN neurons and hidden (residual-stream) dimensions until the shape the budgets allow is reached
(CoFi, Xia et al. 2022; Sheared-LLaMA). ``prune+lowrank`` prunes to a wider shape and factorises the projections
(truncated SVD, ``W ≈ up · down``) with the rank that brings it back within the budgets.

Importance (first-order, Fisher): a gate ``z = 1`` multiplies each head's context, each FFN neuron's activation and
each hidden dimension of the residual stream (after the embedding and after every layer); a structure's importance
is the sum over batches of ``(∂L/∂z)²`` with L the distillation loss (Michel et al. 2019 for heads; Molchanov et al.
2019). Removing a head or a neuron is exact: the pruned model computes what the model with that gate at 0 computes
(tested). Removing hidden dimensions also shrinks every LayerNorm to the kept dimensions, whose statistics then change
slightly; the distillation between steps recovers that. The result is an ordinary dense student (fewer heads of the
teacher's head width, a smaller FFN and width, the position table kept at the teacher's width) that every exporter
handles as it is.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from toolkit.student import LowRankLinear, StudentConfig, XLNetStudent

ROUTES = ("fresh", "prune", "prune+lowrank", "scratch")  # scratch: random init, a baseline for benchmarks


@dataclass
class Importance:
    """Fisher importance of every prunable structure (higher = keep)."""

    heads: torch.Tensor  # [n_layer, n_head]
    neurons: torch.Tensor  # [n_layer, d_inner]
    hidden: torch.Tensor  # [d_model]


def estimate_importance(student: XLNetStudent, batches, loss_of) -> Importance:
    """Accumulate ``(∂L/∂z)²`` of all-ones gates over ``batches`` (``loss_of(student, batch) -> scalar``)."""
    config = student.config
    heads = torch.ones(config.n_layer, config.n_head, requires_grad=True)
    neurons = torch.ones(config.n_layer, config.d_inner, requires_grad=True)
    hidden = torch.ones(config.d_model, requires_grad=True)
    handles = []

    def gate_heads(index):
        def hook(_module, args):
            (context,) = args
            shape = context.shape
            gated = context.reshape(*shape[:-1], config.n_head, config.d_head) * heads[index][:, None]
            return (gated.reshape(shape),)

        return hook

    def gate_neurons(index):
        return lambda _module, args: (args[0] * neurons[index],)

    gate_hidden = lambda _module, _args, output: output * hidden  # noqa: E731
    handles.append(student.word_embedding.register_forward_hook(gate_hidden))
    for index, layer in enumerate(student.layers):
        handles.append(layer.attn.o.register_forward_pre_hook(gate_heads(index)))
        handles.append(layer.ff.layer_2.register_forward_pre_hook(gate_neurons(index)))
        handles.append(layer.register_forward_hook(gate_hidden))
    totals = [torch.zeros_like(g) for g in (heads, neurons, hidden)]
    was_training = student.training
    student.eval()  # no dropout: the gradient of the function that is kept
    try:
        for batch in batches:
            grads = torch.autograd.grad(loss_of(student, batch), (heads, neurons, hidden))
            for total, grad in zip(totals, grads):
                total += grad.detach() ** 2
    finally:
        for handle in handles:
            handle.remove()
        student.train(was_training)
    return Importance(*totals)


def top(scores: torch.Tensor, keep: int) -> list[int]:
    """Indices of the ``keep`` highest scores, in their original order (ties: the lower index)."""
    order = sorted(range(len(scores)), key=lambda i: (-float(scores[i]), i))
    return sorted(order[:keep])


def _rows(weight: torch.Tensor, rows) -> torch.Tensor:
    return weight[torch.as_tensor(rows)]


def _cols(weight: torch.Tensor, cols) -> torch.Tensor:
    return weight[:, torch.as_tensor(cols)]


@torch.no_grad()
def prune_student(student: XLNetStudent, heads: list[list[int]], neurons: list[list[int]], dims: list[int]) -> XLNetStudent:
    """A dense student keeping, per layer, the heads ``heads[l]`` and FFN neurons ``neurons[l]``, and the hidden
    dimensions ``dims``. Every layer keeps the same number of heads and of neurons (one shape per model)."""
    config = student.config
    if student.config.linear_rank:
        raise ValueError("prune before factorising: this student's projections are already low-rank")
    if len({len(h) for h in heads}) != 1 or len({len(n) for n in neurons}) != 1:
        raise ValueError("every layer must keep the same number of heads and of FFN neurons")
    new_config = replace(
        config, d_model=len(dims), n_head=len(heads[0]), head_dim=config.d_head, d_inner=len(neurons[0]),
        pos_dim=config.position_width,
    )
    pruned = XLNetStudent(new_config)
    state = student.state_dict()
    out = {"word_embedding.weight": _cols(state["word_embedding.weight"], dims)}
    for index, (kept_heads, kept_neurons) in enumerate(zip(heads, neurons)):
        p = f"layers.{index}."
        columns = [h * config.d_head + j for h in kept_heads for j in range(config.d_head)]
        for name in ("q", "k", "v"):
            out[f"{p}attn.{name}.weight"] = _cols(_rows(state[f"{p}attn.{name}.weight"], columns), dims)
        out[f"{p}attn.r.weight"] = _rows(state[f"{p}attn.r.weight"], columns)  # reads the position table: all kept
        out[f"{p}attn.o.weight"] = _rows(_cols(state[f"{p}attn.o.weight"], columns), dims)
        for name in ("r_w_bias", "r_r_bias", "r_s_bias"):
            out[f"{p}attn.{name}"] = _rows(state[f"{p}attn.{name}"], kept_heads)
        out[f"{p}attn.seg_embed"] = _cols(state[f"{p}attn.seg_embed"], kept_heads)
        out[f"{p}ff.layer_1.weight"] = _cols(_rows(state[f"{p}ff.layer_1.weight"], kept_neurons), dims)
        out[f"{p}ff.layer_1.bias"] = state[f"{p}ff.layer_1.bias"][torch.as_tensor(kept_neurons)]
        out[f"{p}ff.layer_2.weight"] = _rows(_cols(state[f"{p}ff.layer_2.weight"], kept_neurons), dims)
        out[f"{p}ff.layer_2.bias"] = state[f"{p}ff.layer_2.bias"][torch.as_tensor(dims)]
        for norm in ("attn.layer_norm", "ff.layer_norm"):
            for part in ("weight", "bias"):
                key = f"{p}{norm}.{part}"
                if key in state:
                    out[key] = state[key][torch.as_tensor(dims)]
    out["summary.weight"] = _cols(_rows(state["summary.weight"], dims), dims)
    out["summary.bias"] = state["summary.bias"][torch.as_tensor(dims)]
    out["logits_proj.weight"] = _cols(state["logits_proj.weight"], dims)
    out["logits_proj.bias"] = state["logits_proj.bias"]
    missing, unexpected = pruned.load_state_dict(out, strict=False)
    if unexpected or any(not k.endswith("centre") for k in missing):
        raise RuntimeError(f"pruning left tensors unmapped: missing {missing}, unexpected {unexpected}")
    return pruned.train(student.training)


@torch.no_grad()
def factorise(student: XLNetStudent, rank: int) -> XLNetStudent:
    """The student with q, k, v, o and both FFN projections as rank-``rank`` factors from a truncated SVD
    (``up = U_r·√S_r``, ``down = √S_r·V_rᵀ``: the best rank-r approximation of each weight). Projections where
    two factors would not save multiply-adds stay dense."""
    factored = XLNetStudent(replace(student.config, linear_rank=rank))
    source = student.state_dict()
    state = {key: source[key] for key in factored.state_dict() if key in source}  # everything not factorised
    for name, module in factored.named_modules():
        if isinstance(module, LowRankLinear):
            dense = student.get_submodule(name)
            u, s, vh = torch.linalg.svd(dense.weight.double(), full_matrices=False)
            root = s[:rank].sqrt()
            state[f"{name}.up.weight"] = (u[:, :rank] * root).float()
            state[f"{name}.down.weight"] = (root[:, None] * vh[:rank]).float()
            if dense.bias is not None:
                state[f"{name}.up.bias"] = dense.bias
    factored.load_state_dict(state, strict=True)
    return factored.train(student.training)


def steps_between(start: int, end: int, steps: int) -> list[int]:
    """``steps`` sizes going geometrically from ``start`` to ``end`` (the last is ``end``)."""
    if start <= end:
        return [end] * max(1, steps)
    if steps <= 1:
        return [end]
    ratio = (end / start) ** (1 / steps)
    return [max(end, round(start * ratio ** (i + 1))) for i in range(steps - 1)] + [end]


@dataclass(frozen=True)
class PruneTarget:
    """The shape pruning ends at: heads of the teacher's width, FFN neurons, hidden width; rank if factorised."""

    n_head: int
    d_inner: int
    d_model: int
    rank: int | None = None

    def describe(self, head_dim: int) -> str:
        rank = f", projections rank {self.rank}" if self.rank else ""
        return f"{self.n_head} heads × {head_dim}, FFN {self.d_inner}, width {self.d_model}{rank}"


def pruned_config(start: StudentConfig, target: PruneTarget) -> StudentConfig:
    """The config a student pruned (and factorised) from ``start`` to ``target`` ends with."""
    return replace(start, d_model=target.d_model, n_head=target.n_head, head_dim=start.d_head,
                   d_inner=target.d_inner, pos_dim=start.position_width, linear_rank=target.rank)  # fmt: skip


def route_target(route: str, start: StudentConfig, fresh: StudentConfig, fits) -> PruneTarget:
    """Where a route prunes the teacher-width ``start`` to, within the budgets (``fits(config) -> bool``).

    ``prune``: the budgeted fresh shape ``fresh``, in heads of the teacher's width (about as many head channels as
    its width; fewer heads while it does not fit). ``prune+lowrank``: the widest shape (then the highest rank, at
    least an eighth of the width) whose factorised projections fit; the plain pruned shape when none does.
    """
    n_head = max(1, round(fresh.d_model / start.d_head))
    plain = PruneTarget(n_head, fresh.d_inner, fresh.d_model)
    while plain.n_head > 1 and not fits(pruned_config(start, plain)):
        plain = replace(plain, n_head=plain.n_head - 1)
    if route == "prune":
        return plain
    step = 16
    for width in range(start.d_model // step * step, fresh.d_model, -step):
        heads = max(1, round(width / start.d_head))
        d_inner = max(8, round(start.d_inner * width / start.d_model / 8) * 8)
        for rank in range(width // 2 // 8 * 8, max(8, width // 8) - 1, -8):
            candidate = PruneTarget(heads, d_inner, width, rank)
            if fits(pruned_config(start, candidate)):
                return candidate
    return plain


def shrink(student: XLNetStudent, target: PruneTarget, batches_for_step, loss_of, recover, steps: int, log) -> tuple:
    """Prune ``student`` progressively to ``target`` (then factorise when it has a rank): per step, estimate the
    importance on ``batches_for_step(step)``, keep the most important structures, and ``recover(student, step)``
    (distillation). Returns the final student and the history of the steps."""
    config = student.config
    head_plan = steps_between(config.n_head, target.n_head, steps)
    neuron_plan = steps_between(config.d_inner, target.d_inner, steps)
    width_plan = steps_between(config.d_model, target.d_model, steps)
    history = []
    for step, (n_head, d_inner, d_model) in enumerate(zip(head_plan, neuron_plan, width_plan)):
        importance = estimate_importance(student, batches_for_step(step), loss_of)
        heads = [top(layer, min(n_head, len(layer))) for layer in importance.heads]
        neurons = [top(layer, min(d_inner, len(layer))) for layer in importance.neurons]
        dims = top(importance.hidden, min(d_model, len(importance.hidden)))
        student = prune_student(student, heads, neurons, dims)
        entry = {"step": step + 1, "n_head": n_head, "d_inner": d_inner, "d_model": d_model,
                 "parameters": student.num_parameters()}  # fmt: skip
        entry.update(recover(student, step))
        history.append(entry)
        log(f"prune step {step + 1}/{len(head_plan)}: {n_head} heads, FFN {d_inner}, width {d_model} -> "
            f"{entry['parameters']:,} params" + (f", dev {entry['dev_accuracy']:.4f}" if "dev_accuracy" in entry else ""))
    if target.rank:
        student = factorise(student, target.rank)
        entry = {"step": len(history) + 1, "factorised_rank": target.rank, "parameters": student.num_parameters()}
        entry.update(recover(student, len(history)))
        history.append(entry)
        log(f"factorised to rank {target.rank} -> {entry['parameters']:,} params"
            + (f", dev {entry['dev_accuracy']:.4f}" if "dev_accuracy" in entry else ""))
    return student, history
