"""A small executor for API-format workflows, following ComfyUI's rules.

- Only nodes upstream of an output node (``OUTPUT_NODE = True``) run; no output node is an error
  (ComfyUI: ``prompt_no_outputs``).
- Inputs are widget values or links ``[node_id, output_index]``; a link's type must match the input's
  declared type (``*`` matches anything).
- ``INPUT_TYPES`` validation: required inputs present; INT/FLOAT within min/max, combos in their list,
  STRING/BOOLEAN of the right type. Optional inputs are validated when given. Extra inputs are ignored.
- Topological order; each node's ``FUNCTION`` is called on a fresh instance with keyword inputs;
  results are a tuple or ``{"result": ..., "ui": ...}``.
"""
from __future__ import annotations

from typing import Any

WIDGET_TYPES = ("INT", "FLOAT", "STRING", "BOOLEAN")


class WorkflowError(ValueError):
    def __init__(self, kind: str, message: str, node_id: str | None = None):
        super().__init__(f"[{kind}] node {node_id}: {message}" if node_id else f"[{kind}] {message}")
        self.kind, self.node_id = kind, node_id


def is_link(value) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], str) and isinstance(value[1], int)


def input_specs(cls) -> dict[str, tuple[Any, dict, bool]]:
    """name → (type or combo list, options, required) in declaration order (required first)."""
    spec = cls.INPUT_TYPES()
    out = {}
    for section, required in (("required", True), ("optional", False)):
        for name, entry in spec.get(section, {}).items():
            kind = entry[0]
            opts = entry[1] if len(entry) > 1 else {}
            out[name] = (kind, opts, required)
    return out


def _check_widget(node_id: str, name: str, kind, opts: dict, value) -> None:
    if isinstance(kind, list):
        if value not in kind:
            raise WorkflowError("value_not_in_list", f"input '{name}': {value!r} not in {kind}", node_id)
        return
    if kind in ("INT", "FLOAT"):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind == "INT" and not float(value).is_integer()):
            raise WorkflowError("invalid_input_type", f"input '{name}': {value!r} is not {kind}", node_id)
        if "min" in opts and value < opts["min"]:
            raise WorkflowError("value_smaller_than_min", f"input '{name}': {value} < {opts['min']}", node_id)
        if "max" in opts and value > opts["max"]:
            raise WorkflowError("value_bigger_than_max", f"input '{name}': {value} > {opts['max']}", node_id)
    elif kind == "STRING" and not isinstance(value, str):
        raise WorkflowError("invalid_input_type", f"input '{name}': {value!r} is not a STRING", node_id)
    elif kind == "BOOLEAN" and not isinstance(value, bool):
        raise WorkflowError("invalid_input_type", f"input '{name}': {value!r} is not a BOOLEAN", node_id)


class Executor:
    def __init__(self, node_classes: dict[str, type]):
        self.node_classes = node_classes

    def validate(self, prompt: dict) -> list[str]:
        """Check the whole prompt; return the execution order (node ids)."""
        for nid, node in prompt.items():
            ct = node.get("class_type")
            if ct not in self.node_classes:
                raise WorkflowError("missing_node_type", f"unknown node type {ct!r}", nid)
        outputs = [nid for nid, n in prompt.items() if getattr(self.node_classes[n["class_type"]], "OUTPUT_NODE", False)]
        if not outputs:
            raise WorkflowError("prompt_no_outputs", "the prompt has no output node")
        order: list[str] = []
        state: dict[str, str] = {}

        def visit(nid: str):
            if state.get(nid) == "done":
                return
            if state.get(nid) == "visiting":
                raise WorkflowError("dependency_cycle", "the graph has a cycle", nid)
            state[nid] = "visiting"
            node = prompt[nid]
            cls = self.node_classes[node["class_type"]]
            inputs = node.get("inputs", {})
            for name, (kind, opts, required) in input_specs(cls).items():
                if name not in inputs:
                    if required:
                        raise WorkflowError("required_input_missing", f"required input '{name}' missing", nid)
                    continue
                value = inputs[name]
                if is_link(value):
                    src, idx = value
                    if src not in prompt:
                        raise WorkflowError("bad_linked_input", f"input '{name}' links to missing node {src}", nid)
                    src_cls = self.node_classes[prompt[src]["class_type"]]
                    if not 0 <= idx < len(src_cls.RETURN_TYPES):
                        raise WorkflowError("bad_linked_input", f"input '{name}' links to output {idx} of {src}", nid)
                    got = src_cls.RETURN_TYPES[idx]
                    want = "COMBO" if isinstance(kind, list) else kind
                    if "*" not in (got, want) and got != want:
                        raise WorkflowError("return_type_mismatch", f"input '{name}' wants {want}, got {got}", nid)
                    visit(src)
                else:
                    _check_widget(nid, name, kind, opts, value)
            state[nid] = "done"
            order.append(nid)

        for nid in outputs:
            visit(nid)
        return order

    def run(self, prompt: dict) -> dict[str, dict]:
        """Validate, then execute; returns ``{node_id: {"result": tuple, "ui": dict | None}}``."""
        order = self.validate(prompt)
        results: dict[str, dict] = {}
        for nid in order:
            node = prompt[nid]
            cls = self.node_classes[node["class_type"]]
            kwargs = {}
            for name, value in node.get("inputs", {}).items():
                if name not in input_specs(cls):
                    continue
                kwargs[name] = results[value[0]]["result"][value[1]] if is_link(value) else value
            out = getattr(cls(), cls.FUNCTION)(**kwargs)
            if isinstance(out, dict):
                results[nid] = {"result": tuple(out.get("result", ())), "ui": out.get("ui")}
            else:
                results[nid] = {"result": tuple(out), "ui": None}
        return results
