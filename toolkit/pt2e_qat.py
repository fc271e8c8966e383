"""PT2E quantization-aware training of the exact graph ExecuTorch's ``int8-static`` recipe lowers.

The toolkit's own QAT (``toolkit/qat.py``) trains the student under a simulation of int8 and leaves the exporters to
calibrate again; on the bench students that did not lift ``int8-static`` agreement (BENCHMARKS.md "QAT and int8
noise"). Three measured facts shaped this instead (BENCHMARKS.md "Activation ranges"):

* the activation ranges matter more than the weights: on the low-resource sst2-1k 1/10 student the XNNPACK
  quantizer's histogram ranges agree with fp32 on 99.3 % of dev where min/max ranges give 98.3 %, and weights
  trained under one rule lose their gain when calibrated again with another;
* training the exact program (the XNNPACK op variants, batch 1) with those ranges frozen lifts it further
  (lowered ``.pte``: 99.5 %), while training with min/max ranges frozen does not;
* with the LayerNorms' inner ops left in float (the exporter's quantizer for this recipe), the histogram ranges
  alone gave 99.8 % (q/dq graph; ``int8-static-histogram``'s ``.pte``: 99.7 %) on that student; an int8 variance
  can round to 0 and made training diverge on another. On the other bench students the training did not add to
  the untrained start (BENCHMARKS.md "int8-static vs int8-static-histogram vs int8-static-qat").

So: the graph is prepared with fake-quantizers (weights per channel, following the weights as they train;
activations per tensor), the activation ranges are the histogram observer's over the calibration samples and stay
fixed, and the graph learns the float program's own logits on those samples (self-distillation, T = 2, no dropout:
the graph is exported in eval mode and kept there). The trained weights go back into a copy of the module, with the
activation ranges they were trained with (``activation_ranges``); the exporter quantizes every length bucket with
those weights and those ranges (``quantized_with_ranges``): calibrating again, even with the same histogram rule,
moved the ranges enough to cost 1 point on the sst2-1k 1/10 student (0.987 instead of 0.997). Only the calibration
samples are needed, as for ``int8-static``.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

EPOCHS = 3  # passes over the calibration samples
STEP = 32  # samples per optimiser step (gradients accumulated: the exported graph runs one sample at a time)
LEARNING_RATE = 3e-5  # AdamW, decaying linearly to 0; weight decay 0.01
TEMPERATURE = 2.0


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


def trained_quantization_aware(
    module: nn.Module,
    example: tuple[torch.Tensor, ...],
    samples: Sequence[tuple[torch.Tensor, ...]],
    static_config,
    make_quantizer: Callable,
    epochs: int = EPOCHS,
    losses: list[float] | None = None,
) -> nn.Module:
    """A copy of ``module`` whose weights were trained quantization-aware on ``samples`` (batch-1 tuples): its
    exact graph, fake-quantized by ``make_quantizer(config)`` (the exporter's quantizer) with the histogram ranges of
    ``static_config`` frozen, learns ``module``'s float logits. The copy's ``activation_ranges`` (observer name ->
    (min, max)) are those ranges, for :func:`quantized_with_ranges`. ``losses``, when given, receives each epoch's
    mean distillation loss."""
    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e, prepare_qat_pt2e
    from tqdm import tqdm

    # A copy: the graph ``.module()`` gives back holds the very parameters of the module it was exported from.
    graph = torch.export.export(copy.deepcopy(module), example).module()
    with torch.no_grad():
        targets = [module(*sample) for sample in samples]
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
    parameters = [p for p in trained.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=LEARNING_RATE, weight_decay=0.01)
    step = min(STEP, len(samples))
    per_epoch = len(samples) // step
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda done: max(0.0, 1 - done / (epochs * per_epoch)))
    generator = np.random.default_rng(0)
    with tqdm(total=epochs * per_epoch * step, desc="quantization-aware training", unit="sample") as progress:
        for _ in range(epochs):
            order = generator.permutation(len(samples))
            total = 0.0
            for start in range(0, per_epoch * step, step):
                optimizer.zero_grad()
                for index in order[start : start + step]:
                    logits = trained(*samples[index])
                    soft = F.kl_div(F.log_softmax(logits / TEMPERATURE, -1),
                                    F.log_softmax(targets[index] / TEMPERATURE, -1), reduction="batchmean",
                                    log_target=True)  # fmt: skip
                    (soft * TEMPERATURE**2 / step).backward()
                    total += float(soft) * TEMPERATURE**2
                torch.nn.utils.clip_grad_norm_(parameters, 1.0)
                optimizer.step()
                schedule.step()
                progress.update(step)
            if losses is not None:
                losses.append(total / (per_epoch * step))
    result = copy.deepcopy(module)
    weights = dict(trained.named_parameters())
    with torch.no_grad():
        for name, parameter in result.named_parameters():
            parameter.copy_(weights[name])  # the exported graph keeps the module's parameter names
    result.activation_ranges = {name: _range_of(quantizer) for name, quantizer in _activation_quantizers(trained).items()}
    return result


def _range_of(quantizer) -> tuple[float, float]:
    """The float range whose int8 affine grid is the quantizer's (scale, zero point)."""
    scale, zero_point = float(quantizer.scale), int(quantizer.zero_point)
    return (quantizer.quant_min - zero_point) * scale, (quantizer.quant_max - zero_point) * scale


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
