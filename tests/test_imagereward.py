"""ImageReward-v1.0 (I4VGen's official anchor selector): strict loading of the released layout (manifest, meta
device) and of tiny files written here under the released names, wrong files and a missing vocabulary, the
35-token prompt and the first token read, the linear head and normalisation against a hand formula, the
torchvision-style crop, the tiny demo, the loader node's listing and the selector's argmax."""
import json
import os

import pytest
import torch

from cvk_testkit import tiny_files as tf
from consistent_video_kit import host
from consistent_video_kit.models import imagereward as IR
from consistent_video_kit.models import scorers as S
from consistent_video_kit.models.checkpoint import CheckpointError
from consistent_video_kit.nodes import scorers as N
from consistent_video_kit.nodes.common import CVKInputError
from consistent_video_kit.nodes.i4vgen import CVK_AnchorSelector
from test_loaders import MANIFESTS, needs_manifests
from test_scorers import PROMPTS, images


@pytest.fixture(scope="module")
def tiny():
    return IR.tiny_imagereward_scorer()


def manifest_sd():
    with open(os.path.join(MANIFESTS, "imagereward_v1.json")) as f:
        shapes = json.load(f)["tensors"]
    return {k: torch.empty(s, device="meta") for k, s in shapes.items()}


# ---------------------------------------------------------------- the released layout

@needs_manifests
def test_released_manifest_matches_strictly_on_meta():
    """All 625 tensors: 624 onto the model (the ViT through the rename table), position_ids checked and dropped;
    the parameter count is the manifest's. Break: drop a rename (e.g. the final norm) or the ignore entry."""
    sd = manifest_sd()
    assert len(sd) == 625
    model = IR.build_imagereward()
    matched = IR.match_imagereward(model, sd, "ImageReward.pt")
    assert len(matched) == 624 == len(model.state_dict())
    assert sum(p.numel() for p in model.parameters()) == 446_665_953                  # the manifest's notes
    assert matched["blip.visual_encoder.post_layernorm.weight"].shape == (1024,)
    assert matched["blip.text_encoder.embeddings.word_embeddings.weight"].shape == (30524, 768)
    cross = model.blip.text_encoder.encoder.layer[11].crossattention.self.key
    assert cross.weight.shape == (768, 1024)                                          # keys from the 1024-wide ViT
    assert model.blip.text_encoder.pooler is None
    assert not any("token_type" in k for k in model.state_dict())
    # a DDP 'module.' prefix is stripped
    prefixed = {"module." + k: v for k, v in sd.items()}
    assert IR.match_imagereward(model, prefixed, "ImageReward.pt").keys() == matched.keys()
    # strict both ways: a missing tensor and an extra one are named
    missing = dict(sd)
    missing.pop("blip.visual_encoder.blocks.23.attn.proj.bias")
    with pytest.raises(CheckpointError, match=r"ImageReward 'ImageReward.pt': the file does not match the model.*"
                                              r"1 missing keys: blip\.visual_encoder\.encoder\.layers\.23\.self_attn"
                                              r"\.projection\.bias"):
        IR.match_imagereward(model, missing, "ImageReward.pt")
    extra = dict(sd, **{"blip.text_encoder.pooler.dense.weight": torch.empty(768, 768, device="meta")})
    with pytest.raises(CheckpointError, match=r"1 unexpected keys: blip\.text_encoder\.pooler\.dense\.weight"):
        IR.match_imagereward(model, extra, "ImageReward.pt")


@needs_manifests
def test_a_transformers_bertmodel_layout_does_not_fit():
    """The manifest's point: a stock BERT expects token-type embeddings, which the file lacks."""
    sd = manifest_sd()
    sd["blip.text_encoder.embeddings.token_type_embeddings.weight"] = torch.empty(2, 768, device="meta")
    with pytest.raises(CheckpointError, match="unexpected keys: blip.text_encoder.embeddings.token_type_embeddings"):
        IR.match_imagereward(IR.build_imagereward(), sd, "ImageReward.pt")


# ---------------------------------------------------------------- tiny files in the released layout

def test_tiny_file_round_trip_scores_the_same(tiny, tmp_path):
    folder = tf.write_imagereward(str(tmp_path / "ImageReward"))
    loaded = IR.load_imagereward(folder, config=IR.tiny_config())
    assert isinstance(loaded, IR.ImageRewardScorer) and loaded.name == "ImageReward ImageReward"
    assert not loaded.untrained
    x = images(3)
    torch.testing.assert_close(loaded.score("a cat", x), tiny.score("a cat", x), atol=1e-6, rtol=0)
    # the weight file itself, and a 'module.'-prefixed save, load the same
    again = IR.load_imagereward(os.path.join(folder, "ImageReward.pt"), config=IR.tiny_config())
    torch.testing.assert_close(again.score("a cat", x), tiny.score("a cat", x), atol=1e-6, rtol=0)
    ddp = tf.write_imagereward(str(tmp_path / "ddp"), prefix="module.")
    torch.testing.assert_close(IR.load_imagereward(ddp, config=IR.tiny_config()).score("a cat", x),
                               tiny.score("a cat", x), atol=1e-6, rtol=0)


def test_position_ids_that_are_not_arange_are_refused(tiny, tmp_path):
    folder = tf.write_imagereward(str(tmp_path / "ImageReward"))
    path = os.path.join(folder, "ImageReward.pt")
    sd = torch.load(path, weights_only=True)
    sd["blip.text_encoder.embeddings.position_ids"] = torch.zeros(1, 64, dtype=torch.long)
    torch.save(sd, path)
    with pytest.raises(CheckpointError, match=r"position_ids is not arange\(64\)"):
        IR.load_imagereward(folder, config=IR.tiny_config())


def test_the_full_size_config_refuses_a_tiny_file_by_shape(tiny, tmp_path):
    folder = tf.write_imagereward(str(tmp_path / "ImageReward"), vocab=False)
    with open(os.path.join(folder, "vocab.txt"), "w") as f:                 # a vocabulary of the right size
        f.write("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"t{i}" for i in range(30517)]) + "\n")
    with pytest.raises(CheckpointError, match=r"shape mismatches: .*blip\.text_encoder\.embeddings\.LayerNorm\.bias "
                                              r"\(32,\) vs model \(768,\)"):
        IR.load_imagereward(folder)


def test_wrong_files_are_refused_clearly(tmp_path):
    from safetensors.torch import save_file
    clip = S.tiny_clip_scorer()
    folder = tmp_path / "notir"
    folder.mkdir()
    clip_file = str(folder / "model.safetensors")
    save_file({k: v.contiguous() for k, v in clip.model.state_dict().items()}, clip_file)
    with pytest.raises(CheckpointError, match=r"'.*notir' holds no ImageReward checkpoint \(expected ImageReward\.pt "
                                              r"with 'blip\.\*' and 'mlp\.layers\.\*' keys; weight files there: "
                                              r"model\.safetensors\)"):
        IR.load_imagereward(str(folder))
    tf.write_imagereward(str(folder), vocab=True, name="unused.pt")           # vocab.txt for the file-path loads
    with pytest.raises(CheckpointError, match=r"'model\.safetensors' is a CLIP model \(transformers layout\), not "
                                              r"ImageReward"):
        IR.load_imagereward(clip_file, config=IR.tiny_config())
    text = folder / "ImageReward.pt"
    text.write_text("this is a text file, not a model\n")
    with pytest.raises(CheckpointError, match=r"'ImageReward\.pt' could not be read"):
        IR.load_imagereward(str(text), config=IR.tiny_config())
    blip_only = folder / "model_base.pth"
    torch.save({"visual_encoder.cls_token": torch.zeros(1, 1, 8)}, str(blip_only))
    with pytest.raises(CheckpointError, match="a BLIP checkpoint without ImageReward's reward head"):
        IR.load_imagereward(str(blip_only), config=IR.tiny_config())


def test_a_missing_vocabulary_names_the_file_and_the_folder(tmp_path):
    folder = tf.write_imagereward(str(tmp_path / "ImageReward"), vocab=False)
    want = os.path.join(folder, "vocab.txt")
    with pytest.raises(CheckpointError) as e:
        IR.load_imagereward(folder, config=IR.tiny_config())
    msg = str(e.value)
    assert f"'vocab.txt' is missing from the folder '{folder}'" in msg and f"'{want}'" in msg
    assert "bert-base-uncased" in msg


def test_a_vocabulary_of_the_wrong_size_is_refused(tmp_path):
    folder = tf.write_imagereward(str(tmp_path / "ImageReward"))
    with open(os.path.join(folder, "vocab.txt"), "a") as f:
        f.write("extra\n")
    with pytest.raises(CheckpointError, match=rf"{len(IR.TINY_VOCAB) + 1} tokens, but ImageReward's text encoder has "
                                              rf"{len(IR.TINY_VOCAB) + 2} rows"):
        IR.load_imagereward(folder, config=IR.tiny_config())


def test_med_config_beside_the_file_must_agree(tmp_path):
    folder = tf.write_imagereward(str(tmp_path / "ImageReward"))
    cfg = dict(IR.tiny_config()["text"])
    with open(os.path.join(folder, "med_config.json"), "w") as f:
        json.dump(dict(cfg, add_cross_attention=True, encoder_width=768), f)
    IR.load_imagereward(folder, config=IR.tiny_config())                     # agreeing: fine
    with open(os.path.join(folder, "med_config.json"), "w") as f:
        json.dump(dict(cfg, num_hidden_layers=12), f)
    with pytest.raises(CheckpointError, match=r"med_config\.json does not describe ImageReward-v1\.0's text encoder: "
                                              r"num_hidden_layers 12 \(ImageReward-v1\.0: 2\)"):
        IR.load_imagereward(folder, config=IR.tiny_config())


# ---------------------------------------------------------------- tokenizer, first token, head

def test_tokenizer_adds_dec_and_enc_after_the_vocabulary(tiny):
    tok = tiny.tokenizer
    n = len(IR.TINY_VOCAB)
    assert len(tok) == n + 2 == tiny.model.blip.text_encoder.config.vocab_size
    assert tok.convert_tokens_to_ids(["[DEC]", "[ENC]"]) == [n, n + 1] and tok.bos_token == "[DEC]"
    assert tok.tokenize("A Red PANDA walking") == ["a", "red", "panda", "walking"]            # lower-cased
    assert tok.tokenize("cats") == ["cat", "##s"]                                            # WordPiece
    # bert-base-uncased's size: 30522 + 2 = 30524 rows, as the released embedding
    assert IR.IMAGEREWARD_V1["text"]["vocab_size"] == 30524


def test_prompts_are_35_tokens_padded_or_truncated(tiny):
    tok = tiny.tokenizer
    short = tiny.tokenize("a cat")
    assert short["input_ids"].shape == (1, 35) and IR.PROMPT_TOKENS == 35
    ids = short["input_ids"][0].tolist()
    assert ids[:4] == [tok.cls_token_id, tok.convert_tokens_to_ids("a"), tok.convert_tokens_to_ids("cat"),
                       tok.sep_token_id]
    assert ids[4:] == [tok.pad_token_id] * 31 == [0] * 31
    assert short["attention_mask"][0].tolist() == [1] * 4 + [0] * 31
    long = tiny.tokenize("the red cat " * 20)
    assert long["input_ids"].shape == (1, 35) and long["attention_mask"].all()
    assert long["input_ids"][0, 0] == tok.cls_token_id and long["input_ids"][0, -1] == tok.sep_token_id


def test_the_score_reads_the_first_token_with_the_35_token_prompt(tiny):
    """The text encoder sees the 35 ids and the image tokens as cross-attention; only its state at token 0 reaches
    the score. Break: read another position, or mean-pool, and the perturbations below tell."""
    enc = tiny.model.blip.text_encoder
    x = images(3)
    base = tiny.score("a red panda walking through a bamboo forest " * 3, x)
    seen = []

    def perturb(pos):
        def hook(module, args, kwargs, out):
            seen.append((kwargs["input_ids"].shape, kwargs["encoder_hidden_states"].shape))
            out.last_hidden_state[:, pos] += 1.0
            return out
        return hook
    for pos, changes in ((slice(1, None), False), (0, True)):
        h = enc.register_forward_hook(perturb(pos), with_kwargs=True)
        try:
            s = tiny.score("a red panda walking through a bamboo forest " * 3, x)
        finally:
            h.remove()
        assert (not torch.equal(s, base)) == changes
    assert seen[0] == (torch.Size([3, 35]), torch.Size([3, 17, 32]))         # 35 tokens; 1 + 16 patches of 32 px / 8


def test_head_and_normalisation_follow_the_hand_formula(tiny):
    """r = W7(W6(W4(W2(W0 f + b0) + b2) + b4) + b6) + b7, no nonlinearity; score = (r − 0.167…) / 1.033…"""
    assert (IR.REWARD_MEAN, IR.REWARD_STD) == (0.16717362830052426, 1.0333394966054072)
    head = tiny.model.mlp.layers
    assert [type(m).__name__ for m in head] == ["Linear", "Dropout"] * 3 + ["Linear", "Linear"]
    assert [k for k in tiny.model.state_dict() if k.startswith("mlp.")] == [
        f"mlp.layers.{i}.{w}" for i in (0, 2, 4, 6, 7) for w in ("weight", "bias")]
    f = torch.randn(5, 32, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    r = f
    for i in (0, 2, 4, 6, 7):
        r = r @ head[i].weight.double().T + head[i].bias.double()
    want = (r.squeeze(-1) - 0.16717362830052426) / 1.0333394966054072
    got = tiny.model.reward(f.float())
    torch.testing.assert_close(got.double(), want, atol=1e-5, rtol=0)
    # and the scorer's output is that reward of the first token's state
    x = images(2, 32, 35)                                  # 35 − 32 = 3: the crop's rounding matters
    tokens = tiny.tokenize("a cat")
    pixels = S.clip_preprocess(x, 32, crop="round")
    with torch.no_grad():
        feats = tiny.model.features(tokens["input_ids"], tokens["attention_mask"], pixels)
    torch.testing.assert_close(tiny.score("a cat", x), tiny.model.reward(feats), atol=1e-6, rtol=0)


def test_crop_rounds_as_torchvision():
    """torchvision's CenterCrop: int(round((H − S) / 2)), halves to even; transformers' CLIP: (H − S) // 2."""
    cols = torch.arange(35, dtype=torch.float32) / 35
    x = cols.view(1, 1, 35, 1).expand(1, 32, 35, 3)                        # 35 − 32 = 3: round(1.5) = 2, 3 // 2 = 1
    plain = dict(mean=(0, 0, 0), std=(1, 1, 1))
    assert torch.equal(S.clip_preprocess(x, 32, crop="round", **plain)[0, 0, 0], cols[2:34])
    assert torch.equal(S.clip_preprocess(x, 32, **plain)[0, 0, 0], cols[1:33])
    x5 = (torch.arange(37, dtype=torch.float32) / 37).view(1, 1, 37, 1).expand(1, 32, 37, 3)
    assert torch.equal(S.clip_preprocess(x5, 32, crop="round", **plain),          # 5: round(2.5) = 2 = 5 // 2
                       S.clip_preprocess(x5, 32, **plain))
    with pytest.raises(ValueError, match="crop must be"):
        S.clip_preprocess(x, 32, crop="ceil")


# ---------------------------------------------------------------- the tiny demo

def test_tiny_imagereward_is_deterministic_prompt_dependent_and_labelled(tiny):
    assert IR.tiny_imagereward_scorer() is tiny
    assert tiny.name == IR.TINY_IMAGEREWARD_NAME == "tiny ImageReward (untrained demo)" and tiny.untrained
    x = images(6)
    s = tiny.score("a cat", x)
    assert s.shape == (6,) and s.dtype == torch.float32 and torch.isfinite(s).all()
    assert not s.requires_grad and not torch.is_inference(s)
    assert torch.equal(s, tiny.score("a cat", x.clone()))
    assert len(set(s.tolist())) == 6
    torch.testing.assert_close(tiny.score("a cat", x[2:4]), s[2:4], atol=1e-5, rtol=0)
    rankings = {tuple(tiny.score(p, x).argsort().tolist()) for p in PROMPTS}
    assert len(rankings) > 1, "the ranking never changes with the prompt"
    assert not any(p.requires_grad for p in tiny.model.parameters())


def test_selector_picks_the_argmax_of_imagereward_scores(tiny):
    imgs = images(5, 32, 48, seed=9)
    lat = {"samples": torch.randn(5, 4, 1, 4, 6)}
    want = tiny.score("a red cat", imgs)
    img, latent, scores = CVK_AnchorSelector().select(imgs, lat, "a red cat", "scorer", "", 0, tiny)
    best = int(want.argmax())
    assert torch.equal(img, imgs[best:best + 1]) and torch.equal(latent["samples"], lat["samples"][best:best + 1])
    assert scores == S.format_scores(want)
    # another prompt, another pick among the same candidates (the selector follows the scores)
    picks = {int(tiny.score(p, imgs).argmax()) for p in PROMPTS + ("the moon", "red", "a dog")}
    assert len(picks) > 1


# ---------------------------------------------------------------- the loader node

@pytest.fixture
def models_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(host.MODELS_DIR_ENV, str(tmp_path))
    (tmp_path / "scorers").mkdir()
    return tmp_path / "scorers"


def test_node_lists_imagereward_folders_by_their_keys(models_dir):
    tf.write_imagereward(str(models_dir / "ImageReward"))
    tf.write_imagereward(str(models_dir / "more" / "IR2"), name="best_lr=1e-05.pt", prefix="module.")
    (models_dir / "empty").mkdir()
    (models_dir / "text").mkdir()
    (models_dir / "text" / "ImageReward.pt").write_text("not a model")
    choices = N.scorer_choices()
    assert choices == ["tiny CLIP (untrained demo)", "tiny ImageReward (untrained demo)", "ImageReward", "more/IR2"]
    assert N.CVK_ScorerLoader.INPUT_TYPES()["required"]["scorer"][0] == choices


def test_node_loads_the_tiny_demo_and_an_imagereward_folder(tiny, models_dir, monkeypatch):
    node = N.CVK_ScorerLoader()
    assert node.load("tiny ImageReward (untrained demo)") == (tiny,)
    tf.write_imagereward(str(models_dir / "ImageReward"))
    monkeypatch.setattr(IR, "IMAGEREWARD_V1", IR.tiny_config())                 # the tiny file's sizes
    (scorer,) = node.load("ImageReward")
    assert isinstance(scorer, IR.ImageRewardScorer) and scorer.name == "ImageReward ImageReward"
    torch.testing.assert_close(scorer.score("a cat", images(2)), tiny.score("a cat", images(2)), atol=1e-6, rtol=0)


def test_node_error_names_the_missing_vocabulary(models_dir):
    folder = tf.write_imagereward(str(models_dir / "ImageReward"), vocab=False)
    assert "ImageReward" in N.scorer_choices()
    with pytest.raises(CVKInputError, match=r"CVK_ScorerLoader: input 'scorer' got 'ImageReward': ImageReward needs "
                                            r"the bert-base-uncased vocabulary: 'vocab\.txt' is missing from the "
                                            r"folder '" + folder.replace("\\", "\\\\")):
        N.CVK_ScorerLoader().load("ImageReward")
