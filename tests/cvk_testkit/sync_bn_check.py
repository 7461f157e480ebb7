"""Two processes' ``SyncBatchNorm2d`` (training/autoencoder.py) against one ``BatchNorm2d`` on both halves put
together, in float32, float16 and bfloat16 inputs (65,536 values per channel and process: a float16 count would
overflow). Run under ``python -m torch.distributed.run --nproc_per_node 2 -m cvk_testkit.sync_bn_check OUT.json``;
rank 0 writes the largest differences (outputs, input and parameter gradients, running statistics) to OUT.json."""
from __future__ import annotations

import json
import sys

import torch
import torch.distributed as dist

from . import load_pack


def main(out: str) -> int:
    load_pack()
    from consistent_video_kit.training.autoencoder import SyncBatchNorm2d
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    g = torch.Generator().manual_seed(0)
    C = 3
    x_all = torch.randn(2 * world, C, 128, 128, generator=g) * 3 + 1
    w, b = torch.rand(C, generator=g) + 0.5, torch.randn(C, generator=g)
    up = torch.randn(x_all.shape, generator=g)                    # the upstream gradient
    ref = torch.nn.BatchNorm2d(C)
    with torch.no_grad():
        ref.weight.copy_(w)
        ref.bias.copy_(b)
    xr = x_all.clone().requires_grad_(True)
    y_ref = ref(xr)
    (y_ref * up).sum().backward()
    mine = slice(2 * rank, 2 * rank + 2)
    report = {}
    for name, dtype in (("float32", torch.float32), ("float16", torch.float16), ("bfloat16", torch.bfloat16)):
        bn = SyncBatchNorm2d(C)
        with torch.no_grad():
            bn.weight.copy_(w)
            bn.bias.copy_(b)
        x = x_all[mine].to(dtype).requires_grad_(True)
        y = bn(x)
        (y.float() * up[mine]).sum().backward()
        grads = torch.cat([bn.weight.grad, bn.bias.grad])
        dist.all_reduce(grads)                                      # the engine averages; the sum is the reference's
        err = lambda a, r: float((a.detach().float() - r).abs().max() / r.abs().max())  # noqa: E731
        report[name] = {"dtype_kept": y.dtype == dtype, "finite": bool(torch.isfinite(y).all()),
                        "y": err(y, y_ref[mine].detach()), "x_grad": err(x.grad, xr.grad[mine]),
                        "param_grad": err(grads, torch.cat([ref.weight.grad, ref.bias.grad])),
                        "running_mean": err(bn.running_mean, ref.running_mean),
                        "running_var": err(bn.running_var, ref.running_var)}
    if rank == 0:
        with open(out, "w") as f:
            json.dump(report, f)
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    torch.set_num_threads(1)
    sys.exit(main(sys.argv[1]))
