"""The training loop (``training/engine.py``) on a toy task (``cvk_testkit/train_toy.py``: a 3-D conv net, a critic
with its own optimizer, per-sample draws, an EMA): resume after an interruption is the uninterrupted run exactly, two
processes under torchrun (gloo) are one process with the doubled batch, accumulation is the whole batch, LitEma's
formula, recipe files refuse unknown settings."""
import json
import os
import subprocess
import sys

import pytest
import torch

from cvk_testkit import ROOT, load_pack
from cvk_testkit.train_toy import make

load_pack()
from consistent_video_kit.training import engine  # noqa: E402
from consistent_video_kit.training.draws import StepDraws, process_indices, sample_seed  # noqa: E402


def run(out, steps, batch, accumulate=1, save_every=1000, stop_after=None):
    cfg, task, data, batch_fn = make(str(out), steps, batch, accumulate, save_every)
    history = engine.train(cfg, task, data, batch_fn, log=lambda s: None, stop_after=stop_after)
    return task, history


def test_resume_after_an_interruption_is_the_uninterrupted_run(tmp_path):
    """Saved at step 3, interrupted after step 4 (its work lost), resumed: steps 3–5 and every final state — both
    optimizers' models, the EMA — equal the uninterrupted run's bit for bit."""
    whole, h_whole = run(tmp_path / "whole", 6, 4, save_every=3)
    _, h_first = run(tmp_path / "cut", 6, 4, save_every=3, stop_after=4)
    assert sorted(h_first) == [0, 1, 2, 3]
    resumed, h_rest = run(tmp_path / "cut", 6, 4, save_every=3)
    assert sorted(h_rest) == [3, 4, 5]
    assert all(h_rest[s] == h_whole[s] for s in (3, 4, 5))
    assert all(h_first[s] == h_whole[s] for s in (0, 1, 2))
    for part in ("net", "critic"):
        a, b = getattr(whole, part).state_dict(), getattr(resumed, part).state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a), part
    assert resumed.ema.num_updates == whole.ema.num_updates == 6
    assert all(torch.equal(whole.ema.shadow[k], resumed.ema.shadow[k]) for k in whole.ema.shadow)


def test_two_processes_are_one_process_with_the_doubled_batch(tmp_path):
    """torchrun --nproc_per_node 2 (gloo on CPU), batch 4 = 2 per process, against one process with batch 4: the
    losses of every step and the final weights agree to float rounding (gradients averaged over the processes)."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    out1, out2 = tmp_path / "one", tmp_path / "two"
    for out, cmd in ((out1, [sys.executable, "-m", "cvk_testkit.train_toy"]),
                     (out2, [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                             "-m", "cvk_testkit.train_toy"])):
        r = subprocess.run(cmd + [str(out), "6", "4"], cwd=os.path.join(ROOT, "tests"), env=env,
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    h1, h2 = (json.load(open(o / "history.json")) for o in (out1, out2))
    assert sorted(h1) == sorted(h2) == [str(i) for i in range(6)]
    for s in h1:
        for k in h1[s]:
            assert h2[s][k] == pytest.approx(h1[s][k], rel=1e-5, abs=1e-7), (s, k)
    p1, p2 = (torch.load(o / "params.pt") for o in (out1, out2))
    diff = max(float((p1[k] - p2[k]).abs().max()) for k in p1)
    scale = max(float(p1[k].abs().max()) for k in p1)
    print(f"\n2 processes vs 1: max weight difference {diff:.2e} (weights up to {scale:.2f})")
    assert diff <= 1e-5 * scale


def test_accumulation_is_the_whole_batch(tmp_path):
    """Batch 4 in 2 micro-batches of 2 = batch 4 at once (mean losses: the micro-batch losses are scaled by 1/2)."""
    a, ha = run(tmp_path / "a", 3, 4)
    b, hb = run(tmp_path / "b", 3, 4, accumulate=2)
    for s in ha:
        for k in ha[s]:
            assert hb[s][k] == pytest.approx(ha[s][k], rel=1e-5)
    sa, sb = a.net.state_dict(), b.net.state_dict()
    assert max(float((sa[k] - sb[k]).abs().max()) for k in sa) < 1e-5


def test_ema_is_litemas_formula():
    net = torch.nn.Linear(3, 2)
    ema = engine.EMA(net, decay=0.9)
    start = {k: v.detach().clone() for k, v in net.named_parameters()}
    with torch.no_grad():
        net.weight.add_(1.0)
    ema.update(net)                                    # n = 1: d = min(0.9, 2/11)
    d = 2 / 11
    assert torch.allclose(ema.shadow["weight"], start["weight"] - (1 - d) * (start["weight"] - net.weight))
    for _ in range(100):
        ema.update(net)
    assert ema.num_updates == 101
    assert torch.allclose(ema.shadow["bias"], net.bias.detach())


def test_draws_depend_on_seed_step_and_global_index_only():
    a = StepDraws(3, 7, [0, 1, 2, 3]).randn("noise", (5,))
    b = torch.cat([StepDraws(3, 7, list(process_indices(r, 2, 2))).randn("noise", (5,)) for r in (0, 1)])
    assert torch.equal(a, b)
    assert not torch.equal(a, StepDraws(3, 8, [0, 1, 2, 3]).randn("noise", (5,)))
    assert not torch.equal(a, StepDraws(3, 7, [0, 1, 2, 3]).randn("other", (5,)))
    assert len({sample_seed(0, s, i, "t") for s in range(20) for i in range(20)}) == 400
    with pytest.raises(ValueError, match="rank must be in"):
        process_indices(2, 2, 4)


def test_a_recipe_file_refuses_unknown_settings(tmp_path):
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"recipe": "short", "data": "", "out": "", "learning_rate": 1e-4}))
    with pytest.raises(ValueError, match="unknown settings learning_rate"):
        engine.TrainConfig.from_file(str(path))


def test_a_batch_that_does_not_split_is_refused(tmp_path):
    with pytest.raises(ValueError, match="batch 3 must be divisible by processes × accumulate = 1 × 2"):
        run(tmp_path / "x", 2, 3, accumulate=2)
