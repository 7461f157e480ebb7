"""Key names: original (LDM / AnimateDiff) checkpoints ↔ diffusers / transformers modules.

Each mapping is written once, as diffusers-key → original-key (the direction of diffusers'
``convert_diffusers_to_original_stable_diffusion.py`` and ``convert_animatediff_motion_module_to_diffusers.py``,
generalised to any number of levels and layers per block), and inverted over a model's own keys, so
the same table reads original files and writes them (tests build tiny original-layout files with it).
"""
from __future__ import annotations

from typing import Callable, Iterable, Optional

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
CLIP_PREFIX = "cond_stage_model.transformer."   # + "text_model." + transformers key
SD_PREFIXES = (UNET_PREFIX, VAE_PREFIX, CLIP_PREFIX)

# Tensors in SD1.x single files that no diffusers module holds, dropped on purpose (documented in README):
SD_IGNORED = (
    r"^(betas|alphas_cumprod|alphas_cumprod_prev|sqrt_alphas_cumprod|sqrt_one_minus_alphas_cumprod|"
    r"log_one_minus_alphas_cumprod|sqrt_recip_alphas_cumprod|sqrt_recipm1_alphas_cumprod|posterior_variance|"
    r"posterior_log_variance_clipped|posterior_mean_coef1|posterior_mean_coef2|logvar|lvlb_weights)$",  # schedule
    r"^model_ema\.",                                   # the EMA copy (the main weights are loaded)
    r"^cond_stage_model\.transformer\.text_model\.embeddings\.position_ids$",  # old transformers buffer
    r"^first_stage_model\.loss\.",                     # VAE training losses
)
# Motion modules: the sinusoidal tables the official loader drops too (diffusers rebuilds its own).
MOTION_IGNORED = (r"\.pos_encoder\.pe$",)
MOTION_OPTIONAL = (r"\.pos_embed\.pe$",)


def _apply(key: str, pairs: Iterable[tuple[str, str]]) -> str:
    for original, diffusers in pairs:
        key = key.replace(diffusers, original)
    return key


def unet_key_map(config: dict) -> Callable[[str], str]:
    """diffusers ``UNet2DConditionModel`` key → LDM ``model.diffusion_model`` key (without the prefix)."""
    n = len(config["block_out_channels"])
    L = config["layers_per_block"]
    down_attn = [t.startswith("CrossAttn") for t in config["down_block_types"]]
    up_attn = [t.startswith("CrossAttn") for t in config["up_block_types"]]
    whole = {
        "time_embedding.linear_1.weight": "time_embed.0.weight", "time_embedding.linear_1.bias": "time_embed.0.bias",
        "time_embedding.linear_2.weight": "time_embed.2.weight", "time_embedding.linear_2.bias": "time_embed.2.bias",
        "conv_in.weight": "input_blocks.0.0.weight", "conv_in.bias": "input_blocks.0.0.bias",
        "conv_norm_out.weight": "out.0.weight", "conv_norm_out.bias": "out.0.bias",
        "conv_out.weight": "out.2.weight", "conv_out.bias": "out.2.bias",
    }
    resnet = [("in_layers.0", "norm1"), ("in_layers.2", "conv1"), ("out_layers.0", "norm2"),
              ("out_layers.3", "conv2"), ("emb_layers.1", "time_emb_proj"), ("skip_connection", "conv_shortcut")]
    layers = []
    for i in range(n):
        for j in range(L):
            layers.append((f"input_blocks.{(L + 1) * i + j + 1}.0.", f"down_blocks.{i}.resnets.{j}."))
            if down_attn[i]:
                layers.append((f"input_blocks.{(L + 1) * i + j + 1}.1.", f"down_blocks.{i}.attentions.{j}."))
        for j in range(L + 1):
            layers.append((f"output_blocks.{(L + 1) * i + j}.0.", f"up_blocks.{i}.resnets.{j}."))
            if up_attn[i]:
                layers.append((f"output_blocks.{(L + 1) * i + j}.1.", f"up_blocks.{i}.attentions.{j}."))
        if i < n - 1:
            layers.append((f"input_blocks.{(L + 1) * (i + 1)}.0.op.", f"down_blocks.{i}.downsamplers.0.conv."))
            layers.append((f"output_blocks.{(L + 1) * i + L}.{2 if up_attn[i] else 1}.", f"up_blocks.{i}.upsamplers.0."))
    layers.append(("middle_block.1.", "mid_block.attentions.0."))
    for j in range(2):
        layers.append((f"middle_block.{2 * j}.", f"mid_block.resnets.{j}."))

    def to_original(key: str) -> str:
        if key in whole:
            return whole[key]
        if "resnets" in key:
            key = _apply(key, resnet)
        return _apply(key, layers)
    return to_original


def vae_key_map(config: dict) -> Callable[[str], str]:
    """diffusers ``AutoencoderKL`` key → LDM ``first_stage_model`` key (without the prefix)."""
    n = len(config["block_out_channels"])
    L = config["layers_per_block"]
    pairs = [("nin_shortcut", "conv_shortcut"), ("norm_out", "conv_norm_out"), ("mid.attn_1.", "mid_block.attentions.0.")]
    for i in range(n):
        for j in range(L):
            pairs.append((f"encoder.down.{i}.block.{j}.", f"encoder.down_blocks.{i}.resnets.{j}."))
        if i < n - 1:
            pairs.append((f"down.{i}.downsample.", f"down_blocks.{i}.downsamplers.0."))
            pairs.append((f"up.{n - 1 - i}.upsample.", f"up_blocks.{i}.upsamplers.0."))
        for j in range(L + 1):
            pairs.append((f"decoder.up.{n - 1 - i}.block.{j}.", f"decoder.up_blocks.{i}.resnets.{j}."))
    for i in range(2):
        pairs.append((f"mid.block_{i + 1}.", f"mid_block.resnets.{i}."))
    attn = [("norm.", "group_norm."), ("q.", "to_q."), ("k.", "to_k."), ("v.", "to_v."), ("proj_out.", "to_out.0.")]

    def to_original(key: str) -> str:
        out = _apply(key, pairs)
        return _apply(out, attn) if "attentions" in key else out
    return to_original


def clip_key_map() -> Callable[[str], str]:
    """transformers ``CLIPTextModel`` key → SD1.x ``cond_stage_model.transformer`` key (without the prefix)."""
    return lambda key: key if key.startswith("text_model.") else "text_model." + key


def motion_key_map() -> Callable[[str], str]:
    """diffusers ``MotionAdapter`` key → original AnimateDiff motion-module key."""
    def to_original(key: str) -> str:
        head, sep, tail = key.partition(".motion_modules.")
        if not sep:
            return key
        idx, _, rest = tail.partition(".")
        rest = (rest.replace("attn1.", "attention_blocks.0.").replace("attn2.", "attention_blocks.1.")
                .replace("norm1.", "norms.0.").replace("norm2.", "norms.1.").replace("norm3.", "ff_norm."))
        return f"{head}.motion_modules.{idx}.temporal_transformer.{rest}"
    return to_original


def invert(to_original: Callable[[str], str], model_keys: Iterable[str], prefix: str = "") -> Callable[[str], Optional[str]]:
    """A file-key → model-key function from a model-key → original-key map, over the model's own keys."""
    table = {prefix + to_original(k): k for k in model_keys}
    return table.get


def to_original_state_dict(sd: dict, to_original: Callable[[str], str], prefix: str = "",
                           reshape_attention_to_conv: bool = False) -> dict:
    """A module's state dict in original key names (tests write tiny original-layout files with it).
    ``reshape_attention_to_conv``: store VAE attention projections as 1×1 convs, as LDM files do."""
    out = {}
    for k, v in sd.items():
        ok = to_original(k)
        if reshape_attention_to_conv and ".attn_1." in ok and ok.endswith(("q.weight", "k.weight", "v.weight", "proj_out.weight")):
            v = v.reshape(*v.shape, 1, 1)
        out[prefix + ok] = v
    return out
