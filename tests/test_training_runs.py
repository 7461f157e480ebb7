"""The real LVDM recipes (tiny networks, the moving-shapes set) through scripts/train.py's path: a run interrupted and
resumed is the uninterrupted run bit for bit, and two processes under torchrun (gloo on CPU) are one process with the
doubled batch — for the AE across its discriminator's start (synchronised BatchNorm, the adaptive weight from the
whole batch's gradients) and for the short diffusion model (EMA, the data's latent normalisation)."""
import json
import os
import subprocess
import sys

import pytest
import torch

from cvk_testkit import ROOT, load_pack
from cvk_testkit.tiny_training import SIZE

load_pack()
from consistent_video_kit.models.checkpoint import read_state_dict  # noqa: E402
from consistent_video_kit.training.engine import STATE_FILE, read_losses  # noqa: E402
from consistent_video_kit.training.run import run_recipe, write_shapes  # noqa: E402

ADAM_EPS = 1e-3    # see test_two_processes_are_one_process_with_the_doubled_batch
AE_ARGS = dict(frames=8, sets=["extra.autoencoder.disc_start=2"])          # steps 0–1 plain, 2– with the GAN


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_shapes(str(tmp_path_factory.mktemp("shapes")), videos=2, frames=32, size=SIZE)


@pytest.fixture(scope="module")
def ae_file(tiny_trained):
    return tiny_trained["ae"]


def states(out):
    """Every tensor of the run's checkpoint (models, EMA, optimizers), flattened."""
    st = torch.load(os.path.join(out, STATE_FILE), map_location="cpu", weights_only=False)
    flat = {}

    def walk(prefix, x):
        if isinstance(x, torch.Tensor):
            flat[prefix] = x
        elif isinstance(x, dict):
            for k, v in x.items():
                walk(f"{prefix}.{k}", v)
    walk("task", st["task"])
    walk("optimizers", st["optimizers"])
    return st["step"], flat


RESUME_ARGS = {"ae": AE_ARGS, "short": {}, "lgcvd_bair": dict(mixed_precision="no", sets=[
    "extra.lgcvd.ema_every=1", "extra.lgcvd.ema_start=1"])}     # the EMA blends from step 1 on


@pytest.mark.parametrize("kind", ["ae", "short", "lgcvd_bair"])
def test_resume_is_the_uninterrupted_run(tmp_path, data, ae_file, kind):
    """Saved at step 2, interrupted after step 3 (its work lost), resumed to 4: the losses of every step and every
    final tensor (networks, discriminator, EMA, the optimizers) equal the uninterrupted run's bit for bit (LGC-VD:
    both stages, the optimizer stepped twice a step)."""
    args = dict(network="tiny", steps=4, batch=2, accumulate=1, size=SIZE, save_every=2, log=lambda s: None,
                **RESUME_ARGS[kind], **(dict(ae=ae_file) if kind == "short" else {}))
    whole, cut = str(tmp_path / "whole"), str(tmp_path / "cut")
    h_whole = run_recipe(kind, data=data, out=whole, **args)
    h_first = run_recipe(kind, data=data, out=cut, stop_after=3, **args)
    assert sorted(h_first) == [0, 1, 2]
    h_rest = run_recipe(kind, data=data, out=cut, **args)
    assert sorted(h_rest) == [2, 3]
    assert {**h_first, **h_rest} == h_whole
    assert read_losses(cut) == read_losses(whole) and sorted(read_losses(whole)) == [1, 2, 3, 4]   # the lost step 3 dropped
    if kind == "ae":
        assert h_whole[1]["d_weight"] == 0 and h_whole[2]["d_weight"] > 0 and "disc_loss" in h_whole[3]
    (s1, a), (s2, b) = states(whole), states(cut)
    assert s1 == s2 == 4 and sorted(a) == sorted(b)
    assert [k for k in a if not torch.equal(a[k], b[k])] == []


def run_procs(out, procs, kind, data, ae_file, steps=3):
    cmd = [sys.executable, os.path.join(ROOT, "scripts", "train.py"), kind, "--data", data, "--out", out, "--tiny",
           "--steps", str(steps), "--batch", "2", "--accumulate", "1", "--size", str(SIZE), "--log-every", "1"]
    if kind == "ae":
        cmd += ["--set", "frames=8", "--set", "extra.autoencoder.disc_start=1"]
    elif kind == "lgcvd_bair":
        cmd += ["--mixed-precision", "no", "--set", "extra.lgcvd.ema_every=1", "--set", "extra.lgcvd.ema_start=1"]
    else:
        cmd += ["--ae", ae_file]
    cmd += ["--set", f"extra.optimizer.eps={ADAM_EPS}"]
    if procs > 1:
        cmd[1:1] = ["-m", "torch.distributed.run", "--nproc_per_node", str(procs)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    return r.stdout


@pytest.mark.parametrize("kind", ["ae", "short", "lgcvd_bair"])
def test_two_processes_are_one_process_with_the_doubled_batch(tmp_path, data, ae_file, kind):
    """scripts/train.py under ``torchrun --nproc_per_node 2`` (1 sample per process) against one process with batch
    2: every step's losses and the exported weights agree to float rounding. The AE's discriminator starts at step 1:
    its BatchNorm statistics and the adaptive weight span both processes. LGC-VD: both stages, the EMA blending.

    Adam's ε is raised from 1e-8 to 1e-3 for the comparison: parameters whose true gradient is 0 (a conv bias before
    a GroupNorm) get gradients of float noise, which Adam's first steps turn into ±lr updates whatever their size
    (with 1e-8 those weights differ by ~lr between the runs, the rest by float rounding)."""
    one, two = str(tmp_path / "one"), str(tmp_path / "two")
    run_procs(one, 1, kind, data, ae_file)
    log = run_procs(two, 2, kind, data, ae_file)
    h1, h2 = read_losses(one), read_losses(two)
    assert sorted(h1) == sorted(h2) == [1, 2, 3], log
    for s in h1:
        assert sorted(h1[s]) == sorted(h2[s])
        for k in h1[s]:
            assert h2[s][k] == pytest.approx(h1[s][k], rel=1e-4, abs=1e-6), (s, k)
    if kind == "ae":
        assert h1[1]["d_weight"] == 0 and h1[2]["d_weight"] > 0
    name = {"ae": "ae.safetensors", "short": "short.safetensors", "lgcvd_bair": "lgcvd.safetensors"}[kind]
    w1, w2 = read_state_dict(os.path.join(one, name)), read_state_dict(os.path.join(two, name))
    assert sorted(w1) == sorted(w2)
    diff = max(float((w1[k].float() - w2[k].float()).abs().max()) for k in w1)
    scale = max(float(w1[k].float().abs().max()) for k in w1)
    print(f"\n{kind}: 2 processes vs 1, max weight difference {diff:.2e} (weights up to {scale:.2f})")
    assert diff <= 1e-4 * scale


def test_the_ae_recipe_takes_its_perceptual_loss_from_the_lpips_file(tmp_path, data):
    """--lpips FILE puts LPIPS into the AE's loss (a larger nll than the same step without); without a file the run
    says that it trains without its perceptual loss."""
    from consistent_video_kit.training.autoencoder import LPIPS
    torch.manual_seed(0)
    sd = {k: (torch.randn_like(v) * 0.05 if "net." in k else v.abs() if "lin" in k else v)
          for k, v in LPIPS().state_dict().items()}
    torch.save(sd, tmp_path / "lpips.pt")
    runs = {}
    for name, lpips in (("without", None), ("with", str(tmp_path / "lpips.pt"))):
        lines = []
        runs[name] = run_recipe("ae", data=data, out=str(tmp_path / name), network="tiny", steps=1, batch=1,
                                accumulate=1, size=SIZE, frames=8, lpips=lpips, log=lines.append)
        warned = [s for s in lines if "trains without its perceptual loss" in s]
        assert len(warned) == (1 if lpips is None else 0), lines
    assert runs["with"][0]["nll_loss"] > runs["without"][0]["nll_loss"] + 1.0
    assert runs["with"][0]["kl_loss"] == runs["without"][0]["kl_loss"]        # same weights, same draws


def test_the_launcher_refuses_bad_data_with_one_clear_line(tmp_path):
    """scripts/train.py on an empty folder: exit status 2 and one line naming the folder, no traceback."""
    empty = tmp_path / "empty"
    empty.mkdir()
    r = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "train.py"), "short", "--data", str(empty),
                        "--out", str(tmp_path / "out"), "--tiny", "--ae", "x.safetensors"],
                       cwd=ROOT, env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 2, r.stderr[-2000:]
    assert r.stderr.startswith(f"train.py: error: no videos found under {empty}") and "Traceback" not in r.stderr


def test_mixed_precision_bf16_runs_under_autocast(tmp_path, data, ae_file):
    """--mixed-precision bf16 (accelerate's autocast, on CPU too): the same step's loss as float32 to bf16's
    precision, not bit for bit (the network ran in bf16); the exported weights stay float32."""
    args = dict(network="tiny", steps=1, batch=2, accumulate=1, size=SIZE, ae=ae_file, log=lambda s: None)
    f32 = run_recipe("short", data=data, out=str(tmp_path / "f32"), **args)[0]["loss"]
    bf16 = run_recipe("short", data=data, out=str(tmp_path / "bf16"), mixed_precision="bf16", **args)[0]["loss"]
    assert bf16 != f32 and bf16 == pytest.approx(f32, rel=3e-2)
    w = read_state_dict(str(tmp_path / "bf16" / "short.safetensors"))
    assert {v.dtype for k, v in w.items() if k.startswith("model.")} == {torch.float32}


def test_fp16_without_a_gpu_says_it_trains_in_float32(tmp_path, data, ae_file):
    """The LGC-VD recipes ask for fp16 (the official AMP); on a CPU the run says that it trains in float32, and does
    (the same loss as --mixed-precision no)."""
    if torch.cuda.is_available():
        pytest.skip("a GPU runs fp16")
    lines = []
    args = dict(network="tiny", steps=1, batch=2, accumulate=1, size=SIZE)
    fp16 = run_recipe("lgcvd_bair", data=data, out=str(tmp_path / "a"), log=lines.append, **args)
    f32 = run_recipe("lgcvd_bair", data=data, out=str(tmp_path / "b"), mixed_precision="no", log=lambda s: None,
                     **args)
    assert any("fp16 mixed precision needs a GPU: training in float32" in s for s in lines), lines
    assert fp16 == f32


@pytest.mark.parametrize("setting, message", [
    ("extra.lgcvd.ema_strat=5", "unknown settings extra.lgcvd.ema_strat; known: ema_every, ema_start, "),
    ("extra.lgcvdd.ema_start=5", "unknown settings extra.lgcvdd; known groups: extra.optimizer"),
    ("extra.optimizer.lr=5", "unknown settings extra.optimizer.lr; known: betas, eps, kind, weight_decay"),
])
def test_a_misspelt_setting_is_refused_by_name(tmp_path, data, setting, message):
    with pytest.raises(ValueError, match=message.replace(".", r"\.")):
        run_recipe("lgcvd_bair", data=data, out=str(tmp_path / "x"), network="tiny", steps=1, batch=2, size=SIZE,
                   mixed_precision="no", sets=[setting], log=lambda s: None)


def test_synchronised_batchnorm_is_one_batchnorm_over_both_processes(tmp_path):
    """SyncBatchNorm2d in 2 gloo processes = BatchNorm2d on both halves at once: outputs, input and parameter
    gradients, running statistics — for float32, float16 and bfloat16 inputs (statistics kept in float32: 65,536
    values per channel and process, where a float16 count would be inf)."""
    out = tmp_path / "sbn.json"
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m",
                        "cvk_testkit.sync_bn_check", str(out)], cwd=os.path.join(ROOT, "tests"),
                       env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    rep = json.loads(out.read_text())
    for dtype, tol in (("float32", 1e-5), ("float16", 3e-3), ("bfloat16", 2e-2)):
        d = rep[dtype]
        assert d["dtype_kept"] and d["finite"], (dtype, d)
        assert max(d["y"], d["x_grad"], d["param_grad"]) < tol, (dtype, d)
        assert max(d["running_mean"], d["running_var"]) < 1e-4, (dtype, d)
