"""A toy task for the training engine's own tests (``training/engine.py``): a small 3-D conv net regressing a
fixed target from noisy clips, with per-sample draws, two optimizers (as the AE and its discriminator) and an EMA.
Runs in-process, or as a script under ``torchrun`` (the engine's multi-process path):

    python -m torch.distributed.run --nproc_per_node 2 -m cvk_testkit.train_toy OUT STEPS BATCH [ACCUMULATE]

writes ``OUT/history.json`` and ``OUT/params.pt`` (rank 0).
"""
from __future__ import annotations

import json
import os
import sys

import torch

from . import load_pack


def make(out: str, steps: int, batch: int, accumulate: int = 1, save_every: int = 1000):
    load_pack()
    from consistent_video_kit.training.engine import EMA, Task, TrainConfig

    class ToyTask(Task):
        name = "toy"

        def build(self, cfg, device, world, dataset=None, log=None):
            torch.manual_seed(cfg.seed)
            self.net = torch.nn.Sequential(torch.nn.Conv3d(3, 4, 3, padding=1), torch.nn.SiLU(),
                                           torch.nn.Conv3d(4, 3, 3, padding=1)).to(device)
            self.critic = torch.nn.Conv3d(3, 1, 1).to(device)
            self.ema = EMA(self.net, 0.99)
            self.optimizers = {"net": self.net, "critic": self.critic}

        def loss(self, name, video, draws, step):
            noise = draws.randn("noise", video.shape[1:]).to(video.device)
            if name == "net":
                self.critic.requires_grad_(False)
                pred = self.net(video + 0.3 * noise)
                loss = (pred - video.flip(2)).pow(2).mean() + 0.01 * self.critic(pred).mean()
                self.critic.requires_grad_(True)
                return loss, {"net": float(loss.detach())}
            with torch.no_grad():
                pred = self.net(video + 0.3 * draws.randn("noise/critic", video.shape[1:]).to(video.device))
            loss = (self.critic(pred) - self.critic(video)).abs().mean()
            return loss, {"critic": float(loss.detach())}

        def after_step(self, step):
            self.ema.update(self.net)

        def state_dict(self):
            return {"net": self.net.state_dict(), "critic": self.critic.state_dict(), "ema": self.ema.state_dict()}

        def load_state_dict(self, sd):
            self.net.load_state_dict(sd["net"])
            self.critic.load_state_dict(sd["critic"])
            self.ema.load_state_dict(sd["ema"])

        def export(self, out, step):
            path = os.path.join(out, "toy.pt")
            torch.save(self.state_dict(), path)
            return path

    g = torch.Generator().manual_seed(0)
    data = torch.rand(12, 3, 4, 8, 8, generator=g) * 2 - 1

    def batch_fn(dataset, step, global_batch, rank, world, seed, micro, accumulate):
        per = global_batch // (world * accumulate)
        first = micro * (global_batch // accumulate) + rank * per
        idx = [step * global_batch + first + j for j in range(per)]
        return dataset[[i % len(dataset) for i in idx]], idx

    cfg = TrainConfig(recipe="toy", data="", out=out, steps=steps, batch=batch, accumulate=accumulate, lr=1e-2,
                      save_every=save_every, log_every=1000)
    return cfg, ToyTask(), data, batch_fn


def main(argv) -> int:
    out, steps, batch = argv[0], int(argv[1]), int(argv[2])
    accumulate = int(argv[3]) if len(argv) > 3 else 1
    cfg, task, data, batch_fn = make(out, steps, batch, accumulate)
    from consistent_video_kit.training.engine import train
    history = train(cfg, task, data, batch_fn, log=lambda s: None)
    if int(os.environ.get("RANK", "0")) == 0:
        with open(os.path.join(out, "history.json"), "w") as f:
            json.dump({str(k): v for k, v in history.items()}, f)
        torch.save({k: v.detach().cpu() for k, v in task.net.state_dict().items()}, os.path.join(out, "params.pt"))
    return 0


if __name__ == "__main__":
    torch.set_num_threads(1)
    sys.exit(main(sys.argv[1:]))
