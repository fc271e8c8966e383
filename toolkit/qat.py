"""Quantization-aware training for the full-integer int8 recipes: fake quantization in extra epochs after distillation.

Post-training static int8 (ExecuTorch ``int8-static``, LiteRT ``full-int8``) stores every activation tensor on a
per-tensor int8 grid whose range is calibrated on 256 training texts (min/max), and the linear weights on a
per-output-channel grid. A narrow student never trained with that noise can lose agreement with its fp32 self
(BENCHMARKS.md "Static int8"). In the quantization-aware epochs (``--qat-epochs``, run after the distillation epochs
by ``toolkit.distill``) the student computes as the int8 artifact will:

* every op's floating-point output (linears, attention products, adds, muls, softmax, GELU, normalisations,
  embeddings; not the reshapes and slices, which keep their input's grid) is fake-quantized per tensor
  (``torch.ao.quantization.FakeQuantize``, straight-through gradients). A ``TorchFunctionMode`` rounds them, so
  every tensor the exporters quantize is covered without marking modules one by one: on an SST-2 student this
  simulation agreed with fp32 on 97.7 % of dev where ExecuTorch int8-static gave 97.8 % and LiteRT full-int8 97.7 %
  (rounding only linear inputs and a few marked tensors had predicted 99.3 %);
* the ranges are those the exporters will calibrate: min/max over the same 256 training texts
  (``pipeline.calibration_inputs``), measured once as QAT begins and then fixed;
* linear weights are fake-quantized per output channel (symmetric, the current weights' range).

The epochs learn the float student's own logits (self-distillation: the int8 form should give the float student's
answers). The saved student has its weights on the int8 grid; the exporters quantize it as before.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn
from torch.ao.quantization import FakeQuantize, MinMaxObserver, MovingAveragePerChannelMinMaxObserver
from torch.overrides import TorchFunctionMode

# Ops whose output keeps its input's grid (views, slices, copies) or is not a computed value: not rounded again.
_KEEPS_GRID = {
    "reshape", "view", "transpose", "permute", "__getitem__", "contiguous", "expand", "unsqueeze", "squeeze",
    "flatten", "split", "chunk", "t", "to", "float", "type", "detach", "clone", "dropout", "expand_as", "view_as",
    "reshape_as", "__get__", "size", "dim", "numel", "zeros", "ones", "new_zeros", "arange", "full", "eye", "long",
    "int", "__setitem__",
}  # fmt: skip
_ARITHMETIC = {"__add__", "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__", "__truediv__", "__neg__"}


def activation_fake_quant() -> FakeQuantize:
    """Per-tensor affine int8 with the full observed range (as both exporters calibrate)."""
    return FakeQuantize(observer=MinMaxObserver, quant_min=-128, quant_max=127, dtype=torch.qint8,
                        qscheme=torch.per_tensor_affine)  # fmt: skip


def weight_fake_quant() -> FakeQuantize:
    """Per-output-channel symmetric int8 with the CURRENT weights' range (averaging constant 1), as PTQ scales them."""
    return FakeQuantize(observer=MovingAveragePerChannelMinMaxObserver, averaging_constant=1.0, quant_min=-127,
                        quant_max=127, dtype=torch.qint8, qscheme=torch.per_channel_symmetric, ch_axis=0)  # fmt: skip


class _RoundEveryOp(TorchFunctionMode):
    """While active: linear weights on their per-channel grid, every op's float output on its per-tensor grid.

    Each call site is the n-th rounded op of a forward pass (the counter restarts with every forward), so the same
    tensor gets the same grid in every pass; its fake-quantizer is created at the first pass.
    """

    def __init__(self, owner: QuantAware) -> None:
        super().__init__()
        self.owner = owner
        self.calls = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if name == "linear" and id(args[1]) in self.owner.weight_names:
            key = self.owner.weight_names[id(args[1])]
            args = (args[0], self.owner.weights[key](args[1]), *args[2:])
        out = func(*args, **kwargs)
        if name in _KEEPS_GRID or (name.startswith("_") and name not in _ARITHMETIC):
            return out
        if isinstance(out, torch.Tensor) and out.is_floating_point() and out.dim() > 0:
            key = f"{self.calls}-{name}"
            self.calls += 1
            if key not in self.owner.activations:
                self.owner.activations[key] = activation_fake_quant().to(out.device)
            out = self.owner.activations[key](out)
        return out


class QuantAware:
    """Fake quantization of ``model``'s forward (every op output and every linear weight) until :meth:`detach`.

    The model's parameters stay the same objects (an optimizer keeps training them); only forward passes change.
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self._linears = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Linear)]
        self.weights = nn.ModuleDict({name.replace(".", "/"): weight_fake_quant() for name, _ in self._linears})
        self.weight_names = {id(m.weight): name.replace(".", "/") for name, m in self._linears}
        self.activations = nn.ModuleDict()
        self._mode = _RoundEveryOp(self)
        self._handles = [
            model.register_forward_pre_hook(self._enter),
            model.register_forward_hook(self._exit, always_call=True),
        ]

    def _enter(self, _module, _args) -> None:
        self._mode.calls = 0
        self._mode.__enter__()

    def _exit(self, _module, _args, _output) -> None:
        self._mode.__exit__(None, None, None)

    def calibrate(self, batches: Iterable[tuple]) -> None:
        """Activation ranges: min/max over ``batches`` (forward arguments), then fixed (what the exporters do)."""
        self.observe(True)
        training = self.model.training
        self.model.eval()
        with torch.no_grad():
            for batch in batches:
                self.model(*batch)
        self.model.train(training)
        self.observe(False)

    def observe(self, enabled: bool) -> None:
        """Activation-range observers on (calibrating) or off (the ranges fixed). Weight scales always follow the
        current weights."""
        for module in self.activations.values():
            (module.enable_observer if enabled else module.disable_observer)()

    def state_dict(self) -> dict:
        """Every fake-quantizer's range (activations and weights), for a checkpoint."""
        return {f"activations.{k}": v for k, v in self.activations.state_dict().items()} | {
            f"weights.{k}": v for k, v in self.weights.state_dict().items()
        }

    def load_state_dict(self, state: dict) -> None:
        for key in {k[len("activations."):].split(".")[0] for k in state if k.startswith("activations.")}:
            self.activations[key] = activation_fake_quant()
            self.activations[key].disable_observer()
        self.activations.load_state_dict({k[len("activations."):]: v for k, v in state.items()
                                          if k.startswith("activations.")})  # fmt: skip
        self.weights.load_state_dict({k[len("weights."):]: v for k, v in state.items() if k.startswith("weights.")})

    def snapshot(self) -> nn.Module:
        """A plain model (built from the model's ``config``) with the linear weights on their int8 grid."""
        state = self.plain_state_dict()
        with torch.no_grad():
            for name, linear in self._linears:
                state[f"{name}.weight"] = self.weights[name.replace(".", "/")](linear.weight.detach()).clone()
        copied = type(self.model)(self.model.config)
        copied.load_state_dict(state)
        return copied.train(self.model.training)

    def plain_state_dict(self) -> dict:
        """The model's own state (un-rounded weights): what a checkpoint resumes from."""
        return {k: v for k, v in self.model.state_dict().items()}

    def detach(self) -> None:
        """Remove the fake quantization; the model computes in float again."""
        for handle in self._handles:
            handle.remove()
