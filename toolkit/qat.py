"""Quantization-aware training for the full-integer int8 recipes: fake quantization in extra epochs after distillation.

Post-training static int8 (ExecuTorch ``int8-static``, LiteRT ``full-int8``) rounds every linear layer's input to one
per-tensor int8 grid and its weights to a per-output-channel grid; a student never trained with that noise can lose
agreement with its fp32 self (BENCHMARKS.md "Static int8"). In the quantization-aware epochs (``--qat-epochs``, run
after the distillation epochs by ``toolkit.distill``) every ``nn.Linear`` (the factors of a low-rank projection
included) computes with fake-quantized inputs (per-tensor affine int8, moving-average min/max observer) and
fake-quantized weights (per-channel symmetric int8), with straight-through gradients
(``torch.ao.quantization.FakeQuantize``), and learns the float student's own logits (self-distillation: the int8
form should give the float student's answers). The saved student has its weights on that grid; the exporters then
quantize it exactly as before (calibrating activation ranges on training texts), so no exporter changes.

LiteRT ``full-int8`` also rounds every other activation tensor to int8: the residual sums going into each
normalisation, the normalised outputs, the FFN activation's input and output, and the operands of the attention's
activation-times-activation products (queries, keys, values, position keys, the attention logits and distribution).
Those tensors are fake-quantized too (:func:`_rounded_tensors`).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.ao.quantization import FakeQuantize, MovingAverageMinMaxObserver, MovingAveragePerChannelMinMaxObserver
from torch.nn.utils import parametrize


def activation_fake_quant() -> FakeQuantize:
    return FakeQuantize(observer=MovingAverageMinMaxObserver, quant_min=-128, quant_max=127, dtype=torch.qint8,
                        qscheme=torch.per_tensor_affine)  # fmt: skip


def weight_fake_quant() -> FakeQuantize:
    """Per-output-channel symmetric int8 with the CURRENT weights' range (averaging constant 1), as PTQ scales them."""
    return FakeQuantize(observer=MovingAveragePerChannelMinMaxObserver, averaging_constant=1.0, quant_min=-127,
                        quant_max=127, dtype=torch.qint8, qscheme=torch.per_channel_symmetric, ch_axis=0)  # fmt: skip


class _WeightGrid(nn.Module):
    """A parametrization: the weight as its fake-quantized self."""

    def __init__(self) -> None:
        super().__init__()
        self.fake_quant = weight_fake_quant()

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return self.fake_quant(weight)


def _rounded_tensors(model: nn.Module) -> list[tuple[str, nn.Module, bool]]:
    """(name, module, whether its input too) of every module output full-integer int8 rounds besides the linears'
    inputs: norms and the FFN activation (input and output), the attention's q/k/v/r projections and its
    distribution (output: the operands of the attention products)."""
    from toolkit.student import CentredL2Norm, RelativeAttention

    found = []
    for name, module in model.named_modules():
        if isinstance(module, (nn.LayerNorm, CentredL2Norm, nn.GELU, nn.ReLU)):
            found.append((name, module, True))
        elif isinstance(module, RelativeAttention):
            found += [(f"{name}.{part}", getattr(module, part), False) for part in ("q", "k", "v", "r", "logits", "probs")]
    return found


class QuantAware:
    """Fake quantization attached to every ``nn.Linear`` of ``model`` (in place) until :meth:`detach`.

    The linear weights stay the same ``Parameter`` objects (an optimizer keeps training them).
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.inputs = nn.ModuleDict()
        self._handles = []
        self._linears = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Linear)]
        for name, linear in self._linears:
            key = name.replace(".", "/")
            self.inputs[key] = activation_fake_quant()
            self._handles.append(linear.register_forward_pre_hook(self._input_hook(self.inputs[key])))
            parametrize.register_parametrization(linear, "weight", _WeightGrid(), unsafe=True)
        for name, module, rounds_input in _rounded_tensors(model):
            key = name.replace(".", "/")
            if rounds_input:
                self.inputs[f"{key}/in"] = activation_fake_quant()
                self._handles.append(module.register_forward_pre_hook(self._input_hook(self.inputs[f"{key}/in"])))
            self.inputs[f"{key}/out"] = activation_fake_quant()
            self._handles.append(module.register_forward_hook(self._output_hook(self.inputs[f"{key}/out"])))

    @staticmethod
    def _input_hook(fake_quant: FakeQuantize):
        return lambda _module, args: (fake_quant(args[0]),) + tuple(args[1:])

    @staticmethod
    def _output_hook(fake_quant: FakeQuantize):
        return lambda _module, _args, output: fake_quant(output)

    def observe(self, enabled: bool) -> None:
        """Input-range observers on (training) or off (evaluation: the ranges learned so far, as a device would use
        them). Weight scales always follow the current weights."""
        for module in self.inputs.values():
            (module.enable_observer if enabled else module.disable_observer)()

    def state_dict(self) -> dict:
        """Every observer's ranges (input and weight), for a checkpoint."""
        state = {f"inputs.{k}": v for k, v in self.inputs.state_dict().items()}
        for name, linear in self._linears:
            for k, v in linear.parametrizations.weight[0].state_dict().items():
                state[f"weights.{name}.{k}"] = v
        return state

    def load_state_dict(self, state: dict) -> None:
        self.inputs.load_state_dict({k[len("inputs."):]: v for k, v in state.items() if k.startswith("inputs.")})
        for name, linear in self._linears:
            prefix = f"weights.{name}."
            linear.parametrizations.weight[0].load_state_dict(
                {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
            )

    def snapshot(self) -> nn.Module:
        """A plain model (built from the model's ``config``) with the weights on the int8 grid and no fake-quant
        modules. Not a deep copy: copies of a parametrized module share its generated class, and removing the
        parametrization from one breaks the other (torch.nn.utils.parametrize)."""
        state = self.plain_state_dict()
        with torch.no_grad():
            for name, linear in self._linears:
                state[f"{name}.weight"] = linear.weight.detach().clone()  # the fake-quantized weight
        copied = type(self.model)(self.model.config)
        copied.load_state_dict(state)
        return copied.train(self.model.training)

    def plain_state_dict(self) -> dict:
        """The model's state with the un-rounded weights under their plain names (what a checkpoint resumes from)."""
        state = {}
        for key, value in self.model.state_dict().items():
            if ".parametrizations.weight.original" in key:
                state[key.replace(".parametrizations.weight.original", ".weight")] = value
            elif ".parametrizations.weight." not in key:
                state[key] = value
        return state

    def detach(self) -> None:
        """Remove the fake quantization, keeping the un-rounded weights."""
        for handle in self._handles:
            handle.remove()
        for _, linear in self._linears:
            parametrize.remove_parametrizations(linear, "weight", leave_parametrized=False)
