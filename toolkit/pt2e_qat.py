"""PT2E quantization-aware training of the activation ranges of the exact graph ExecuTorch's ``int8-static`` lowers.

What was measured before this design (BENCHMARKS.md "Activation ranges", "int8-static vs int8-static-histogram vs
int8-static-qat", "QAT variants"):

* the activation ranges matter more than the weights: the XNNPACK quantizer's histogram ranges, with the LayerNorms'
  inner ops left in float (an int8 variance can round to 0), lift agreement with fp32 far above min/max ranges on
  the students where min/max loses most;
* training the weights under those ranges (self-distillation on the 256 calibration texts, or on 2,048 training
  texts) lifted agreement on 10,000 unseen texts by at most 0.13 points on the two 1/10 bench students, and a
  learning rate large enough to move them (3e-4) lowered it by 0.35-0.64 points;
* training the ranges' scales instead (LSQ), weights fixed, on texts the calibration did not see, cut the mean
  |logit error| on the unseen texts by up to a third and lifted sst2 1/10's agreement from 99.30 to 99.52 %;
  on sst2-1k 1/10 agreement did not follow the error (99.46 -> 99.26 %, the student with the most near-ties):
  13 of its 74 flips were exact ties of int8 logits, which argmax gives to the first label.

So: the graph is prepared with fake-quantizers (weights per channel; activations per tensor, starting from the
histogram observer's ranges over the calibration samples; the LayerNorms' inner ops and the classifier head in
float, as ``int8-static-histogram``), each activation fake-quantizer becomes a :class:`LearnedRange`, and only those
scales learn the float program's own logits (self-distillation, T = 2, no dropout) on the calibration samples and
sentence-like samples joined from them (``joined_inputs``: SST-2's training texts are phrases of 14 tokens on
average, the sentences an app classifies are about twice as long). With the head in float, training on both lifted
the sst2-1k 1/10 bench student from 99.48 % (joins only) to 99.69 % agreement on 10,000 unseen texts. The exporter
then quantizes every length bucket with those ranges (``quantized_with_ranges``) and the student's own weights.
Only the calibration samples are needed, as for ``int8-static``.
"""


from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from toolkit.tokenizer import PAD_ID, TYPE_A, TYPE_CLS, TYPE_PAD

EPOCHS = 1  # passes over the joined samples
JOINED = 2048  # sentence-like samples trained on (``joined_inputs``)
STEP = 32  # samples per optimiser step (gradients accumulated: the exported graph runs one sample at a time)
LEARNING_RATE = 1e-2  # Adam on each activation range's log-scale, decaying linearly to 0
TEMPERATURE = 2.0


def joined_inputs(config, arrays: list[np.ndarray], count: int = JOINED, seed: int = 0) -> list[np.ndarray]:
    """``count`` sentence-like inputs made from the calibration texts' own tokens (``arrays``: ``model_inputs``
    [N, L]): 2 to 4 texts drawn at random, each segment's tokens joined in order and ended by its separator, the
    classifier token last, left-padded (cut from the front when longer than the student takes).
    The ranges are fitted on the calibration texts themselves, so learning them on those texts has nothing to
    correct; these combinations produce activations the calibration did not see."""
    ids, mask = np.asarray(arrays[0]), np.asarray(arrays[1])
    real = mask == 0 if mask.dtype.kind == "f" else mask == 1  # an additive bias (0 = attend) or a 0/1 mask
    types = np.asarray(arrays[2]) if config.uses_pairs else np.where(real, TYPE_A, TYPE_PAD)
    if not config.uses_pairs:
        types[:, -1] = TYPE_CLS
    length = ids.shape[1]
    rng = np.random.default_rng(seed)
    joined_ids = np.full((count, length), PAD_ID, dtype=np.int32)
    joined_types = np.full((count, length), TYPE_PAD, dtype=np.int32)
    joined_mask = np.zeros((count, length), dtype=np.int32)
    for row in range(count):
        picked = rng.choice(len(ids), int(rng.integers(2, 5)))
        tokens, kinds = [], []
        for kind in sorted(set(types[picked[0]][real[picked[0]]].tolist())):  # segments A (, B), then the <cls>
            parts = [ids[i][real[i] & (types[i] == kind)] for i in picked]
            body = [part[:-1] for part in parts] if kind != TYPE_CLS else []  # each segment ends in its <sep>
            run = np.concatenate(body + [parts[0][-1:]])
            tokens.append(run)
            kinds.append(np.full(len(run), kind))
        tokens, kinds = np.concatenate(tokens)[-length:], np.concatenate(kinds)[-length:]
        joined_ids[row, length - len(tokens):] = tokens
        joined_types[row, length - len(tokens):] = kinds
        joined_mask[row, length - len(tokens):] = 1
    from toolkit.student import model_inputs

    return model_inputs(config, joined_ids, joined_mask, joined_types)


def training_inputs(config, calibration: list[np.ndarray], count: int | None = None) -> list[np.ndarray]:
    """What ``int8-static-qat`` trains its ranges on: the calibration arrays, then ``count`` (default ``JOINED``)
    sentence-like joins of them (``joined_inputs``)."""
    joined = joined_inputs(config, calibration, JOINED if count is None else count)
    arrays = [np.asarray(a) for a in calibration]
    return [np.concatenate([a, np.asarray(b).astype(a.dtype)]) for a, b in zip(arrays, joined)]


def _frozen_range_config(static):
    """``static`` (the XNNPACK static config) as fake-quantizers with min/max observers; the activation ranges are
    replaced by the histogram's before training (``_use_ranges``)."""
    from torchao.quantization.pt2e.fake_quantize import FakeQuantize
    from torchao.quantization.pt2e.observer import MinMaxObserver, MovingAveragePerChannelMinMaxObserver

    activation = dataclasses.replace(
        static.input_activation, observer_or_fake_quant_ctr=FakeQuantize.with_args(observer=MinMaxObserver, eps=2**-12)
    )
    weight = dataclasses.replace(static.weight, observer_or_fake_quant_ctr=FakeQuantize.with_args(
        observer=MovingAveragePerChannelMinMaxObserver, averaging_constant=1.0, eps=2**-12))  # the current weights
    return dataclasses.replace(static, input_activation=activation, output_activation=activation, weight=weight,
                               is_qat=True)  # fmt: skip


def _activation_quantizers(graph: nn.Module) -> dict[str, nn.Module]:
    from torchao.quantization.pt2e.fake_quantize import FakeQuantize
    from torchao.quantization.pt2e.observer import PerChannelMinMaxObserver

    return {
        name: module for name, module in graph.named_modules()
        if isinstance(module, FakeQuantize) and not isinstance(module.activation_post_process, PerChannelMinMaxObserver)
    }  # fmt: skip


def _use_ranges(trained: nn.Module, observed: nn.Module) -> None:
    """Each activation fake-quantizer of ``trained`` takes the calibrated observer at the same place in ``observed``
    (the same graph prepared post-training), with its scale and zero point, and stops observing."""
    for name, quantizer in _activation_quantizers(trained).items():
        observer = observed.get_submodule(name)
        quantizer.activation_post_process = observer
        scale, zero_point = observer.calculate_qparams()
        quantizer.scale.resize_(scale.shape).copy_(scale)
        quantizer.zero_point.resize_(zero_point.shape).copy_(zero_point)
        quantizer.disable_observer()


class LearnedRange(nn.Module):
    """An activation fake-quantizer whose scale is trained (LSQ: the gradient of the rounding error with respect to
    the step size), as its logarithm so that one optimiser step moves it by a share of itself; the zero point
    stays where calibration put it."""

    def __init__(self, quantizer: nn.Module) -> None:
        super().__init__()
        self.log_scale = nn.Parameter(torch.log(quantizer.scale.detach().clone().float()))
        self.register_buffer("zero_point", quantizer.zero_point.detach().clone().float())
        self.quant_min, self.quant_max = quantizer.quant_min, quantizer.quant_max

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch._fake_quantize_learnable_per_tensor_affine(
            x, self.log_scale.exp(), self.zero_point, self.quant_min, self.quant_max, 1.0)  # fmt: skip

    def float_range(self) -> tuple[float, float]:
        """The float range whose int8 affine grid is this quantizer's."""
        scale, zero_point = float(self.log_scale.detach().exp()), int(round(float(self.zero_point)))
        return (self.quant_min - zero_point) * scale, (self.quant_max - zero_point) * scale


def trained_quantization_aware(
    module: nn.Module,
    example: tuple[torch.Tensor, ...],
    samples: Sequence[tuple[torch.Tensor, ...]],
    static_config,
    make_quantizer: Callable,
    epochs: int = EPOCHS,
    losses: list[float] | None = None,
    training: Sequence[tuple[torch.Tensor, ...]] | None = None,
    range_learning_rate: float = LEARNING_RATE,
    weight_learning_rate: float = 0.0,
) -> nn.Module:
    """A copy of ``module`` with the activation ranges trained quantization-aware (``activation_ranges``: observer
    name -> (min, max), for :func:`quantized_with_ranges`); its weights are ``module``'s. ``module``'s exact graph,
    fake-quantized by ``make_quantizer(config)`` (the exporter's quantizer; weights per channel), starts from the
    histogram ranges of ``static_config`` over ``samples`` (batch-1 tuples) and learns ``module``'s float logits on
    ``training`` (default ``samples``) by moving each activation range's scale (:class:`LearnedRange`).
    ``losses``, when given, receives the mean distillation loss over ``training`` before training and after each
    epoch (an extra pass each, so only when asked). ``weight_learning_rate`` > 0 trains the
    weights too (AdamW, weight decay 0.01; the copy then has the trained weights): measured, not the recipe."""
    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e, prepare_qat_pt2e
    from tqdm import tqdm

    training = samples if training is None else training
    # A copy: the graph ``.module()`` gives back holds the very parameters of the module it was exported from.
    graph = torch.export.export(copy.deepcopy(module), example).module()
    with torch.no_grad():
        targets = [module(*sample) for sample in training]
        observed = prepare_pt2e(copy.deepcopy(graph), make_quantizer(static_config))  # histogram activation ranges
        for sample in samples:
            observed(*sample)
        trained = prepare_qat_pt2e(graph, make_quantizer(_frozen_range_config(static_config)))
        for quantizer in _activation_quantizers(trained).values():
            quantizer.disable_fake_quant()
        for sample in samples:  # weight observers see the weights; activations are observed in float, then replaced
            trained(*sample)
        for quantizer in _activation_quantizers(trained).values():
            quantizer.enable_fake_quant()
    _use_ranges(trained, observed)
    learned = {name: LearnedRange(quantizer) for name, quantizer in _activation_quantizers(trained).items()}
    for name, quantizer in learned.items():
        trained.set_submodule(name, quantizer)
    trained.recompile()
    scales = [quantizer.log_scale for quantizer in learned.values()]
    weights = [p for p in trained.parameters() if all(p is not s for s in scales)]
    groups = []  # what trains; the rest is frozen (by default the weights stay the float student's)
    for params, rate, decay in ((scales, range_learning_rate, 0.0), (weights, weight_learning_rate, 0.01)):
        for parameter in params:
            parameter.requires_grad_(rate > 0)
        if rate > 0:
            groups.append({"params": params, "lr": rate, "weight_decay": decay})
    if not groups:
        raise ValueError("nothing to train: give the ranges or the weights a learning rate")
    optimizer = torch.optim.AdamW(groups)
    trainable = [p for group in groups for p in group["params"]]
    step = min(STEP, len(training))
    per_epoch = len(training) // step
    steps = max(1, epochs * per_epoch)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda done: max(0.0, 1 - done / steps))
    generator = np.random.default_rng(0)

    def record_loss() -> None:
        if losses is not None:
            with torch.no_grad():
                losses.append(sum(float(distillation_loss(trained(*x), y)) for x, y in zip(training, targets))
                              / len(training))

    record_loss()
    with tqdm(total=epochs * per_epoch * step, desc="quantization-aware training", unit="sample") as progress:
        for _ in range(epochs):
            order = generator.permutation(len(training))
            for start in range(0, per_epoch * step, step):
                optimizer.zero_grad()
                for index in order[start : start + step]:
                    loss = distillation_loss(trained(*training[index]), targets[index])
                    (loss / step).backward()
                torch.nn.utils.clip_grad_norm_(trainable, 1.0)
                optimizer.step()
                schedule.step()
                progress.update(step)
            record_loss()
    result = copy.deepcopy(module)
    if weight_learning_rate > 0:
        trained_weights = dict(trained.named_parameters())
        with torch.no_grad():
            for name, parameter in result.named_parameters():
                parameter.copy_(trained_weights[name])  # the exported graph keeps the module's parameter names
    result.activation_ranges = {name: quantizer.float_range() for name, quantizer in learned.items()}
    return result


def distillation_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """KL divergence from the float logits' softened distribution (T = ``TEMPERATURE``), scaled by T²."""
    soft = F.kl_div(F.log_softmax(logits / TEMPERATURE, -1), F.log_softmax(target / TEMPERATURE, -1),
                    reduction="batchmean", log_target=True)  # fmt: skip
    return soft * TEMPERATURE**2


def quantized_with_ranges(
    module: nn.Module, example: tuple[torch.Tensor, ...], quantizer, ranges: dict[str, tuple[float, float]]
) -> torch.export.ExportedProgram:
    """``module``'s quantize/dequantize program at ``example``'s length with the activation ranges QAT trained with
    (``ranges``, by observer name: the graph at every length has the same ops in the same order) instead of
    calibrating again; ``quantizer`` must observe activations with min/max observers (weights: per channel)."""
    from torchao.quantization.pt2e.observer import MinMaxObserver, PerChannelMinMaxObserver
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    prepared = prepare_pt2e(torch.export.export(module, example).module(), quantizer)
    observers = {
        name: m for name, m in prepared.named_modules()
        if isinstance(m, MinMaxObserver) and not isinstance(m, PerChannelMinMaxObserver)
    }  # fmt: skip
    if set(observers) != set(ranges):
        raise ValueError(f"the program at length {example[0].shape[1]} quantizes other tensors than the one trained "
                         f"({len(observers)} activation observers, {len(ranges)} trained ranges)")  # fmt: skip
    with torch.no_grad():
        prepared(*example)  # the weight observers see the weights
    for name, observer in observers.items():
        low, high = ranges[name]
        observer.min_val.fill_(low)
        observer.max_val.fill_(high)
    return torch.export.export(convert_pt2e(prepared), example)
