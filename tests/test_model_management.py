"""The pack's model management without ComfyUI (the plain fallback), the weight streaming of layers a partial
load leaves behind (pure torch), and the wiring to ComfyUI's model management against small fakes. The same
against the real ComfyUI is in ``test_comfyui_model_management.py``."""
import copy
import sys
import types

import pytest
import torch

from cvk_testkit.chains import ToCounter, i4vgen_chain, networks, t2v_chain
from cvk_testkit.patches import Doubled
from consistent_video_kit import host
from consistent_video_kit.models.scorers import tiny_clip_scorer
from consistent_video_kit.models.tiny import tiny_model


def _inputs():
    z = torch.randn(2, 4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    cond = {"text": torch.randn(2, 77, 32, generator=torch.Generator().manual_seed(1))}
    return z, torch.tensor([500, 500]), cond


def test_without_comfyui_consecutive_nodes_move_no_model(tiny_animatediff):
    """Outside ComfyUI the parts stay where they are (the CPU here): a consecutive I4VGen chain and Text to
    Video → Decode call ``.to`` on none of the networks (the previous host moved each part to the run device
    and back on every node call: 6 UNet, 6 text-encoder, 4 VAE and 2 scorer moves over the I4VGen chain on a
    GPU host)."""
    scorer = tiny_clip_scorer()
    with ToCounter(networks(tiny_animatediff, scorer)) as c:
        frames = i4vgen_chain(tiny_animatediff, scorer)
        frames2 = t2v_chain(tiny_animatediff)
    assert dict(c.counts) == {}
    assert frames.shape == frames2.shape == (4, 64, 64, 3)


def test_without_comfyui_a_part_moves_to_the_run_device_once(monkeypatch):
    """A part away from the run device (a GPU outside ComfyUI; meta here) moves there at its first load and
    stays: no move back after the node, none at the next loads."""
    monkeypatch.setattr(host, "torch_device", lambda: torch.device("meta"))
    part = host.ModelPart(torch.nn.Linear(2, 2), "vae")
    with ToCounter({"vae": part.module}) as c:
        for _ in range(3):
            host.load_models([part])
    assert c.counts["vae"] == 1 and part.module.weight.device == part.device == torch.device("meta")


def test_a_patched_clone_shares_the_weights_and_leaves_its_source_alone(tiny_animatediff):
    """The mechanism later patching nodes use (CameraCtrl, CVD): a new bundle with a patched clone of the UNet
    part. The input bundle and part are unchanged; both compute with one set of weights, each its own function,
    in any order."""
    model = tiny_animatediff
    z, t, cond = _inputs()
    patched = model.with_unet(model.unet_part.with_object_patch("conv_out", Doubled(model.unet.conv_out)))
    assert patched is not model and model.unet_part.object_patches == {} and patched.unet is model.unet
    assert patched.vae is model.vae and patched.text is model.text and patched.name == model.name
    outs = []
    for which in (model, patched, model, patched):
        with which.loaded(z.shape):
            outs.append(which.network(z, t, cond))
    assert torch.equal(outs[0], outs[2]) and torch.equal(outs[1], outs[3]) and torch.equal(outs[1], 2 * outs[0])
    assert type(model.unet.conv_out).__name__ == "Doubled"          # while the clone is the loaded one
    with model.loaded(z.shape):
        assert type(model.unet.conv_out) is torch.nn.Conv2d
    plain = model.clone()
    assert plain.unet_part is not model.unet_part and plain.unet is model.unet
    with model.loaded(z.shape, also=[plain]):                         # same patches: one network, loaded once
        assert torch.equal(model.network(z, t, cond), outs[0])
    with pytest.raises(ValueError, match="two versions of one network with different patches"):
        with model.loaded(z.shape, also=[patched]):
            pass
    with pytest.raises(TypeError, match="diffusion ModelPart"):
        model.with_unet(model.vae.part)


# ---------------------------------------------------------------- streaming (pure torch)

def _split_to_meta(net: torch.nn.Module, keep_on_cpu: int):
    """Move every module with own tensors to meta except the ``keep_on_cpu`` largest (what a partial load to a
    GPU leaves behind); returns their names."""
    owners = [(sum(t.numel() for t in host._own_tensors(m)), n, m) for n, m in net.named_modules()
              if host._own_tensors(m)]
    owners.sort(key=lambda x: -x[0])
    stay = {n for _, n, _ in owners[:keep_on_cpu]}
    for _, n, m in owners:
        if n not in stay:
            for table in (m._parameters, m._buffers):
                for k, t in table.items():
                    if t is not None:
                        table[k] = torch.nn.Parameter(t.to("meta"), requires_grad=False) \
                            if isinstance(t, torch.nn.Parameter) else t.to("meta")
    return stay


def test_layers_left_on_another_device_stream_in_per_call(tiny_animatediff):
    """Layers left on the CPU while the rest sits on the compute device (meta, which mixes with no CPU tensor,
    like a GPU) get hooks that bring their tensors in for each call and put the originals back, also when the
    call raises inside a streamed layer; once every layer is on the device, the hooks go."""
    text = copy.deepcopy(tiny_animatediff.text.model)
    stay = _split_to_meta(text, 4)
    meta = torch.device("meta")
    ids = torch.zeros(1, 77, dtype=torch.long)
    with pytest.raises(RuntimeError, match="device"):
        text(ids.to(meta))                          # without streaming the CPU layers cannot compute
    host.sync_streaming(text, meta)
    assert set(host.streamed_modules(text)) == stay
    own = {n: list(host._own_tensors(m)) for n, m in text.named_modules() if n in stay}
    streamed = next(text.get_submodule(n) for n in sorted(stay) if isinstance(text.get_submodule(n), torch.nn.Linear))
    with torch.inference_mode():
        out = text(ids.to(meta)).last_hidden_state
        assert out.device == meta and out.shape == (1, 77, 32)
        with pytest.raises(RuntimeError):
            streamed(torch.zeros(1, 5, streamed.in_features + 1, device=meta))   # the wrong width: fails inside it
    assert all(all(a is b for a, b in zip(host._own_tensors(m), own[n])) for n, m in text.named_modules() if n in stay)
    assert all(isinstance(p, torch.nn.Parameter) for p in text.parameters())
    for n, m in text.named_modules():
        if n in stay:
            m.to(meta)
    host.sync_streaming(text, meta)
    assert host.streamed_modules(text) == []


def test_after_a_partial_load_comfyuis_record_decides_on_one_device():
    """On a CPU host the load device is the offload device: after a partial load the layers ComfyUI did not load
    (no ``comfy_patched_weights``) stream anyway, so a CPU test runs the hooks a GPU would; buffers-only modules
    stream only when they are elsewhere. A streamed layer computes with copies and gives the same output."""
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    net[0].comfy_patched_weights = True
    net.register_buffer("table", torch.ones(2))
    x = torch.randn(5, 3)
    ref = net(x)
    host.sync_streaming(net, "cpu", partial=False)
    assert host.streamed_modules(net) == []
    host.sync_streaming(net, "cpu", partial=True)
    assert host.streamed_modules(net) == ["2"]
    seen = []
    net[2].register_forward_pre_hook(lambda m, a: seen.append(type(m.weight) is torch.Tensor))   # after streaming in
    assert torch.equal(net(x), ref) and seen == [True] and isinstance(net[2].weight, torch.nn.Parameter)
    host.stop_streaming(net)
    assert host.streamed_modules(net) == []


# ---------------------------------------------------------------- wiring to ComfyUI (fakes)

@pytest.fixture
def fake_comfy(monkeypatch):
    """comfy.model_management and comfy.model_patcher with the signatures the host uses: each role's device
    functions return distinct devices; load_models_gpu records its calls; ModelPatcher records how it was made."""
    devices = {"get_torch_device": "cuda:0", "unet_offload_device": "cpu", "text_encoder_device": "cuda:1",
               "text_encoder_offload_device": "meta", "vae_device": "cuda:2", "vae_offload_device": "cpu"}
    mm = types.ModuleType("comfy.model_management")
    for name, dev in devices.items():
        setattr(mm, name, (lambda d: lambda: torch.device(d))(dev))
    mm.intermediate_device = lambda: torch.device("cpu")
    calls = []
    mm.load_models_gpu = lambda models, memory_required=0, **kw: calls.append((list(models), memory_required))
    mp = types.ModuleType("comfy.model_patcher")

    class ModelPatcher:
        def __init__(self, model, load_device, offload_device, size=0, weight_inplace_update=False):
            self.model, self.load_device, self.offload_device = model, load_device, offload_device
            self.object_patches, self.parent = {}, None

        def clone(self):
            n = type(self)(self.model, self.load_device, self.offload_device)
            n.object_patches, n.parent = dict(self.object_patches), self
            return n

        def add_object_patch(self, name, obj):
            self.object_patches[name] = obj
    mp.ModelPatcher = ModelPatcher
    comfy = types.ModuleType("comfy")
    comfy.model_management, comfy.model_patcher = mm, mp
    for name, mod in (("comfy", comfy), ("comfy.model_management", mm), ("comfy.model_patcher", mp)):
        monkeypatch.setitem(sys.modules, name, mod)
    return calls


def test_each_part_gets_its_roles_devices_and_is_loaded_through_load_models_gpu(fake_comfy):
    calls = fake_comfy
    model = copy.deepcopy(tiny_model("tiny-modelscope"))   # fresh parts: no patcher made yet
    scorer = copy.deepcopy(tiny_clip_scorer())
    got = {r: (str(p.patcher().load_device), str(p.patcher().offload_device), p.device.type) for r, p in
           dict(unet=model.unet_part, text=model.text.part, vae=model.vae.part, scorer=scorer.part).items()}
    assert got == {"unet": ("cuda:0", "cpu", "cuda"), "text": ("cuda:1", "meta", "cuda"), "vae": ("cuda:2", "cpu", "cuda"),
                   "scorer": ("cuda:1", "meta", "cuda")}
    held = model.unet_part.patcher().model
    assert type(held).__name__ == "CVK_UNet3DConditionModel" and held.net is model.unet
    assert type(model.unet_part.patcher()).__name__ == "CVKModelPatcher"
    with model.loaded((1, 4, 16, 64, 64)) as device:
        assert device == torch.device("cuda:0")
    assert calls == [([model.unet_part.patcher()], int(2 * 16 * 64 * 64 * 4 * 0.01 * 1024 * 1024))]
    host.load_models([model.unet_part, model.unet_part.clone(), model.vae.part])   # clones load once
    assert calls[-1] == ([model.unet_part.patcher(), model.vae.part.patcher()], 0)
    patched = model.unet_part.with_object_patch("conv_out", torch.nn.Identity())
    assert patched.patcher().parent is model.unet_part.patcher() and patched.patcher().model is held
    assert list(patched.patcher().object_patches) == ["net.conv_out"] and model.unet_part.patcher().object_patches == {}
