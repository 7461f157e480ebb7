"""The OpenCLIP text tower (VideoCrafter2's conditioning) on transformers' CLIPTextModel: strict mapping of the
released layout, the fused q/k/v split, the output against an independent hand-written forward (penultimate
block, then the final LayerNorm; exact GELU; causal attention), and open_clip's tokenization rules."""
import json
import math
import os

import pytest
import torch
import torch.nn.functional as F

from cvk_testkit import ROOT
from consistent_video_kit.models import openclip_text as oc
from consistent_video_kit.models.checkpoint import CheckpointError, empty_params, load_into
from consistent_video_kit.models.text import char_clip_tokenizer

MANIFESTS = os.path.join(os.path.dirname(ROOT), "shared", "fixtures", "checkpoints")   # ../shared beside the repo
NO_MANIFESTS = (f"the released checkpoints' key manifests are not at {MANIFESTS}: they come with the team's shared/ "
                f"folder, which must sit beside this checkout as ../shared (see the README's quick start)")
needs_manifests = pytest.mark.skipif(not os.path.isdir(MANIFESTS) and not os.environ.get("CI"),
                                     reason=NO_MANIFESTS + "; skipped")
PREFIX = "cond_stage_model.model."
COMFY = os.environ.get("COMFYUI_PATH")
CLIP_BPE = os.path.join(COMFY, "comfy", "sd1_tokenizer") if COMFY else None


def vc2_text_shapes():
    if not os.path.isdir(MANIFESTS):
        pytest.fail(NO_MANIFESTS)
    with open(os.path.join(MANIFESTS, "videocrafter2_base_512_v2.json")) as f:
        tensors = json.load(f)["tensors"]
    return {k: tuple(v) for k, v in tensors.items() if k.startswith(PREFIX)}


def meta_sd(shapes):
    return {k: torch.empty(s, device="meta") for k, s in shapes.items()}


# ---------------------------------------------------------------- the released layout, meta device

@needs_manifests
def test_vc2_text_tower_maps_strictly_onto_vit_h14_config():
    shapes = vc2_text_shapes()
    assert len(shapes) == 294
    with empty_params():
        model = oc.build_openclip_text_model()           # the ViT-H/14 defaults
    cfg = model.config
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads, cfg.intermediate_size) == (1024, 24, 16, 4096)
    assert (cfg.vocab_size, cfg.max_position_embeddings, cfg.hidden_act, cfg.layer_norm_eps) == (49408, 77, "gelu", 1e-5)
    got = oc.match_openclip_text(model, meta_sd(shapes), "videocrafter2.ckpt", prefix=PREFIX)
    assert set(got) == set(model.state_dict())           # every parameter covered, nothing else
    assert len(got) == 24 * 16 + 4
    assert got["encoder.layers.23.self_attn.v_proj.weight"].shape == (1024, 1024)
    assert got["embeddings.position_embedding.weight"].shape == (77, 1024)
    # what is not loaded: exactly the documented ignore-list
    mapped = {k for k in oc.split_fused_qkv(meta_sd(shapes)) if oc.openclip_text_key(k, PREFIX)}
    assert {k for k in shapes if not any(m.startswith(k) for m in mapped)} == {PREFIX + "text_projection",
                                                                            PREFIX + "logit_scale"}


@needs_manifests
def test_vc2_text_tower_missing_unexpected_and_misshapen_keys_are_named():
    with empty_params():
        model = oc.build_openclip_text_model()
    sd = meta_sd(vc2_text_shapes())
    del sd[PREFIX + "transformer.resblocks.7.mlp.c_fc.bias"]
    sd[PREFIX + "attn_mask"] = torch.empty(77, 77, device="meta")        # not stored by open_clip: not ignored
    sd[PREFIX + "transformer.resblocks.3.attn.in_proj_weight"] = torch.empty(3072, 768, device="meta")
    with pytest.raises(CheckpointError) as e:
        oc.match_openclip_text(model, sd, "vc2.ckpt", prefix=PREFIX)
    msg = str(e.value)
    assert "encoder.layers.7.mlp.fc1.bias" in msg and PREFIX + "attn_mask" in msg
    assert "resblocks.3.attn.in_proj_weight.q (1024, 768) vs model (1024, 1024)" in msg
    # keys outside the prefix (the UNet's, say) are not the text tower's
    with pytest.raises(CheckpointError, match="model.diffusion_model.out.2.bias"):
        oc.match_openclip_text(model, {**meta_sd(vc2_text_shapes()),
                                       "model.diffusion_model.out.2.bias": torch.empty(4, device="meta")},
                               "vc2.ckpt", prefix=PREFIX)


# ---------------------------------------------------------------- tiny random towers in the OpenCLIP layout

def openclip_sd(width=16, layers=3, heads=2, vocab=514, ctx=77, seed=0, dtype=torch.float64):
    """A random OpenCLIP text-tower state dict (every tensor random, norms included)."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape, scale=0.2):
        return (torch.randn(*shape, generator=g, dtype=torch.float64) * scale).to(dtype)

    sd = {"token_embedding.weight": r(vocab, width, scale=1.0), "positional_embedding": r(ctx, width),
          "ln_final.weight": 1 + r(width), "ln_final.bias": r(width),
          "text_projection": r(width, width), "logit_scale": torch.tensor(4.6, dtype=dtype)}
    for i in range(layers):
        p = f"transformer.resblocks.{i}."
        sd.update({p + "ln_1.weight": 1 + r(width), p + "ln_1.bias": r(width),
                   p + "attn.in_proj_weight": r(3 * width, width, scale=width ** -0.5), p + "attn.in_proj_bias": r(3 * width),
                   p + "attn.out_proj.weight": r(width, width, scale=width ** -0.5), p + "attn.out_proj.bias": r(width),
                   p + "ln_2.weight": 1 + r(width), p + "ln_2.bias": r(width),
                   p + "mlp.c_fc.weight": r(4 * width, width, scale=width ** -0.5), p + "mlp.c_fc.bias": r(4 * width),
                   p + "mlp.c_proj.weight": r(width, 4 * width, scale=(4 * width) ** -0.5), p + "mlp.c_proj.bias": r(width)})
    return sd


def tiny_encoder(sd, width=16, layers=3, heads=2, dtype=torch.float64, **kw):
    tok = char_clip_tokenizer()
    with empty_params():
        model = oc.build_openclip_text_model(width=width, layers=layers, heads=heads, vocab_size=len(tok),
                                             bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    load_into(model, oc.match_openclip_text(model, sd, "tiny"), dtype)
    return oc.OpenCLIPTextEncoder(tok, model, **kw)


def hand_forward(sd, ids, heads, n_blocks, final_norm=True, act="gelu"):
    """open_clip's text tower written out: embeddings, the first ``n_blocks`` pre-norm blocks (causal attention
    straight from the fused in_proj, MLP), then ln_final."""
    def ln(x, name):
        return F.layer_norm(x, x.shape[-1:], sd[name + ".weight"], sd[name + ".bias"], eps=1e-5)

    x = sd["token_embedding.weight"][ids] + sd["positional_embedding"][: ids.shape[1]]
    B, L, D = x.shape
    hd = D // heads
    causal = torch.full((L, L), float("-inf"), dtype=x.dtype).triu(1)
    for i in range(n_blocks):
        p = f"transformer.resblocks.{i}."
        h = ln(x, p + "ln_1")
        qkv = h @ sd[p + "attn.in_proj_weight"].T + sd[p + "attn.in_proj_bias"]
        q, k, v = (t.reshape(B, L, heads, hd).transpose(1, 2) for t in qkv.split(D, dim=-1))
        a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(hd) + causal, dim=-1) @ v
        x = x + a.transpose(1, 2).reshape(B, L, D) @ sd[p + "attn.out_proj.weight"].T + sd[p + "attn.out_proj.bias"]
        u = ln(x, p + "ln_2") @ sd[p + "mlp.c_fc.weight"].T + sd[p + "mlp.c_fc.bias"]
        u = 0.5 * u * (1 + torch.erf(u / math.sqrt(2))) if act == "gelu" else u * torch.sigmoid(1.702 * u)
        x = x + u @ sd[p + "mlp.c_proj.weight"].T + sd[p + "mlp.c_proj.bias"]
    return ln(x, "ln_final") if final_norm else x


def test_qkv_split_equals_the_fused_projection():
    sd = openclip_sd()
    enc = tiny_encoder(sd)
    attn = enc.model.encoder.layers[1].self_attn
    x = torch.randn(2, 5, 16, dtype=torch.float64)
    fused = x @ sd["transformer.resblocks.1.attn.in_proj_weight"].T + sd["transformer.resblocks.1.attn.in_proj_bias"]
    torch.testing.assert_close(attn.q_proj(x), fused[..., :16], rtol=0, atol=1e-14)
    torch.testing.assert_close(attn.k_proj(x), fused[..., 16:32], rtol=0, atol=1e-14)
    torch.testing.assert_close(attn.v_proj(x), fused[..., 32:], rtol=0, atol=1e-14)
    # by hand, rows of the fused (3D, D) weight: q = [0, D), k = [D, 2D), v = [2D, 3D)
    w = sd["transformer.resblocks.1.attn.in_proj_weight"]
    assert torch.equal(attn.k_proj.weight, w[16:32]) and torch.equal(attn.v_proj.bias,
                                                                     sd["transformer.resblocks.1.attn.in_proj_bias"][32:])
    # a fused weight whose first dimension is not 3·D is named, not split into something that happens to fit
    bad = dict(sd, **{"transformer.resblocks.0.attn.in_proj_weight": torch.zeros(47, 16, dtype=torch.float64)})
    with pytest.raises(CheckpointError, match=r"unexpected keys: transformer\.resblocks\.0\.attn\.in_proj_weight"):
        tiny_encoder(bad)


def test_output_is_the_penultimate_block_then_the_final_layer_norm():
    sd = openclip_sd()
    enc = tiny_encoder(sd)
    ids = torch.tensor([[512, 70, 71, 72, 513] + [0] * 72,
                        [512] + list(range(100, 175)) + [513]])
    with torch.inference_mode():
        got = enc.forward_ids(ids)
        last = oc.OpenCLIPTextEncoder(enc.tokenizer, enc.model, layer="last").forward_ids(ids)
    assert got.shape == (2, 77, 16) and got.dtype == torch.float64
    want = hand_forward(sd, ids, heads=2, n_blocks=2)                 # 3 blocks: the last one is skipped
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    torch.testing.assert_close(last, hand_forward(sd, ids, heads=2, n_blocks=3), rtol=0, atol=1e-12)
    # each ingredient is visible at this size: the layer, the final norm, exact GELU
    for wrong in (hand_forward(sd, ids, 2, 3), hand_forward(sd, ids, 2, 1), hand_forward(sd, ids, 2, 2, final_norm=False),
                  hand_forward(sd, ids, 2, 2, act="quick_gelu")):
        assert (got - wrong).abs().max() > 1e-4


def test_encode_float32_matches_the_hand_forward_and_attention_is_causal_only():
    sd = openclip_sd(seed=1)
    enc = tiny_encoder({k: v.float() for k, v in sd.items()}, dtype=torch.float32)
    prompts = ["a red fox", "a red fox jumps over the lazy dog"]
    out = enc.encode(prompts)
    assert out.shape == (2, 77, enc.dim) and out.dtype == torch.float32 and enc.dim == 16
    assert enc.part.role == "text_encoder"
    want = hand_forward(sd, enc.token_ids(prompts), heads=2, n_blocks=2)
    torch.testing.assert_close(out.double(), want, rtol=0, atol=2e-5)
    # causal: the shared prefix "a red fox" gives the same states; the padding after EOT is attended to (no mask),
    # so the pad positions' states differ between the two prompts
    ids = enc.token_ids(prompts)
    n = int((ids[0] == ids[1]).long().cumprod(0).sum())                # SOT a r e d f o x: the shared ids
    assert n == 8
    torch.testing.assert_close(out[0, :n], out[1, :n], rtol=0, atol=1e-6)
    assert (out[0, -1] - out[1, -1]).abs().max() > 1e-3
    torch.testing.assert_close(enc.encode(prompts[1:])[0], out[1], rtol=0, atol=1e-6)   # batch-independent


def test_tiny_encoder_for_demos():
    enc = oc.tiny_openclip_text_encoder(seed=3)
    assert enc.dim == oc.TINY_OPENCLIP_TEXT["width"] and enc.model.config.hidden_act == "gelu"
    out = enc.encode(["a cat", ""])
    assert out.shape == (2, 77, enc.dim) and torch.isfinite(out).all()
    assert torch.equal(out, oc.tiny_openclip_text_encoder(seed=3).encode(["a cat", ""]))   # seeded
    with pytest.raises(ValueError, match="layer must be one of"):
        oc.OpenCLIPTextEncoder(enc.tokenizer, enc.model, layer="pooled")
    with pytest.raises(ValueError, match="max_length 64 must equal the model's 77 positions"):
        oc.OpenCLIPTextEncoder(enc.tokenizer, enc.model, max_length=64)


# ---------------------------------------------------------------- tokenization

def test_token_ids_pad_with_zero_after_eot():
    tok = char_clip_tokenizer()
    sot, eot = tok.bos_token_id, tok.eos_token_id
    assert (sot, eot) == (512, 513) and eot != oc.PAD_ID
    ids = oc.openclip_token_ids(tok, ["a cat", ""])
    body = tok("a cat", add_special_tokens=False)["input_ids"]
    assert ids.shape == (2, 77) and ids.dtype == torch.long
    assert ids[0, : len(body) + 2].tolist() == [sot, *body, eot]
    assert (ids[0, len(body) + 2:] == 0).all()
    assert ids[1, :2].tolist() == [sot, eot] and (ids[1, 2:] == 0).all()


def test_token_ids_keep_eot_at_the_end_on_truncation():
    tok = char_clip_tokenizer()
    sot, eot = tok.bos_token_id, tok.eos_token_id
    words = list("abcdefghijklmnopqrstuvwxyz" * 8)                      # one-letter words: one id each, 208
    body = tok(" ".join(words), add_special_tokens=False, verbose=False)["input_ids"]
    assert len(body) == 208
    fits, cut, long = oc.openclip_token_ids(tok, [" ".join(words[:75]), " ".join(words[:76]), " ".join(words)])
    assert fits.tolist() == [sot, *body[:75], eot]                        # 77 exactly: nothing cut
    assert cut.tolist() == [sot, *body[:75], eot]                         # one too many: the last word goes
    assert long.tolist() == [sot, *body[:75], eot] and long[76] == eot
    assert oc.openclip_token_ids(tok, [" ".join(words)], context_length=10)[0].tolist() == [sot, *body[:8], eot]


def test_text_is_cleaned_as_open_clip_does():
    tok = char_clip_tokenizer()
    same = oc.openclip_token_ids(tok, ["tom & jerry", "  Tom &amp;amp;   Jerry\n", "TOM &#38; JERRY"])
    assert torch.equal(same[0], same[1]) and torch.equal(same[0], same[2])


@pytest.mark.comfyui
@pytest.mark.skipif(not (CLIP_BPE and os.path.isdir(CLIP_BPE)),
                    reason="CLIP's BPE vocabulary comes from ComfyUI's comfy/sd1_tokenizer: set COMFYUI_PATH")
def test_real_clip_vocabulary_ids():
    from transformers import CLIPTokenizer
    tok = CLIPTokenizer.from_pretrained(CLIP_BPE, local_files_only=True, model_max_length=77)
    ids = oc.openclip_token_ids(tok, ["a photo of a cat", "word " * 100])
    # open_clip.tokenize("a photo of a cat"): SOT a photo of a cat EOT, then zeros
    assert ids[0, :8].tolist() == [49406, 320, 1125, 539, 320, 2368, 49407, 0] and (ids[0, 7:] == 0).all()
    assert ids[1, 0] == 49406 and (ids[1, 1:76] == 2653).all() and ids[1, 76] == 49407
