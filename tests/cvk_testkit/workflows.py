"""UI-format (what the frontend saves) and API-format workflow helpers: widget lists as the frontend
builds them, UI → API conversion, and the checks every example workflow must pass."""
from __future__ import annotations

import math

from .executor import WIDGET_TYPES, input_specs


def widget_slots(cls) -> list[tuple[str, int]]:
    """(input name, number of stored values) for each widget of a node, in ``widgets_values`` order.

    A widget is an INT/FLOAT/STRING/BOOLEAN or combo input without ``forceInput``. A seed widget
    (``control_after_generate``, or named seed/noise_seed) stores one extra value (``"fixed"``, ...);
    an image-upload combo stores one extra value (the upload widget's ``"image"``)."""
    slots = []
    for name, (kind, opts, _req) in input_specs(cls).items():
        is_widget = isinstance(kind, list) or kind in WIDGET_TYPES
        if not is_widget or opts.get("forceInput"):
            continue
        extra = 0
        if kind == "INT" and (opts.get("control_after_generate") or name in ("seed", "noise_seed")):
            extra = 1
        if isinstance(kind, list) and opts.get("image_upload"):
            extra = 1
        slots.append((name, 1 + extra))
    return slots


def check_ui_workflow(workflow: dict, node_classes: dict) -> list[str]:
    """Every problem found: unknown node types, widget counts that do not match the definitions,
    links whose types disagree with the node definitions."""
    problems = []
    by_id = {n["id"]: n for n in workflow["nodes"]}
    for node in workflow["nodes"]:
        cls = node_classes.get(node["type"])
        if cls is None:
            problems.append(f"node {node['id']}: unknown type {node['type']!r}")
            continue
        want = sum(n for _, n in widget_slots(cls))
        got = len(node.get("widgets_values", []))
        if want != got:
            problems.append(f"node {node['id']} ({node['type']}): {got} widget values, definition has {want}")
    for link_id, src, src_slot, dst, dst_slot, typ in workflow["links"]:
        src_cls = node_classes.get(by_id[src]["type"])
        if src_cls is not None and src_cls.RETURN_TYPES[src_slot] != typ:
            problems.append(f"link {link_id}: type {typ} but {by_id[src]['type']} output {src_slot} is "
                            f"{src_cls.RETURN_TYPES[src_slot]}")
    return problems


def ui_to_api(workflow: dict, node_classes: dict) -> dict:
    """Convert a UI-format workflow to API format (``{id: {class_type, inputs}}``)."""
    links = {l[0]: l for l in workflow["links"]}
    api = {}
    for node in workflow["nodes"]:
        if node.get("mode", 0) != 0:  # muted / bypassed nodes are not sent
            continue
        cls = node_classes[node["type"]]
        inputs = {}
        values = list(node.get("widgets_values", []))
        pos = 0
        for name, count in widget_slots(cls):
            inputs[name] = values[pos]
            pos += count
        for slot in node.get("inputs", []):
            if slot.get("link") is not None:
                _, src, src_slot, _, _, _ = links[slot["link"]]
                inputs[slot["name"]] = [str(src), src_slot]
        api[str(node["id"])] = {"class_type": node["type"], "inputs": inputs,
                                "_meta": {"title": node.get("title", node["type"])}}
    return api


# ---- how the frontend shows a workflow --------------------------------------------------------------------
# Measured in ComfyUI's frontend 1.49.6 (the version ComfyUI 0.33 pins), headless Chromium, a 1280 × 800 window,
# device pixel ratio 1: the graph canvas covers the whole window and the frontend's chrome lies over it.
CANVAS = (1280, 800)
SIDEBAR = 59            # the left tool bar: x 0–59, from y = 38 down
TAB_BAR = 38            # the workflow tab bar: y 0–38
TOP = 86                # the tab bar and the canvas tool row under it ("Graph" breadcrumb, Run bar): y 46–86
MINIMAP = (1023, 542, 1276, 742)   # the minimap, shown by default in the bottom-right corner (x0, y0, x1, y1)
TITLE_HEIGHT = 30       # LiteGraph.NODE_TITLE_HEIGHT: a node's title bar sits above its pos
# Nodes the frontend shrinks to their widgets when it loads a workflow, whatever size was saved: SaveVideo (its
# dynamic format/codec widgets are rebuilt) is 106 high until its video arrives, then grows back to the saved size
# (a 300-wide node showing a square video: 300 × 398). The view a template opens with is fitted to the shrunk size.
LOAD_HEIGHT = {"SaveVideo": 106}
# Below this zoom the frontend draws nodes in low detail, without any text: its MinFontSizeForLOD setting (8 px)
# over NODE_TEXT_SIZE (14) × √devicePixelRatio. A workflow must open above it with room to spare.
LOW_DETAIL_ZOOM = 8 / 14
MIN_ZOOM = 0.6


# A title is cut short ("…") where it is wider than the node less two title heights (LGraphNode.drawTitleText).
# Measured widths of our titles in the frontend's 14px Inter: at most 7.75 px a character; 8 is the bound used.
TITLE_CHAR_WIDTH = 8
# web/cvk.js draws an "UNTRAINED DEMO" badge (102 px wide, 6 px from the right edge) over the title's right end
# of a loader set to a tiny demo model: the title must end before it.
BADGE = 102 + 6
UNTRAINED = "(untrained demo)"
BADGED = ("CVK_VideoModelLoader", "CVK_GuideModelLoader", "CVK_CameraCtrlLoader",   # LOADERS in web/cvk.js
          "CVK_CVDSyncLoader", "CVK_LVDMLoader", "CVK_LGCVDLoader")


def title_problems(workflow: dict, display_names: dict) -> list[str]:
    """Titles the frontend would cut short or the demo badge would cover."""
    problems = []
    for n in workflow["nodes"]:
        title = n.get("title") or display_names.get(n["type"], n["type"])
        need = 2 * TITLE_HEIGHT + TITLE_CHAR_WIDTH * len(title)
        if any(UNTRAINED in str(v) for v in n.get("widgets_values") or []) and n["type"] in BADGED:
            need = TITLE_HEIGHT + TITLE_CHAR_WIDTH * len(title) + 4 + BADGE
        if n["size"][0] < need:
            problems.append(f"node {n['id']} ({n['type']}): {n['size'][0]} wide, its title {title!r} needs {need}")
    return problems


def node_rects(workflow: dict, at_load: bool = False) -> list[tuple[float, float, float, float]]:
    """Each node's box in graph units as the frontend counts it (``boundingRect``: the title bar included):
    ``(x, y, width, height)``; with ``at_load`` the size it has just after loading (:data:`LOAD_HEIGHT`)."""
    def height(n):
        return min(n["size"][1], LOAD_HEIGHT.get(n["type"], math.inf)) if at_load else n["size"][1]
    return [(n["pos"][0], n["pos"][1] - TITLE_HEIGHT, n["size"][0], height(n) + TITLE_HEIGHT)
            for n in workflow["nodes"]]


def fit_view(rects, canvas=CANVAS) -> tuple[float, list[float]]:
    """The view the frontend's "fit view" picks (what opening a template does): the nodes' bounding box with a
    10-unit margin (``createBounds``), zoomed so it fills 75 % of the canvas in its tighter direction
    (``DragAndScale.fitToBounds``, zoom 0.75, boxes smaller than 300 counted as 300, at most 10×) and centred.
    Returns ``(scale, offset)``; a graph point p is drawn at ``(p + offset) · scale``."""
    x0 = min(r[0] for r in rects) - 10
    y0 = min(r[1] for r in rects) - 10
    w = max(r[0] + r[2] for r in rects) + 10 - x0
    h = max(r[1] + r[3] for r in rects) + 10 - y0
    cw, ch = canvas
    scale = min(0.75 * cw / max(w, 300), 0.75 * ch / max(h, 300), 10.0)
    return scale, [-x0 - w / 2 + cw / scale / 2, -y0 - h / 2 + ch / scale / 2]


def on_screen(rect, scale: float, offset) -> tuple[float, float, float, float]:
    """A graph box ``(x, y, w, h)`` on screen under the view ``(scale, offset)``: ``(x0, y0, x1, y1)`` pixels."""
    x, y, w, h = rect
    return ((x + offset[0]) * scale, (y + offset[1]) * scale, (x + w + offset[0]) * scale, (y + h + offset[1]) * scale)


def hidden_nodes(workflow: dict, scale: float, offset) -> list[str]:
    """Nodes (at their saved size: after a run) that the view ``(scale, offset)`` puts under the sidebar, the top
    bars or the minimap, or past the window's edge."""
    problems = []
    for node, rect in zip(workflow["nodes"], node_rects(workflow)):
        x0, y0, x1, y1 = on_screen(rect, scale, offset)
        where = f"node {node['id']} ({node['type']}) at ({x0:.0f}, {y0:.0f})–({x1:.0f}, {y1:.0f})"
        if x0 < SIDEBAR:
            problems.append(f"{where}: under the sidebar (x < {SIDEBAR})")
        if y0 < TOP:
            problems.append(f"{where}: under the top bars (y < {TOP})")
        if x1 > CANVAS[0] or y1 > CANVAS[1]:
            problems.append(f"{where}: past the window's edge {CANVAS}")
        mx0, my0, mx1, my1 = MINIMAP
        if x0 < mx1 and mx0 < x1 and y0 < my1 and my0 < y1:
            problems.append(f"{where}: under the minimap {MINIMAP}")
    return problems


def view_problems(workflow: dict) -> list[str]:
    """What is wrong with how the workflow opens in the frontend. Opened as a template (the view fitted to the
    nodes as loaded): zoomed below :data:`MIN_ZOOM`, or a node, once its run has filled it, hidden (see
    :func:`hidden_nodes`). Opened directly (its saved view, ``extra.ds``): zoomed below :data:`MIN_ZOOM`, or a
    node hidden."""
    problems = []
    fit, fit_offset = fit_view(node_rects(workflow, at_load=True))
    if fit < MIN_ZOOM:
        problems.append(f"opened as a template it is zoomed to {fit:.3f} (< {MIN_ZOOM}): too small to read")
    problems += [f"opened as a template, {p}" for p in hidden_nodes(workflow, fit, fit_offset)]
    ds = workflow.get("extra", {}).get("ds")
    if not ds:
        return problems + ["no saved view (extra.ds)"]
    if ds["scale"] < MIN_ZOOM:
        problems.append(f"saved view zoom {ds['scale']} < {MIN_ZOOM}")
    return problems + [f"saved view: {p}" for p in hidden_nodes(workflow, ds["scale"], ds["offset"])]


#: The videos the example workflows make: name → (frames, width, height).
EXAMPLE_VIDEOS = {"cvk_text_to_video": (8, 128, 128), "cvk_videoguide": (8, 128, 128), "cvk_i4vgen": (8, 128, 128),
                  "cvk_i4vgen_image_to_video": (8, 128, 128), "cvk_cameractrl": (8, 128, 128),
                  "cvk_cvd_two_views": (8, 256, 128), "cvk_cvd_four_views": (8, 384, 96),
                  "cvk_lvdm_unconditional": (16, 128, 128), "cvk_videoguide_vc2": (8, 128, 128),
                  "cvk_long_video_animatediff": (64, 64, 64), "cvk_long_video_lvdm": (128, 64, 64),
                  "cvk_lgcvd_predict": (30, 32, 32), "cvk_lgcvd_infill": (16, 32, 32),
                  "cvk_native_videoguide": (4, 64, 64), "cvk_native_i4vgen": (4, 64, 64)}

# Examples on native ComfyUI models (Load Checkpoint, AnimateDiff-Evolved, core sampling): they run in a real ComfyUI
# only (tests/test_comfyui_host.py), where their API copies name the real-size test files (tiny_files.REAL_SIZE_FILES;
# ComfyUI and ADE take SD1.5's sizes only) in place of the released files the examples name, at a test size. What
# each API copy changes from its UI workflow, by node id and input:
_CKPT, _MM = "cvk_test_sd15_real_size.safetensors", "cvk_test_mm_v2_real_size.ckpt"
NATIVE_API_CHANGES = {
    "cvk_native_videoguide": {"1": {"ckpt_name": _CKPT}, "2": {"model_name": _MM}, "3": {"model_name": _MM},
                              "8": {"steps": 2}, "9": {"guided_steps": 1, "guide_steps": 1, "guide_grid": 4},
                              "10": {"width": 64, "height": 64, "batch_size": 4}},
    "cvk_native_i4vgen": {"1": {"ckpt_name": _CKPT}, "2": {"model_name": _MM}, "5": {"width": 64, "height": 64},
                          "6": {"steps": 2}, "7": {"frames": 4, "steps": 2}, "8": {"steps": 2}},
}


def native_api_copy(name: str, workflow: dict, node_classes: dict) -> dict:
    """The API copy of a UI workflow: :func:`ui_to_api` with :data:`NATIVE_API_CHANGES` applied (none for the pack's
    own examples)."""
    api = ui_to_api(workflow, node_classes)
    for node_id, changes in NATIVE_API_CHANGES.get(name, {}).items():
        for key, value in changes.items():
            assert key in api[node_id]["inputs"], (name, node_id, key)
            api[node_id]["inputs"][key] = value
    return api


def video_endings(workflow: dict) -> list[str]:
    """Problems with how a workflow ends: decoded frames must become a video (``CreateVideo`` → ``SaveVideo``, through
    ``CVK_ViewGrid`` where it puts several views side by side), not a folder of pictures (no ``SaveImage`` of the
    frames)."""
    by_id = {n["id"]: n for n in workflow["nodes"]}
    links = {l[0]: l for l in workflow["links"]}

    def consumers(node, slot=0):
        out = node["outputs"][slot].get("links") or [] if node.get("outputs") else []
        return [by_id[links[i][3]] for i in out]

    def through_grids(node):      # the frames' users, and past a View Grid (it only rearranges them) its users
        return [w for u in consumers(node) for w in ([u] + through_grids(u) if u["type"] == "CVK_ViewGrid" else [u])]

    problems = []
    for dec in (n for n in workflow["nodes"] if n["type"] == "CVK_DecodeVideo"):
        users = through_grids(dec)
        if any(u["type"] == "SaveImage" for u in users):
            problems.append(f"node {dec['id']}: its frames go to SaveImage (a folder of pictures)")
        videos = [u for u in users if u["type"] == "CreateVideo"]
        if not any(s["type"] == "SaveVideo" for v in videos for s in consumers(v)):
            problems.append(f"node {dec['id']}: its frames do not reach CreateVideo → SaveVideo")
    return problems
