"""Golden values for the engine's ops, computed by PyTorch.

Writes tests/golden/ops.safetensors, read by tests/golden_ops.rs. Each case stores its inputs, a fixed
upstream gradient `r` (the loss is sum(y * r)), the output `y` and the input gradients `g*`.
Run: pip install torch safetensors && python3 scripts/golden_ops.py
"""
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

torch.manual_seed(0)
out = {}


def case(name, fn, **inputs):
    leaves = {k: v.clone().requires_grad_(v.dtype.is_floating_point) for k, v in inputs.items()}
    y = fn(**leaves)
    if y.dim() == 0:
        r = torch.ones(())
    else:
        r = torch.randn_like(y)
    (y * r).sum().backward()
    for k, v in inputs.items():
        out[f"{name}.{k}"] = v.contiguous()
        if leaves[k].grad is not None:
            out[f"{name}.g{k}"] = leaves[k].grad.contiguous()
    out[f"{name}.r"] = r.reshape(y.shape).contiguous()
    out[f"{name}.y"] = y.detach().contiguous()


rn = torch.randn
case("conv_dense", lambda x, w: F.conv2d(x, w, padding=1), x=rn(2, 3, 7, 7), w=rn(4, 3, 3, 3))
case("conv_strided_grouped", lambda x, w: F.conv2d(x, w, stride=2, padding=1, groups=2), x=rn(2, 4, 8, 8), w=rn(6, 2, 3, 3))
case("conv_dilated", lambda x, w: F.conv2d(x, w, padding=2, dilation=2), x=rn(2, 3, 9, 9), w=rn(2, 3, 3, 3))
case("conv_relu_pointwise_s2", lambda x, w: F.conv2d(F.relu(x), w, stride=2), x=rn(2, 5, 8, 8), w=rn(3, 5, 1, 1))
case("depthwise_5x5_s2", lambda x, w: F.conv2d(x, w, stride=2, padding=2, groups=4), x=rn(2, 4, 8, 8), w=rn(4, 1, 5, 5))
case("depthwise_dil_relu", lambda x, w: F.conv2d(F.relu(x), w, padding=2, dilation=2, groups=4), x=rn(2, 4, 9, 11), w=rn(4, 1, 3, 3))
case("max_pool_s1", lambda x: F.max_pool2d(x, 3, 1, 1), x=rn(2, 3, 9, 13))
case("max_pool_s2", lambda x: F.max_pool2d(x, 3, 2, 1), x=rn(2, 3, 9, 13))
case("avg_pool_s1", lambda x: F.avg_pool2d(x, 3, 1, 1, count_include_pad=False), x=rn(2, 3, 9, 13))
case("avg_pool_s2", lambda x: F.avg_pool2d(x, 3, 2, 1, count_include_pad=False), x=rn(2, 3, 9, 13))

# Batch norm, training mode, affine; the running statistics after one step are stored too.
bn = torch.nn.BatchNorm2d(3)
with torch.no_grad():
    bn.running_mean.copy_(rn(3) * 0.1)
    bn.running_var.copy_(rn(3).abs() + 0.5)
out["bn_train.running_mean0"] = bn.running_mean.clone()
out["bn_train.running_var0"] = bn.running_var.clone()
case("bn_train", lambda x, gamma, beta: F.batch_norm(x, bn.running_mean, bn.running_var, gamma, beta, training=True, momentum=0.1, eps=1e-5),
     x=rn(4, 3, 5, 5) * 2 + 1, gamma=rn(3), beta=rn(3))
out["bn_train.running_mean1"] = bn.running_mean.clone()
out["bn_train.running_var1"] = bn.running_var.clone()
case("bn_eval", lambda x, gamma, beta: F.batch_norm(x, out["bn_train.running_mean0"], out["bn_train.running_var0"], gamma, beta, training=False, eps=1e-5),
     x=rn(2, 3, 4, 4), gamma=rn(3), beta=rn(3))
case("bn_noaffine", lambda x: F.batch_norm(x, None, None, training=True, eps=1e-5), x=rn(3, 4, 3, 3))


def maxw(alpha):
    p = F.softmax(alpha, dim=-1)
    return 1 - p.max(dim=-1, keepdim=True).values + p


case("maxw", maxw, alpha=rn(14, 8) * 1e-1)
case("cross_entropy", lambda logits, labels: F.cross_entropy(logits, labels), logits=rn(5, 10), labels=torch.tensor([3, 0, 9, 3, 7]))

save_file(out, "tests/golden/ops.safetensors")
print(f"wrote {len(out)} tensors to tests/golden/ops.safetensors")
