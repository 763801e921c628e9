"""Reference numbers for the evaluation network (SPEC section 5), computed by PyTorch.

Builds NetworkCIFAR of the DARTS reference `model.py` (written out here from the SPEC, module
structure and so state_dict names as in the reference), then:
  1. counts the parameters of DARTS_V2 at 20 cells, C=36, 10 classes, with and without the
     auxiliary head -> tests/golden/eval_model.json
  2. loads tests/golden/eval_tiny/model.safetensors (a tiny network trained by
     `darts train`, see tests/golden/eval_tiny/README) with load_state_dict(strict=True) and
     computes eval-mode logits on a fixed batch, then training-mode (batch statistics) logits and
     auxiliary-head logits on it -> tests/golden/eval_logits.safetensors
Run from the repository root: pip install torch safetensors && python3 scripts/golden_eval_model.py
"""
import json
import sys

import torch
import torch.nn as nn
from safetensors import safe_open
from safetensors.torch import load_file, save_file

sys.path.insert(0, "scripts")
from golden_search_model import OPS, FactorizedReduce, Identity, ReLUConvBN  # noqa: E402

OPS_AFFINE = {
    "none": OPS["none"],
    "avg_pool_3x3": lambda c, s: nn.AvgPool2d(3, stride=s, padding=1, count_include_pad=False),
    "max_pool_3x3": lambda c, s: nn.MaxPool2d(3, stride=s, padding=1),
}


def make_op(name, c, stride):
    if name in OPS_AFFINE:
        return OPS_AFFINE[name](c, stride)
    import golden_search_model as g
    if name == "skip_connect":
        return Identity() if stride == 1 else FactorizedReduce(c, c, affine=True)
    k = 3 if name.endswith("3x3") else 5
    if name.startswith("sep"):
        return g.SepConv(c, c, k, stride, k // 2, affine=True)
    return g.DilConv(c, c, k, stride, k - 1, 2, affine=True)


class Cell(nn.Module):
    def __init__(self, genotype, c_pp, c_p, c, reduction, reduction_prev):
        super().__init__()
        self.preprocess0 = FactorizedReduce(c_pp, c, affine=True) if reduction_prev else ReLUConvBN(c_pp, c, 1, 1, 0, affine=True)
        self.preprocess1 = ReLUConvBN(c_p, c, 1, 1, 0, affine=True)
        names, indices = zip(*(genotype["reduce"] if reduction else genotype["normal"]))
        self._concat = genotype["reduce_concat"] if reduction else genotype["normal_concat"]
        self.multiplier = len(self._concat)
        self._ops = nn.ModuleList([make_op(n, c, 2 if reduction and i < 2 else 1) for n, i in zip(names, indices)])
        self._indices = indices

    def forward(self, s0, s1):
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for i in range(len(self._ops) // 2):
            h1 = self._ops[2 * i](states[self._indices[2 * i]])
            h2 = self._ops[2 * i + 1](states[self._indices[2 * i + 1]])
            states.append(h1 + h2)
        return torch.cat([states[i] for i in self._concat], dim=1)


class AuxiliaryHeadCIFAR(nn.Module):
    def __init__(self, c, num_classes):
        super().__init__()
        self.features = nn.Sequential(
            nn.ReLU(inplace=True), nn.AvgPool2d(5, stride=3, padding=0, count_include_pad=False), nn.Conv2d(c, 128, 1, bias=False), nn.BatchNorm2d(128),
            nn.ReLU(inplace=True), nn.Conv2d(128, 768, 2, bias=False), nn.BatchNorm2d(768), nn.ReLU(inplace=True))
        self.classifier = nn.Linear(768, num_classes)


class NetworkCIFAR(nn.Module):
    def __init__(self, c, num_classes, layers, auxiliary, genotype, in_channels=3):
        super().__init__()
        c_curr = 3 * c
        self.stem = nn.Sequential(nn.Conv2d(in_channels, c_curr, 3, padding=1, bias=False), nn.BatchNorm2d(c_curr))
        c_pp, c_p, c_curr = c_curr, c_curr, c
        self.cells = nn.ModuleList()
        reduction_prev = False
        for i in range(layers):
            reduction = i in [layers // 3, 2 * layers // 3]
            if reduction:
                c_curr *= 2
            cell = Cell(genotype, c_pp, c_p, c_curr, reduction, reduction_prev)
            reduction_prev = reduction
            self.cells.append(cell)
            c_pp, c_p = c_p, cell.multiplier * c_curr
            if i == 2 * layers // 3:
                c_aux = c_p
        if auxiliary:
            self.auxiliary_head = AuxiliaryHeadCIFAR(c_aux, num_classes)
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_p, num_classes)

    def forward(self, x):
        """Logits, and in training mode the auxiliary head's logits (the reference `model.py`,
        drop-path off). The head's in-place ReLU also rectifies the cell output the next cells
        read; they all begin with a ReLU, so only the head itself sees the difference."""
        s0 = s1 = self.stem(x)
        logits_aux = None
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1)
            if i == 2 * len(self.cells) // 3 and self.training and hasattr(self, "auxiliary_head"):
                logits_aux = self.auxiliary_head.classifier(self.auxiliary_head.features(s1).flatten(1))
        logits = self.classifier(self.global_pooling(s1).flatten(1))
        return logits if logits_aux is None else (logits, logits_aux)


DARTS_V2 = {
    "normal": [("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 1), ("skip_connect", 0), ("skip_connect", 0), ("dil_conv_3x3", 2)],
    "normal_concat": [2, 3, 4, 5],
    "reduce": [("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 1), ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("max_pool_3x3", 1)],
    "reduce_concat": [2, 3, 4, 5],
}


def count(net, aux):
    return sum(p.numel() for n, p in net.named_parameters() if aux or not n.startswith("auxiliary_head"))


big = NetworkCIFAR(36, 10, 20, True, DARTS_V2)
counts = {"darts_v2_c36_l20_with_auxiliary": count(big, True), "darts_v2_c36_l20_without_auxiliary": count(big, False)}
with open("tests/golden/eval_model.json", "w") as f:
    json.dump(counts, f, indent=2)
print(counts)

path = "tests/golden/eval_tiny/model.safetensors"
with safe_open(path, "pt") as f:
    meta = f.metadata()
genotype = json.loads(meta["genotype"])
cfg = json.loads(meta["net"])
net = NetworkCIFAR(cfg["channels"], cfg["classes"], cfg["layers"], cfg["auxiliary"], genotype, cfg["in_channels"])
net.load_state_dict(load_file(path), strict=True)
net.eval()
torch.manual_seed(1)
x = torch.randn(3, cfg["in_channels"], 32, 32)
with torch.no_grad():
    logits = net(x)
    net.train()  # batch statistics; the auxiliary head runs
    train_logits, train_logits_aux = net(x)
save_file({"x": x, "logits": logits, "train_logits": train_logits, "train_logits_aux": train_logits_aux},
          "tests/golden/eval_logits.safetensors")
print(logits, train_logits_aux)
