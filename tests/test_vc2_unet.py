"""VideoCrafter2's UNet (models/lvdm/vc2_unet.py): the released layout (keys, shapes, parameter count, meta device),
the fps embedding, the temporal conv block, init_attn and the spatial transformer pinned against hand computations
written here (float64, explicit GroupNorm statistics with the official epsilons), SDPA against explicit math, the
per-sample / per-frame wiring, the attention backends, gradient checkpointing, and the errors bad inputs and unbuilt
options get. Parity with the official code itself is checked outside the repo (official code is not committed)."""
import json
import math
import os

import pytest
import torch
import torch.nn.functional as F

from cvk_testkit import ROOT
from consistent_video_kit.models.lvdm import vc2_unet as v
from test_loaders import needs_manifests
from test_lvdm_unet import fake_xformers  # noqa: F401  (a fixture)
from test_lvdm_unet import (check_missing_xformers_is_a_clear_error, check_unknown_backend_is_refused,
                            released_shapes, state_shapes)

CONFIG = os.path.join(ROOT, "models", "configs", "lvdm", "vc2_unet.json")
D = torch.float64
TINY = dict(in_channels=4, out_channels=4, model_channels=32, attention_resolutions=[2, 1], num_res_blocks=1,
            channel_mult=[1, 2], num_head_channels=16, transformer_depth=1, context_dim=24, use_linear=True,
            use_checkpoint=False, temporal_conv=True, temporal_attention=True, temporal_selfatt_only=True,
            use_relative_position=False, use_causal_attention=False, temporal_length=16, addition_attention=True,
            fps_cond=True)


def config():
    with open(CONFIG) as f:
        return json.load(f)


def randomise(module, seed=0):
    """Every parameter random (the zero-initialised projections and convs too, else they would hide their path)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.dim() == 1 and ("norm" in name or name.endswith(("layers.0.weight", "out.0.weight", ".0.weight"))):
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=g))
            elif p.dim() == 1:
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(p[0].numel()))
    return module


def tiny(seed=0, dtype=D, **kw):
    return randomise(v.VC2UNet(**(TINY | kw)), seed).to(dtype).eval()


def rand(*shape, seed=0):
    return torch.randn(*shape, dtype=D, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------- hand pieces (float64, written out)

def group_norm(x, groups, weight, bias, eps):
    """GroupNorm with the statistics written out: per sample and group over (C/G, *rest), biased variance."""
    n, c = x.shape[:2]
    z = x.reshape(n, groups, -1)
    z = (z - z.mean(-1, keepdim=True)) / torch.sqrt(z.var(-1, unbiased=False, keepdim=True) + eps)
    shape = (1, c) + (1,) * (x.dim() - 2)
    return z.reshape(x.shape) * weight.reshape(shape) + bias.reshape(shape)


def layer_norm(x, ln):
    mu = x.mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(x.var(-1, unbiased=False, keepdim=True) + 1e-5) * ln.weight + ln.bias


def mha(x, ctx, att):
    """Multi-head attention with einsum + softmax, heads split as (h d) of the projections (official layout)."""
    H = att.heads
    q, k, val = x @ att.to_q.weight.T, ctx @ att.to_k.weight.T, ctx @ att.to_v.weight.T
    sp = lambda a: a.reshape(*a.shape[:-1], H, a.shape[-1] // H)
    q, k, val = sp(q), sp(k), sp(val)
    p = torch.softmax(torch.einsum("nihd,njhd->nhij", q, k) / math.sqrt(q.shape[-1]), dim=-1)
    out = torch.einsum("nhij,njhd->nihd", p, val).reshape(*x.shape[:-1], -1)
    return out @ att.to_out[0].weight.T + att.to_out[0].bias


def block_ref(blk, x, ctx=None, ctx_rows=None):
    """BasicTransformerBlock; ``ctx`` per row of x (``ctx_rows``: the context row each x row uses), else attn2 self."""
    x = mha(layer_norm(x, blk.norm1), layer_norm(x, blk.norm1), blk.attn1) + x
    h = layer_norm(x, blk.norm2)
    x = mha(h, h if ctx is None else ctx[ctx_rows], blk.attn2) + x
    h = layer_norm(x, blk.norm3)
    a, gate = (h @ blk.ff.net[0].proj.weight.T + blk.ff.net[0].proj.bias).chunk(2, dim=-1)
    gelu = 0.5 * gate * (1 + torch.erf(gate / math.sqrt(2)))
    return (a * gelu) @ blk.ff.net[2].weight.T + blk.ff.net[2].bias + x


# ---------------------------------------------------------------- the released layout (meta device)

@pytest.fixture(scope="module")
def full_size():
    with torch.device("meta"):
        return v.VC2UNet.from_config(config())


@needs_manifests
def test_keys_and_shapes_equal_the_released_checkpoint(full_size):
    released = released_shapes("videocrafter2_base_512_v2.json")
    ours = state_shapes(full_size)
    assert len(released) == 1484
    assert ours == released
    assert ours["init_attn.0.proj_in.weight"] == [512, 320, 1]                  # 8 heads × 64, Conv1d
    assert ours["input_blocks.1.2.transformer_blocks.0.attn2.to_k.weight"] == [320, 320]     # temporal: self only
    assert ours["input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"] == [320, 1024]    # spatial: the text


def test_parameter_count_from_the_shipped_config(full_size):
    assert sum(p.numel() for p in full_size.parameters()) == 1_413_284_420


def test_full_size_output_shape_at_the_released_latent_size(full_size):
    with torch.device("meta"):
        out = full_size(torch.empty(2, 4, 16, 40, 64), torch.zeros(2), torch.empty(2, 77, 1024), torch.full((2,), 28))
    assert out.shape == (2, 4, 16, 40, 64)


def test_shipped_config_is_the_released_unet_config():
    cfg = config()
    assert cfg.pop("_class_name") == "VC2UNet"
    assert cfg == dict(in_channels=4, out_channels=4, model_channels=320, attention_resolutions=[4, 2, 1],
                       num_res_blocks=2, channel_mult=[1, 2, 4, 4], num_head_channels=64, transformer_depth=1,
                       context_dim=1024, use_linear=True, use_checkpoint=True, temporal_conv=True,
                       temporal_attention=True, temporal_selfatt_only=True, use_relative_position=False,
                       use_causal_attention=False, temporal_length=16, addition_attention=True, fps_cond=True)


# ---------------------------------------------------------------- fps and timestep embedding

def sinusoid(t, dim):
    half = dim // 2
    f = torch.tensor([10000 ** (-i / half) for i in range(half)], dtype=D)
    return torch.cat([torch.cos(t[:, None].double() * f), torch.sin(t[:, None].double() * f)], dim=1)


def mlp(seq, z):
    return F.linear(F.silu(F.linear(z, seq[0].weight, seq[0].bias)), seq[2].weight, seq[2].bias)


def test_embedding_is_time_plus_fps_and_reaches_every_frame():
    m = tiny()
    seen = []
    m.input_blocks[1][0].register_forward_hook(lambda mod, args, out: seen.append(args[1]))
    t, fps, T = torch.tensor([999, 17]), torch.tensor([8, 28]), 3
    m(rand(2, 4, T, 8, 8), t, rand(2, 5, 24), fps)
    ref = mlp(m.time_embed, sinusoid(t, 32)) + mlp(m.fps_embedding, sinusoid(fps, 32))
    # the sinusoid is computed in float32 as the official code does: allow its rounding (arguments up to 999)
    assert torch.allclose(seen[0], ref.repeat_interleave(T, dim=0), rtol=0, atol=1e-3 * ref.abs().max().item())
    assert torch.equal(seen[0][0], seen[0][T - 1]) and not torch.allclose(seen[0][0], seen[0][T])


def test_fps_changes_the_output_per_sample():
    m = tiny()
    x, t, ctx = rand(2, 4, 3, 8, 8), torch.tensor([500, 500]), rand(2, 5, 24, seed=1)
    with torch.no_grad():
        a, b = m(x, t, ctx, torch.tensor([8, 8])), m(x, t, ctx, torch.tensor([8, 28]))
        assert torch.equal(a[0], b[0])
        assert (a[1] - b[1]).abs().max() > 1e-3 * a.abs().max()
        assert torch.equal(m(x, t, ctx, 8), a)                              # a number broadcasts
        m.fps_embedding[2].weight.zero_()
        m.fps_embedding[2].bias.zero_()
        assert torch.allclose(m(x, t, ctx, torch.tensor([8, 28])), m(x, t, ctx, torch.tensor([3, 60])), rtol=0,
                              atol=1e-12)                                     # it enters only through fps_embedding


def test_model_without_fps_embedding():
    m = tiny(fps_cond=False)
    assert not any(k.startswith("fps_embedding") for k in m.state_dict())
    assert m(rand(1, 4, 2, 8, 8), torch.tensor([3]), rand(1, 5, 24)).shape == (1, 4, 2, 8, 8)


# ---------------------------------------------------------------- the temporal pieces, against hand computations

def temporal_conv_ref(blk, x):
    """Four stages GroupNorm(eps 1e-5, over all frames) → SiLU → conv (3, 1, 1) written as a sum over the time
    offsets -1, 0, +1 with zero padding, plus the input."""
    h = x
    for stage in (blk.conv1, blk.conv2, blk.conv3, blk.conv4):
        norm, conv = stage[0], stage[-1]
        h = F.silu(group_norm(h, 32, norm.weight, norm.bias, 1e-5))
        w = conv.weight[:, :, :, 0, 0]                                   # (C_out, C_in, 3)
        padded = F.pad(h, (0, 0, 0, 0, 1, 1))
        T = h.shape[2]
        h = sum(torch.einsum("oi,bithw->bothw", w[:, :, j], padded[:, :, j:j + T]) for j in range(3))
        h = h + conv.bias[None, :, None, None, None]
    return x + h


def test_temporal_conv_block_equals_the_hand_computation():
    blk = randomise(v.TemporalConvBlock(64), seed=2).double().eval()
    x = rand(2, 64, 5, 3, 4)
    assert torch.allclose(blk(x), temporal_conv_ref(blk, x), rtol=0, atol=1e-12)


def test_resblock_runs_the_temporal_conv_over_each_samples_frames():
    blk = randomise(v.VC2ResBlock(32, 16, 0.0, out_channels=64), seed=3).double().eval()
    B, T = 2, 4
    x, emb = rand(B * T, 32, 3, 4), rand(B * T, 16, seed=1)
    spatial = super(v.VC2ResBlock, blk)._forward(x, emb)                # the 2-D ResBlock (unet3d.ResBlock, dims=2)
    gn = lambda z, n: group_norm(z, 32, n.weight, n.bias, 1e-5)          # per frame: frames are batch rows here
    h = F.conv2d(F.silu(gn(x, blk.in_layers[0])), blk.in_layers[2].weight, blk.in_layers[2].bias, padding=1)
    h = h + F.linear(F.silu(emb), blk.emb_layers[1].weight, blk.emb_layers[1].bias)[:, :, None, None]
    h = F.conv2d(F.silu(gn(h, blk.out_layers[0])), blk.out_layers[3].weight, blk.out_layers[3].bias, padding=1)
    skip = F.conv2d(x, blk.skip_connection.weight, blk.skip_connection.bias)
    assert torch.allclose(spatial, skip + h, rtol=0, atol=1e-12)
    ref = temporal_conv_ref(blk.temopral_conv, spatial.reshape(B, T, 64, 3, 4).transpose(1, 2))
    assert torch.allclose(blk(x, emb, T), ref.transpose(1, 2).reshape(B * T, 64, 3, 4), rtol=0, atol=1e-12)


def temporal_transformer_ref(tt, x, frames, eps=1e-6):
    """GroupNorm(eps, over all frames) → tokens per pixel → proj_in (Linear or Conv1d) → blocks → proj_out,
    residual."""
    n, c, h, w = x.shape
    b = n // frames
    x5 = x.reshape(b, frames, c, h, w).transpose(1, 2)
    z = group_norm(x5, 32, tt.norm.weight, tt.norm.bias, eps)
    tok = z.permute(0, 3, 4, 2, 1).reshape(b * h * w, frames, c)
    wi, wo = tt.proj_in.weight.reshape(tt.proj_in.weight.shape[0], -1), tt.proj_out.weight.reshape(c, -1)
    tok = tok @ wi.T + tt.proj_in.bias
    for blk in tt.transformer_blocks:
        tok = block_ref(blk, tok)
    out = (tok @ wo.T + tt.proj_out.bias).reshape(b, h, w, frames, c).permute(0, 3, 4, 1, 2)
    return x + out.reshape(n, c, h, w)


def test_init_attn_equals_the_hand_computation():
    m = tiny()
    ia = m.init_attn[0]
    assert isinstance(ia.proj_in, torch.nn.Conv1d) and isinstance(ia.proj_out, torch.nn.Conv1d)
    assert ia.transformer_blocks[0].attn1.heads == 8 and ia.proj_in.weight.shape == (8 * 16, 32, 1)
    assert ia.transformer_blocks[0].attn2.to_k.weight.shape == (128, 128)         # attn2: self-attention
    x = rand(2 * 3, 32, 4, 4)
    assert torch.allclose(m.init_attn(x, None, None, 3), temporal_transformer_ref(ia, x, 3), rtol=0, atol=1e-12)


def test_temporal_transformer_with_linear_projections_equals_the_hand_computation():
    m = tiny()
    tt = m.input_blocks[1][2]
    assert isinstance(tt, v.TemporalTransformer) and isinstance(tt.proj_in, torch.nn.Linear)
    assert tt.transformer_blocks[0].attn1.heads == 2                             # width 32 / 16
    x = rand(2 * 5, 32, 2, 3, seed=4)
    assert torch.allclose(tt(x, 5), temporal_transformer_ref(tt, x, 5), rtol=0, atol=1e-12)


@pytest.mark.parametrize("use_linear", [True, False])
def test_spatial_transformer_equals_the_hand_computation(use_linear):
    st = randomise(v.SpatialTransformer(64, 4, 16, 1, 24, use_linear), seed=5).double().eval()
    B, T, h, w = 2, 3, 3, 4
    x, ctx = rand(B * T, 64, h, w), rand(B, 7, 24, seed=1)
    z = group_norm(x, 32, st.norm.weight, st.norm.bias, 1e-6).flatten(2).transpose(1, 2)          # per frame
    wi, wo = st.proj_in.weight.reshape(64, -1), st.proj_out.weight.reshape(64, -1)
    tok = block_ref(st.transformer_blocks[0], z @ wi.T + st.proj_in.bias, ctx,
                    torch.arange(B).repeat_interleave(T))           # the official repeat_interleave of the context
    ref = x + (tok @ wo.T + st.proj_out.bias).transpose(1, 2).reshape(B * T, 64, h, w)
    assert torch.allclose(st(x, ctx), ref, rtol=0, atol=1e-12)


# ---------------------------------------------------------------- attention kernels

def test_sdpa_equals_explicit_math():
    g = torch.Generator().manual_seed(7)
    q, k, val = (torch.randn(3, L, 4 * 8, dtype=D, generator=g) for L in (5, 9, 9))
    sp = lambda a: a.reshape(3, a.shape[1], 4, 8)
    p = torch.softmax(torch.einsum("nihd,njhd->nhij", sp(q), sp(k)) / math.sqrt(8), -1)
    ref = torch.einsum("nhij,njhd->nihd", p, sp(val)).reshape(3, 5, 32)
    assert torch.allclose(v.attention(q, k, val, 4), ref, rtol=0, atol=1e-13)


def test_whole_network_with_sdpa_equals_explicit_math(monkeypatch):
    m = tiny()
    x, t, ctx, fps = rand(2, 4, 3, 8, 8), torch.tensor([10, 900]), rand(2, 5, 24, seed=1), torch.tensor([8, 28])
    got = m(x, t, ctx, fps)

    def explicit(q, k, val, heads, backend="sdpa"):
        sp = lambda a: a.reshape(a.shape[0], a.shape[1], heads, -1)
        p = torch.softmax(torch.einsum("nihd,njhd->nhij", sp(q), sp(k)) / math.sqrt(q.shape[-1] // heads), -1)
        return torch.einsum("nhij,njhd->nihd", p, sp(val)).reshape(q.shape)

    monkeypatch.setattr(v, "attention", explicit)
    assert torch.allclose(got, m(x, t, ctx, fps), rtol=0, atol=1e-12 * got.abs().max().item())


def test_set_attention_rejects_unknown_backend():
    check_unknown_backend_is_refused(tiny())


def test_xformers_missing_is_a_clear_error(monkeypatch):
    check_missing_xformers_is_a_clear_error(tiny(), monkeypatch)


def test_xformers_on_cpu_is_a_clear_error(fake_xformers):
    m = tiny().set_attention("xformers")
    with pytest.raises(ValueError, match="CUDA only.*cpu"):
        m(rand(1, 4, 2, 8, 8), torch.tensor([1]), rand(1, 5, 24), 8)


def test_xformers_wiring_matches_sdpa(fake_xformers, monkeypatch):
    m = tiny()
    args = (rand(1, 4, 3, 8, 8), torch.tensor([9]), rand(1, 5, 24, seed=1), torch.tensor([28]))
    ref = m(*args)
    monkeypatch.setattr(v, "_check_xformers_device", lambda device: None)     # the fake runs on CPU
    got = m.set_attention("xformers")(*args)
    n_attn = sum(isinstance(a, v.CrossAttention) for a in m.modules())
    assert len(fake_xformers) == n_attn and all(len(s) == 4 for s in fake_xformers)
    assert torch.allclose(got, ref, rtol=0, atol=1e-12)


# ---------------------------------------------------------------- the network's wiring

def test_samples_are_independent_and_context_is_per_sample():
    m = tiny()
    x, t, ctx, fps = rand(2, 4, 3, 8, 8), torch.tensor([300, 300]), rand(2, 5, 24, seed=1), torch.tensor([8, 8])
    with torch.no_grad():
        a = m(x, t, ctx, fps)
        ctx2 = ctx.clone()
        ctx2[1] += 1
        b = m(x, t, ctx2, fps)
        assert torch.equal(a[0], b[0]) and (a[1] - b[1]).abs().max() > 1e-3 * a.abs().max()
        single = m(x[1:], t[1:], ctx2[1:], fps[1:])
        assert torch.allclose(single[0], b[1], rtol=0, atol=1e-12)


def test_frames_are_coupled_in_time():
    m = tiny()
    x, t, ctx = rand(1, 4, 4, 8, 8), torch.tensor([300]), rand(1, 5, 24, seed=1)
    with torch.no_grad():
        a = m(x, t, ctx, 8)
        x2 = x.clone()
        x2[:, :, 3] += 1
        b = m(x2, t, ctx, 8)
    assert (a[:, :, 0] - b[:, :, 0]).abs().max() > 1e-3 * a.abs().max()


def test_without_temporal_layers_each_frame_is_the_network_on_that_frame_alone():
    """Pins the frame layout in and out: with the temporal conv blocks, temporal transformers and init_attn switched
    off, output frame j is the 2-D UNet on input frame j."""
    m = tiny(temporal_conv=False, temporal_attention=False, addition_attention=False)
    x, t, ctx = rand(2, 4, 3, 8, 8), torch.tensor([300, 20]), rand(2, 5, 24, seed=1)
    out = m(x, t, ctx, torch.tensor([8, 28]))
    for j in range(3):
        alone = m(x[:, :, j:j + 1], t, ctx, torch.tensor([8, 28]))
        assert torch.allclose(out[:, :, j:j + 1], alone, rtol=0, atol=1e-12)


@pytest.mark.parametrize("T", [1, 20])      # temporal_length 16 limits nothing: any T runs
def test_any_frame_count_runs(T):
    out = tiny()(rand(1, 4, T, 8, 8), torch.tensor([10]), rand(1, 5, 24), 8)
    assert out.shape == (1, 4, T, 8, 8) and torch.isfinite(out).all()


def test_timesteps_matter_and_broadcast():
    m = tiny()
    x, ctx = rand(1, 4, 2, 8, 8).expand(2, -1, -1, -1, -1), rand(1, 5, 24).expand(2, -1, -1)
    out = m(x, torch.tensor([5, 900]), ctx, 8)
    assert not torch.allclose(out[0], out[1])
    assert torch.allclose(m(x[:1], torch.tensor(900), ctx[:1], torch.tensor(8)), out[1:], rtol=0, atol=1e-12)


def test_dtypes():
    m = tiny(dtype=torch.float32)
    x, ctx = rand(1, 4, 2, 8, 8), rand(1, 5, 24)
    out = m(x, torch.tensor([3]), ctx, 8)
    assert out.dtype == D                                              # runs in the weights' dtype, returns x's
    assert torch.allclose(out, m(x.float(), torch.tensor([3]), ctx.float(), 8).double())


def test_gradient_checkpointing_gives_the_same_gradients():
    grads = []
    for flag in (True, False):
        m = tiny(use_checkpoint=flag).train()
        for mod in m.modules():
            if isinstance(mod, torch.nn.Dropout):
                mod.p = 0.0                       # the temporal conv blocks' hard-coded 0.1 would differ per run
        m(rand(1, 4, 3, 8, 8), torch.tensor([50]), rand(1, 5, 24), 8).square().sum().backward()
        grads.append(torch.cat([p.grad.flatten() for p in m.parameters()]))
    assert torch.allclose(grads[0], grads[1], rtol=1e-10, atol=1e-12)


def test_heads_from_num_heads_when_no_head_width():
    m = v.VC2UNet(**(TINY | dict(num_head_channels=-1, num_heads=4, addition_attention=False)))
    heads = {(a.heads, a.dim_head) for a in m.modules() if isinstance(a, v.CrossAttention)}
    assert heads == {(4, 8), (4, 16)}                                  # widths 32 and 64


# ---------------------------------------------------------------- bad inputs and unbuilt options

@pytest.fixture(scope="module")
def small():
    return tiny(), tiny(fps_cond=False)


@pytest.mark.parametrize("case,match", [
    ("channels", r"x has 5 channels, expected in_channels = 4"),
    ("4d", r"5-D tensor \(B, C, T, h, w\), got \(1, 4, 8, 8\)"),
    ("odd_size", r"latent size 7×8 must be divisible by 2"),
    ("timesteps", r"timesteps must have shape \(1,\) \(one per sample\) or be a scalar, got \(2,\)"),
    ("context_dim", r"context must be a tensor of shape \(1, L, 24\).*got \(1, 5, 32\)"),
    ("context_batch", r"context must be a tensor of shape \(1, L, 24\).*got \(2, 5, 24\)"),
    ("context_2d", r"context must be a tensor of shape \(1, L, 24\).*got \(1, 24\)"),
    ("context_none", r"context must be a tensor of shape \(1, L, 24\).*got NoneType"),
    ("context_empty", r"context must be a tensor of shape \(1, L, 24\).*got \(1, 0, 24\)"),
    ("fps_shape", r"fps must have shape \(1,\) \(one per sample\) or be a scalar, got \(1, 1\)"),
    ("fps_batch", r"fps must have shape \(1,\) \(one per sample\) or be a scalar, got \(2,\)"),
    ("fps_bool", r"fps must be real numbers, got dtype torch.bool"),
    ("fps_missing", r"fps is required \(the model has an fps embedding"),
    ("fps_unexpected", r"fps was given, but this model has no fps embedding \(fps_cond=False\); expected fps=None"),
])
def test_bad_inputs(small, case, match):
    m, no_fps = small
    x, t, ctx, fps = rand(1, 4, 2, 8, 8), torch.tensor([1]), rand(1, 5, 24), torch.tensor([8])
    call = {
        "channels": lambda: m(rand(1, 5, 2, 8, 8), t, ctx, fps),
        "4d": lambda: m(rand(1, 4, 8, 8), t, ctx, fps),
        "odd_size": lambda: m(rand(1, 4, 2, 7, 8), t, ctx, fps),
        "timesteps": lambda: m(x, torch.tensor([1, 2]), ctx, fps),
        "context_dim": lambda: m(x, t, rand(1, 5, 32), fps),
        "context_batch": lambda: m(x, t, rand(2, 5, 24), fps),
        "context_2d": lambda: m(x, t, rand(1, 24), fps),
        "context_none": lambda: m(x, t, None, fps),
        "context_empty": lambda: m(x, t, rand(1, 0, 24), fps),
        "fps_shape": lambda: m(x, t, ctx, torch.tensor([[8]])),
        "fps_batch": lambda: m(x, t, ctx, torch.tensor([8, 28])),
        "fps_bool": lambda: m(x, t, ctx, torch.tensor([True])),
        "fps_missing": lambda: m(x, t, ctx),
        "fps_unexpected": lambda: no_fps(x, t, ctx, fps),
    }[case]
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize("kw,match", [
    (dict(use_relative_position=True), r"use_relative_position=True is not supported.*expected False"),
    (dict(use_causal_attention=True), r"use_causal_attention=True is not supported.*expected False"),
    (dict(temporal_selfatt_only=False), r"temporal_selfatt_only=False is not supported.*expected True"),
    (dict(tempspatial_aware=True), r"tempspatial_aware=True is not supported"),
    (dict(use_image_attention=True), r"use_image_attention=True is not supported"),
    (dict(resblock_updown=True), r"resblock_updown=True is not supported"),
    (dict(conv_resample=False), r"conv_resample=False is not supported"),
    (dict(dims=3), r"dims=3 is not supported.*expected 2"),
    (dict(use_fp16=True), r"use_fp16=True is not supported"),
    (dict(context_dim=None), r"context_dim=None is not supported \(the network is text-conditioned"),
    (dict(num_head_channels=-1), r"set num_heads or num_head_channels \(both are -1\)"),
    (dict(num_head_channels=-1, num_heads=4), r"addition_attention needs num_head_channels >= 1.*got -1"),
    (dict(num_head_channels=24), r"width 32 is not divisible by num_head_channels 24"),
    (dict(num_head_channels=-1, num_heads=3, addition_attention=False), r"width 32 is not divisible by num_heads 3"),
    (dict(model_channels=48), r"every width must be divisible by 32 \(GroupNorm\(32\)\), got model_channels=48"),
])
def test_unbuilt_options_are_refused(kw, match):
    with pytest.raises(ValueError, match=match):
        v.VC2UNet(**(TINY | kw))
