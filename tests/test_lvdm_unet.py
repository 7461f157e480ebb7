"""LVDM's 3-D UNet (models/lvdm/unet3d.py): the released layout (keys, shapes, parameter counts, meta device), the
two QKVAttention quirks pinned against a hand formula written here (float64), SDPA against that formula, the
label embedding, relative-position clipping, the attention backends, gradient checkpointing, and the errors bad
inputs and unbuilt options get."""
import json
import math
import os
import sys
import types

import pytest
import torch
import torch.nn.functional as F

from cvk_testkit import ROOT
from consistent_video_kit.models.lvdm import unet3d as u
from test_loaders import MANIFESTS, needs_manifests

CONFIGS = os.path.join(ROOT, "models", "configs", "lvdm")
PREFIX = "model.diffusion_model."
TINY = dict(image_size=8, in_channels=4, out_channels=4, model_channels=32, attention_resolutions=[2],
            num_res_blocks=1, channel_mult=[1, 2], num_heads=2, use_temporal_transformer=False, use_checkpoint=True,
            legacy=False, kernel_size_t=1, padding_t=0, temporal_length=3, use_relative_position=True,
            use_scale_shift_norm=True)


def config(name):
    with open(os.path.join(CONFIGS, name + ".json")) as f:
        return json.load(f)


def randomise(module, seed=0):
    """Every parameter random (the zero-initialised projections and output conv too, else ε ≡ 0)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.dim() == 1 and "norm" in name or name.endswith(("layers.0.weight", "out.0.weight")):
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(p[0].numel() if p.dim() > 1 else 4))
    return module


def tiny(cls=u.LVDMUNet, dtype=torch.float64, seed=0, **kw):
    return randomise(cls(**(TINY | kw)), seed).to(dtype).eval()


# ---------------------------------------------------------------- the released layout (meta device)

@pytest.fixture(scope="module")
def full_size():
    with torch.device("meta"):
        return {name: u.build_unet(config(name)) for name in ("unet_short", "unet_pred", "unet_interp")}


def released_shapes(manifest: str) -> dict:
    """A released checkpoint's UNet tensors (``model.diffusion_model.`` prefix removed) from its manifest in
    MANIFESTS: key -> shape, in the checkpoint's order."""
    with open(os.path.join(MANIFESTS, manifest)) as f:
        tensors = json.load(f)["tensors"]
    return {k[len(PREFIX):]: v for k, v in tensors.items() if k.startswith(PREFIX)}


def state_shapes(module) -> dict:
    """``module``'s state dict as key -> shape (a list), in its order."""
    return {k: list(v.shape) for k, v in module.state_dict().items()}


@needs_manifests
def test_short_unet_keys_and_shapes_equal_the_released_checkpoint(full_size):
    released = released_shapes("lvdm_sky_short_unet.json")
    ours = state_shapes(full_size["unet_short"])
    assert len(released) == 668
    assert ours == released
    assert ours["input_blocks.5.1.relative_position_k.embeddings_table"] == [9, 128]


def test_pred_interp_layout_is_the_short_one_plus_mask_channel_and_label_emb(full_size):
    short = {k: list(v.shape) for k, v in full_size["unet_short"].state_dict().items()}
    for name, rows in (("unet_pred", 9), ("unet_interp", 11)):
        sd = {k: list(v.shape) for k, v in full_size[name].state_dict().items()}
        assert type(full_size[name]) is u.LVDMFrameInterpPredUNet
        assert set(sd) == set(short) | {"label_emb.weight"}
        assert sd["label_emb.weight"] == [251, 1024]
        assert sd["input_blocks.0.0.weight"] == [256, 5, 1, 3, 3]
        assert sd["middle_block.1.relative_position_v.embeddings_table"] == [rows, 256]
        differ = {k for k in short if sd[k] != short[k]}
        assert differ == {"input_blocks.0.0.weight"} | ({k for k in short if "relative_position" in k}
                                                          if rows != 9 else set())


def test_parameter_counts_from_the_shipped_configs(full_size):
    counts = {name: sum(p.numel() for p in m.parameters()) for name, m in full_size.items()}
    assert round(counts["unet_short"] / 1e6, 1) == 548.9
    assert round(counts["unet_pred"] / 1e6, 1) == 549.2
    assert round(counts["unet_interp"] / 1e6, 1) == 549.2
    # pred = short + label_emb (251·1024) + the mask channel's input-conv weights (256·9)
    assert counts["unet_pred"] - counts["unet_short"] == 251 * 1024 + 256 * 9


@pytest.mark.parametrize("name,T", [("unet_short", 4), ("unet_short", 5), ("unet_pred", 4), ("unet_interp", 5)])
def test_full_size_output_shape(full_size, name, T):
    m, cfg = full_size[name], config(name)
    with torch.device("meta"):
        out = m(torch.empty(2, cfg["in_channels"], T, 32, 32), torch.zeros(2, dtype=torch.long))
    assert out.shape == (2, 4, T, 32, 32)


def test_shipped_configs():
    short, pred, interp = config("unet_short"), config("unet_pred"), config("unet_interp")
    assert short["_class_name"] == "LVDMUNet" and pred["_class_name"] == interp["_class_name"] == "LVDMFrameInterpPredUNet"
    assert (short["in_channels"], pred["in_channels"], pred["num_classes"]) == (4, 5, 251)
    assert (short["temporal_length"], pred["temporal_length"], interp["temporal_length"]) == (4, 4, 5)
    assert {k: v for k, v in interp.items() if k != "temporal_length"} == {k: v for k, v in pred.items()
                                                                          if k != "temporal_length"}


# ---------------------------------------------------------------- the attention, against a hand formula

def hand_block(blk, x, variant="official"):
    """STAttentionBlock written out (float64): spatial attention per frame, then temporal attention per pixel, with the
    relative-position terms written entry by entry. variant: "official" (q_s·K[clip(t-s)] at [t, s], from σq),
    "untransposed" (σq_t·K[clip(s-t)]), "unscaled" (q_s·K[clip(t-s)] from the raw q), "value_transposed"
    (V[clip(t-s)] in the value term)."""
    b, c, t, h, w = x.shape
    H, d = blk.num_heads, c // blk.num_heads

    def qkv(z, norm, conv):
        z = F.conv1d(F.group_norm(z, 32, norm.weight, norm.bias, norm.eps), conv.weight, conv.bias)
        return (z[:, i * c:(i + 1) * c].reshape(z.shape[0], H, d, z.shape[-1]) for i in range(3))

    # spatial
    xs = x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h * w)
    q, k, v = qkv(xs, blk.norm_s, blk.qkv_s)
    p = torch.softmax(torch.einsum("nhdi,nhdj->nhij", q, k) / math.sqrt(d), dim=-1)
    out = F.conv1d(torch.einsum("nhij,nhdj->nhdi", p, v).reshape(b * t, c, h * w), blk.proj_out_s.weight,
                   blk.proj_out_s.bias)
    x = x + out.reshape(b, t, c, h, w).permute(0, 2, 1, 3, 4)
    # temporal
    xt = x.permute(0, 3, 4, 1, 2).reshape(b * h * w, c, t)
    q, k, v = qkv(xt, blk.norm_t, blk.qkv_t)
    K, V = blk.relative_position_k.embeddings_table, blk.relative_position_v.embeddings_table
    L = (K.shape[0] - 1) // 2
    row = lambda dist: max(-L, min(L, dist)) + L
    sig = d ** -0.25
    logits = torch.einsum("nhdi,nhdj->nhij", sig * q, sig * k)
    for i in range(t):
        for j in range(t):
            if variant == "untransposed":
                logits[..., i, j] += (sig * q[..., i] * K[row(j - i)]).sum(-1)
            elif variant == "unscaled":
                logits[..., i, j] += (q[..., j] * K[row(i - j)]).sum(-1)
            else:
                logits[..., i, j] += (sig * q[..., j] * K[row(i - j)]).sum(-1)
    p = torch.softmax(logits, dim=-1)
    out = torch.zeros_like(q)
    for i in range(t):
        for j in range(t):
            rv = V[row(i - j)] if variant == "value_transposed" else V[row(j - i)]
            out[..., i] += p[..., i, j, None] * (v[..., j] + rv)
    out = F.conv1d(out.reshape(b * h * w, c, t), blk.proj_out_t.weight, blk.proj_out_t.bias)
    return x + out.reshape(b, h, w, c, t).permute(0, 3, 4, 1, 2)


@pytest.fixture
def block():
    torch.manual_seed(0)
    blk = u.STAttentionBlock(64, num_heads=2, temporal_length=2, use_relative_position=True).double()
    return randomise(blk, seed=3)


@pytest.mark.parametrize("T", [2, 5, 7])        # 5 and 7 > temporal_length 2: distances clipped
def test_attention_block_equals_the_hand_formula_with_both_quirks(block, T):
    x = torch.randn(2, 64, T, 3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(T))
    got = block(x)
    ref = hand_block(block, x)
    assert torch.allclose(got, ref, rtol=0, atol=1e-12 * ref.abs().max().item())
    # each quirk matters: the formula without it is measurably different
    for variant in ("untransposed", "unscaled", "value_transposed"):
        assert (hand_block(block, x, variant) - ref).abs().max() > 1e-3 * ref.abs().max(), variant


def test_sdpa_reproduces_the_quirky_attention(block):
    """qkv_attention (SDPA, the relative term as a float mask, probabilities through one-hot value channels) against
    an explicit einsum path, float64, T = 6 with the table clipped."""
    g = torch.Generator().manual_seed(5)
    n, H, d, T = 7, 3, 8, 6
    qkv = torch.randn(n, 3 * H * d, T, dtype=torch.float64, generator=g)
    kt, vt = (torch.randn(5, d, dtype=torch.float64, generator=g) for _ in range(2))
    idx = (torch.arange(T)[None, :] - torch.arange(T)[:, None]).clamp(-2, 2) + 2      # idx[t, s] = clip(s - t) + 2
    got = u.qkv_attention(qkv, H, rp=(kt[idx], vt[idx]))
    q, k, v = (a.reshape(n, H, d, T) for a in qkv.chunk(3, dim=1))
    sig = d ** -0.25
    logits = torch.einsum("nhdt,nhds->nhts", sig * q, sig * k) + torch.einsum("nhds,tsd->nhts", sig * q, kt[idx.T])
    p = logits.softmax(-1)
    ref = torch.einsum("nhts,nhds->nhdt", p, v) + torch.einsum("nhts,tsd->nhdt", p, vt[idx])
    assert torch.allclose(got, ref.reshape(n, H * d, T), rtol=0, atol=1e-13)
    plain = torch.einsum("nhts,nhds->nhdt", torch.einsum("nhdt,nhds->nhts", q, k).div(math.sqrt(d)).softmax(-1), v)
    assert torch.allclose(u.qkv_attention(qkv, H), plain.reshape(n, H * d, T), rtol=0, atol=1e-13)


def test_sdpa_gradients_equal_the_einsum_path():
    """Training differentiates through the additive mask and the one-hot probabilities: the gradients with respect
    to qkv and both tables equal those of the explicit path (float64)."""
    g = torch.Generator().manual_seed(6)
    n, H, d, T = 3, 2, 4, 5
    qkv = torch.randn(n, 3 * H * d, T, dtype=torch.float64, generator=g, requires_grad=True)
    kt, vt = (torch.randn(3, d, dtype=torch.float64, generator=g, requires_grad=True) for _ in range(2))
    w = torch.randn(n, H * d, T, dtype=torch.float64, generator=g)
    idx = (torch.arange(T)[None, :] - torch.arange(T)[:, None]).clamp(-1, 1) + 1
    got = torch.autograd.grad((u.qkv_attention(qkv, H, rp=(kt[idx], vt[idx])) * w).sum(), (qkv, kt, vt))
    q, k, v = (a.reshape(n, H, d, T) for a in qkv.chunk(3, dim=1))
    sig = d ** -0.25
    p = (torch.einsum("nhdt,nhds->nhts", sig * q, sig * k) + torch.einsum("nhds,tsd->nhts", sig * q, kt[idx.T])).softmax(-1)
    ref = torch.einsum("nhts,nhds->nhdt", p, v) + torch.einsum("nhts,tsd->nhdt", p, vt[idx])
    want = torch.autograd.grad((ref.reshape(n, H * d, T) * w).sum(), (qkv, kt, vt))
    for a, b in zip(got, want):
        assert torch.allclose(a, b, rtol=0, atol=1e-12)


def test_relative_positions_are_clipped_at_temporal_length():
    rp = u.RelativePosition(4, max_relative_position=2)
    e = rp(6, 6)
    table = rp.embeddings_table
    assert e.shape == (6, 6, 4)
    for t in range(6):
        for s in range(6):
            assert torch.equal(e[t, s], table[min(max(s - t, -2), 2) + 2])
    assert torch.equal(e[0, 5], table[4]) and torch.equal(e[5, 0], table[0])


def test_longer_clip_than_the_table_runs():
    """The official code clips distances, so T > temporal_length is allowed, not an error."""
    m = tiny(temporal_length=2)
    out = m(torch.randn(1, 4, 7, 8, 8, dtype=torch.float64), torch.tensor([10]))
    assert out.shape == (1, 4, 7, 8, 8) and torch.isfinite(out).all()


# ---------------------------------------------------------------- the network

def test_timestep_embedding_is_cos_then_sin():
    t = torch.tensor([0, 3, 999])
    e = u.timestep_embedding(t, 8)
    f = torch.tensor([10000 ** (-i / 4) for i in range(4)], dtype=torch.float64)
    ref = torch.cat([torch.cos(t[:, None] * f), torch.sin(t[:, None] * f)], dim=1)
    assert e.dtype == torch.float32 and torch.allclose(e.double(), ref, atol=1e-4)
    assert u.timestep_embedding(t, 7).shape == (3, 7) and (u.timestep_embedding(t, 7)[:, -1] == 0).all()


@pytest.mark.parametrize("scale_shift,c_out", [(True, 32), (True, 64), (False, 64)])
def test_resblock_equals_the_hand_formula(scale_shift, c_out):
    blk = randomise(u.ResBlock(32, 16, 0.0, out_channels=c_out, use_scale_shift_norm=scale_shift), seed=4).double()
    g = torch.Generator().manual_seed(2)
    x, emb = torch.randn(2, 32, 3, 4, 4, dtype=torch.float64, generator=g), torch.randn(2, 16, dtype=torch.float64,
                                                                                            generator=g)
    gn = lambda z, n: F.group_norm(z, 32, n.weight, n.bias, n.eps)
    conv = lambda z, c: F.conv3d(z, c.weight, c.bias, padding=(0, 1, 1))
    h = conv(F.silu(gn(x, blk.in_layers[0])), blk.in_layers[2])
    e = F.linear(F.silu(emb), blk.emb_layers[1].weight, blk.emb_layers[1].bias)[:, :, None, None, None]
    if scale_shift:
        h = gn(h, blk.out_layers[0]) * (1 + e[:, :c_out]) + e[:, c_out:]
    else:
        h = gn(h + e, blk.out_layers[0])
    h = conv(F.silu(h), blk.out_layers[3])
    skip = x if c_out == 32 else F.conv3d(x, blk.skip_connection.weight, blk.skip_connection.bias)
    assert torch.allclose(blk(x, emb), skip + h, rtol=0, atol=1e-12)


def test_label_emb_changes_the_output_only_when_y_is_given():
    m = tiny(u.LVDMFrameInterpPredUNet, in_channels=5, num_classes=251)
    g = torch.Generator().manual_seed(1)
    x, t, y = torch.randn(2, 5, 4, 8, 8, dtype=torch.float64, generator=g), torch.tensor([700, 20]), torch.tensor([100, 7])
    with torch.no_grad():
        without, with_y = m(x, t), m(x, t, y)
        assert (with_y - without).abs().max() > 1e-3 * without.abs().max()
        # zero label rows: y adds nothing; other rows changed: y=None is unaffected
        m.label_emb.weight[y] = 0
        assert torch.allclose(m(x, t, y), without, rtol=0, atol=1e-12)
        m.label_emb.weight.add_(1.0)
        assert torch.equal(m(x, t), without)
        # y is per sample: changing sample 1's label leaves sample 0 alone
        a, b = m(x, t, torch.tensor([100, 7])), m(x, t, torch.tensor([100, 8]))
        assert torch.equal(a[0], b[0]) and not torch.allclose(a[1], b[1])


def test_timesteps_matter_and_are_per_sample():
    m = tiny()
    x = torch.randn(1, 4, 3, 8, 8, dtype=torch.float64).expand(2, -1, -1, -1, -1)
    out = m(x, torch.tensor([5, 900]))
    assert not torch.allclose(out[0], out[1])
    assert torch.allclose(m(x[:1], torch.tensor(900)), out[1:], rtol=0, atol=1e-12)   # a 0-d timestep broadcasts


def test_num_head_channels_sets_the_heads():
    m = u.LVDMUNet(**(TINY | dict(num_heads=-1, num_head_channels=16)))
    blocks = [b for b in m.modules() if isinstance(b, u.STAttentionBlock)]
    assert [b.num_heads for b in blocks] == [4, 4, 4, 4]          # width 64 wherever attention sits
    assert all(b.relative_position_k.embeddings_table.shape == (7, 16) for b in blocks)


def test_dtypes():
    m = tiny(dtype=torch.float32)
    x = torch.randn(1, 4, 2, 8, 8, dtype=torch.float64)
    assert m(x, torch.tensor([3])).dtype == torch.float64         # runs in the weights' dtype, returns x's
    assert torch.allclose(m(x, torch.tensor([3])), m(x.float(), torch.tensor([3])).double())


def test_gradient_checkpointing_gives_the_same_gradients():
    grads = []
    for flag in (True, False):
        m = tiny(use_checkpoint=flag).train()
        x = torch.randn(1, 4, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
        m(x, torch.tensor([50])).square().sum().backward()
        grads.append(torch.cat([p.grad.flatten() for p in m.parameters()]))
    assert torch.allclose(grads[0], grads[1], rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------- attention backends

def check_unknown_backend_is_refused(m):
    """``m.set_attention`` refuses a backend that is not sdpa / xformers, naming both (shared with the other UNets'
    tests)."""
    with pytest.raises(ValueError, match="'flash'.*sdpa.*xformers"):
        m.set_attention("flash")


def check_missing_xformers_is_a_clear_error(m, monkeypatch):
    """With xformers not importable, ``m.set_attention("xformers")`` says so and keeps SDPA (shared with the other
    UNets' tests)."""
    monkeypatch.setitem(sys.modules, "xformers", None)
    monkeypatch.setitem(sys.modules, "xformers.ops", None)
    with pytest.raises(ValueError, match="xformers.*could not be imported.*sdpa"):
        m.set_attention("xformers")
    assert m.attention_backend == "sdpa"


def test_set_attention_rejects_unknown_backend():
    check_unknown_backend_is_refused(tiny())


def test_xformers_missing_is_a_clear_error(monkeypatch):
    check_missing_xformers_is_a_clear_error(tiny(), monkeypatch)


@pytest.fixture
def fake_xformers(monkeypatch):
    """An 'xformers.ops.memory_efficient_attention' in xformers' (B, M, H, K) layout, written with plain math."""
    calls = []

    def mea(q, k, v, attn_bias=None):
        calls.append(q.shape)
        assert attn_bias is None
        p = torch.einsum("bmhk,bnhk->bhmn", q, k).div(math.sqrt(q.shape[-1])).softmax(-1)
        return torch.einsum("bhmn,bnhk->bmhk", p, v)

    ops = types.ModuleType("xformers.ops")
    ops.memory_efficient_attention = mea
    pkg = types.ModuleType("xformers")
    pkg.ops = ops
    monkeypatch.setitem(sys.modules, "xformers", pkg)
    monkeypatch.setitem(sys.modules, "xformers.ops", ops)
    return calls


def test_xformers_on_cpu_is_a_clear_error(fake_xformers):
    m = tiny().set_attention("xformers")
    with pytest.raises(ValueError, match="CUDA only.*cpu"):
        m(torch.randn(1, 4, 2, 8, 8, dtype=torch.float64), torch.tensor([1]))


def test_xformers_wiring_matches_sdpa(fake_xformers, monkeypatch):
    m = tiny()
    x = torch.randn(1, 4, 3, 8, 8, dtype=torch.float64)
    ref = m(x, torch.tensor([9]))
    monkeypatch.setattr(u, "_check_xformers_device", lambda device: None)     # the fake runs on CPU
    got = m.set_attention("xformers")(x, torch.tensor([9]))
    assert fake_xformers and all(len(s) == 4 for s in fake_xformers)     # used, in the (B, M, H, K) layout
    assert torch.allclose(got, ref, rtol=0, atol=1e-12)
    assert all(b.attention_backend == "xformers" for b in m.modules() if isinstance(b, u.STAttentionBlock))


# ---------------------------------------------------------------- bad inputs and unbuilt options

@pytest.fixture(scope="module")
def small():
    return tiny(), tiny(u.LVDMFrameInterpPredUNet, in_channels=5, num_classes=251)


@pytest.mark.parametrize("case,match", [
    ("short_5ch", r"x has 5 channels, expected in_channels = 4"),
    ("pred_4ch", r"x has 4 channels, expected in_channels = 5 \(4 latent channels \+ 1 mask"),
    ("4d", r"5-D tensor \(B, C, T, h, w\), got \(1, 4, 8, 8\)"),
    ("odd_size", r"latent size 7×8 must be divisible by 2"),
    ("timesteps", r"timesteps must have shape \(1,\).*got \(2,\)"),
    ("y_no_classes", r"y .* was given, but this model has no label_emb \(num_classes=None\); expected y=None"),
    ("y_range", r"y values must lie in \[0, 250\] \(or -1: no label\), got min 3, max 251"),
    ("y_negative", r"y values must lie in \[0, 250\] \(or -1: no label\), got min -2"),
    ("y_float", r"y must be an integer tensor of shape \(1,\), got \(torch.float64"),
    ("y_shape", r"y must be an integer tensor of shape \(1,\), got \(torch.int64, \(2,\)\)"),
])
def test_bad_inputs(small, case, match):
    short, pred = small
    d = torch.float64
    x4, x5, t = torch.zeros(1, 4, 2, 8, 8, dtype=d), torch.zeros(1, 5, 2, 8, 8, dtype=d), torch.tensor([1])
    call = {
        "short_5ch": lambda: short(x5, t),
        "pred_4ch": lambda: pred(x4, t),
        "4d": lambda: short(torch.zeros(1, 4, 8, 8, dtype=d), t),
        "odd_size": lambda: short(torch.zeros(1, 4, 2, 7, 8, dtype=d), t),
        "timesteps": lambda: short(x4, torch.tensor([1, 2])),
        "y_no_classes": lambda: short(x4, t, torch.tensor([3])),
        "y_range": lambda: pred(torch.zeros(2, 5, 2, 8, 8, dtype=d), torch.tensor([1, 1]), torch.tensor([3, 251])),
        "y_negative": lambda: pred(x5, t, torch.tensor([-2])),
        "y_float": lambda: pred(x5, t, torch.tensor([3.0], dtype=d)),
        "y_shape": lambda: pred(x5, t, torch.tensor([3, 4])),
    }[case]
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize("cls,kw,match", [
    (u.LVDMUNet, dict(use_temporal_transformer=True), r"use_temporal_transformer=True is not supported"),
    (u.LVDMUNet, dict(context_dim=768), r"context_dim=768 is not supported"),
    (u.LVDMUNet, dict(resblock_updown=True), r"resblock_updown=True is not supported.*expected False"),
    (u.LVDMUNet, dict(conv_resample=False), r"conv_resample=False is not supported"),
    (u.LVDMUNet, dict(use_fp16=True), r"use_fp16=True is not supported"),
    (u.LVDMUNet, dict(nonlinearity_type="leaky_relu"), r"nonlinearity_type='leaky_relu' is not supported"),
    (u.LVDMUNet, dict(temporal_length=None), r"use_relative_position needs temporal_length >= 1, got None"),
    (u.LVDMUNet, dict(num_heads=-1), r"set num_heads or num_head_channels"),
    (u.LVDMUNet, dict(num_heads=3), r"attention width 64 is not divisible by num_heads 3"),
    (u.LVDMFrameInterpPredUNet, dict(cond_aug_mode="time_embed"),
     r"cond_aug_mode='time_embed' is not supported \(the per-frame 'time_embed' mode"),
])
def test_unbuilt_options_are_refused(cls, kw, match):
    with pytest.raises(ValueError, match=match):
        cls(**(TINY | kw))


def test_build_unet_names_the_class():
    with pytest.raises(ValueError, match="_class_name 'UNetModel' is not one of"):
        u.build_unet(config("unet_short") | {"_class_name": "UNetModel"})


def test_label_minus_one_is_no_label_for_its_sample(small):
    """A batch mixing labelled samples and −1 ("no label": guidance's unconditional branch) gives each sample what
    it gets alone: −1 as y=None, the others with their label."""
    _, pred = small
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(2, 5, 2, 8, 8, generator=gen, dtype=torch.float64)
    t = torch.tensor([7, 7])
    both = pred(x, t, torch.tensor([-1, 100]))
    assert torch.allclose(both[:1], pred(x[:1], t[:1]), rtol=0, atol=1e-12)   # batch 2 vs 1: rounding only
    assert torch.allclose(both[1:], pred(x[1:], t[1:], torch.tensor([100])), rtol=0, atol=1e-12)
    assert not torch.allclose(both[1:], pred(x[1:], t[1:]), atol=1e-6)   # the label matters
