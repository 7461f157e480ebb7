"""UI-format (what the frontend saves) and API-format workflow helpers: widget lists as the frontend
builds them, UI → API conversion, and the checks every example workflow must pass."""
from __future__ import annotations

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
