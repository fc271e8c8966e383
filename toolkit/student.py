"""The toolkit's export-friendly XLNet: the content-stream math of XLNet in plain, exportable PyTorch.

Why not transformers' XLNetModel? Its q/k/v/o/r projections are raw parameters inside einsums (quantizers only see
``nn.Linear``), it builds ``torch.eye`` and ``index_select(arange)`` at run time (ops LiteRT cannot run) and masks
with -1e30 (which ruins int8 calibration ranges). This model computes the same function for classification:

* relative positional attention with a constant sinusoid table for the profile's fixed length, sliced per call;
* the relative shift as reshape + slice;
* segment encoding (XLNet's "same segment or not" bias), with a constant single-segment pattern when the task has
  no text pairs, so ``token_type_ids`` is only an input for pair tasks;
* a finite additive attention-mask value;
* no memory, no permutation / query stream (not used for classification);
* last-position pooling (XLNet puts ``<cls>`` at the end) + tanh projection + linear head.

Loaded with an HF ``XLNetForSequenceClassification`` state dict, it gives the same logits (see tests/test_student.py).
Variants a profile can ask for: ReLU instead of GELU, and ``l2norm`` (LayerNorm rewritten as centring + L2
normalisation, ops the NNAPI delegate accepts).

Op variants (same math, other ops), chosen by an exporter through :meth:`XLNetStudent.with_op_variants`, which
returns a copy (toolkit/export_tflite.py asks for them for NNAPI artifacts only): per-head attention projections
(one FULLY_CONNECTED per head instead of BATCH_MATMUL), a given L2-normalisation op (one L2_NORMALIZATION) and a
given row-gather op for the embedding (one GATHER).
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import torch
from torch import nn
from torch.nn import functional as F

from toolkit.files import atomic_path, atomic_write_json

STUDENT_CONFIG = "student_config.json"
STUDENT_WEIGHTS = "model.safetensors"


@dataclass(frozen=True)
class StudentConfig:
    """Shape and op choices of a student. ``seq_len`` fixes the constant position tables."""

    vocab_size: int
    d_model: int
    n_layer: int
    n_head: int
    d_inner: int
    num_labels: int
    seq_len: int
    activation: Literal["gelu", "relu"] = "gelu"
    normalisation: Literal["layernorm", "l2norm"] = "layernorm"
    layer_norm_eps: float = 1e-12
    dropout: float = 0.1
    mask_value: float = 30.0
    mask_input: Literal["attention_mask", "additive_bias"] = "attention_mask"
    uses_pairs: bool = False
    labels: list[str] = field(default_factory=list)
    # Shapes a pruned or factorised student has (toolkit/prune.py); None = the plain layout.
    head_dim: int | None = None  # per-head width; None = d_model / n_head (pruned heads keep the teacher's)
    pos_dim: int | None = None  # width of the sinusoidal position table; None = d_model (pruned width keeps it)
    linear_rank: int | None = None  # q, k, v, o and both FFN projections as two nn.Linear of this rank (A·B)

    def __post_init__(self) -> None:
        if self.head_dim is None and self.d_model % self.n_head:
            raise ValueError(f"d_model {self.d_model} is not divisible by n_head {self.n_head}")

    @property
    def d_head(self) -> int:
        return self.head_dim or self.d_model // self.n_head

    @property
    def inner(self) -> int:
        """Width of the attention's concatenated heads (= d_model unless heads were pruned)."""
        return self.n_head * self.d_head

    @property
    def position_width(self) -> int:
        return self.pos_dim or self.d_model


class LowRankLinear(nn.Module):
    """``W ≈ up · down``: two ordinary ``nn.Linear`` (rank ``r``), so XNNPACK / LiteRT run them as two GEMMs.

    ``weight`` / ``bias`` give the equivalent dense layer (for code that reads a projection's weight directly).
    """

    def __init__(self, in_features: int, out_features: int, rank: int, bias: bool) -> None:
        super().__init__()
        self.down = nn.Linear(in_features, rank, bias=False)
        self.up = nn.Linear(rank, out_features, bias=bias)
        self.in_features, self.out_features, self.rank = in_features, out_features, rank

    @property
    def weight(self) -> torch.Tensor:
        return self.up.weight @ self.down.weight

    @property
    def bias(self) -> torch.Tensor | None:
        return self.up.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.down(x))


def projection(in_features: int, out_features: int, config: "StudentConfig", bias: bool = True) -> nn.Module:
    """A dense ``nn.Linear``, or a :class:`LowRankLinear` where the config's rank saves multiply-adds."""
    rank = config.linear_rank
    if rank and rank * (in_features + out_features) < in_features * out_features:
        return LowRankLinear(in_features, out_features, rank, bias)
    return nn.Linear(in_features, out_features, bias=bias)


class CentredL2Norm(nn.Module):
    """LayerNorm written as ops the NNAPI delegate runs.

    LayerNorm(x) = (x - mean) / sqrt(var + eps) * w + b, and var = |x - mean|^2 / d, so for var >> eps it equals
    sqrt(d) * normalize(x - mean) * w + b. Centring is a constant matrix product (a FULLY_CONNECTED), and
    ``normalize`` is L2_NORMALIZATION: no MEAN / SQUARED_DIFFERENCE / RSQRT, which NNAPI rejects in int8.
    The parameters are LayerNorm's, so a teacher LayerNorm copies straight in.
    """

    def __init__(self, d_model: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d_model))
        self.bias = nn.Parameter(torch.zeros(d_model))
        self.eps = eps
        self.scale = math.sqrt(d_model)
        self.register_buffer("centre", torch.eye(d_model) - 1.0 / d_model, persistent=False)
        # Export hook: the TFLite exporter puts a function here that lowers to one L2_NORMALIZATION op
        # (``F.normalize`` itself lowers to ABS/SUM/SQRT/DIV, which NNAPI rejects in int8). None = F.normalize.
        self.l2_normalize = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        centred = F.linear(x, self.centre)
        if self.l2_normalize is None:
            normalised = F.normalize(centred, dim=-1, eps=self.eps)
        else:
            normalised = self.l2_normalize(centred)
        return normalised * (self.weight * self.scale) + self.bias


class MeanPoolLayerNorm(nn.Module):
    """``nn.LayerNorm`` over the last axis written with the ops XNNPACK's ExecuTorch partitioner takes.

    ExecuTorch's XNNPACK backend has no LayerNorm: ``native_layer_norm`` runs on portable kernels between two
    delegate calls. Its mean is a 4-D mean over the two innermost axes (XNNPACK's global average pooling), so the
    input is viewed as [B, L, 1, d]; subtract, multiply and rsqrt are XNNPACK ops. Same parameters, same function.
    """

    def __init__(self, layer_norm: nn.LayerNorm) -> None:
        super().__init__()
        self.weight, self.bias, self.eps = layer_norm.weight, layer_norm.bias, layer_norm.eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x4 = x.reshape(*x.shape[:-1], 1, x.shape[-1]) if x.dim() == 3 else x
        centred = x4 - x4.mean(dim=(2, 3), keepdim=True)
        variance = (centred * centred).mean(dim=(2, 3), keepdim=True)
        return (centred * torch.rsqrt(variance + self.eps)).reshape(x.shape) * self.weight + self.bias


def make_norm(config: StudentConfig) -> nn.Module:
    if config.normalisation == "l2norm":
        return CentredL2Norm(config.d_model, config.layer_norm_eps)
    return nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)


def relative_position_table(seq_len: int, d_model: int) -> torch.Tensor:
    """XLNet's bidirectional sinusoid table for distances seq_len, seq_len-1, ..., -seq_len+1 ([2L, d])."""
    inv_freq = 1.0 / torch.pow(10000, torch.arange(0, d_model, 2.0) / d_model)
    distances = torch.arange(seq_len, -seq_len, -1.0)
    angles = distances[:, None] * inv_freq[None, :]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)


def single_segment_pattern(seq_len: int) -> torch.Tensor:
    """1 where query and key are in different segments for a one-text input: only the final <cls> differs.

    Padding (token type 3 in XLNet) is masked out as keys, and padded queries never reach the pooled last position,
    so this constant equals XLNet's segment matrix wherever it matters.
    """
    is_cls = torch.zeros(seq_len)
    is_cls[-1] = 1.0
    return (is_cls[:, None] != is_cls[None, :]).float()


class RelativeAttention(nn.Module):
    """XLNet's two-stream attention, content stream only, with every projection an ``nn.Linear``."""

    def __init__(self, config: StudentConfig) -> None:
        super().__init__()
        inner = config.inner
        self.n_head, self.d_head = config.n_head, config.d_head
        self.q = projection(config.d_model, inner, config, bias=False)
        self.k = projection(config.d_model, inner, config, bias=False)
        self.v = projection(config.d_model, inner, config, bias=False)
        self.r = nn.Linear(config.position_width, inner, bias=False)  # on the constant position table: kept dense
        self.o = projection(inner, config.d_model, config, bias=False)
        self.r_w_bias = nn.Parameter(torch.zeros(config.n_head, config.d_head))
        self.r_r_bias = nn.Parameter(torch.zeros(config.n_head, config.d_head))
        self.r_s_bias = nn.Parameter(torch.zeros(config.n_head, config.d_head))
        self.seg_embed = nn.Parameter(torch.zeros(2, config.n_head, config.d_head))
        self.layer_norm = make_norm(config)
        self.dropout = nn.Dropout(config.dropout)
        self.scale = 1.0 / math.sqrt(config.d_head)
        # The attention distribution and logits (the softmax input, padding bias included) as modules' outputs
        # (no-ops): named points where tests and diagnostics observe them (e.g. that QAT rounds them to int8).
        self.probs = nn.Identity()
        self.logits = nn.Identity()
        # Export switches, batch 1 only (what the exporters trace); training keeps the batched form.
        # per_head_linear: one FULLY_CONNECTED per head and term instead of BATCH_MATMUL (NNAPI takes no BMM).
        # bmm_3d: every product one 3-D bmm over the heads; torch.matmul on 4-D tensors lowers to expand_copy +
        # bmm, and ExecuTorch's XNNPACK partitioner leaves the expand_copy on portable kernels between delegate calls.
        self.per_head_linear = False
        self.bmm_3d = False

    def _matmul(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """``a`` [B, n, L, x] times ``b`` [B, n, x, y] or [n, x, y] (shared by the batch) -> [B, n, L, y]."""
        if not self.bmm_3d:
            return torch.matmul(a, b)
        batch, heads, rows, inner = a.shape
        if batch != 1:
            raise ValueError(f"bmm_3d attention runs one sample at a time, got a batch of {batch}")
        out = torch.bmm(a.reshape(heads, rows, inner), b.reshape(heads, inner, b.shape[-1]))
        return out.reshape(1, heads, rows, b.shape[-1])

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        """[B, L, n*dh] -> [B, n, L, dh]"""
        batch, length, _ = x.shape
        return x.reshape(batch, length, self.n_head, self.d_head).transpose(1, 2)

    @staticmethod
    def _relative_shift(scores: torch.Tensor, length: int) -> torch.Tensor:
        """[B, n, L, 2L] scores by distance -> [B, n, L, L] scores by key position (reshape + slice, no gather)."""
        batch, heads, queries, distances = scores.shape
        shifted = scores.reshape(batch, heads, distances, queries)[:, :, 1:, :]
        return shifted.reshape(batch, heads, queries, distances - 1)[:, :, :, :length]

    def forward(
        self, h: torch.Tensor, pos_table: torch.Tensor, segment_diff: torch.Tensor, mask_bias: torch.Tensor,
        need_probs: bool = False,
    ):
        """The layer's output; with ``need_probs`` also the attention distributions [B, n, L, L] (for distillation)."""
        if self.per_head_linear:
            return self._forward_per_head_linear(h, pos_table, segment_diff, mask_bias)
        length = h.shape[1]
        q = self._heads(self.q(h))
        k = self._heads(self.k(h))
        v = self._heads(self.v(h))
        k_pos = self.r(pos_table).reshape(-1, self.n_head, self.d_head).permute(1, 2, 0)  # [n, dh, 2L]

        heads = (self.n_head, 1, self.d_head)  # a bias per head, broadcast over positions (a view, not an unsqueeze)
        content = self._matmul(q + self.r_w_bias.reshape(heads), k.transpose(-1, -2))
        position = self._relative_shift(self._matmul(q + self.r_r_bias.reshape(heads), k_pos), length)
        # Segment term: per query, one score for "same segment" and one for "other segment".
        seg_scores = self._matmul(q + self.r_s_bias.reshape(heads), self.seg_embed.permute(1, 2, 0))  # [B, n, L, 2]
        same, other = seg_scores[..., 0:1], seg_scores[..., 1:2]
        segment = same + segment_diff * (other - same)

        scores = self.logits((content + position + segment) * self.scale + mask_bias)
        distribution = self.probs(torch.softmax(scores, dim=-1))
        context = self._matmul(self.dropout(distribution), v).transpose(1, 2).reshape(h.shape[0], length, -1)
        out = self.layer_norm(self.dropout(self.o(context)) + h)
        return (out, distribution) if need_probs else out

    def _forward_per_head_linear(
        self, h: torch.Tensor, pos_table: torch.Tensor, segment_diff: torch.Tensor, mask_bias: torch.Tensor
    ) -> torch.Tensor:
        """``forward`` for one sample, every product an ``F.linear`` (FULLY_CONNECTED), none a batched matmul.

        Scores of head i are ``linear(q_i, k_i)``; the context is ``linear(probs_i, v_i^T)``, with ``v^T`` computed
        directly as ``linear(W_v, x)`` so no transpose folds back into a BATCH_MATMUL. Rank stays <= 2.
        """
        if h.shape[0] != 1:
            raise ValueError(f"per_head_linear attention runs one sample at a time, got a batch of {h.shape[0]}")
        x = h[0]  # [L, d]
        length = x.shape[0]
        q, k = self.q(x), self.k(x)  # [L, n*dh]
        v_t = F.linear(self.v.weight, x)  # [n*dh, L]
        k_pos = self.r(pos_table)  # [2L, n*dh], constant at export
        seg_diff = segment_diff.reshape(-1, length, length)[0]  # [L, L]
        bias = mask_bias.reshape(-1, length)[0:1]  # [1, L]
        contexts = []
        for i in range(self.n_head):
            cols = slice(i * self.d_head, (i + 1) * self.d_head)
            q_i = q[:, cols]
            content = F.linear(q_i + self.r_w_bias[i], k[:, cols])  # [L, L]
            by_distance = F.linear(q_i + self.r_r_bias[i], k_pos[:, cols])  # [L, 2L]
            rows = by_distance.shape[1]
            position = by_distance.reshape(rows, length)[1:].reshape(length, rows - 1)[:, :length]
            seg_scores = F.linear(q_i + self.r_s_bias[i], self.seg_embed[:, i, :])  # [L, 2]
            same, other = seg_scores[:, 0:1], seg_scores[:, 1:2]
            scores = self.logits((content + position + same + seg_diff * (other - same)) * self.scale + bias)
            contexts.append(F.linear(self.probs(torch.softmax(scores, dim=-1)), v_t[cols]))  # [L, dh]
        context = torch.cat(contexts, dim=-1)[None]
        return self.layer_norm(self.o(context) + h)


class FeedForward(nn.Module):
    def __init__(self, config: StudentConfig) -> None:
        super().__init__()
        self.layer_1 = projection(config.d_model, config.d_inner, config)
        self.layer_2 = projection(config.d_inner, config.d_model, config)
        self.activation = nn.GELU() if config.activation == "gelu" else nn.ReLU()
        self.layer_norm = make_norm(config)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.dropout(self.layer_2(self.dropout(self.activation(self.layer_1(x)))))
        return self.layer_norm(out + x)


class StudentLayer(nn.Module):
    def __init__(self, config: StudentConfig) -> None:
        super().__init__()
        self.attn = RelativeAttention(config)
        self.ff = FeedForward(config)

    def forward(self, h, pos_table, segment_diff, mask_bias, need_probs: bool = False):
        if need_probs:
            h, probs = self.attn(h, pos_table, segment_diff, mask_bias, need_probs=True)
            return self.ff(h), probs
        return self.ff(self.attn(h, pos_table, segment_diff, mask_bias))


class XLNetStudent(nn.Module):
    """XLNet classifier for a fixed maximum length; also runs shorter (left-padded) batches for training."""

    def __init__(self, config: StudentConfig) -> None:
        super().__init__()
        self.config = config
        self.word_embedding = nn.Embedding(config.vocab_size, config.d_model)
        self.layers = nn.ModuleList(StudentLayer(config) for _ in range(config.n_layer))
        self.dropout = nn.Dropout(config.dropout)
        self.summary = nn.Linear(config.d_model, config.d_model)
        self.logits_proj = nn.Linear(config.d_model, config.num_labels)
        self.register_buffer("pos_table", relative_position_table(config.seq_len, config.position_width),
                             persistent=False)  # fmt: skip
        self.register_buffer("segment_pattern", single_segment_pattern(config.seq_len), persistent=False)
        # Export hook: ``fn(table, ids) -> rows``. The TFLite exporter uses a single GATHER for NNAPI (the default
        # embedding lowers to an int32 RESHAPE + float EMBEDDING_LOOKUP). None = nn.Embedding.
        self.gather_rows = None

    def mask_bias_from_attention_mask(self, attention_mask: torch.Tensor) -> torch.Tensor:
        """[B, L] 1/0 mask -> [B, L] additive bias: 0 for tokens, -mask_value for padding keys."""
        return (1.0 - attention_mask.to(torch.float32)) * -self.config.mask_value

    def with_op_variants(
        self, *, per_head_linear: bool = False, l2_normalize=None, gather_rows=None, xnnpack: bool = False
    ) -> "XLNetStudent":
        """A copy computing the same function with other ops: ``per_head_linear`` attention, ``l2_normalize(x)`` for
        the l2norm's normalisation, ``gather_rows(table, ids)`` for the embedding lookup (None: the default op);
        ``xnnpack``: only ops ExecuTorch's XNNPACK partitioner takes (3-D bmm attention, LayerNorm as means)."""
        copy_ = copy.deepcopy(self).eval()
        copy_.gather_rows = gather_rows
        for module in copy_.modules():
            if isinstance(module, RelativeAttention):
                module.per_head_linear = per_head_linear
                module.bmm_3d = xnnpack
            if isinstance(module, CentredL2Norm):
                module.l2_normalize = l2_normalize
            if xnnpack:
                for name, child in module.named_children():
                    if isinstance(child, nn.LayerNorm):
                        setattr(module, name, MeanPoolLayerNorm(child))
        return copy_

    def mask_input(self, attention_mask: torch.Tensor) -> torch.Tensor:
        """What ``forward``'s ``mask`` argument expects, from a tokenizer's 1/0 attention mask.

        Training and evaluation code always has the 1/0 mask; an ``additive_bias`` student takes the bias instead
        (as ``model_inputs`` prepares it for the exported program).
        """
        if self.config.mask_input == "attention_mask":
            return attention_mask
        return self.mask_bias_from_attention_mask(attention_mask)

    def forward(
        self,
        input_ids: torch.Tensor,
        mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
    ):
        """Logits [B, num_labels]. ``mask`` is the 1/0 attention mask, or the additive bias for ``additive_bias``.

        ``output_hidden_states``: also the embedding output and every layer's output; ``output_attentions``: also
        (third) every layer's attention distributions [B, n_head, L, L] (both for distillation).
        """
        length = input_ids.shape[1]
        if self.config.mask_input == "attention_mask":
            bias = self.mask_bias_from_attention_mask(mask)
        else:
            bias = mask.to(torch.float32)
        bias = bias.reshape(bias.shape[0], 1, 1, -1)
        start = self.config.seq_len - length
        pos_table = self.dropout(self.pos_table[start : self.config.seq_len + length])
        if token_type_ids is None:
            segment_diff = self.segment_pattern[start:, start:]
        else:
            segment_diff = (token_type_ids[:, :, None] != token_type_ids[:, None, :]).to(torch.float32)[:, None]

        if self.gather_rows is None:
            h = self.dropout(self.word_embedding(input_ids))
        else:
            h = self.gather_rows(self.word_embedding.weight, input_ids)
        hidden, attentions = [h], []
        for layer in self.layers:
            if output_attentions:
                h, probs = layer(h, pos_table, segment_diff, bias, need_probs=True)
                attentions.append(probs)
            else:
                h = layer(h, pos_table, segment_diff, bias)
            hidden.append(h)
        pooled = torch.tanh(self.summary(self.dropout(h[:, -1])))
        logits = self.logits_proj(self.dropout(pooled))
        if output_attentions:
            return logits, hidden, attentions
        return (logits, hidden) if output_hidden_states else logits

    @torch.no_grad()
    def init_like_xlnet(self, std: float = 0.02) -> "XLNetStudent":
        """transformers' XLNet initialisation: normal(0, 0.02) weights and attention biases, zero biases, unit norms."""
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=std)
                if getattr(module, "bias", None) is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, RelativeAttention):
                for param in (module.r_w_bias, module.r_r_bias, module.r_s_bias, module.seg_embed):
                    nn.init.normal_(param, std=std)
        return self

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


# ---------------------------------------------------------------------------------------------------------------
# Loading weights from transformers' XLNet
# ---------------------------------------------------------------------------------------------------------------


def _proj_weight(param: torch.Tensor) -> torch.Tensor:
    """HF q/k/v/r [d_model, n_head, d_head] -> nn.Linear weight [n_head*d_head, d_model]."""
    return param.reshape(param.shape[0], -1).t().contiguous()


def hf_layer_state(hf_state: dict[str, torch.Tensor], hf_index: int, student_index: int) -> dict[str, torch.Tensor]:
    """The student-layer tensors converted from HF XLNet layer ``hf_index`` (names: ``transformer.layer.N.*``)."""
    src = f"transformer.layer.{hf_index}."
    dst = f"layers.{student_index}."
    out = {}
    for name in ("q", "k", "v", "r"):
        out[f"{dst}attn.{name}.weight"] = _proj_weight(hf_state[f"{src}rel_attn.{name}"])
    o = hf_state[f"{src}rel_attn.o"]
    out[f"{dst}attn.o.weight"] = o.reshape(o.shape[0], -1).contiguous()
    for name in ("r_w_bias", "r_r_bias", "r_s_bias", "seg_embed"):
        out[f"{dst}attn.{name}"] = hf_state[f"{src}rel_attn.{name}"]
    for part in ("weight", "bias"):
        out[f"{dst}attn.layer_norm.{part}"] = hf_state[f"{src}rel_attn.layer_norm.{part}"]
        out[f"{dst}ff.layer_norm.{part}"] = hf_state[f"{src}ff.layer_norm.{part}"]
        out[f"{dst}ff.layer_1.{part}"] = hf_state[f"{src}ff.layer_1.{part}"]
        out[f"{dst}ff.layer_2.{part}"] = hf_state[f"{src}ff.layer_2.{part}"]
    return out


def hf_shared_state(hf_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Embedding, pooling projection and classification head."""
    return {
        "word_embedding.weight": hf_state["transformer.word_embedding.weight"],
        "summary.weight": hf_state["sequence_summary.summary.weight"],
        "summary.bias": hf_state["sequence_summary.summary.bias"],
        "logits_proj.weight": hf_state["logits_proj.weight"],
        "logits_proj.bias": hf_state["logits_proj.bias"],
    }


def student_config_like(hf_config, seq_len: int, **overrides) -> StudentConfig:
    """A student config with the HF XLNet config's shape (overrides change depth, width, ops...)."""
    activation = hf_config.ff_activation if hf_config.ff_activation in ("gelu", "relu") else "gelu"
    base = dict(
        vocab_size=hf_config.vocab_size,
        d_model=hf_config.d_model,
        n_layer=hf_config.n_layer,
        n_head=hf_config.n_head,
        d_inner=hf_config.d_inner,
        num_labels=hf_config.num_labels,
        seq_len=seq_len,
        activation=activation,
        layer_norm_eps=hf_config.layer_norm_eps,
        dropout=hf_config.dropout,
        labels=[hf_config.id2label[i] for i in range(hf_config.num_labels)],
    )
    base.update(overrides)
    return StudentConfig(**base)


def student_from_xlnet(hf_model, seq_len: int, layer_ids: list[int] | None = None, **overrides) -> XLNetStudent:
    """A student holding a copy of an HF XLNet classifier's weights (all layers, or the listed ones)."""
    if layer_ids is None:
        layer_ids = list(range(hf_model.config.n_layer))
    config = student_config_like(hf_model.config, seq_len, n_layer=len(layer_ids), **overrides)
    student = XLNetStudent(config)
    hf_state = hf_model.state_dict()
    state = hf_shared_state(hf_state)
    for student_index, hf_index in enumerate(layer_ids):
        state.update(hf_layer_state(hf_state, hf_index, student_index))
    student.load_state_dict(state, strict=True)
    return student


def xlnet_state_from_student(student: XLNetStudent) -> dict[str, torch.Tensor]:
    """The inverse of :func:`student_from_xlnet`: HF ``XLNetForSequenceClassification`` tensors of a full-depth model.

    Used to train the demo teacher with this (much faster on CPU) implementation of the same math and save it as a
    genuine transformers XLNet checkpoint.
    """
    config = student.config
    if config.normalisation != "layernorm":
        raise ValueError("only a LayerNorm student maps back onto transformers' XLNet")
    state = student.state_dict()
    shape = (config.d_model, config.n_head, config.d_head)
    out = {
        "transformer.word_embedding.weight": state["word_embedding.weight"],
        "sequence_summary.summary.weight": state["summary.weight"],
        "sequence_summary.summary.bias": state["summary.bias"],
        "logits_proj.weight": state["logits_proj.weight"],
        "logits_proj.bias": state["logits_proj.bias"],
    }
    for i in range(config.n_layer):
        src, dst = f"layers.{i}.", f"transformer.layer.{i}."
        for name in ("q", "k", "v", "r"):
            out[f"{dst}rel_attn.{name}"] = state[f"{src}attn.{name}.weight"].t().reshape(shape).contiguous()
        out[f"{dst}rel_attn.o"] = state[f"{src}attn.o.weight"].reshape(shape).contiguous()
        for name in ("r_w_bias", "r_r_bias", "r_s_bias", "seg_embed"):
            out[f"{dst}rel_attn.{name}"] = state[f"{src}attn.{name}"]
        for part in ("weight", "bias"):
            out[f"{dst}rel_attn.layer_norm.{part}"] = state[f"{src}attn.layer_norm.{part}"]
            out[f"{dst}ff.layer_norm.{part}"] = state[f"{src}ff.layer_norm.{part}"]
            out[f"{dst}ff.layer_1.{part}"] = state[f"{src}ff.layer_1.{part}"]
            out[f"{dst}ff.layer_2.{part}"] = state[f"{src}ff.layer_2.{part}"]
    return out


# ---------------------------------------------------------------------------------------------------------------
# Saving and loading a student folder
# ---------------------------------------------------------------------------------------------------------------


def save_student(model: XLNetStudent, folder: Path | str) -> Path:
    """Write ``student_config.json`` + ``model.safetensors`` (atomically) into ``folder``."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / STUDENT_WEIGHTS) as tmp:
        state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(tmp), metadata={"format": "pt"})
    atomic_write_json(folder / STUDENT_CONFIG, asdict(model.config))
    return folder


def load_student(folder: Path | str) -> XLNetStudent:
    """Load a student folder written by :func:`save_student` (safetensors only)."""
    from safetensors.torch import load_file

    folder = Path(folder)
    config_path, weights_path = folder / STUDENT_CONFIG, folder / STUDENT_WEIGHTS
    for path in (config_path, weights_path):
        if not path.is_file():
            raise FileNotFoundError(f"{folder} is not a student folder: {path.name} is missing")
    config = StudentConfig(**json.loads(config_path.read_text()))
    model = XLNetStudent(config)
    model.load_state_dict(load_file(str(weights_path)), strict=True)
    return model.eval()


# ---------------------------------------------------------------------------------------------------------------
# The exported signature: fixed length, batch 1, positional tensor inputs, logits only
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str  # numpy dtype name
    shape: tuple[int, ...]


class FixedLengthClassifier(nn.Module):
    """What the exporters trace: ``(input_ids, mask[, token_type_ids]) -> logits`` at the profile's length.

    ``input_ids`` are int32 (no int64 reaches the graph); ``mask`` is the int32 attention mask, or the float32
    additive bias when the profile asks the app to prepare the mask (NNAPI).
    """

    def __init__(self, student: XLNetStudent) -> None:
        super().__init__()
        self.student = student.eval()

    def forward(self, input_ids: torch.Tensor, mask: torch.Tensor, *token_type_ids: torch.Tensor) -> torch.Tensor:
        return self.student(input_ids, mask, token_type_ids[0] if token_type_ids else None)


def input_specs(config: StudentConfig, length: int | None = None) -> list[TensorSpec]:
    """Names, dtypes and shapes of the exported program's inputs, in order (at ``length``, default the longest)."""
    length = length or config.seq_len
    mask = (
        TensorSpec("attention_mask", "int32", (1, length))
        if config.mask_input == "attention_mask"
        else TensorSpec("mask_bias", "float32", (1, length))
    )
    specs = [TensorSpec("input_ids", "int32", (1, length)), mask]
    if config.uses_pairs:
        specs.append(TensorSpec("token_type_ids", "int32", (1, length)))
    return specs


def output_specs(config: StudentConfig) -> list[TensorSpec]:
    return [TensorSpec("logits", "float32", (1, config.num_labels))]


CALIBRATION_SAMPLES = 256  # static int8 ranges: training texts calibrated on (exporters and QAT alike)


def encode_for(student: XLNetStudent, encoder, data) -> list:
    """The exported program's input arrays [N, L] for a data set (``LabelledData``; ``encoder``: the student's)."""
    batch = encoder.encode(data.texts, data.pairs, seq_len=student.config.seq_len)
    return model_inputs(student.config, batch.input_ids, batch.attention_mask, batch.token_type_ids)


def calibration_inputs(student: XLNetStudent, encoder, train, seed: int, samples: int = CALIBRATION_SAMPLES) -> list:
    """A seeded sample of real training texts for static int8 calibration (the exporters and QAT use the same)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    picked = sorted(rng.choice(len(train), size=min(samples, len(train)), replace=False).tolist())
    return encode_for(student, encoder, train.subset(picked))


def model_inputs(config: StudentConfig, input_ids, attention_mask, token_type_ids=None) -> list:
    """Numpy arrays [N, L] in the exported input order, from an encoded batch (N samples of one length L)."""
    import numpy as np

    ids = np.asarray(input_ids, dtype=np.int32)
    if ids.shape[1] > config.seq_len:
        raise ValueError(f"inputs have length {ids.shape[1]}, the student was built for up to {config.seq_len}")
    mask = np.asarray(attention_mask)
    if config.mask_input == "attention_mask":
        mask = mask.astype(np.int32)
    else:
        mask = ((1.0 - mask.astype(np.float32)) * -config.mask_value).astype(np.float32)
    arrays = [ids, mask]
    if config.uses_pairs:
        arrays.append(np.asarray(token_type_ids, dtype=np.int32))
    return arrays


def example_inputs(config: StudentConfig, length: int | None = None) -> tuple[torch.Tensor, ...]:
    """One batch-1 sample (a few tokens, left-padded to ``length``, default the longest) for tracing and exporting."""
    import numpy as np

    length = length or config.seq_len
    ids = np.full((1, length), 5, dtype=np.int32)
    ids[0, -4:] = [min(20, config.vocab_size - 1), min(21, config.vocab_size - 1), 4, 3]
    mask = np.zeros((1, length), dtype=np.int32)
    mask[0, -4:] = 1
    types = np.full((1, length), 3, dtype=np.int32)
    types[0, -4:] = [0, 0, 0, 2]
    return tuple(torch.from_numpy(a) for a in model_inputs(config, ids, mask, types))


def eager_logits(student: XLNetStudent, inputs: list, batch_size: int = 64):
    """The fp32 eager student's logits [N, C] on exported-program input arrays: every artifact's reference."""
    import numpy as np

    module = FixedLengthClassifier(student).eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(inputs[0]), batch_size):
            batch = [torch.from_numpy(np.ascontiguousarray(a[start : start + batch_size])) for a in inputs]
            out.append(module(*batch).numpy())
    return np.concatenate(out, axis=0)
