"""Anchor scorers for I4VGen's selection: the tiny CLIP, torch preprocessing, strict CLIP loading (a
transformers folder and a single HF-layout file, written here from the tiny model), the shipped ViT-L/14
config, the external-scores parser and pick index, and the loader node."""
import json
import os

import pytest
import torch
from safetensors.torch import save_file

from consistent_video_kit import host
from consistent_video_kit.models import scorers as S
from consistent_video_kit.models.checkpoint import CheckpointError
from consistent_video_kit.nodes import scorers as N
from consistent_video_kit.nodes.common import CVKInputError

PROMPTS = ("a cat", "a dog on the moon", "zzzz", "a red panda walking through a bamboo forest")


def images(n, h=40, w=56, seed=0):
    return torch.rand(n, h, w, 3, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def tiny():
    return S.tiny_clip_scorer()


def write_tokenizer(scorer, folder):
    scorer.tokenizer.save_pretrained(str(folder))


def write_folder(scorer, folder):
    """A transformers CLIP folder as save_pretrained writes it: config.json, model.safetensors, tokenizer."""
    scorer.model.save_pretrained(str(folder))
    write_tokenizer(scorer, folder)
    return str(folder)


def hf_state_dict(scorer, position_ids=False):
    """The model's tensors under their HF transformers names (cloned: a file of its own), optionally with the
    ``*.embeddings.position_ids`` buffers older transformers versions saved."""
    sd = {k: v.detach().clone().contiguous() for k, v in scorer.model.state_dict().items()}
    if position_ids:
        cfg = scorer.model.config
        sd["text_model.embeddings.position_ids"] = torch.arange(cfg.text_config.max_position_embeddings)[None]
        n = (cfg.vision_config.image_size // cfg.vision_config.patch_size) ** 2 + 1
        sd["vision_model.embeddings.position_ids"] = torch.arange(n)[None]
    return sd


def config_dir(scorer, folder, tokenizer=True):
    """A config folder like models/configs/clip_vit_l14, for the tiny model (optionally with a tokenizer)."""
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(scorer.model.config.to_dict(), f)
    if tokenizer:
        write_tokenizer(scorer, folder)
    return str(folder)


# ---------------------------------------------------------------- the tiny scorer

def test_tiny_scores_are_finite_deterministic_and_per_image(tiny):
    x = images(6)
    s = tiny.score("a cat", x)
    assert s.shape == (6,) and s.dtype == torch.float32 and s.device.type == "cpu"
    assert torch.isfinite(s).all()
    assert s.grad_fn is None and not s.requires_grad and not torch.is_inference(s)
    assert torch.equal(s, tiny.score("a cat", x.clone()))           # same inputs, same scores, bit for bit
    assert len(set(s.tolist())) == 6                                 # different images, different scores
    # a candidate's score does not depend on the others (up to batch-size-dependent float rounding)
    torch.testing.assert_close(tiny.score("a cat", x[2:4]), s[2:4], atol=1e-4, rtol=0)
    # cosine × 100: within ±100
    assert s.abs().max() <= 100


def test_tiny_scores_depend_on_the_prompt(tiny):
    x = images(6)
    scores = {p: tiny.score(p, x) for p in PROMPTS}
    assert not torch.allclose(scores[PROMPTS[0]], scores[PROMPTS[1]])
    rankings = {tuple(s.argsort(descending=True).tolist()) for s in scores.values()}
    assert len(rankings) > 1, "the ranking of the candidates never changes with the prompt"


def test_tiny_scorer_is_built_once_untrained_and_labelled(tiny):
    assert S.tiny_clip_scorer() is tiny
    assert tiny.name == S.TINY_CLIP_NAME == "tiny CLIP (untrained demo)" and tiny.untrained
    cfg = tiny.model.config
    assert (cfg.vision_config.hidden_size, cfg.vision_config.image_size, cfg.vision_config.patch_size,
            cfg.vision_config.num_hidden_layers) == (32, 32, 8, 2)
    assert (cfg.text_config.hidden_size, cfg.text_config.num_hidden_layers, cfg.text_config.max_position_embeddings,
            cfg.projection_dim) == (32, 2, 77, 16)
    assert cfg.text_config.vocab_size == len(tiny.tokenizer) == 514
    assert not any(p.requires_grad for p in tiny.model.parameters())


def test_scoring_runs_without_autograd(tiny):
    seen = []
    hook = tiny.model.vision_model.register_forward_hook(
        lambda *a: seen.append((torch.is_grad_enabled(), torch.is_inference_mode_enabled())))
    try:
        with torch.enable_grad():
            tiny.score("a cat", images(3))
    finally:
        hook.remove()
    assert seen == [(False, True)]


def test_images_are_scored_in_batches(tiny, monkeypatch):
    x = images(5)
    whole = tiny.score("a cat", x)
    calls = []
    hook = tiny.model.vision_model.register_forward_hook(lambda m, a, kw=None: calls.append(1))
    monkeypatch.setattr(tiny, "batch_size", 2)
    try:
        batched = tiny.score("a cat", x)
    finally:
        hook.remove()
    assert len(calls) == 3                                          # 2 + 2 + 1
    torch.testing.assert_close(batched, whole, atol=1e-4, rtol=0)


@pytest.mark.parametrize("bad,match", [
    (torch.rand(0, 8, 8, 3), "empty"),
    (torch.rand(2, 8, 8, 4), r"\[N, height, width, 3\]"),
    (torch.rand(8, 8, 3), r"\[N, height, width, 3\]"),
    ("image.png", r"\[N, height, width, 3\]"),
])
def test_bad_image_batches_are_refused(tiny, bad, match):
    with pytest.raises(ValueError, match=match):
        tiny.score("a cat", bad)


def reference_clip():
    """A tiny random transformers ``CLIPModel`` built here from its own config (not the pack's tiny one: other
    sizes, 48 px, patch 16, projection 24), every parameter perturbed so the layer norms are not the identity;
    the pack's character tokenizer (its vocabulary size and special ids in the config)."""
    from transformers import CLIPConfig, CLIPModel
    from consistent_video_kit.models.tiny import tiny_tokenizer
    tok = tiny_tokenizer()
    text = dict(vocab_size=len(tok), hidden_size=24, intermediate_size=48, num_attention_heads=2,
                num_hidden_layers=2, max_position_embeddings=77, bos_token_id=tok.bos_token_id,
                eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    vision = dict(hidden_size=24, intermediate_size=48, num_attention_heads=2, num_hidden_layers=2, image_size=48,
                  patch_size=16)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(77)
        model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=24))
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.2 * torch.randn_like(p))
    return model.eval(), tok


def features(out):
    """``get_*_features`` returns the projected tensor (transformers 4) or an output whose pooler_output it is (5)."""
    return out if torch.is_tensor(out) else out.pooler_output


def test_clip_score_is_transformers_clipmodel_cosine_times_100():
    """CLIP score = 100·cos(CLIPModel.get_image_features, CLIPModel.get_text_features) on the same pixels. Images
    at the model's size need no resize or crop: the scorer's pixels are (image − mean)/std, computed here; the
    prompt is tokenized here without padding (the text tower is causal and pools at the first end token)."""
    model, tok = reference_clip()
    scorer = S.CLIPScorer(model, tok, 48)
    x = images(5, 48, 48, seed=3)
    pixels = (x.permute(0, 3, 1, 2) - torch.tensor(S.CLIP_MEAN).view(1, 3, 1, 1)) / torch.tensor(S.CLIP_STD).view(1, 3, 1, 1)
    for prompt in PROMPTS:
        ids = tok([prompt], return_tensors="pt")
        assert ids["input_ids"][0, -1] == tok.eos_token_id and ids["input_ids"].shape[1] < 77
        with torch.no_grad():
            img = features(model.get_image_features(pixel_values=pixels))
            txt = features(model.get_text_features(input_ids=ids["input_ids"], attention_mask=ids["attention_mask"]))
        want = 100 * torch.nn.functional.cosine_similarity(img, txt, dim=-1)
        got = scorer.score(prompt, x)
        torch.testing.assert_close(got, want, atol=1e-4, rtol=0)
    assert want.std() > 1.0                                  # the candidates' scores are told apart


# ---------------------------------------------------------------- preprocessing

def test_resized_size_keeps_the_aspect_ratio():
    assert S.resized_size(512, 512, 224) == (224, 224)
    assert S.resized_size(512, 768, 224) == (224, 336)
    assert S.resized_size(768, 512, 224) == (336, 224)
    assert S.resized_size(480, 854, 224) == (224, 398)   # int(224 · 854 / 480) = int(398.5) = 398, truncated


@pytest.mark.parametrize("h,w", [(48, 80), (80, 48), (32, 32), (20, 30)])
def test_preprocess_constant_colour_gives_the_normalised_value(h, w):
    colour = torch.tensor([0.2, 0.5, 0.9])
    x = colour.view(1, 1, 1, 3).expand(2, h, w, 3)
    out = S.clip_preprocess(x, 32)
    assert out.shape == (2, 3, 32, 32) and out.dtype == torch.float32
    want = (colour - torch.tensor(S.CLIP_MEAN)) / torch.tensor(S.CLIP_STD)
    torch.testing.assert_close(out, want.view(1, 3, 1, 1).expand(2, 3, 32, 32), atol=1e-5, rtol=0)


def test_preprocess_crops_the_centre():
    # short side already at the size: no resize, so the crop is exact; columns hold their own index
    cols = torch.arange(96, dtype=torch.float32) / 96
    x = cols.view(1, 1, 96, 1).expand(1, 32, 96, 3)
    out = S.clip_preprocess(x, 32, mean=(0, 0, 0), std=(1, 1, 1))
    assert torch.equal(out[0, 0, 0], cols[32:64])                   # (96 − 32) // 2 = 32
    rows = S.clip_preprocess(x.transpose(1, 2), 32, mean=(0, 0, 0), std=(1, 1, 1))
    assert torch.equal(rows[0, 0, :, 0], cols[32:64])


def test_preprocess_matches_transformers_pil_processor_when_downscaling():
    """The PIL image processor (CLIP's reference pipeline; no torchvision needed) on smooth uint8 pictures
    (picture-like, not pixel noise): equal up to its 8-bit rounding, one step being 1/255/std ≈ 0.015 in
    normalised units. (On pixel noise PIL's clamping between its two 8-bit passes differs more.)"""
    import torch.nn.functional as F
    from PIL import Image
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil
    proc = CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    for h, w in ((96, 160), (160, 96), (64, 64), (512, 512)):
        small = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(h + w))
        smooth = F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)
        u8 = (smooth * 255).round().to(torch.uint8).permute(0, 2, 3, 1)
        ref = proc([Image.fromarray(a.numpy()) for a in u8], return_tensors="pt")["pixel_values"]
        ours = S.clip_preprocess(u8.float() / 255, 32)
        assert ours.shape == ref.shape == (2, 3, 32, 32)
        assert (ours - ref).abs().max() < 0.02
        assert (ours - ref).abs().mean() < 0.005
    # a wrong pipeline (no antialiasing, or bilinear) is clearly further off than that
    x = u8.float().permute(0, 3, 1, 2) / 255
    plain = F.interpolate(x, size=(32, 32), mode="bicubic", antialias=False, align_corners=False)
    wrong = (plain - torch.tensor(S.CLIP_MEAN).view(1, 3, 1, 1)) / torch.tensor(S.CLIP_STD).view(1, 3, 1, 1)
    assert (wrong - ref).abs().max() > 0.05


# ---------------------------------------------------------------- loading CLIP files

def test_transformers_folder_loads_strictly_and_scores_the_same(tiny, tmp_path):
    folder = write_folder(tiny, tmp_path / "clip")
    loaded = S.load_clip_scorer(folder)
    assert loaded is not tiny and loaded.model is not tiny.model
    assert not any(p.is_meta for p in loaded.model.parameters())
    for (k, a), b in zip(tiny.model.state_dict().items(), loaded.model.state_dict().values()):
        assert torch.equal(a, b), k
    assert loaded.image_size == 32 and loaded.mean == S.CLIP_MEAN and loaded.std == S.CLIP_STD
    x = images(4)
    for p in PROMPTS[:2]:
        torch.testing.assert_close(loaded.score(p, x), tiny.score(p, x), atol=1e-5, rtol=0)


def test_folder_preprocessor_config_sets_mean_and_std(tiny, tmp_path):
    folder = write_folder(tiny, tmp_path / "clip")
    with open(os.path.join(folder, "preprocessor_config.json"), "w") as f:
        json.dump({"image_mean": [0.5, 0.5, 0.5], "image_std": [0.25, 0.25, 0.25]}, f)
    loaded = S.load_clip_scorer(folder)
    assert loaded.mean == (0.5, 0.5, 0.5) and loaded.std == (0.25, 0.25, 0.25)
    assert not torch.allclose(loaded.score("a cat", images(3)), tiny.score("a cat", images(3)))


def test_folder_of_a_text_tower_is_refused(tiny, tmp_path):
    from transformers import CLIPTextModel
    folder = tmp_path / "text_only"
    CLIPTextModel(tiny.model.config.text_config).save_pretrained(str(folder))
    with pytest.raises(CheckpointError, match="model_type is 'clip_text_model', not 'clip'"):
        S.load_clip_scorer(str(folder))


@pytest.mark.parametrize("position_ids", [True, False])
def test_single_hf_layout_file_loads_with_a_config_dir(tiny, tmp_path, position_ids):
    path = str(tmp_path / "clip.safetensors")
    save_file(hf_state_dict(tiny, position_ids), path)
    loaded = S.load_clip_scorer(path, config_dir=config_dir(tiny, tmp_path / "cfg"))
    x = images(4)
    torch.testing.assert_close(loaded.score("a cat", x), tiny.score("a cat", x), atol=1e-5, rtol=0)
    assert loaded.name == "CLIP clip.safetensors"


def test_single_file_missing_key_is_named(tiny, tmp_path):
    sd = hf_state_dict(tiny)
    del sd["visual_projection.weight"]
    sd["vision_model.extra.weight"] = torch.zeros(2)
    path = str(tmp_path / "clip.safetensors")
    save_file(sd, path)
    with pytest.raises(CheckpointError) as e:
        S.load_clip_scorer(path, config_dir=config_dir(tiny, tmp_path / "cfg"))
    assert "1 missing keys: visual_projection.weight" in str(e.value)
    assert "1 unexpected keys: vision_model.extra.weight" in str(e.value)


@pytest.fixture
def comfy_tokenizer(tiny, tmp_path, monkeypatch):
    """A stand-in for ComfyUI's comfy/sd1_tokenizer, where single files read with the shipped ViT-L/14 config
    get their tokenizer (the tokenizer is resolved before the weights are read)."""
    folder = config_dir(tiny, tmp_path / "sd1_tokenizer")
    monkeypatch.setattr(host, "comfy_resource_dir", lambda *parts: folder if parts == ("sd1_tokenizer",) else None)
    return folder


def test_single_file_against_the_shipped_vit_l14_config_names_shape_mismatches(tiny, tmp_path, comfy_tokenizer):
    path = str(tmp_path / "clip.safetensors")
    save_file(hf_state_dict(tiny), path)
    with pytest.raises(CheckpointError, match=r"shape mismatches: .*\(514, 32\) vs model \(49408, 768\)"):
        S.load_clip_scorer(path)


@pytest.mark.parametrize("keys,match", [
    (["text_model.embeddings.token_embedding.weight"], "only a CLIP text encoder"),
    (["vision_model.embeddings.class_embedding"], "only a CLIP vision tower"),
    (["visual.transformer.resblocks.0.attn.in_proj_weight", "token_embedding.weight"], "OpenAI / open_clip layout"),
    (["model.diffusion_model.out.0.weight"], "Stable Diffusion checkpoint"),
    (["some.weight"], "not a CLIP model"),
])
def test_single_files_of_other_kinds_are_refused(tmp_path, keys, match):
    path = str(tmp_path / "other.safetensors")
    save_file({k: torch.zeros(1) for k in keys}, path)
    with pytest.raises(CheckpointError, match=match):
        S.load_clip_scorer(path)


def test_single_file_without_a_tokenizer_says_which_files_are_needed(tiny, tmp_path, monkeypatch):
    monkeypatch.setattr(host, "comfy_resource_dir", lambda *parts: None)   # no ComfyUI here either way
    path = str(tmp_path / "clip.safetensors")
    save_file(hf_state_dict(tiny), path)
    cfg = config_dir(tiny, tmp_path / "cfg", tokenizer=False)
    with pytest.raises(CheckpointError, match=r"vocab.json and merges.txt, or tokenizer.json\) in one of:\n  .*cfg"):
        S.load_clip_scorer(path, config_dir=cfg)
    # the shipped config folder has no tokenizer: outside ComfyUI a single file needs one put there
    with pytest.raises(CheckpointError, match=r"no CLIP tokenizer found.*in one of:\n  .*clip_vit_l14$"):
        S.load_clip_scorer(path)


def test_single_file_tokenizer_falls_back_to_comfyuis_sd1_tokenizer(tiny, tmp_path, monkeypatch):
    comfy_tok = config_dir(tiny, tmp_path / "sd1_tokenizer")   # stands in for comfy/sd1_tokenizer
    monkeypatch.setattr(host, "comfy_resource_dir", lambda *parts: comfy_tok if parts == ("sd1_tokenizer",) else None)
    path = str(tmp_path / "clip.safetensors")
    save_file(hf_state_dict(tiny), path)
    loaded = S.load_clip_scorer(path, config_dir=config_dir(tiny, tmp_path / "cfg", tokenizer=False))
    torch.testing.assert_close(loaded.score("a cat", images(2)), tiny.score("a cat", images(2)), atol=1e-5, rtol=0)


def test_shipped_vit_l14_config_builds_on_meta_with_the_openai_parameter_count():
    cfg = S.read_json(os.path.join(S.CLIP_L14_CONFIG, "config.json"))
    model = S.build_clip(cfg)
    assert all(p.is_meta for p in model.parameters())
    n = sum(p.numel() for p in model.parameters())
    # openai/clip-vit-large-patch14 from its architecture: text 12 × 768 (vocab 49408, 77 positions),
    # vision 24 × 1024 (patch 14 at 224 px: 256 patches + class token), projections to 768, logit scale
    def block(d, ff):
        return 4 * (d * d + d) + 4 * d + (d * ff + ff) + (ff * d + d)
    text = 49408 * 768 + 77 * 768 + 12 * block(768, 3072) + 2 * 768
    vision = 3 * 14 * 14 * 1024 + 1024 + 257 * 1024 + 2 * 1024 + 24 * block(1024, 4096) + 2 * 1024
    assert (text, vision) == (123_060_480, 303_179_776)
    assert n == text + vision + 1024 * 768 + 768 * 768 + 1 == 427_616_513
    assert sum(p.numel() for p in model.text_model.parameters()) == text
    assert sum(p.numel() for p in model.vision_model.parameters()) == vision
    keys = model.state_dict().keys()
    for k in ("text_model.encoder.layers.0.self_attn.q_proj.weight", "vision_model.embeddings.patch_embedding.weight",
              "visual_projection.weight", "text_projection.weight", "logit_scale"):
        assert k in keys
    tc, vc = model.config.text_config, model.config.vision_config
    assert (tc.hidden_act, vc.hidden_act, vc.image_size, vc.patch_size) == ("quick_gelu", "quick_gelu", 224, 14)
    assert model.config.logit_scale_init_value == pytest.approx(2.6592)


# ---------------------------------------------------------------- external scores and pick index

def test_parse_scores():
    torch.testing.assert_close(S.parse_scores("0.1, 2, -3e-1"), torch.tensor([0.1, 2.0, -0.3]))
    torch.testing.assert_close(S.parse_scores(" 1 ,2,\n3,"), torch.tensor([1.0, 2.0, 3.0]))
    assert S.parse_scores("5", count=1).tolist() == [5.0]
    scores = torch.tensor([21.25, -3.5, 1e-3, 30.0])
    torch.testing.assert_close(S.parse_scores(S.format_scores(scores)), scores)
    assert S.format_scores(scores) == "21.25, -3.5, 0.001, 30"


@pytest.mark.parametrize("text,match", [
    ("0.1, abc, 3", r"score 2 of 3, 'abc', is not a number"),
    ("0.1; 2", r"score 1 of 1, '0.1; 2', is not a number"),
    ("1,,2", r"score 2 of 3 is empty"),
    ("", "no scores given"),
    (" , ", "no scores given|is empty"),
    ("1, nan", r"score 2 of 2, 'nan', is not a finite number"),
    ("inf", "not a finite number"),
])
def test_parse_scores_errors_name_the_entry(text, match):
    with pytest.raises(ValueError, match=match):
        S.parse_scores(text)


def test_parse_scores_count_and_type():
    with pytest.raises(ValueError, match="3 scores given for 4 candidates"):
        S.parse_scores("1, 2, 3", count=4)
    with pytest.raises(ValueError, match="got list"):
        S.parse_scores([1, 2])


def test_best_and_picked_index():
    assert S.best_index(torch.tensor([0.5, 3.0, -1.0, 3.0])) == 1   # first of a tie
    with pytest.raises(ValueError, match="no scores"):
        S.best_index(torch.tensor([]))
    with pytest.raises(ValueError, match="NaN at"):
        S.best_index(torch.tensor([1.0, float("nan")]))
    assert S.check_index(3, 4) == 3
    for bad, match in ((4, r"index 4 is out of range for 4 candidates \(0 to 3\)"), (-1, "out of range"),
                       (1.5, "whole number"), (True, "whole number")):
        with pytest.raises(ValueError, match=match):
            S.check_index(bad, 4)


def test_external_scores_and_pick_index_as_scorers():
    ext = S.ExternalScores("1, 5, 2")
    assert ext.score("ignored", images(3)).tolist() == [1.0, 5.0, 2.0]
    assert S.best_index(ext.score("", images(3))) == 1
    with pytest.raises(ValueError, match="3 scores given for 4 candidates"):
        ext.score("", images(4))
    pick = S.PickIndex(2)
    assert pick.score("", images(4)).tolist() == [0.0, 0.0, 1.0, 0.0]
    with pytest.raises(ValueError, match="index 2 is out of range for 2 candidates"):
        pick.score("", images(2))
    with pytest.raises(ValueError, match="whole number"):
        S.PickIndex(-1)


# ---------------------------------------------------------------- the loader node

@pytest.fixture
def models_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(host.MODELS_DIR_ENV, str(tmp_path))
    (tmp_path / "scorers").mkdir()
    return tmp_path / "scorers"


def test_node_lists_files_and_folders(tiny, models_dir):
    save_file(hf_state_dict(tiny), str(models_dir / "a.safetensors"))
    (models_dir / "sub").mkdir()
    save_file(hf_state_dict(tiny), str(models_dir / "sub" / "b.safetensors"))
    (models_dir / "notes.txt").write_text("x")
    write_folder(tiny, models_dir / "clipdir")
    choices = N.scorer_choices()
    assert choices == ["tiny CLIP (untrained demo)", "tiny ImageReward (untrained demo)", "a.safetensors",
                       "sub/b.safetensors", "clipdir"]
    spec = N.CVK_ScorerLoader.INPUT_TYPES()["required"]["scorer"]
    assert spec[0] == choices and spec[1]["tooltip"]


def test_node_loads_the_tiny_demo_and_a_folder(tiny, models_dir):
    node = N.CVK_ScorerLoader()
    assert node.load("tiny CLIP (untrained demo)") == (tiny,)
    write_folder(tiny, models_dir / "clipdir")
    (scorer,) = node.load("clipdir")
    assert isinstance(scorer, S.CLIPScorer) and scorer.name == "CLIP clipdir"
    torch.testing.assert_close(scorer.score("a cat", images(2)), tiny.score("a cat", images(2)), atol=1e-5, rtol=0)


def test_node_errors_name_the_input(tiny, models_dir, comfy_tokenizer):
    node = N.CVK_ScorerLoader()
    with pytest.raises(CVKInputError, match=r"CVK_ScorerLoader: input 'scorer' got 'nope.safetensors': model "
                                            r"file 'nope.safetensors' not found. Put it in models/scorers/. "
                                            r"Searched:\n  .*scorers"):
        node.load("nope.safetensors")
    save_file(hf_state_dict(tiny), str(models_dir / "tiny.safetensors"))   # read with the shipped ViT-L/14 config
    with pytest.raises(CVKInputError, match=r"input 'scorer' got 'tiny.safetensors': CLIP 'tiny.safetensors': the "
                                            r"file does not match the model\. .*shape mismatches"):
        node.load("tiny.safetensors")
    save_file({"text_model.embeddings.token_embedding.weight": torch.zeros(1)}, str(models_dir / "clip_l.safetensors"))
    with pytest.raises(CVKInputError, match="only a CLIP text encoder"):
        node.load("clip_l.safetensors")


def test_node_mappings():
    assert N.NODE_CLASS_MAPPINGS == {"CVK_ScorerLoader": N.CVK_ScorerLoader}
    assert N.NODE_DISPLAY_NAME_MAPPINGS == {"CVK_ScorerLoader": "Load Anchor Scorer (CVK I4VGen)"}
    cls = N.CVK_ScorerLoader
    assert cls.CATEGORY == "Consistent Video Kit/I4VGen"
    assert cls.RETURN_TYPES == ("CVK_SCORER",) and cls.RETURN_NAMES == ("scorer",)
    assert cls.DESCRIPTION and cls.OUTPUT_TOOLTIPS and cls.FUNCTION == "load"
