"""Camera path preview: the IMAGE panels (camera/preview.py), the node, and the 3-D frontend (web/)."""
import json
import math
import os
import shutil
import subprocess

import numpy as np
import pytest
import torch

from consistent_video_kit.camera.path import CameraPath
from consistent_video_kit.camera.preview import PALETTE, PROJECTIONS, frustum_points, render_preview
from consistent_video_kit.nodes.camera_preview import (NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS,
                                                       CVK_CameraPreview)
from consistent_video_kit.nodes.common import CVKInputError
from cvk_testkit import ROOT
from cvk_testkit.executor import input_specs

K256 = torch.tensor([[200.0, 0.0, 128.0], [0.0, 200.0, 128.0], [0.0, 0.0, 1.0]], dtype=torch.float64)


def look_at(eye, target=(0.0, 0.0, 0.0), up=(0.0, -1.0, 0.0)) -> torch.Tensor:
    """OpenCV camera-to-world (x right, y down, z forward) at ``eye`` looking at ``target``."""
    eye, target, up = (torch.tensor(v, dtype=torch.float64) for v in (eye, target, up))
    z = target - eye
    z = z / z.norm()
    x = torch.linalg.cross(z, up)
    x = x / x.norm()
    y = torch.linalg.cross(z, x)
    m = torch.eye(4, dtype=torch.float64)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = x, y, z, eye
    return m


def orbit(views: int, frames: int, radius: float = 2.5) -> CameraPath:
    """Each view an arc of cameras at height −0.8·v (y is down) looking at the origin."""
    c2w = torch.stack([torch.stack([
        look_at((radius * math.sin(a), -0.8 * v - 0.3, -radius * math.cos(a)))
        for a in [-0.6 + 1.2 * f / max(frames - 1, 1) + 0.3 * v for f in range(frames)]]) for v in range(views)])
    return CameraPath(K256.expand(views, frames, 3, 3).clone(), c2w, 256, 256)


def still(rotations) -> CameraPath:
    """One view, all frames at the origin (zero extent), turned by the given 3×3 rotations."""
    c2w = torch.eye(4, dtype=torch.float64).repeat(1, len(rotations), 1, 1)
    for f, r in enumerate(rotations):
        c2w[0, f, :3, :3] = torch.as_tensor(r, dtype=torch.float64)
    return CameraPath(K256.expand(1, len(rotations), 3, 3).clone(), c2w, 256, 256)


def yaw(angle: float) -> torch.Tensor:
    """Rotation about the y axis: yaw(0) looks along +z, yaw(π/2) along +x, yaw(π) along −z."""
    c, s = math.cos(angle), math.sin(angle)
    return torch.tensor([[c, 0, s], [0, 1, 0], [-s, 0, c]], dtype=torch.float64)


def colour_mask(img: torch.Tensor, rgb, tol: float = 4 / 255) -> np.ndarray:
    """(H, W) pixels within ``tol`` of a palette colour."""
    target = torch.tensor(rgb, dtype=torch.float32) / 255
    return ((img[0] - target).abs().amax(-1) <= tol).numpy()


def panel(img: torch.Tensor, i: int, size: int) -> torch.Tensor:
    return img[:, :, i * size:(i + 1) * size]


def dot_centre(img: torch.Tensor, rgb) -> tuple[float, float]:
    """(column, row) of a view's filled frame-0 dot: pixels of exactly its colour with all 8 neighbours of it
    too (lines are thinner)."""
    exact = colour_mask(img, rgb, tol=2 / 255)
    dot = exact.copy()
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            dot[1:-1, 1:-1] &= exact[1 + dy:exact.shape[0] - 1 + dy, 1 + dx:exact.shape[1] - 1 + dx]
    dot[[0, -1]] = dot[:, [0, -1]] = False
    rows, cols = np.nonzero(dot)
    assert 1 <= len(cols) <= 60 and np.ptp(cols) <= 8 and np.ptp(rows) <= 8, (len(cols), rows, cols)
    return cols.mean(), rows.mean()


@pytest.mark.parametrize("views,frames", [(2, 16), (1, 1)])
def test_preview_is_an_image(views, frames):
    img = render_preview(orbit(views, frames), 256)
    assert img.shape == (1, 256, 3 * 256, 3) and img.dtype == torch.float32
    assert torch.isfinite(img).all() and img.min() >= 0 and img.max() <= 1
    # the cameras are drawn in every panel: view 0's colour (its frame-0 dot) is there, not just background
    for i in range(3):
        assert colour_mask(panel(img, i, 256), PALETTE[0]).sum() >= 10, f"panel {i} shows no camera"


def test_preview_is_deterministic():
    """The stated invariant (no randomness): the same picture whatever the global random states are."""
    import random
    path = orbit(2, 8)
    first = render_preview(path, 192)
    torch.manual_seed(1)
    np.random.seed(2)
    random.seed(3)
    assert torch.equal(render_preview(path, 192), first)


def test_projections_choose_the_panels():
    path = orbit(2, 6)
    three = render_preview(path, 128, "top,front,side")
    two = render_preview(path, 128, "top,side")
    assert three.shape == (1, 128, 384, 3) and two.shape == (1, 128, 256, 3)
    assert torch.equal(three[:, :, :128], two[:, :, :128])         # same top panel first
    assert torch.equal(three[:, :, 256:], two[:, :, 128:])          # the side panel second
    assert not torch.equal(three[:, :, 128:256], two[:, :, 128:])   # front ≠ side
    assert PROJECTIONS == ("top", "front", "side")
    with pytest.raises(ValueError, match=r"unknown projection 'back'.*\('top', 'front', 'side'\)"):
        render_preview(path, 128, "top,back")
    with pytest.raises(ValueError, match="twice"):
        render_preview(path, 128, "top,top")
    with pytest.raises(ValueError, match="comma-separated"):
        render_preview(path, 128, "")


def two_cameras(a, b) -> CameraPath:
    """Two one-frame views, identity rotation, at world points ``a`` and ``b``."""
    c2w = torch.eye(4, dtype=torch.float64).repeat(2, 1, 1, 1)
    c2w[0, 0, :3, 3] = torch.tensor(a, dtype=torch.float64)
    c2w[1, 0, :3, 3] = torch.tensor(b, dtype=torch.float64)
    return CameraPath(K256.expand(2, 1, 3, 3).clone(), c2w, 256, 256)


def test_panels_are_the_documented_orthographic_projections():
    """The module's stated projections, checked on the pixels: view 0's camera at the origin, view 1's at
    (2, 0.6, 1.5) (y is down). top: x to the right, z up the panel; front: x right, y down; side: z right, y
    down; one scale on both axes of a panel, so the dots' offset has the world offset's proportions. Panels come
    in the order asked for (each measured where it is not first: the first carries the legend)."""
    path = two_cameras((0.0, 0.0, 0.0), (2.0, 0.6, 1.5))
    stf = render_preview(path, 256, "side,top,front")
    ts = render_preview(path, 256, "top,side")
    where = {"top": panel(stf, 1, 256), "front": panel(stf, 2, 256), "side": panel(ts, 1, 256)}
    # world offset of view 1 from view 0 along (panel right, panel down)
    want = {"top": (2.0, -1.5), "front": (2.0, 0.6), "side": (1.5, 0.6)}
    scales = []
    for name, img in where.items():
        (c0, r0), (c1, r1) = dot_centre(img, PALETTE[0]), dot_centre(img, PALETTE[1])
        dx, dy = c1 - c0, r1 - r0
        wx, wy = want[name]
        assert np.sign(dx) == np.sign(wx) and np.sign(dy) == np.sign(wy), (name, dx, dy)
        assert dx / dy == pytest.approx(wx / wy, rel=0.05), name
        scales.append(dx / wx)
    assert min(scales) > 40                                   # offsets of many pixels, not rounding noise


def test_views_get_their_own_colours():
    # front panel (no legend there): view 1's colour only when there is a view 1; view 0's in both
    one = panel(render_preview(orbit(1, 8), 256), 1, 256)
    two = panel(render_preview(orbit(2, 8), 256), 1, 256)
    assert colour_mask(one, PALETTE[0]).sum() >= 10 and colour_mask(two, PALETTE[0]).sum() >= 10
    assert colour_mask(one, PALETTE[1]).sum() == 0
    assert colour_mask(two, PALETTE[1]).sum() >= 10
    assert not torch.equal(one, two)


def test_frustum_geometry_points_where_the_camera_looks():
    path = still([yaw(0.0), yaw(math.pi / 2)])          # looking along +z, then along +x
    centres, shape, depth = frustum_points(path)
    assert centres.abs().max() == 0 and depth == pytest.approx(0.1)   # zero extent: unit-scene frustums
    corners = shape[0, :, :4]
    assert torch.allclose(corners[0, :, 2], torch.full((4,), depth, dtype=torch.float64))     # +z
    assert torch.allclose(corners[1, :, 0], torch.full((4,), depth, dtype=torch.float64))     # +x
    # image corner (0, 0) is top-left: −x, −y in the camera; the "up" triangle's tip is above (−y) the top edge
    assert corners[0, 0, 0] < 0 and corners[0, 0, 1] < 0 and corners[0, 2, 0] > 0 and corners[0, 2, 1] > 0
    assert shape[0, 0, 5, 1] < shape[0, 0, 0, 1]
    assert torch.allclose(corners[0, 0, :2], torch.tensor([-128 / 200 * depth] * 2, dtype=torch.float64))


@pytest.mark.parametrize("angle,opens_right", [(0.0, True), (math.pi, False)])
def test_frustum_is_drawn_toward_the_view_direction(angle, opens_right):
    # side panel: z to the right. A camera looking along +z opens to the right of its dot, along −z to the left.
    img = panel(render_preview(still([yaw(angle)]), 256, "front,side"), 1, 256)
    cx, cy = dot_centre(img, PALETTE[0])
    rgb = img[0].numpy()
    blue = (rgb[..., 2] - rgb[..., 0] > 0.25) & (rgb[..., 2] > 0.5)      # view 0's lines, not text/grid
    r, c = np.nonzero(blue)
    near = np.abs(r - cy) < 100
    right, left = (c[near] > cx + 8).sum(), (c[near] < cx - 8).sum()
    assert (right > 5 * max(left, 1)) if opens_right else (left > 5 * max(right, 1)), (left, right)


def test_zero_extent_path_draws_without_nan():
    path = still([yaw(a) for a in (0.0, 0.4, 0.8, 1.2)])    # a pan: all cameras at one place
    assert torch.equal(path.c2w[0, :, :3, 3], torch.zeros(4, 3, dtype=torch.float64))
    img = render_preview(path, 128)
    assert img.shape == (1, 128, 384, 3) and not torch.isnan(img).any()
    assert colour_mask(panel(img, 1, 128), PALETTE[0]).sum() > 0


def test_unusable_paths_are_refused():
    bad = orbit(1, 2)
    c2w = bad.c2w.clone()
    c2w[0, 1, 0, 3] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        render_preview(CameraPath(bad.K, c2w, 256, 256))
    K = bad.K.clone()
    K[0, 1] = 0
    with pytest.raises(ValueError, match="view 0, frame 1 is singular"):
        render_preview(CameraPath(K, bad.c2w, 256, 256))
    with pytest.raises(ValueError, match="at least 64"):
        render_preview(bad, 32)


def drawing_log(monkeypatch) -> dict:
    """Record what each panel draws (PIL's ImageDraw calls, grouped by drawing): ``{id: [(kind, xy, kwargs)]}``
    with text boxes measured by PIL."""
    from PIL import ImageDraw
    log = {}
    for kind in ("line", "polygon", "ellipse", "rectangle", "text"):
        orig = getattr(ImageDraw.ImageDraw, kind)

        def rec(self, xy, *args, _orig=orig, _kind=kind, **kw):
            entry = {"kind": _kind, "xy": xy, **kw, "draw": self}
            if _kind == "text":
                entry["text"] = args[0] if args else kw["text"]
                entry["box"] = self.textbbox(xy, entry["text"], font=kw.get("font"), stroke_width=kw.get("stroke_width", 0))
            log.setdefault(id(self), []).append(entry)
            return _orig(self, xy, *args, **kw)
        monkeypatch.setattr(ImageDraw.ImageDraw, kind, rec)
    return log


def track_points(entries) -> list[tuple[np.ndarray, float]]:
    """Pixel points along everything drawn for the cameras (frustums, paths, arrowheads, dots), 1 px apart,
    each with its half line width: lines, polygons and ellipses not in the grid, axes or text colours (the
    legend's swatches are rectangles)."""
    from consistent_video_kit.camera.preview import BACKGROUND, GRID, GRID_ZERO, TEXT
    not_tracks = {GRID, GRID_ZERO, TEXT, BACKGROUND, (50, 54, 62), (26, 29, 35), (28, 31, 37)}
    out = []
    for e in entries:
        if e["kind"] in ("text", "rectangle") or e.get("fill") is None or tuple(e["fill"]) in not_tracks:
            continue
        xy = np.asarray(e["xy"], dtype=np.float64).reshape(-1, 2)          # [(x, y), ...] or [x0, y0, x1, y1]
        pts = [tuple(p) for p in xy]
        if e["kind"] == "ellipse":
            (x0, y0), (x1, y1) = pts
            pts = [(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0), ((x0 + x1) / 2, (y0 + y1) / 2)]
        elif e["kind"] == "polygon":
            pts = pts + pts[:1]
        half = e.get("width", 1) / 2
        for a, b in zip(pts[:-1], pts[1:]):
            n = max(2, int(math.dist(a, b)) + 1)
            for t in np.linspace(0, 1, n):
                out.append((np.array(a) + t * (np.array(b) - np.array(a)), half))
        if len(pts) == 1:
            out.append((np.array(pts[0]), half))
    return out


@pytest.mark.parametrize("pattern,views,size", [("circle", 4, 512), ("upper_hemi", 8, 384)])
def test_labels_do_not_cover_the_tracks(monkeypatch, pattern, views, size):
    """The frame labels (0, the last index), the axes labels (+x ...) and the legend sit where no camera track is
    drawn, for the example's path (CVD's circle: every view starts at one camera) and a fan of 8 views."""
    from consistent_video_kit.camera import trajectories
    log = drawing_log(monkeypatch)
    render_preview(trajectories.pattern(pattern, views, 16, 256, 256, 0.5), size)
    assert len(log) == 3                                                  # one drawing per panel
    for entries in log.values():
        pts = track_points(entries)
        assert len(pts) > 1000
        P = np.stack([p for p, _ in pts])
        H = np.array([h for _, h in pts])
        labels = [(e["text"], e["box"]) for e in entries if e["kind"] == "text"
                  and (e["text"].isdigit() or e["text"] in ("+x", "+y", "+z"))]
        labels += [("legend", tuple(np.asarray(e["xy"], dtype=np.float64).reshape(-1))) for e in entries
                   if e["kind"] == "rectangle" and e.get("fill") == (26, 29, 35)]
        assert {t for t, _ in labels} >= {"0", "15"} and sum(t.startswith("+") for t, _ in labels) == 2
        for text, (x0, y0, x1, y1) in labels:
            inside = ((P[:, 0] + H > x0) & (P[:, 0] - H < x1) & (P[:, 1] + H > y0) & (P[:, 1] - H < y1))
            assert not inside.any(), f"label {text!r} at {(x0, y0, x1, y1)} covers {inside.sum()} track points"


def test_node_returns_the_image_and_the_camera_for_the_3d_view():
    path = orbit(2, 5)
    out = CVK_CameraPreview().preview(path, 128, "top,front")
    assert set(out) == {"ui", "result"}
    (camera_json,) = out["ui"]["cvk_camera"]
    assert set(camera_json) == {"width", "height", "K", "c2w"}
    assert (camera_json["width"], camera_json["height"]) == (256, 256)
    K, c2w = camera_json["K"], camera_json["c2w"]
    assert len(K) == len(c2w) == 2 and len(K[1]) == len(c2w[1]) == 5 and len(c2w[1][4]) == 4   # view, frame, row
    assert K[1][3] == [[200.0, 0.0, 128.0], [0.0, 200.0, 128.0], [0.0, 0.0, 1.0]]
    assert all(isinstance(v, float) for v in c2w[1][4][2])
    assert torch.equal(torch.tensor(c2w, dtype=torch.float64), path.c2w)
    json.dumps(out["ui"])                                                  # what ComfyUI sends must be JSON
    (image,) = out["result"]
    assert torch.equal(image, render_preview(path, 128, "top,front"))
    assert image.shape == (1, 128, 256, 3)


def test_node_definition():
    assert NODE_CLASS_MAPPINGS == {"CVK_CameraPreview": CVK_CameraPreview}
    assert NODE_DISPLAY_NAME_MAPPINGS == {"CVK_CameraPreview": "Camera Preview (CVK)"}
    cls = CVK_CameraPreview
    assert cls.CATEGORY == "Consistent Video Kit/camera" and cls.OUTPUT_NODE is True and cls.DESCRIPTION
    assert cls.RETURN_TYPES == ("IMAGE",) and cls.RETURN_NAMES == ("preview",) and len(cls.OUTPUT_TOOLTIPS) == 1
    specs = input_specs(cls)
    assert list(specs) == ["camera", "size", "projections"]
    assert all(opts.get("tooltip") for _kind, opts, _req in specs.values())
    assert specs["camera"][0] == "CVK_CAMERA"
    size = specs["size"][1]
    assert (size["default"], size["min"], size["max"], size["step"]) == (512, 128, 2048, 64)
    assert specs["projections"][0] == ["top,front,side", "top,front", "top,side", "front,side"]


def test_node_errors_name_the_input():
    node = CVK_CameraPreview()
    with pytest.raises(CVKInputError, match=r"^CVK_CameraPreview: input 'camera' got a dict with keys \['samples'\]; "
                                            r"expected a CVK_CAMERA"):
        node.preview({"samples": torch.zeros(1)}, 512, "top,front,side")
    with pytest.raises(CVKInputError, match=r"^CVK_CameraPreview: input 'camera' got a tensor of shape \(4, 4\); expected a CVK_CAMERA"):
        node.preview(torch.eye(4), 512, "top,front,side")
    with pytest.raises(CVKInputError, match=r"input 'size' got 4096; expected an integer from 128 to 2048"):
        node.preview(orbit(1, 2), 4096, "top,front,side")
    with pytest.raises(CVKInputError, match=r"input 'projections' got 'top,back'; expected one of"):
        node.preview(orbit(1, 2), 512, "top,back")
    K = orbit(1, 2).K.clone()
    K[0, 0] = 0
    with pytest.raises(CVKInputError, match=r"input 'camera' got <CVK_CAMERA 1 view\(s\) × 2 frame\(s\), 256×256>: .*singular"):
        node.preview(CameraPath(K, orbit(1, 2).c2w, 256, 256), 128, "top,front")


# ---- the frontend extension, run in Node with a stand-in app, DOM and 2-D context --------------------------

JS = os.path.join(str(ROOT), "web", "camera_preview.js")

HOOKS = """
export async function resolve(specifier, context, next) {
  if (specifier.endsWith("/scripts/app.js"))
    return { url: "data:text/javascript,export const app = globalThis.__app;", shortCircuit: true };
  return next(specifier, context);
}
"""

DRIVER = r"""
import { register } from "node:module";
import { pathToFileURL } from "node:url";
register("./hooks.mjs", import.meta.url);
const [jsPath, camPath, cam2Path] = process.argv.slice(2);
const fs = await import("node:fs");
const cam = JSON.parse(fs.readFileSync(camPath, "utf8"));
const cam2 = JSON.parse(fs.readFileSync(cam2Path, "utf8"));
globalThis.window = globalThis;
globalThis.devicePixelRatio = 1;
globalThis.requestAnimationFrame = (cb) => setTimeout(() => cb(0), 0);
globalThis.__app = { exts: [], registerExtension(e) { this.exts.push(e); } };
const strokes = new Set();
// what is drawn: stroked segments (with colour and width) and texts (with position, alignment, font)
const log = { segments: [], texts: [] };
function makeCtx() {
  const state = { path: [], start: null };
  const seg = (a, b) => log.segments.push([a[0], a[1], b[0], b[1], state.lineWidth ?? 1, String(state.strokeStyle)]);
  const fns = {
    measureText: (s) => ({ width: 6 * String(s).length }),
    beginPath: () => { state.path = []; },
    moveTo: (x, y) => { state.path.push([[x, y]]); },
    lineTo: (x, y) => { const sub = state.path[state.path.length - 1]; if (sub) sub.push([x, y]); else state.path.push([[x, y]]); },
    closePath: () => { const sub = state.path[state.path.length - 1]; if (sub?.length) sub.push(sub[0]); },
    arc: (x, y, r) => { state.path.push([[x - r, y], [x, y - r], [x + r, y], [x, y + r], [x - r, y]]); },
    stroke: () => {
      strokes.add(state.strokeStyle);
      for (const sub of state.path) for (let i = 1; i < sub.length; i++) seg(sub[i - 1], sub[i]);
    },
    fillText: (t, x, y) => log.texts.push([String(t), x, y, state.textAlign ?? "left", String(state.font)]),
  };
  return new Proxy(state, {
    get(t, k) {
      if (k in fns) return fns[k];
      if (k in t) return t[k];
      return () => {};
    },
    set(t, k, v) { t[k] = v; return true; },
  });
}
function makeCanvas(w, h) {
  return {
    style: {}, width: 0, height: 0, clientWidth: w, clientHeight: h, listeners: {},
    addEventListener(type, f) { this.listeners[type] = f; },
    getContext() { return this.ctx ??= makeCtx(); },
    setPointerCapture() {}, releasePointerCapture() {},
    getBoundingClientRect() { return { left: 0, top: 0, width: w, height: h }; },
  };
}
const canvases = [];
let nextSize = [400, 260];
globalThis.document = { createElement: (tag) => (tag === "canvas" ? (canvases.push(makeCanvas(...nextSize)), canvases.at(-1)) : {}) };
await import(pathToFileURL(jsPath).href);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const ext = globalThis.__app.exts[0];
function NodeType() {}
let chained = 0;
NodeType.prototype.onExecuted = function () { chained++; };
await ext.beforeRegisterNodeDef(NodeType, { name: "CVK_CameraPreview" });
const node = new NodeType();
node.size = [300, 120];
node.widgets = [];
node.setSize = (s) => { node.size = s; };
node.computeSize = () => [300, 400];
const widgets = [];
node.addDOMWidget = (name, type, el, opts) => { widgets.push({ name, type, serialize: opts.serialize, minH: opts.getMinHeight() }); return {}; };
const out = { name: ext.name };
node.onExecuted({ cvk_camera: [cam] });
await sleep(20);
out.afterExec = globalThis.__CVK_CAMERA_PREVIEW_DRAWN__ ?? 0;
const canvas = canvases[0];
const ev = (x, y) => ({ clientX: x, clientY: y, pointerId: 1, type: "", stopPropagation() {}, preventDefault() {} });
canvas.listeners.pointerdown(ev(100, 100));
canvas.listeners.pointermove(ev(160, 120));
canvas.listeners.pointerup({ ...ev(160, 120), type: "pointerup" });
await sleep(20);
out.afterDrag = globalThis.__CVK_CAMERA_PREVIEW_DRAWN__;
node.onExecuted({ cvk_camera: [cam] });
node.onExecuted({});
await sleep(20);
out.afterSecondExec = globalThis.__CVK_CAMERA_PREVIEW_DRAWN__;
out.chained = chained;
out.widgets = widgets;
out.nodeSize = node.size;
out.canvas = [canvas.width, canvas.height];
out.strokes = [...strokes];
// no addDOMWidget: drawn in onDrawForeground instead
const old = new NodeType();
old.size = [300, 120];
old.widgets = [{ name: "size", last_y: 4 }, { name: "projections", last_y: 28 }];
old.setSize = (s) => { old.size = s; };
old.onExecuted({ cvk_camera: [cam] });
const before = globalThis.__CVK_CAMERA_PREVIEW_DRAWN__;
old.onDrawForeground(makeCtx());
out.fallbackDrew = globalThis.__CVK_CAMERA_PREVIEW_DRAWN__ - before;
out.fallbackSize = old.size;
// a node as the example workflow makes it (640 × 560): before its first run, then after it
nextSize = [620, 440];
const fresh = new NodeType();
fresh.size = [640, 560];
fresh.widgets = [];
fresh.setSize = (s) => { fresh.size = s; };
fresh.computeSize = () => [300, 400];
const freshWidgets = [];
fresh.addDOMWidget = (name) => { freshWidgets.push(name); return {}; };
log.segments = []; log.texts = [];
fresh.onNodeCreated?.();
await sleep(20);
out.hint = { widgets: [...freshWidgets], texts: log.texts.map((t) => t[0]), segments: log.segments.length };
log.segments = []; log.texts = [];
fresh.onExecuted({ cvk_camera: [cam2] });
await sleep(20);
out.ran = { widgets: [...freshWidgets], texts: log.texts, segments: log.segments };
console.log(JSON.stringify(out));
"""


def test_js_has_no_network_or_third_party_imports():
    src = open(JS, encoding="utf-8").read()
    imports = [line for line in src.splitlines() if line.startswith("import ")]
    assert imports == ['import { app } from "../../scripts/app.js";']
    assert "http://" not in src and "https://" not in src and "fetch(" not in src
    assert 'name: "ConsistentVideoKit.cameraPreview"' in src


def run_js_driver(tmp_path) -> dict:
    from consistent_video_kit.camera import trajectories
    (tmp_path / "hooks.mjs").write_text(HOOKS)
    (tmp_path / "driver.mjs").write_text(DRIVER)
    (tmp_path / "cam.json").write_text(json.dumps(orbit(2, 6).to_json()))
    # the example workflow's path: CVD's circle, 4 views × 16 frames, every view starting at one camera
    (tmp_path / "cam2.json").write_text(json.dumps(trajectories.pattern("circle", 4, 16, 256, 256, 0.5).to_json()))
    run = subprocess.run(["node", str(tmp_path / "driver.mjs"), JS, str(tmp_path / "cam.json"), str(tmp_path / "cam2.json")],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout.strip().splitlines()[-1])


needs_node = pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed: the frontend is not run")


@needs_node
def test_js_extension_draws_the_camera_and_redraws_on_drag(tmp_path):
    out = run_js_driver(tmp_path)
    assert out["name"] == "ConsistentVideoKit.cameraPreview"
    assert out["chained"] == 3                                            # the existing onExecuted still runs
    assert out["widgets"] == [{"name": "camera3d", "type": "canvas", "serialize": False, "minH": 260}]  # added once
    assert out["afterExec"] >= 1 and out["afterDrag"] > out["afterExec"] and out["afterSecondExec"] > out["afterDrag"]
    assert out["canvas"] == [400, 260] and out["nodeSize"][1] >= 400
    for rgb in PALETTE[:2]:                                               # both views drawn in their colours
        assert f"rgb({','.join(map(str, rgb))})" in out["strokes"]
    assert f"rgb({','.join(map(str, PALETTE[2]))})" not in out["strokes"]
    assert out["fallbackDrew"] == 1 and out["fallbackSize"][1] >= 260


@needs_node
def test_js_node_shows_a_hint_before_its_first_run(tmp_path):
    """A new Camera Preview node is not an empty box: its drawing area is there from the start, with words
    saying what will appear and a sample path; the first run replaces them (same drawing area, no second one)."""
    out = run_js_driver(tmp_path)
    hint, ran = out["hint"], out["ran"]
    assert hint["widgets"] == ["camera3d"]
    assert any("Run the workflow" in t for t in hint["texts"]) and any("sample" in t for t in hint["texts"])
    assert hint["segments"] > 50                                           # the sample path is drawn
    assert ran["widgets"] == ["camera3d"]
    texts = [t[0] for t in ran["texts"]]
    assert not any("Run the workflow" in t for t in texts)
    assert "4 views × 16 frames, 256×256" in texts and {"view 0", "view 3", "0", "15"} <= set(texts)


def _text_box(text, x, y, align, font):
    """The box a text takes in the driver's 2-D context stand-in: 6 px per character, the font's size high,
    centred on y (textBaseline "middle")."""
    size = float(font.split("px")[0].split()[-1])
    w = 6 * len(text)
    x0 = x - w / 2 if align == "center" else x - w if align in ("right", "end") else x
    return x0, y - size / 2, x0 + w, y + size / 2


@needs_node
def test_js_labels_do_not_cover_the_tracks(tmp_path):
    """In the 3-D view of the example's path (every view starts at one camera, at the world origin), the frame
    labels (0, 15) and the axes labels (+x, +y, +z) meet none of the stroked camera tracks."""
    out = run_js_driver(tmp_path)
    segs = [s for s in out["ran"]["segments"] if s[5].startswith("rgb(") and s[5] != "rgb(18,20,24)"]
    assert len(segs) > 500
    pts, half = [], []
    for x0, y0, x1, y1, width, _ in segs:
        n = max(2, int(math.hypot(x1 - x0, y1 - y0) * 2) + 1)
        t = np.linspace(0, 1, n)[:, None]
        pts.append(np.array([x0, y0]) + t * np.array([x1 - x0, y1 - y0]))
        half.append(np.full(n, width / 2))
    P, H = np.concatenate(pts), np.concatenate(half)
    labels = [t for t in out["ran"]["texts"] if t[0].isdigit() or t[0] in ("+x", "+y", "+z")]
    assert {t[0] for t in labels} >= {"0", "15", "+x", "+y", "+z"}
    for text, x, y, align, font in labels:
        x0, y0, x1, y1 = _text_box(text, x, y, align, font)
        inside = (P[:, 0] + H > x0) & (P[:, 0] - H < x1) & (P[:, 1] + H > y0) & (P[:, 1] - H < y1)
        assert not inside.any(), f"label {text!r} at {(x0, y0, x1, y1)} covers {inside.sum()} track points"
