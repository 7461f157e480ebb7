"""LVDM's text-to-video UNet (models/lvdm/t2v_unet.py): the released layout (keys, shapes, parameter count, meta
device), the temporal attention and the block order pinned against hand formulas written here (float64), SDPA against
explicit math, the text context, the attention backends, and the errors bad inputs and unbuilt options get."""
import json
import math
import os

import pytest
import torch
import torch.nn.functional as F

from cvk_testkit import ROOT
from consistent_video_kit.models.lvdm import t2v_unet as t2v
from consistent_video_kit.models.lvdm import unet3d as u
from test_loaders import needs_manifests
from test_lvdm_unet import fake_xformers, randomise  # noqa: F401  (fake_xformers is a fixture)
from test_lvdm_unet import released_shapes, state_shapes

CONFIG = os.path.join(ROOT, "models", "configs", "lvdm", "t2v_unet.json")
TINY = dict(image_size=8, in_channels=4, out_channels=4, model_channels=32, attention_resolutions=[2, 1],
            num_res_blocks=1, channel_mult=[1, 2], num_heads=2, transformer_depth=1, context_dim=24,
            use_checkpoint=True, legacy=False, kernel_size_t=1, padding_t=0, use_temporal_transformer=True,
            temporal_length=2, use_relative_position=True)
D = torch.float64


def config():
    with open(CONFIG) as f:
        return json.load(f)


def tiny(dtype=D, seed=0, **kw):
    return randomise(t2v.T2VUNet(**(TINY | kw)), seed).to(dtype).eval()


def rand(*shape, seed=0):
    return torch.randn(*shape, dtype=D, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------- the released layout (meta device)

@pytest.fixture(scope="module")
def full_size():
    with torch.device("meta"):
        return t2v.T2VUNet.from_config(config())


@needs_manifests
def test_keys_and_shapes_equal_the_released_checkpoint(full_size):
    released = released_shapes("lvdm_t2v.json")
    ours = state_shapes(full_size)
    assert len(released) == 974
    assert ours == released
    blk = "input_blocks.1.1.transformer_blocks.0."
    assert ours[blk + "attn1_tmp.relative_position_k.embeddings_table"] == [33, 40]
    assert ours["input_blocks.1.1.proj_in.weight"] == [320, 320, 1, 1, 1]


def test_parameter_count_from_the_shipped_config(full_size):
    assert round(sum(p.numel() for p in full_size.parameters()) / 1e6, 1) == 958.9


def test_shipped_config_and_full_size_layout(full_size):
    cfg = config()
    assert cfg["_class_name"] == "T2VUNet" and cfg["context_dim"] == 768 and cfg["temporal_length"] == 16
    sites = [m for m in full_size.modules() if isinstance(m, t2v.SpatialTemporalTransformer)]
    assert len(sites) == 16                    # 2 per level on levels 0-2 down, middle, 3 per level on levels 2-0 up
    heads = {(b.attn1.heads, b.attn1.dim_head) for s in sites for b in s.transformer_blocks}
    assert heads == {(8, 40), (8, 80), (8, 160)}
    assert all(isinstance(s.norm, torch.nn.GroupNorm) and s.norm.eps == 1e-6 for s in sites)


def test_full_size_output_shape(full_size):
    with torch.device("meta"):
        out = full_size(torch.empty(2, 4, 16, 32, 32), torch.zeros(2, dtype=torch.long), torch.empty(2, 77, 768))
    assert out.shape == (2, 4, 16, 32, 32)


# ---------------------------------------------------------------- the temporal attention, against a hand formula

def hand_temporal(att, x, variant="official"):
    """TemporalCrossAttention written out (float64), per head of width c, entry by entry:
    logits[t, s] = c^(-1/2) (q_t·k_s + q_t·K[clip(s - t)]),  out[t] = Σ_s p[t, s] (v_s + V[clip(s - t)]).
    variant "lvdm_transposed": the logit term of LVDM's QKVAttention (σ q_s·K[clip(t - s)], σ = c^(-1/4));
    "value_transposed": V[clip(t - s)] in the value term."""
    n, t, _ = x.shape
    H, c = att.heads, att.dim_head
    q, k, v = (torch.einsum("ntj,ij->nti", x, lin.weight).reshape(n, t, H, c) for lin in (att.to_q, att.to_k,
                                                                                            att.to_v))
    K, V = att.relative_position_k.embeddings_table, att.relative_position_v.embeddings_table
    L = (K.shape[0] - 1) // 2
    row = lambda dist: max(-L, min(L, dist)) + L
    logits = torch.einsum("nthc,nshc->nhts", q, k) * c ** -0.5
    for i in range(t):
        for j in range(t):
            if variant == "lvdm_transposed":
                logits[:, :, i, j] += (q[:, j] * K[row(i - j)]).sum(-1) * c ** -0.25
            else:
                logits[:, :, i, j] += (q[:, i] * K[row(j - i)]).sum(-1) * c ** -0.5
    p = logits.softmax(-1)
    out = torch.zeros_like(q)
    for i in range(t):
        for j in range(t):
            rv = V[row(i - j)] if variant == "value_transposed" else V[row(j - i)]
            out[:, i] += p[:, :, i, j, None] * (v[:, j] + rv)
    return F.linear(out.reshape(n, t, H * c), att.to_out[0].weight, att.to_out[0].bias)


@pytest.fixture
def temporal():
    return randomise(t2v.TemporalCrossAttention(48, heads=3, dim_head=16, temporal_length=2), seed=3).double()


@pytest.mark.parametrize("T", [2, 5, 8])        # 8 > 2·temporal_length + 1: distances clipped
def test_temporal_attention_equals_the_hand_formula(temporal, T):
    x = rand(4, T, 48, seed=T)
    got = temporal(x)
    ref = hand_temporal(temporal, x)
    assert torch.allclose(got, ref, rtol=0, atol=1e-12 * ref.abs().max().item())
    # not LVDM's transposed QKVAttention term, and the value term is not transposed either
    for variant in ("lvdm_transposed", "value_transposed"):
        assert (hand_temporal(temporal, x, variant) - ref).abs().max() > 1e-3 * ref.abs().max(), variant


def test_fresh_temporal_attention_is_zero_initialised_as_the_official():
    att = t2v.TemporalCrossAttention(32, heads=2, dim_head=16, temporal_length=4)
    for lin in (att.to_q, att.to_k, att.to_v, att.to_out[0]):
        assert not lin.weight.any()
    assert not att.to_out[0].bias.any() and att.relative_position_k.embeddings_table.shape == (9, 16)
    site = t2v.SpatialTemporalTransformer(32, 2, 16, 1, 24, 4)
    assert not site.proj_out.weight.any() and not site.proj_out.bias.any()


# ---------------------------------------------------------------- SDPA against explicit math

@pytest.mark.parametrize("with_context", [False, True])
def test_cross_attention_sdpa_equals_explicit_math(with_context):
    """Spatial self-attention (context None) and cross-attention: the frames of clip i (rows i·T … i·T + T - 1) attend
    to context i."""
    att = randomise(t2v.CrossAttention(32, heads=4, dim_head=8, context_dim=24 if with_context else None), seed=5)
    att = att.double()
    B, T, N = 2, 3, 6
    x = rand(B * T, N, 32, seed=1)
    ctx = rand(B, 5, 24, seed=2) if with_context else None
    src = ctx.repeat_interleave(T, dim=0) if with_context else x      # the official code repeats the context per frame
    q = torch.einsum("nlj,ij->nli", x, att.to_q.weight).reshape(B * T, N, 4, 8)
    k, v = (torch.einsum("nlj,ij->nli", src, w).reshape(B * T, src.shape[1], 4, 8)
            for w in (att.to_k.weight, att.to_v.weight))
    p = (torch.einsum("nihc,njhc->nhij", q, k) / math.sqrt(8)).softmax(-1)
    ref = F.linear(torch.einsum("nhij,njhc->nihc", p, v).reshape(B * T, N, 32), att.to_out[0].weight,
                   att.to_out[0].bias)
    assert torch.allclose(att(x, ctx), ref, rtol=0, atol=1e-13)


def test_relative_attention_sdpa_equals_einsum_both_orientations():
    """unet3d.relative_attention, shared by both networks: the T2V orientation (q_t·k_rp[t, s], scale c^(-1/2)) and
    LVDM's (q_s·k_rp[s, t], scale c^(-1/4)) against explicit einsums, float64, T = 6 with a clipped table."""
    g = torch.Generator().manual_seed(7)
    n, H, T, c = 3, 2, 6, 8
    q, k, v = (torch.randn(n, H, T, c, dtype=D, generator=g) for _ in range(3))
    kt, vt = (torch.randn(5, c, dtype=D, generator=g) for _ in range(2))
    idx = (torch.arange(T)[None, :] - torch.arange(T)[:, None]).clamp(-2, 2) + 2      # idx[t, s] = clip(s - t) + 2
    main = torch.einsum("nhtc,nhsc->nhts", q, k) * c ** -0.5
    for transposed, scale, rel in ((False, c ** -0.5, torch.einsum("nhtc,tsc->nhts", q, kt[idx])),
                                   (True, c ** -0.25, torch.einsum("nhsc,stc->nhts", q, kt[idx]))):
        p = (main + scale * rel).softmax(-1)
        ref = torch.einsum("nhts,nhsc->nhtc", p, v) + torch.einsum("nhts,tsc->nhtc", p, vt[idx])
        got = u.relative_attention(q, k, v, kt[idx], vt[idx], rel_scale=scale, transposed=transposed)
        assert torch.allclose(got, ref, rtol=0, atol=1e-13), transposed


# ---------------------------------------------------------------- the block order, against a hand formula

OFFICIAL_ORDER = ("attn1", "attn1_tmp", "attn2", "attn2_tmp", "ff")


def hand_block(blk, x, ctx, order=OFFICIAL_ORDER):
    """BasicTransformerBlockST written out (float64): each step pre-LayerNorm and residual, in the given order.
    Spatial steps see the h·w tokens of one frame, temporal steps the T frames of one pixel."""
    b, c, t, h, w = x.shape
    X = x.permute(0, 2, 3, 4, 1)                                                   # (b, t, h, w, c)
    norm = dict(attn1=blk.norm1, attn2=blk.norm2, ff=blk.norm3, attn1_tmp=blk.norm4, attn2_tmp=blk.norm5)

    def mha(att, z, src):                                                          # z (n, l, c), src (n, m, ·)
        H, d = att.heads, att.dim_head
        q = (z @ att.to_q.weight.T).reshape(*z.shape[:2], H, d)
        k, v = ((src @ wt.T).reshape(*src.shape[:2], H, d) for wt in (att.to_k.weight, att.to_v.weight))
        p = (torch.einsum("nihd,njhd->nhij", q, k) / math.sqrt(d)).softmax(-1)
        return torch.einsum("nhij,njhd->nihd", p, v).reshape(*z.shape[:2], H * d) @ att.to_out[0].weight.T \
            + att.to_out[0].bias

    for step in order:
        Z = F.layer_norm(X, (c,), norm[step].weight, norm[step].bias, norm[step].eps)
        if step in ("attn1", "attn2"):
            z = Z.reshape(b * t, h * w, c)
            src = z if step == "attn1" else ctx.repeat_interleave(t, dim=0)
            X = X + mha(getattr(blk, step), z, src).reshape(b, t, h, w, c)
        elif step == "ff":
            a, gate = (Z @ blk.ff.net[0].proj.weight.T + blk.ff.net[0].proj.bias).chunk(2, dim=-1)
            X = X + (a * F.gelu(gate)) @ blk.ff.net[2].weight.T + blk.ff.net[2].bias
        else:
            z = Z.permute(0, 2, 3, 1, 4).reshape(b * h * w, t, c)
            X = X + hand_temporal(getattr(blk, step), z).reshape(b, h, w, t, c).permute(0, 3, 1, 2, 4)
    return X.permute(0, 4, 1, 2, 3)


def test_transformer_block_runs_the_official_order():
    blk = randomise(t2v.BasicTransformerBlockST(32, 2, 16, context_dim=24, temporal_length=2), seed=4).double()
    x, ctx = rand(2, 32, 4, 2, 3, seed=1), rand(2, 5, 24, seed=2)
    got = blk(x, ctx)
    ref = hand_block(blk, x, ctx)
    assert torch.allclose(got, ref, rtol=0, atol=1e-12 * ref.abs().max().item())
    others = (("attn1", "attn2", "ff", "attn1_tmp", "attn2_tmp"),      # AnimateDiff-like: temporal after the SD block
              ("attn1", "attn2_tmp", "attn2", "attn1_tmp", "ff"),      # the two temporal attentions swapped
              ("attn1", "attn1_tmp", "attn2", "ff", "attn2_tmp"))      # FF before the second temporal attention
    for order in others:
        assert (hand_block(blk, x, ctx, order) - ref).abs().max() > 1e-3 * ref.abs().max(), order


def test_transformer_site_equals_norm_proj_blocks_proj_residual():
    site = randomise(t2v.SpatialTemporalTransformer(32, 2, 16, depth=2, context_dim=24, temporal_length=2), seed=6)
    site = site.double()
    x, ctx = rand(2, 32, 3, 2, 2, seed=3), rand(2, 4, 24, seed=4)
    h = F.conv3d(F.group_norm(x, 32, site.norm.weight, site.norm.bias, 1e-6), site.proj_in.weight, site.proj_in.bias)
    for blk in site.transformer_blocks:
        h = hand_block(blk, h, ctx)
    ref = x + F.conv3d(h, site.proj_out.weight, site.proj_out.bias)
    assert torch.allclose(site(x, ctx), ref, rtol=0, atol=1e-12 * ref.abs().max().item())


# ---------------------------------------------------------------- the network

@pytest.fixture(scope="module")
def small():
    return tiny()


def test_context_changes_the_output_per_clip(small):
    x, t = rand(2, 4, 3, 8, 8, seed=1), torch.tensor([400, 30])
    c1, c2 = rand(2, 5, 24, seed=2), rand(2, 5, 24, seed=3)
    with torch.no_grad():
        a = small(x, t, c1)
        b = small(x, t, torch.stack([c1[0], c2[1]]))
        assert torch.equal(a[0], b[0])                                   # clip 0's context unchanged: clip 0 unchanged
        assert (a[1] - b[1]).abs().max() > 1e-3 * a[1].abs().max()       # clip 1's context changed: clip 1 changed
        # clip i uses context i: permuting clips, timesteps and contexts together permutes the output
        assert torch.allclose(small(x.flip(0), t.flip(0), c1.flip(0)), a.flip(0), rtol=0, atol=1e-12)


def test_timesteps_matter_and_a_0d_timestep_broadcasts(small):
    x, c = rand(1, 4, 3, 8, 8, seed=1).expand(2, -1, -1, -1, -1), rand(1, 5, 24, seed=2).expand(2, -1, -1)
    out = small(x, torch.tensor([5, 900]), c)
    assert (out[0] - out[1]).abs().max() > 1e-3 * out.abs().max()
    assert torch.allclose(small(x[:1], torch.tensor(900), c[:1]), out[1:], rtol=0, atol=1e-12)


def test_longer_clip_than_the_table_runs(small):
    """The official code clips distances, so T > 2·temporal_length + 1 is allowed, not an error."""
    out = small(rand(1, 4, 7, 8, 8), torch.tensor([10]), rand(1, 5, 24))
    assert out.shape == (1, 4, 7, 8, 8) and torch.isfinite(out).all()


def test_dtypes():
    m = tiny(dtype=torch.float32)
    x, c = rand(1, 4, 2, 8, 8), rand(1, 3, 24)
    assert m(x, torch.tensor([3]), c).dtype == torch.float64        # runs in the weights' dtype, returns x's
    assert torch.allclose(m(x, torch.tensor([3]), c), m(x.float(), torch.tensor([3]), c.float()).double())


def test_gradient_checkpointing_gives_the_same_gradients():
    grads = []
    for flag in (True, False):
        m = tiny(use_checkpoint=flag).train()
        m(rand(1, 4, 3, 8, 8), torch.tensor([50]), rand(1, 3, 24, seed=1)).square().sum().backward()
        grads.append(torch.cat([p.grad.flatten() for p in m.parameters()]))
    assert torch.allclose(grads[0], grads[1], rtol=1e-10, atol=1e-12)


def test_num_head_channels_sets_the_heads():
    m = t2v.T2VUNet(**(TINY | dict(num_heads=-1, num_head_channels=16)))
    blocks = [b for b in m.modules() if isinstance(b, t2v.BasicTransformerBlockST)]
    assert sorted({(b.attn1.heads, b.attn1_tmp.heads) for b in blocks}) == [(2, 2), (4, 4)]     # widths 32 and 64
    assert all(b.attn2_tmp.relative_position_v.embeddings_table.shape == (5, 16) for b in blocks)


# ---------------------------------------------------------------- attention backends

def test_set_attention_rejects_unknown_backend(small):
    with pytest.raises(ValueError, match="T2VUNet.set_attention: backend 'flash'.*sdpa.*xformers"):
        small.set_attention("flash")


def test_xformers_wiring_matches_sdpa(fake_xformers, monkeypatch):
    m = tiny()
    x, t, c = rand(1, 4, 3, 8, 8), torch.tensor([9]), rand(1, 5, 24, seed=1)
    ref = m(x, t, c)
    with pytest.raises(ValueError, match="CUDA only.*cpu"):
        m.set_attention("xformers")(x, t, c)
    monkeypatch.setattr(u, "_check_xformers_device", lambda device: None)     # the fake runs on CPU
    got = m(x, t, c)
    assert fake_xformers and all(len(s) == 4 for s in fake_xformers)        # used, in the (B, M, H, K) layout
    assert torch.allclose(got, ref, rtol=0, atol=1e-12)
    n_spatial = sum(isinstance(a, t2v.CrossAttention) for a in m.modules())
    assert all(a.attention_backend == "xformers" for a in m.modules() if isinstance(a, t2v.CrossAttention))
    assert len(fake_xformers) == n_spatial                                   # the temporal attention stays on SDPA
    assert m.set_attention("sdpa").attention_backend == "sdpa"


# ---------------------------------------------------------------- bad inputs and unbuilt options

@pytest.mark.parametrize("case,match", [
    ("5ch", r"T2VUNet: x has 5 channels, expected in_channels = 4"),
    ("4d", r"T2VUNet: x must be a 5-D tensor \(B, C, T, h, w\), got \(1, 4, 8, 8\)"),
    ("odd_size", r"T2VUNet: latent size 7×8 must be divisible by 2"),
    ("timesteps", r"T2VUNet: timesteps must have shape \(1,\).*got \(2,\)"),
    ("context_dim", r"context must be a \(B=1, L, context_dim=24\) tensor of text embeddings, got \(1, 5, 768\)"),
    ("context_batch", r"context must be a \(B=1, L, context_dim=24\) .*got \(2, 5, 24\)"),
    ("context_2d", r"context must be a \(B=1, L, context_dim=24\) .*got \(5, 24\)"),
    ("context_none", r"context must be a \(B=1, L, context_dim=24\) .*got NoneType"),
])
def test_bad_inputs(small, case, match):
    x, t, c = torch.zeros(1, 4, 2, 8, 8, dtype=D), torch.tensor([1]), torch.zeros(1, 5, 24, dtype=D)
    call = {
        "5ch": lambda: small(torch.zeros(1, 5, 2, 8, 8, dtype=D), t, c),
        "4d": lambda: small(torch.zeros(1, 4, 8, 8, dtype=D), t, c),
        "odd_size": lambda: small(torch.zeros(1, 4, 2, 7, 8, dtype=D), t, c),
        "timesteps": lambda: small(x, torch.tensor([1, 2]), c),
        "context_dim": lambda: small(x, t, torch.zeros(1, 5, 768, dtype=D)),
        "context_batch": lambda: small(x, t, torch.zeros(2, 5, 24, dtype=D)),
        "context_2d": lambda: small(x, t, torch.zeros(5, 24, dtype=D)),
        "context_none": lambda: small(x, t, None),
    }[case]
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize("kw,match", [
    (dict(use_temporal_transformer=False), r"use_temporal_transformer=False is not supported.*LVDMUNet"),
    (dict(context_dim=None), r"context_dim=None is not supported.*text-embedding width"),
    (dict(use_relative_position=False), r"use_relative_position=False is not supported.*expected True"),
    (dict(temporal_length=None), r"use_relative_position needs temporal_length >= 1, got None"),
    (dict(transformer_depth=0), r"transformer_depth must be a positive int, got 0"),
    (dict(num_classes=10), r"num_classes=10 is not supported.*expected None"),
    (dict(resblock_updown=True), r"resblock_updown=True is not supported.*expected False"),
    (dict(conv_resample=False), r"conv_resample=False is not supported"),
    (dict(use_fp16=True), r"use_fp16=True is not supported"),
    (dict(num_heads_upsample=4), r"num_heads_upsample=4 is not supported"),
    (dict(nonlinearity_type="leaky_relu"), r"nonlinearity_type='leaky_relu' is not supported"),
    (dict(ST_transformer_class="Other"), r"ST_transformer_class='Other' is not supported"),
    (dict(num_heads=-1), r"set num_heads or num_head_channels"),
    (dict(num_heads=3), r"attention width 32 is not divisible into 3 heads"),
])
def test_unbuilt_options_are_refused(kw, match):
    with pytest.raises(ValueError, match=match):
        t2v.T2VUNet(**(TINY | kw))
