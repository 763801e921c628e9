"""Golden gradients of the DARTS search model, computed by PyTorch.

Builds the search network with the module structure (and so the state_dict names) of the DARTS
reference `model_search.py` / `operations.py`, written out here from the SPEC, then:
  tests/golden/search_model.safetensors   state_dict (incl. int64 num_batches_tracked) + alphas
  tests/golden/search_batch.safetensors   x f32 [4, 3, 16, 16], y int64 [4]
  tests/golden/search_grads.safetensors   the gradient of every parameter and both alphas
  tests/golden/search_model.json          loss, weighting, parameter counts
The loss is the mean cross-entropy in training mode (batch statistics) with Max-W weighting.
Run: pip install torch safetensors && python3 scripts/golden_search_model.py
"""
import json

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file

PRIMITIVES = ["none", "max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5"]


class ReLUConvBN(nn.Module):
    def __init__(self, c_in, c_out, k, stride, pad, affine):
        super().__init__()
        self.op = nn.Sequential(nn.ReLU(), nn.Conv2d(c_in, c_out, k, stride, pad, bias=False), nn.BatchNorm2d(c_out, affine=affine))

    def forward(self, x):
        return self.op(x)


class DilConv(nn.Module):
    def __init__(self, c_in, c_out, k, stride, pad, dil, affine):
        super().__init__()
        self.op = nn.Sequential(nn.ReLU(), nn.Conv2d(c_in, c_in, k, stride, pad, dilation=dil, groups=c_in, bias=False),
                                nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out, affine=affine))

    def forward(self, x):
        return self.op(x)


class SepConv(nn.Module):
    def __init__(self, c_in, c_out, k, stride, pad, affine):
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(), nn.Conv2d(c_in, c_in, k, stride, pad, groups=c_in, bias=False), nn.Conv2d(c_in, c_in, 1, bias=False), nn.BatchNorm2d(c_in, affine=affine),
            nn.ReLU(), nn.Conv2d(c_in, c_in, k, 1, pad, groups=c_in, bias=False), nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out, affine=affine))

    def forward(self, x):
        return self.op(x)


class Identity(nn.Module):
    def forward(self, x):
        return x


class Zero(nn.Module):
    def __init__(self, stride):
        super().__init__()
        self.stride = stride

    def forward(self, x):
        return x.mul(0.0) if self.stride == 1 else x[:, :, ::self.stride, ::self.stride].mul(0.0)


class FactorizedReduce(nn.Module):
    def __init__(self, c_in, c_out, affine):
        super().__init__()
        self.relu = nn.ReLU()
        self.conv_1 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.conv_2 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(c_out, affine=affine)

    def forward(self, x):
        x = self.relu(x)
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(x[:, :, 1:, 1:])], dim=1))


OPS = {
    "none": lambda c, s: Zero(s),
    "avg_pool_3x3": lambda c, s: nn.AvgPool2d(3, stride=s, padding=1, count_include_pad=False),
    "max_pool_3x3": lambda c, s: nn.MaxPool2d(3, stride=s, padding=1),
    "skip_connect": lambda c, s: Identity() if s == 1 else FactorizedReduce(c, c, affine=False),
    "sep_conv_3x3": lambda c, s: SepConv(c, c, 3, s, 1, affine=False),
    "sep_conv_5x5": lambda c, s: SepConv(c, c, 5, s, 2, affine=False),
    "dil_conv_3x3": lambda c, s: DilConv(c, c, 3, s, 2, 2, affine=False),
    "dil_conv_5x5": lambda c, s: DilConv(c, c, 5, s, 4, 2, affine=False),
}


class MixedOp(nn.Module):
    def __init__(self, c, stride):
        super().__init__()
        self._ops = nn.ModuleList()
        for p in PRIMITIVES:
            op = OPS[p](c, stride)
            if "pool" in p:
                op = nn.Sequential(op, nn.BatchNorm2d(c, affine=False))
            self._ops.append(op)

    def forward(self, x, weights):
        return sum(w * op(x) for w, op in zip(weights, self._ops))


class Cell(nn.Module):
    def __init__(self, steps, multiplier, c_pp, c_p, c, reduction, reduction_prev):
        super().__init__()
        self.reduction = reduction
        self.preprocess0 = FactorizedReduce(c_pp, c, affine=False) if reduction_prev else ReLUConvBN(c_pp, c, 1, 1, 0, affine=False)
        self.preprocess1 = ReLUConvBN(c_p, c, 1, 1, 0, affine=False)
        self._steps, self._multiplier = steps, multiplier
        self._ops = nn.ModuleList()
        for i in range(steps):
            for j in range(2 + i):
                self._ops.append(MixedOp(c, 2 if reduction and j < 2 else 1))

    def forward(self, s0, s1, weights):
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        offset = 0
        for _ in range(self._steps):
            s = sum(self._ops[offset + j](h, weights[offset + j]) for j, h in enumerate(states))
            offset += len(states)
            states.append(s)
        return torch.cat(states[-self._multiplier:], dim=1)


class Network(nn.Module):
    def __init__(self, c, num_classes, layers, steps=4, multiplier=4, stem_multiplier=3):
        super().__init__()
        c_curr = stem_multiplier * c
        self.stem = nn.Sequential(nn.Conv2d(3, c_curr, 3, padding=1, bias=False), nn.BatchNorm2d(c_curr))
        c_pp, c_p, c_curr = c_curr, c_curr, c
        self.cells = nn.ModuleList()
        reduction_prev = False
        for i in range(layers):
            reduction = i in [layers // 3, 2 * layers // 3]
            if reduction:
                c_curr *= 2
            cell = Cell(steps, multiplier, c_pp, c_p, c_curr, reduction, reduction_prev)
            reduction_prev = reduction
            self.cells.append(cell)
            c_pp, c_p = c_p, multiplier * c_curr
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_p, num_classes)
        k = sum(2 + i for i in range(steps))
        self.alphas_normal = torch.nn.Parameter(1e-3 * torch.randn(k, len(PRIMITIVES)))
        self.alphas_reduce = torch.nn.Parameter(1e-3 * torch.randn(k, len(PRIMITIVES)))

    def forward(self, x, weighting):
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            alpha = self.alphas_reduce if cell.reduction else self.alphas_normal
            p = F.softmax(alpha, dim=-1)
            w = p if weighting == "softmax" else 1 - p.max(dim=-1, keepdim=True).values + p
            s0, s1 = s1, cell(s0, s1, w)
        return self.classifier(self.global_pooling(s1).view(s1.size(0), -1))


def weight_count(net):
    return sum(p.numel() for n, p in net.named_parameters() if not n.startswith("alphas"))


def main():
    torch.manual_seed(0)
    net = Network(4, 10, 5)
    with torch.no_grad():  # larger alphas than the 1e-3 init, so the weighting matters in the check
        net.alphas_normal.copy_(0.5 * torch.randn(14, 8))
        net.alphas_reduce.copy_(0.5 * torch.randn(14, 8))
    x = torch.randn(4, 3, 16, 16)
    y = torch.tensor([3, 7, 0, 9])
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, "tests/golden/search_model.safetensors")
    save_file({"x": x, "y": y}, "tests/golden/search_batch.safetensors")
    net.train()
    loss = F.cross_entropy(net(x, "maxw"), y)
    loss.backward()
    save_file({n: p.grad.contiguous() for n, p in net.named_parameters()}, "tests/golden/search_grads.safetensors")
    info = {
        "loss": loss.item(),
        "weighting": "maxw",
        "weights_tiny": weight_count(net),
        "weights_darts_c16_l8_10_classes": weight_count(Network(16, 10, 8)),
    }
    with open("tests/golden/search_model.json", "w") as f:
        json.dump(info, f, indent=2)
    print(info)


if __name__ == "__main__":
    main()
