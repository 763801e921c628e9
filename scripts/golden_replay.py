"""Golden search steps computed by PyTorch, for `darts replay` (crates/cli/tests/replay.rs).

Runs the DARTS reference search loop (`train_search.py` + `architect.py`) for 3 steps on a small
supernet (the module structure of scripts/golden_search_model.py: C=4, 4 cells, 10 classes, 8x8
images, batch 4), for every combination of order (first, second), weighting (maxw, softmax) and
gradient transform (none, subtract-max), each from the same start with fresh optimizer state:
  architecture step on val batch K: Adam(3e-4, betas (0.5, 0.999), weight decay 1e-3) on the
    alphas' gradient, first order (val loss at w) or second order (the reference
    `_backward_step_unrolled`: virtual step w' = w - eta (momentum * v + g + wd w) on a copy of the
    model, then the finite-difference Hessian-vector product at w with R = 0.01 / ||dw'||);
  weight step on train batch K: SGD(lr 0.025 constant, momentum 0.9, weight decay 3e-4) after
    global-norm clipping to 5.
Subtract-max (SPEC section 2) replaces each updated buffer's gradient g by g - max(g): the
alphas' before Adam, the weights' after clipping. BN running statistics change in every
training-mode forward of the model itself (the val forward at w' runs on a copy).
Writes (tests/golden/replay/):
  model.safetensors     the start: state_dict with int64 num_batches_tracked, and both alphas
  batches.safetensors   train.K.x, train.K.y, val.K.x, val.K.y for K = 0, 1, 2
  {order}-{weighting}-{transform}.safetensors   the state_dict after the 3 steps
  losses.json           each variant's val and train loss per step, and the tensors whose change in
                        PyTorch's own f32 run is more than 1e-3 (relative L2) off the golden
The golden runs in float64 (from the same f32 start and batches, saved as f32): the exact answer
that f32 engines approximate. Second order is ill-conditioned in f32 (the finite-difference
Hessian-vector product divides a difference of alpha gradients by 2R, R = 0.01 / ||dw'||, and
Adam normalises the result), so PyTorch's own f32 run misses it by more than 1e-3 in some alphas:
the test allows those tensors 1.5x PyTorch's own error, every other tensor 1e-3.
Run: pip install torch safetensors && python3 scripts/golden_replay.py
"""
import copy
import json
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from golden_search_model import Network  # noqa: E402

OUT = "tests/golden/replay"
STEPS, LR, MOMENTUM, WD, CLIP = 3, 0.025, 0.9, 3e-4, 5.0


def weights_of(net):
    return [p for n, p in net.named_parameters() if not n.startswith("alphas")]


def alphas_of(net):
    return [net.alphas_normal, net.alphas_reduce]


def loss_of(net, x, y, weighting):
    net.train()
    return F.cross_entropy(net(x, weighting), y)


def subtract_max(grads, transform):
    return [g - g.max() for g in grads] if transform == "subtract-max" else grads


def unrolled_alpha_grads(net, opt_w, batch, weighting):
    """The reference architect's `_backward_step_unrolled` (eta = the weight lr)."""
    (xt, yt), (xv, yv) = batch
    weights = weights_of(net)
    # Virtual step, from a train forward of the model itself (its BN statistics change).
    g = torch.autograd.grad(loss_of(net, xt, yt, weighting), weights)
    with torch.no_grad():
        unrolled = copy.deepcopy(net)
        for p, pu, gp in zip(weights, weights_of(unrolled), g):
            buf = opt_w.state[p].get("momentum_buffer")
            moment = MOMENTUM * buf if buf is not None else torch.zeros_like(p)
            pu.copy_(p - LR * (moment + gp + WD * p))
    val = loss_of(unrolled, xv, yv, weighting)
    grads = torch.autograd.grad(val, alphas_of(unrolled) + weights_of(unrolled))
    dalpha, vector = list(grads[:2]), grads[2:]
    # Finite-difference Hessian-vector product at w, as the reference: in place on the model.
    r = 0.01 / torch.cat([v.reshape(-1) for v in vector]).norm()
    with torch.no_grad():
        for p, v in zip(weights, vector):
            p.add_(r * v)
    gp = torch.autograd.grad(loss_of(net, xt, yt, weighting), alphas_of(net))
    with torch.no_grad():
        for p, v in zip(weights, vector):
            p.sub_(2 * r * v)
    gn = torch.autograd.grad(loss_of(net, xt, yt, weighting), alphas_of(net))
    with torch.no_grad():
        for p, v in zip(weights, vector):
            p.add_(r * v)
    return [d - LR * (a - b) / (2 * r) for d, a, b in zip(dalpha, gp, gn)], val


def replay(start, batches, order, weighting, transform):
    net = copy.deepcopy(start)
    opt_w = torch.optim.SGD(weights_of(net), LR, momentum=MOMENTUM, weight_decay=WD)
    opt_a = torch.optim.Adam(alphas_of(net), lr=3e-4, betas=(0.5, 0.999), weight_decay=1e-3)
    losses = []
    for (xt, yt), (xv, yv) in batches:
        if order == "first":
            val = loss_of(net, xv, yv, weighting)
            dalpha = torch.autograd.grad(val, alphas_of(net))
        else:
            dalpha, val = unrolled_alpha_grads(net, opt_w, ((xt, yt), (xv, yv)), weighting)
        for a, g in zip(alphas_of(net), subtract_max(dalpha, transform)):
            a.grad = g.detach().clone()
        opt_a.step()

        train = loss_of(net, xt, yt, weighting)
        for p, g in zip(weights_of(net), torch.autograd.grad(train, weights_of(net))):
            p.grad = g
        nn.utils.clip_grad_norm_(weights_of(net), CLIP)
        with torch.no_grad():
            for p in weights_of(net):
                p.grad.copy_(subtract_max([p.grad], transform)[0])
        opt_w.step()
        losses.append({"val_loss": val.item(), "train_loss": train.item()})
    return net, losses


def main():
    from safetensors.torch import save_file  # only the golden files need it (the bench imports this module)

    torch.manual_seed(1)
    start = Network(2, 10, 3)
    with torch.no_grad():  # larger alphas than the 1e-3 init, so the weighting matters
        start.alphas_normal.copy_(0.5 * torch.randn(14, 8))
        start.alphas_reduce.copy_(0.5 * torch.randn(14, 8))
    batches = [((torch.randn(4, 3, 8, 8), torch.randint(0, 10, (4,))),
                (torch.randn(4, 3, 8, 8), torch.randint(0, 10, (4,)))) for _ in range(STEPS)]
    os.makedirs(OUT, exist_ok=True)
    save_file({k: v.contiguous() for k, v in start.state_dict().items()}, f"{OUT}/model.safetensors")
    tensors = {}
    for k, ((xt, yt), (xv, yv)) in enumerate(batches):
        tensors.update({f"train.{k}.x": xt, f"train.{k}.y": yt, f"val.{k}.x": xv, f"val.{k}.y": yv})
    save_file(tensors, f"{OUT}/batches.safetensors")
    # The golden runs in float64 from the same (f32) start: the answer the f32 engines approximate.
    # PyTorch's own f32 run is compared with it too, to show how well-conditioned each variant is.
    start64 = copy.deepcopy(start).double()
    batches64 = [((xt.double(), yt), (xv.double(), yv)) for (xt, yt), (xv, yv) in batches]
    info = {}
    for order in ["first", "second"]:
        for weighting in ["maxw", "softmax"]:
            for transform in ["none", "subtract-max"]:
                name = f"{order}-{weighting}-{transform}"
                net, losses = replay(start64, batches64, order, weighting, transform)
                after = {k: (v.float() if v.is_floating_point() else v).contiguous() for k, v in net.state_dict().items()}
                save_file(after, f"{OUT}/{name}.safetensors")
                net32, _ = replay(start, batches, order, weighting, transform)
                errors = list(relative_change_error(start, net32, net))
                above = {k: e for e, k in errors if e > 1e-3}
                info[name] = {"losses": losses, "pytorch_f32_errors_above_1e-3": above}
                print(name, losses[-1], "PyTorch f32 vs f64: worst", max(errors), "above 1e-3:", above)
    with open(f"{OUT}/losses.json", "w") as f:
        json.dump(info, f, indent=1)


def relative_change_error(start, approx, exact):
    """(||approx change - exact change|| / max(||exact change||, 3e-4 sqrt(n)), name) per float
    tensor, as crates/cli/tests/replay.rs measures it (the floor: changes at f32 rounding level)."""
    s, a, e = start.state_dict(), approx.state_dict(), exact.state_dict()
    for k in s:
        if s[k].is_floating_point():
            de = e[k] - s[k].double()
            floor = 3e-4 * de.numel() ** 0.5
            yield (float((a[k].double() - s[k].double() - de).norm() / max(de.norm(), floor)), k)


if __name__ == "__main__":
    main()
