"""The same DARTS search step in PyTorch, for `benches/compare.sh`.

One step = the architecture step (Adam on the alphas, loss on a val batch) then the weight step
(SGD with momentum and weight decay, global-norm clip 5, loss on a train batch), as in the
reference `train_search.py`. First order: the alphas' gradient of the val loss. Second order: the
reference architect's `_backward_step_unrolled` (virtual SGD step on a copy of the model, then the
finite-difference Hessian-vector product with r = 0.01 / ||dw'||), the same function
scripts/golden_replay.py uses for the replay golden. The network is
scripts/golden_search_model.py's `Network` (the reference search model). Prints one JSON line
like `darts bench --json`.
Usage: python3 benches/pytorch_step.py [--preset tiny|standard] [--steps N] [--threads T]
       [--weighting maxw|softmax] [--order first|second]
"""
import argparse
import json
import resource
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, "scripts")
from golden_replay import unrolled_alpha_grads  # noqa: E402
from golden_search_model import Network  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--preset", choices=["tiny", "standard"], default="tiny")
p.add_argument("--steps", type=int, default=5)
p.add_argument("--threads", type=int, default=0)
p.add_argument("--weighting", choices=["maxw", "softmax"], default="maxw")
p.add_argument("--order", choices=["first", "second"], default="first")
a = p.parse_args()
if a.threads:
    torch.set_num_threads(a.threads)
c, layers, batch = (8, 5, 16) if a.preset == "tiny" else (16, 8, 64)
torch.manual_seed(0)
net = Network(c, 10, layers)
alphas = [net.alphas_normal, net.alphas_reduce]
weights = [p for n, p in net.named_parameters() if not n.startswith("alphas")]
arch_opt = torch.optim.Adam(alphas, lr=3e-4, betas=(0.5, 0.999), weight_decay=1e-3)
w_opt = torch.optim.SGD(weights, lr=0.025, momentum=0.9, weight_decay=3e-4)
net.train()


def step():
    xv, yv = torch.randn(batch, 3, 32, 32), torch.randint(0, 10, (batch,))
    xt, yt = torch.randn(batch, 3, 32, 32), torch.randint(0, 10, (batch,))
    arch_opt.zero_grad()
    if a.order == "first":
        F.cross_entropy(net(xv, a.weighting), yv).backward()
    else:
        dalpha, _ = unrolled_alpha_grads(net, w_opt, ((xt, yt), (xv, yv)), a.weighting)
        for alpha, g in zip(alphas, dalpha):
            alpha.grad = g.detach()
    arch_opt.step()
    w_opt.zero_grad()
    F.cross_entropy(net(xt, a.weighting), yt).backward()
    torch.nn.utils.clip_grad_norm_(weights, 5.0)
    w_opt.step()


step()  # warm-up
times = []
for _ in range(a.steps):
    t = time.perf_counter()
    step()
    times.append(time.perf_counter() - t)
print(json.dumps({
    "engine": f"pytorch {torch.__version__}",
    "preset": a.preset,
    "weighting": a.weighting,
    "order": a.order,
    "threads": torch.get_num_threads(),
    "steps": a.steps,
    "median_step_seconds": statistics.median(times),
    "step_seconds": sorted(times),
    "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
}))
