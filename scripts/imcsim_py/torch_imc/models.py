"""Model zoo architectures built from torch_imc modules (Fashion-MNIST, 1x28x28 pixels).

* ``LeNet5``: conv(1->6, 5x5, pad 2)+ReLU, maxpool 2, conv(6->16, 5x5)+ReLU, maxpool 2,
  flatten, fc(400->120)+ReLU, fc(120->84)+ReLU, fc(84->10) (float logits).
* ``PreActResNet``: a pre-activation ResNet-(6n+2) (ColumnQuant's ResNet-20 for n = 3) with
  the BatchNorms of the convolutions folded into them. Block: r = ReLU(x) (requantised,
  unsigned); y = conv2(conv1(r)) (conv1 with BN + ReLU, conv2 with BN, signed output);
  shortcut = x, or a 1x1 conv (+BN) of r when the shape changes; out = QAdd(y, shortcut)
  (signed). Stem: conv 3x3 (+BN). Head: ReLU, global average pool, flatten, fc (float
  logits). **Difference from the textbook pre-activation block:** its first BatchNorm
  (before the ReLU, on the residual stream) and the final BatchNorm have no graph-format
  equivalent (format version 1 has no per-channel affine digital node and they cannot be
  folded into a convolution across the ReLU), so they are left out.
"""

from __future__ import annotations

import torch.nn as nn

from .config import ImcConfig
from .layers import ImcConv2d, ImcInput, ImcLinear, QAdd, QAvgPool2d, QReLU


class LeNet5(nn.Module):
    def __init__(self, cfg: ImcConfig | None = None, act_bits: int = 8, num_classes: int = 10):
        super().__init__()
        c = cfg or ImcConfig()
        self.inp = ImcInput((1, 28, 28))
        self.conv1 = ImcConv2d(1, 6, 5, padding=2, relu=True, out_bits=act_bits, cfg=c)
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = ImcConv2d(6, 16, 5, relu=True, out_bits=act_bits, cfg=c)
        self.pool2 = nn.MaxPool2d(2)
        self.flatten = nn.Flatten()
        self.fc1 = ImcLinear(400, 120, relu=True, out_bits=act_bits, cfg=c)
        self.fc2 = ImcLinear(120, 84, relu=True, out_bits=act_bits, cfg=c)
        self.fc3 = ImcLinear(84, num_classes, out_bits=0, cfg=c)

    def forward(self, x):
        x = self.inp(x)
        x = self.pool1(self.conv1(x))
        x = self.pool2(self.conv2(x))
        x = self.flatten(x)
        return self.fc3(self.fc2(self.fc1(x)))


class PreActBlock(nn.Module):
    def __init__(self, cin, cout, stride, cfg, act_bits):
        super().__init__()
        self.relu = QReLU(act_bits)
        self.conv1 = ImcConv2d(cin, cout, 3, stride, 1, bias=False, relu=True, bn=True,
                               out_bits=act_bits, cfg=cfg)
        self.conv2 = ImcConv2d(cout, cout, 3, 1, 1, bias=False, bn=True, out_bits=act_bits,
                               out_signed=True, cfg=cfg)
        self.shortcut = None
        if stride != 1 or cin != cout:
            self.shortcut = ImcConv2d(cin, cout, 1, stride, 0, bias=False, bn=True,
                                      out_bits=act_bits, out_signed=True, cfg=cfg)
        self.add = QAdd(out_bits=act_bits, out_signed=True)

    def forward(self, x):
        r = self.relu(x)
        sc = x if self.shortcut is None else self.shortcut(r)
        return self.add(self.conv2(self.conv1(r)), sc)


class PreActResNet(nn.Module):
    def __init__(self, cfg: ImcConfig | None = None, depth: int = 20, widths=(16, 32, 64),
                 act_bits: int = 8, num_classes: int = 10):
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError("depth must be 6n + 2")
        n = (depth - 2) // 6
        c = cfg or ImcConfig()
        self.inp = ImcInput((1, 28, 28))
        self.stem = ImcConv2d(1, widths[0], 3, 1, 1, bias=False, bn=True, out_bits=act_bits,
                              out_signed=True, cfg=c)
        blocks = []
        cin = widths[0]
        for i, w in enumerate(widths):
            for j in range(n):
                blocks.append(PreActBlock(cin, w, 2 if (j == 0 and i > 0) else 1, c, act_bits))
                cin = w
        self.blocks = nn.Sequential(*blocks)
        self.relu = QReLU(act_bits)
        self.pool = QAvgPool2d(None, out_bits=act_bits)
        self.flatten = nn.Flatten()
        self.fc = ImcLinear(cin, num_classes, out_bits=0, cfg=c)

    def forward(self, x):
        x = self.stem(self.inp(x))
        x = self.blocks(x)
        return self.fc(self.flatten(self.pool(self.relu(x))))


MODELS = {"lenet5": LeNet5, "resnet20": PreActResNet}
