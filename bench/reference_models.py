"""The published reference networks, written in plain torch (torchvision is not a dependency), as deployed:
batch norm folded into the convolutions (a deployed graph has no BN), random weights (latency does not depend on the
values of dense kernels). Input 1 x 3 x 224 x 224, 1000 classes.

* MobileNetV1 1.0 224 (Howard et al. 2017, Table 1): 569 M multiply-adds, 4.2 M parameters.
* MobileNetV2 1.0 224 (Sandler et al. 2018, Table 2): 300 M multiply-adds, 3.4 M parameters.
* ResNet-18 (He et al. 2016, Table 1): 1.8 G multiply-adds, 11.7 M parameters.
"""

from __future__ import annotations

import torch
from torch import nn


def _conv(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, act: type[nn.Module] | None = nn.ReLU6):
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=True)]
    if act is not None:
        layers.append(act())
    return nn.Sequential(*layers)


class MobileNetV1(nn.Module):
    SPEC = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 + [(1024, 2), (1024, 1)]

    def __init__(self, classes: int = 1000) -> None:
        super().__init__()
        layers, cin = [_conv(3, 32, 3, 2)], 32
        for cout, stride in self.SPEC:
            layers += [_conv(cin, cin, 3, stride, groups=cin), _conv(cin, cout, 1)]
            cin = cout
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(1024, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).mean((2, 3)))


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        layers = [] if expand == 1 else [_conv(cin, hidden, 1)]
        layers += [_conv(hidden, hidden, 3, stride, groups=hidden), _conv(hidden, cout, 1, act=None)]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x) if self.residual else self.body(x)


class MobileNetV2(nn.Module):
    SPEC = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]

    def __init__(self, classes: int = 1000) -> None:
        super().__init__()
        layers, cin = [_conv(3, 32, 3, 2)], 32
        for expand, cout, repeats, stride in self.SPEC:
            for i in range(repeats):
                layers.append(InvertedResidual(cin, cout, stride if i == 0 else 1, expand))
                cin = cout
        layers.append(_conv(cin, 1280, 1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(1280, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).mean((2, 3)))


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = _conv(cin, cout, 3, stride, act=nn.ReLU)
        self.conv2 = _conv(cout, cout, 3, 1, act=None)
        self.shortcut = _conv(cin, cout, 1, stride, act=None) if stride != 1 or cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv2(self.conv1(x)) + self.shortcut(x))


class ResNet18(nn.Module):
    def __init__(self, classes: int = 1000) -> None:
        super().__init__()
        layers: list[nn.Module] = [_conv(3, 64, 7, 2, act=nn.ReLU), nn.MaxPool2d(3, 2, 1)]
        cin = 64
        for cout, stride in [(64, 1), (128, 2), (256, 2), (512, 2)]:
            layers += [BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)]
            cin = cout
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(512, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).mean((2, 3)))


MODELS = {"mobilenet_v1": MobileNetV1, "mobilenet_v2": MobileNetV2, "resnet18": ResNet18}


def build(name: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = MODELS[name]().eval()
    with torch.no_grad():  # He-style scale keeps activations finite through the depth (int8 calibration needs it)
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                fan_in = m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1]
                m.weight.normal_(0, (2.0 / fan_in) ** 0.5)
                m.bias.zero_()
    return model


def multiply_adds(model: nn.Module, size: int = 224) -> int:
    """Multiply-adds of one 1 x 3 x size x size inference (convolutions and linears), counted with forward hooks."""
    total = 0

    def conv_hook(m, _inputs, output):
        nonlocal total
        total += output.numel() * m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1]

    def linear_hook(m, _inputs, output):
        nonlocal total
        total += output.numel() * m.in_features

    hooks = [m.register_forward_hook(conv_hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    hooks += [m.register_forward_hook(linear_hook) for m in model.modules() if isinstance(m, nn.Linear)]
    with torch.no_grad():
        model(torch.zeros(1, 3, size, size))
    for h in hooks:
        h.remove()
    return total
