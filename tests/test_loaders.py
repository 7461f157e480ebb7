"""Loading real checkpoint layouts offline: released-file manifests (meta device), tiny files written
here in the released layouts, the loader node, and the errors a wrong file gets."""
import json
import os
import socket

import pytest
import torch

from cvk_testkit import ROOT
from cvk_testkit import tiny_files as tf
from consistent_video_kit.models import convert, loaders
from consistent_video_kit.models.checkpoint import CheckpointError, match_state_dict, read_shapes, read_state_dict
from consistent_video_kit.nodes.common import CVKInputError
from consistent_video_kit.nodes.video import CVK_DecodeVideo, CVK_TextToVideo, CVK_VideoModelLoader

MANIFESTS = os.path.join(os.path.dirname(ROOT), "shared", "fixtures", "checkpoints")   # ../shared beside the repo
NO_MANIFESTS = (f"the released checkpoints' key manifests are not at {MANIFESTS}: they come with the team's shared/ "
                f"folder, which must sit beside this checkout as ../shared (see the README's quick start)")
# CI always has ../shared beside the checkout: there a missing manifest folder fails instead of skipping
needs_manifests = pytest.mark.skipif(not os.path.isdir(MANIFESTS) and not os.environ.get("CI"),
                                     reason=NO_MANIFESTS + "; skipped")
T2V = dict(prompt="a cat", negative_prompt="", seed=0, steps=2, guidance="cfg", guidance_scale=7.5, sampler="ddim",
           eta=0.0, frames=3, width=64, height=64)


def manifest(name):
    if not os.path.isdir(MANIFESTS):
        pytest.fail(NO_MANIFESTS)
    with open(os.path.join(MANIFESTS, name + ".json")) as f:
        return json.load(f)["tensors"]


def meta_sd(shapes):
    return {k: torch.empty(s, device="meta") for k, s in shapes.items()}


# ---------------------------------------------------------------- released layouts, meta device

@needs_manifests
@pytest.mark.parametrize("version,n_file,n_pe", [("v2", 588, 42), ("v3", 560, 40)])
def test_motion_module_manifests_match_strictly(version, n_file, n_pe):
    from diffusers import MotionAdapter
    shapes = {k: tuple(v) for k, v in manifest(f"animatediff_mm_sd_v15_{version}").items()}
    assert len(shapes) == n_file
    cfg = loaders.motion_config(shapes, loaders.CONFIG_ROOT)
    shipped = loaders.read_json(os.path.join(loaders.CONFIG_ROOT, "animatediff", f"motion_adapter_{version}", "config.json"))
    assert cfg == shipped   # what the shapes say agrees with the shipped config
    adapter = loaders._build(MotionAdapter, cfg)
    assert all(p.is_meta for p in adapter.parameters())
    n_params = sum(1 for _ in adapter.parameters())
    # original layout: every tensor maps, except the pos_encoder.pe tables on the ignore-list
    got = loaders.match_motion_module(adapter, meta_sd(shapes), version)
    assert len(got) == n_params == n_file - n_pe
    # the same tensors in the diffusers layout
    to_diffusers = convert.invert(convert.motion_key_map(), adapter.state_dict())
    diff = {to_diffusers(k): v for k, v in meta_sd(shapes).items() if not k.endswith(".pe")}
    assert None not in diff and not any(".temporal_transformer." in k for k in diff)
    assert loaders.match_motion_module(adapter, diff, version).keys() == got.keys()
    # and into the full AnimateDiff UNet built from the shipped SD1.5 config
    from diffusers import UNet2DConditionModel, UNetMotionModel
    from consistent_video_kit.models.checkpoint import empty_params
    unet2d = loaders._build(UNet2DConditionModel, loaders.read_json(os.path.join(loaders.CONFIG_ROOT, "sd15", "unet", "config.json")))
    with empty_params():
        unet = UNetMotionModel.from_unet2d(unet2d, adapter, load_weights=False)
    assert loaders.match_motion_module(unet, meta_sd(shapes), version).keys() == got.keys()


@needs_manifests
def test_motion_module_missing_and_wrong_shapes_are_named():
    from diffusers import MotionAdapter
    shapes = {k: tuple(v) for k, v in manifest("animatediff_mm_sd_v15_v3").items()}
    adapter = loaders._build(MotionAdapter, loaders.motion_config(shapes, loaders.CONFIG_ROOT))
    sd = meta_sd(shapes)
    gone = "up_blocks.3.motion_modules.2.temporal_transformer.proj_out.weight"
    del sd[gone]
    sd["down_blocks.0.motion_modules.0.temporal_transformer.proj_in.weight"] = torch.empty(4, 4, device="meta")
    sd["down_blocks.0.motion_modules.0.extra.weight"] = torch.empty(1, device="meta")
    with pytest.raises(CheckpointError) as e:
        loaders.match_motion_module(adapter, sd, "mm.ckpt")
    msg = str(e.value)
    assert "1 missing keys: up_blocks.3.motion_modules.2.proj_out.weight" in msg
    assert "1 unexpected keys: down_blocks.0.motion_modules.0.extra.weight" in msg
    assert "shape mismatches: down_blocks.0.motion_modules.0.temporal_transformer.proj_in.weight (4, 4) vs model (320, 320)" in msg


def test_shipped_sd15_configs_build_the_released_architecture():
    """Meta-device SD1.5 UNet / VAE / CLIP-L from the shipped configs: SD1.5's parameter counts, and the key
    maps give the LDM names released SD1.5 files use."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    cfg = lambda part: loaders.read_json(os.path.join(loaders.CONFIG_ROOT, "sd15", part, "config.json"))  # noqa: E731
    unet = loaders._build(UNet2DConditionModel, cfg("unet"))
    vae = loaders._build(AutoencoderKL, cfg("vae"))
    text = loaders.build_text_encoder(os.path.join(loaders.CONFIG_ROOT, "sd15", "text_encoder"))
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert (count(unet), count(vae), count(text)) == (859_520_964, 83_653_863, 123_060_480)
    u = {convert.unet_key_map(cfg("unet"))(k): tuple(v.shape) for k, v in unet.state_dict().items()}
    v = {convert.vae_key_map(cfg("vae"))(k): tuple(t.shape) for k, t in vae.state_dict().items()}
    t = {convert.clip_key_map()(k): tuple(x.shape) for k, x in text.state_dict().items()}
    assert (len(u), len(v), len(t)) == (686, 248, 196)   # one LDM name per tensor (injective maps)
    released = {  # keys and shapes of the released v1-5 single files
        "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": (320, 768), "input_blocks.3.0.op.weight": (320, 320, 3, 3),
        "input_blocks.4.0.skip_connection.weight": (640, 320, 1, 1), "output_blocks.2.1.conv.weight": (1280, 1280, 3, 3),
        "output_blocks.5.2.conv.weight": (1280, 1280, 3, 3), "output_blocks.8.2.conv.weight": (640, 640, 3, 3),
        "output_blocks.11.1.proj_out.weight": (320, 320, 1, 1), "middle_block.1.proj_in.weight": (1280, 1280, 1, 1),
        "middle_block.2.emb_layers.1.weight": (1280, 1280), "time_embed.0.weight": (1280, 320), "out.2.weight": (4, 320, 3, 3)}
    assert all(u[k] == s for k, s in released.items())
    assert v["encoder.mid.attn_1.q.weight"] == (512, 512)        # stored as (512, 512, 1, 1): reshaped on load
    assert v["decoder.up.3.block.0.conv1.weight"] == (512, 512, 3, 3)
    assert v["decoder.up.0.block.0.nin_shortcut.weight"] == (128, 256, 1, 1)
    assert v["decoder.up.1.upsample.conv.weight"] == (256, 256, 3, 3) and "encoder.down.3.downsample.conv.weight" not in v
    assert t["text_model.embeddings.token_embedding.weight"] == (49408, 768) and "text_model.final_layer_norm.weight" in t


# ---------------------------------------------------------------- tiny files, the same code paths

@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    root = tf.write_config_root(str(d / "configs"))
    out = {"root": root, "dir": d}
    out["sd"] = tf.write_sd_single_file(str(d / "sd.safetensors"))
    tf.write_sd_single_file(str(d / "sd.ckpt"))
    out["mm2"] = tf.write_motion_module(str(d / "mm_v2.ckpt"), mid_block=True)
    out["mm3"] = tf.write_motion_module(str(d / "mm_v3_diffusers.safetensors"), mid_block=False, layout="diffusers")
    return out


def same(model, ref, skip="pos_embed"):
    sd = model.state_dict()
    return all(torch.equal(sd[k], v) for k, v in ref.state_dict().items() if skip not in k)


@pytest.mark.parametrize("base,mm,ref_mm", [("sd.safetensors", "mm_v2.ckpt", "mm2"),
                                            ("sd.ckpt", "mm_v3_diffusers.safetensors", "mm3")])
def test_tiny_single_file_and_motion_module(files, base, mm, ref_mm):
    d = files["dir"]
    m = loaders.load_animatediff(str(d / base), str(d / mm), config_root=files["root"])
    unet, vae, text = files["sd"]
    assert same(m.unet, unet) and same(m.unet, files[ref_mm]) and same(m.vae.vae, vae) and same(m.text.model, text)
    assert m.family == "animatediff" and m.schedule.final == "zero" and m.max_frames == 32   # official: σ = 0 last
    assert next(m.unet.parameters()).device.type == "cpu"      # waits on the offload device
    (lat,) = CVK_TextToVideo().generate(m, **T2V)
    (img,) = CVK_DecodeVideo().decode(m, lat, 8)
    assert img.shape == (3, 64, 64, 3) and torch.isfinite(img).all()


def test_motion_table_length_comes_from_the_file(files, tmp_path):
    """A v1-style module (24-frame positional table) gets a 24-frame adapter."""
    path = str(tmp_path / "mm_v1.safetensors")
    tf.save({k: v for k, v in tf.tiny_motion_adapter(False, motion_max_seq_length=24).state_dict().items()}, path)
    m = loaders.load_animatediff(str(files["dir"] / "sd.safetensors"), path, config_root=files["root"])
    assert m.max_frames == 24


def test_model_folders_through_the_node(tmp_path, monkeypatch):
    """diffusers folders found in $CVK_MODELS_DIR/diffusers: an SD1.5 folder with its own motion_adapter/,
    the same with a motion module from animatediff_models, and a ModelScope folder."""
    monkeypatch.setenv("CVK_MODELS_DIR", str(tmp_path))
    unet, _, _, adapter = tf.write_sd_folder(str(tmp_path / "diffusers" / "tiny_sd"), motion_adapter_mid_block=False)
    ms_unet, _, _ = tf.write_modelscope_folder(str(tmp_path / "diffusers" / "tiny_zeroscope"))
    os.makedirs(tmp_path / "animatediff_models")
    mm = tf.write_motion_module(str(tmp_path / "animatediff_models" / "mm.ckpt"), mid_block=True)
    spec = CVK_VideoModelLoader.INPUT_TYPES()
    assert {"diffusers/tiny_sd", "diffusers/tiny_zeroscope"} <= set(spec["required"]["model_name"][0])
    assert spec["optional"]["motion_module"][0] == ["none", "mm.ckpt"]
    (a,) = CVK_VideoModelLoader().load("diffusers/tiny_sd")
    (b,) = CVK_VideoModelLoader().load("diffusers/tiny_sd", "mm.ckpt")
    (c,) = CVK_VideoModelLoader().load("diffusers/tiny_zeroscope")
    assert same(a.unet, unet) and same(a.unet, adapter) and same(b.unet, mm) and same(c.unet, ms_unet)
    groups = {m.norm.num_groups for m in a.unet.modules() if type(m).__name__ == "AnimateDiffTransformer3D"}
    assert groups == {adapter.config.motion_norm_num_groups} == {32}     # motion_adapter/config.json's, not the UNet's 8
    assert a.alphas_cumprod[-1] == b.alphas_cumprod[-1]       # AnimateDiff's linear table, not the folder's
    assert c.family == "modelscope" and not torch.equal(c.alphas_cumprod, a.alphas_cumprod)   # its own table
    for model in (b, c):
        (lat,) = CVK_TextToVideo().generate(model, **T2V)
        assert CVK_DecodeVideo().decode(model, lat, 8)[0].shape == (3, 64, 64, 3)


# ---------------------------------------------------------------- wrong files

@pytest.fixture
def models_dir(files, tmp_path, monkeypatch):
    monkeypatch.setenv("CVK_MODELS_DIR", str(tmp_path))
    for sub in ("checkpoints", "animatediff_models", "diffusers"):
        os.makedirs(tmp_path / sub)
    return tmp_path


def node_error(*args):
    with pytest.raises(CVKInputError) as e:
        CVK_VideoModelLoader().load(*args)
    return str(e.value)


def test_motion_module_given_as_base_and_base_as_motion_module(files, models_dir):
    import shutil
    shutil.copy(files["dir"] / "mm_v2.ckpt", models_dir / "checkpoints" / "mm_v2.ckpt")
    shutil.copy(files["dir"] / "sd.safetensors", models_dir / "animatediff_models" / "sd.safetensors")
    msg = node_error("checkpoints/mm_v2.ckpt", "none")
    assert msg.startswith("CVK_VideoModelLoader: input 'model_name' got 'checkpoints/mm_v2.ckpt': 'mm_v2.ckpt' is an")
    assert "is an AnimateDiff motion module, not a base model" in msg
    msg = node_error("checkpoints/mm_v2.ckpt", "sd.safetensors")
    assert msg.startswith("CVK_VideoModelLoader: input 'model_name' got 'checkpoints/mm_v2.ckpt'")
    assert "is an AnimateDiff motion module, not a base model" in msg
    with pytest.raises(CheckpointError, match="is a full SD checkpoint, not a motion module") as e:
        loaders.load_animatediff(str(files["dir"] / "sd.safetensors"), str(models_dir / "animatediff_models" / "sd.safetensors"),
                                 config_root=files["root"])
    assert e.value.role == "motion_module"


@pytest.mark.parametrize("name", ["sd.safetensors", "sd.ckpt"])
def test_truncated_file(files, tmp_path, name):
    data = (files["dir"] / name).read_bytes()
    (tmp_path / name).write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=f"'{name}' could not be read.*truncated"):
        read_state_dict(str(tmp_path / name))


def test_missing_and_unexpected_keys_are_named(files, tmp_path):
    sd = read_state_dict(str(files["dir"] / "sd.safetensors"))
    del sd["model.diffusion_model.input_blocks.1.0.in_layers.0.weight"]
    sd["model.diffusion_model.lora_unet_foo.weight"] = torch.zeros(1)
    tf.save(sd, str(tmp_path / "broken.safetensors"))
    with pytest.raises(CheckpointError) as e:
        loaders.load_animatediff(str(tmp_path / "broken.safetensors"), str(files["dir"] / "mm_v2.ckpt"), config_root=files["root"])
    msg = str(e.value)
    assert "'broken.safetensors' UNet: the file does not match the model" in msg
    assert "1 missing keys: down_blocks.0.resnets.0.norm1.weight" in msg and "1 unexpected keys: lora_unet_foo.weight" in msg
    sd = read_state_dict(str(files["dir"] / "sd.safetensors"))
    sd["ema_decay"] = torch.zeros(1)
    tf.save(sd, str(tmp_path / "stray.safetensors"))
    with pytest.raises(CheckpointError, match="1 unexpected keys outside the UNet, VAE and text encoder: ema_decay"):
        loaders.load_animatediff(str(tmp_path / "stray.safetensors"), str(files["dir"] / "mm_v2.ckpt"), config_root=files["root"])


def test_ignored_parts_are_not_read(files, tmp_path):
    """An SD file with an EMA copy loads; the EMA tensors are skipped at read time (never materialised)."""
    sd = read_state_dict(str(files["dir"] / "sd.safetensors"))
    sd.update({"model_ema." + k[len("model.diffusion_model."):].replace(".", ""): v * 1.5 for k, v in list(sd.items())
               if k.startswith("model.diffusion_model.")})
    sd["model_ema.num_updates"] = torch.tensor(5)
    tf.save(sd, str(tmp_path / "ema.safetensors"))
    got = read_state_dict(str(tmp_path / "ema.safetensors"), skip=convert.SD_IGNORED)
    assert not any(k.startswith("model_ema.") for k in got) and len(got) < len(sd)
    m = loaders.load_animatediff(str(tmp_path / "ema.safetensors"), str(files["dir"] / "mm_v2.ckpt"), config_root=files["root"])
    assert same(m.unet, files["sd"][0])


class Payload:
    """Any class outside torch's allow-list: unpickling it would run code."""


def test_pickle_that_needs_code_execution_is_refused(tmp_path):
    path = str(tmp_path / "evil.ckpt")
    torch.save({"state_dict": {"w": torch.zeros(2)}, "config": Payload()}, path)
    with pytest.raises(CheckpointError, match="'evil.ckpt' needs code execution to unpickle, which this pack refuses"):
        read_state_dict(path)
    with pytest.raises(CheckpointError, match="unsupported file type"):
        (tmp_path / "model.gguf").write_bytes(b"GGUF")
        read_state_dict(str(tmp_path / "model.gguf"))


def test_sdxl_and_sd2_files_are_told_apart(tmp_path):
    tf.save({"conditioner.embedders.0.x": torch.zeros(1), convert.UNET_PREFIX + "input_blocks.4.1.proj_in.weight": torch.zeros(1),
             "first_stage_model.y": torch.zeros(1)}, str(tmp_path / "xl.safetensors"))
    with pytest.raises(CheckpointError, match="looks like an SDXL checkpoint"):
        loaders.detect_sd_file(read_shapes(str(tmp_path / "xl.safetensors")), "xl.safetensors")
    sd2 = {convert.UNET_PREFIX + "output_blocks.5.1.transformer_blocks.0.attn2.to_k.weight": (640, 1024)}
    with pytest.raises(CheckpointError, match="cross-attention width 1024"):
        loaders.detect_sd_file(sd2, "sd2.safetensors")


def test_node_input_errors(files, models_dir):
    import shutil
    tf.write_modelscope_folder(str(models_dir / "diffusers" / "zs"))
    shutil.copy(files["dir"] / "mm_v2.ckpt", models_dir / "animatediff_models" / "mm.ckpt")
    assert "input 'motion_module' got 'mm.ckpt'; expected 'none': zs is a ModelScope" in node_error("diffusers/zs", "mm.ckpt")
    assert "input 'motion_module' got 'mm.ckpt'; expected 'none' for the tiny demo" in node_error(
        "tiny-animatediff (untrained demo)", "mm.ckpt")
    assert "input 'attention' got 'xformers': xformers needs a CUDA GPU and this model runs on cpu; choose sdpa." in node_error(
        "diffusers/zs", "none", "auto", "xformers")
    assert "input 'precision' got 'fp16': fp16 does not run on the CPU" in node_error("diffusers/zs", "none", "fp16")
    tf.write_sd_folder(str(models_dir / "diffusers" / "sdx"))
    assert ("input 'motion_module' got 'none': 'sdx' is an SD1.5 base: AnimateDiff also needs a motion module"
            in node_error("diffusers/sdx", "none"))
    msg = node_error("checkpoints/nothing.safetensors", "none")
    assert "'nothing.safetensors' not found. Put it in models/checkpoints/. Searched:" in msg
    assert "input 'motion_module' got 'gone.ckpt'" in node_error("diffusers/zs", "gone.ckpt")


def test_single_file_without_a_tokenizer_says_which_files(files, tmp_path):
    import shutil
    root = shutil.copytree(files["root"], tmp_path / "configs")
    shutil.rmtree(root / "sd15" / "tokenizer")
    with pytest.raises(CheckpointError, match=r"no CLIP tokenizer found.*comfy/sd1_tokenizer.*vocab.json and merges.txt"):
        loaders.load_animatediff(str(files["dir"] / "sd.safetensors"), str(files["dir"] / "mm_v2.ckpt"), config_root=str(root))


# ---------------------------------------------------------------- never the hub

def test_no_loader_reaches_a_hub(files, tmp_path, monkeypatch):
    """HF_HUB_OFFLINE unset, the hub client's request functions and every socket connection patched to fail."""
    import huggingface_hub
    import huggingface_hub.file_download as fd
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    calls = []

    def refuse(*a, **k):
        calls.append(a[:1])
        raise AssertionError("network access attempted")
    for mod, name in ((huggingface_hub, "hf_hub_download"), (huggingface_hub, "snapshot_download"),
                      (fd, "hf_hub_download"), (fd, "http_get"), (fd, "get_hf_file_metadata")):
        if hasattr(mod, name):
            monkeypatch.setattr(mod, name, refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    tf.write_sd_folder(str(tmp_path / "sd"), motion_adapter_mid_block=True)
    tf.write_modelscope_folder(str(tmp_path / "zs"))
    loaders.load_animatediff(str(files["dir"] / "sd.safetensors"), str(files["dir"] / "mm_v2.ckpt"), config_root=files["root"])
    loaders.load_animatediff(str(tmp_path / "sd"), None)
    loaders.load_modelscope(str(tmp_path / "zs"))
    assert calls == []


def test_precision_rules():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert loaders.resolve_precision("auto", cpu) == loaders.Precision(torch.float32, torch.float32, torch.float32)
    assert loaders.resolve_precision("bf16", cpu).unet == torch.bfloat16
    assert loaders.resolve_precision("fp16", cuda) == loaders.Precision(torch.float16, torch.float16, torch.float16)
    with pytest.raises(ValueError, match="fp16 does not run on the CPU"):
        loaders.resolve_precision("fp16", cpu)
    # auto follows each part's device (ComfyUI's --lowvram runs text encoders on the CPU, --cpu-vae the VAE)
    assert loaders.resolve_precision("auto", cuda, cpu, cpu) == loaders.Precision(torch.float16, torch.float32,
                                                                                   torch.float32)
    assert loaders.resolve_precision("fp16", cuda, cpu, cpu) == loaders.Precision(torch.float16, torch.float16,
                                                                                   torch.float16)


def test_strict_match_reshapes_only_linear_vs_1x1_conv():
    lin = torch.nn.Linear(4, 4, bias=False)
    got = match_state_dict(lin, {"weight": torch.ones(4, 4, 1, 1)}, "t")
    assert got["weight"].shape == (4, 4)
    conv = torch.nn.Conv2d(3, 2, 1, bias=False)
    assert match_state_dict(conv, {"weight": torch.ones(2, 3)}, "t")["weight"].shape == (2, 3, 1, 1)
    with pytest.raises(CheckpointError, match=r"weight \(4, 2, 1, 1\) vs model \(4, 4\)"):
        match_state_dict(lin, {"weight": torch.ones(4, 2, 1, 1)}, "t")
    # same number of elements, but transposed or a different layout: never reshaped
    with pytest.raises(CheckpointError, match=r"weight \(2, 6\) vs model \(6, 2\)"):
        match_state_dict(torch.nn.Linear(2, 6, bias=False), {"weight": torch.ones(2, 6)}, "t")
    with pytest.raises(CheckpointError, match=r"weight \(3, 2, 1, 1\) vs model \(2, 3, 1, 1\)"):
        match_state_dict(conv, {"weight": torch.ones(3, 2, 1, 1)}, "t")


def test_saved_animatediff_pipeline_folder(tmp_path, monkeypatch):
    """AnimateDiffPipeline.save_pretrained writes unet/ as a UNetMotionModel: it loads whole, strictly."""
    from diffusers import UNetMotionModel
    monkeypatch.setenv("CVK_MODELS_DIR", str(tmp_path))
    unet2d, vae, text = tf.tiny_sd_models()
    whole = UNetMotionModel.from_unet2d(unet2d, tf.tiny_motion_adapter(True)).eval()
    tf._write_folder(str(tmp_path / "diffusers" / "ad"), whole, vae, text, "AnimateDiffPipeline")
    (m,) = CVK_VideoModelLoader().load("diffusers/ad")
    assert type(m.unet).__name__ == "UNetMotionModel" and same(m.unet, whole, skip="\0") and m.max_frames == 32
    assert {type(mod.norm).__name__ for mod in m.unet.modules()
            if type(mod).__name__ == "AnimateDiffTransformer3D"} == {"FrameGroupNorm"}    # per frame, as the original
    os.makedirs(tmp_path / "animatediff_models")
    tf.write_motion_module(str(tmp_path / "animatediff_models" / "mm.ckpt"))
    assert "input 'motion_module' got 'mm.ckpt': 'ad' is a saved AnimateDiff pipeline with its own motion modules" in \
        node_error("diffusers/ad", "mm.ckpt")


def test_transformers_weight_names_and_fp16_variants(tmp_path):
    unet, _, text = tf.write_modelscope_folder(str(tmp_path / "zs"))
    te = tmp_path / "zs" / "text_encoder"
    torch.save(read_state_dict(str(te / "model.safetensors")), str(te / "pytorch_model.bin"))
    os.remove(te / "model.safetensors")
    ud = tmp_path / "zs" / "unet"
    os.rename(ud / "diffusion_pytorch_model.safetensors", ud / "diffusion_pytorch_model.fp16.safetensors")
    m = loaders.load_modelscope(str(tmp_path / "zs"))
    assert same(m.text.model, text) and same(m.unet, unet)
    os.remove(te / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="no weights in .*text_encoder.*model.safetensors.*pytorch_model.bin"):
        loaders.load_modelscope(str(tmp_path / "zs"))


def test_scheduler_options_that_are_not_implemented_are_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("CVK_MODELS_DIR", str(tmp_path))
    tf.write_modelscope_folder(str(tmp_path / "diffusers" / "zs"))
    path = tmp_path / "diffusers" / "zs" / "scheduler" / "scheduler_config.json"
    cfg = json.loads(path.read_text())
    path.write_text(json.dumps(dict(cfg, rescale_betas_zero_snr=True)))
    assert "input 'model_name' got 'diffusers/zs': scheduler options not supported yet: rescale_betas_zero_snr" in \
        node_error("diffusers/zs")
    path.write_text(json.dumps(dict(cfg, beta_schedule="squaredcos_cap_v2")))
    assert "input 'model_name' got 'diffusers/zs': scheduler: beta_schedule must be one of" in node_error("diffusers/zs")
    path.write_text("{")
    assert "is not valid JSON" in node_error("diffusers/zs")


def test_motion_module_that_does_not_fit_the_base(files, tmp_path):
    path = str(tmp_path / "mm_2level.safetensors")
    tf.save(tf.tiny_motion_adapter(False, block_out_channels=[32, 64]).state_dict(), path)
    with pytest.raises(CheckpointError, match="motion module 'mm_2level.safetensors' does not fit the base UNet") as e:
        loaders.load_animatediff(str(files["dir"] / "sd.safetensors"), path, config_root=files["root"])
    assert e.value.role == "motion_module"


def test_bf16_on_cpu_runs(tmp_path):
    """An explicit precision reaches every part; sampling state stays float32 between steps."""
    tf.write_modelscope_folder(str(tmp_path / "zs"))
    m = loaders.load_modelscope(str(tmp_path / "zs"), precision="bf16", device=torch.device("cpu"))
    assert {p.dtype for p in m.unet.parameters()} == {torch.bfloat16}
    assert next(m.vae.vae.parameters()).dtype == torch.bfloat16 and next(m.text.model.parameters()).dtype == torch.bfloat16
    (lat,) = CVK_TextToVideo().generate(m, **T2V)
    assert lat["samples"].dtype == torch.float32
    (img,) = CVK_DecodeVideo().decode(m, lat, 8)
    assert img.dtype == torch.float32 and torch.isfinite(img).all()


def test_missing_motion_module_is_reported_before_weights_are_read(files, monkeypatch):
    def no_reading(path):
        raise AssertionError(f"read {path}")
    monkeypatch.setattr(loaders, "read_state_dict", no_reading)
    with pytest.raises(CheckpointError, match="is an SD1.5 base: AnimateDiff also needs a motion module") as e:
        loaders.load_animatediff(str(files["dir"] / "sd.safetensors"), None, config_root=files["root"])
    assert e.value.role == "motion_module"
