"""The bad-input suite (cvk_testkit/bad_inputs.py) through the test kit's executor, plus the property behind
it: every FLOAT input of every node refuses NaN and ±inf with one message, every INT/FLOAT input its declared
range, before the node runs."""
import collections
import math

import pytest

from cvk_testkit import bad_inputs as bi
from cvk_testkit.core_nodes import CORE_NODES
from cvk_testkit.executor import Executor, WorkflowError, input_specs
from consistent_video_kit.nodes.common import CVKInputError


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad_input_models")
    bi.write_files(str(d), str(d / "unused_input"))
    return d


@pytest.fixture
def executor(pack, model_files, comfy_dirs, monkeypatch):
    monkeypatch.setenv("CVK_MODELS_DIR", str(model_files))
    bi.write_files(str(model_files), str(comfy_dirs / "input"))   # pose files into this test's input folder
    return Executor({**pack.NODE_CLASS_MAPPINGS, **CORE_NODES})


def test_the_suite_covers_every_node(pack):
    assert len(bi.CASES) >= 40 and len({c.id for c in bi.CASES}) == len(bi.CASES)
    assert {c.class_type for c in bi.CASES} == set(pack.NODE_CLASS_MAPPINGS)
    kinds = collections.Counter(c.kind for c in bi.CASES)
    nan_cases = [c for c in bi.CASES if "got nan" in c.words]
    print(f"\nbad-input suite: {len(bi.CASES)} cases, {dict(kinds)}, {len(nan_cases)} non-finite")
    assert kinds["node"] >= 30 and nan_cases


@pytest.mark.parametrize("case", bi.CASES, ids=[c.id for c in bi.CASES])
def test_bad_input_is_refused_clearly(executor, case):
    if case.kind == "validation":
        with pytest.raises(WorkflowError) as e:
            executor.run(case.prompt)
        assert e.value.kind == case.words and f"'{case.input}'" in str(e.value)
        assert executor.node_classes[case.prompt[e.value.node_id]["class_type"]].__name__ == case.class_type
        return
    with pytest.raises(CVKInputError) as e:
        executor.run(case.prompt)
    msg = str(e.value)
    assert msg.startswith(f"{case.class_type}: input '{case.input}' got "), msg
    assert case.words in msg, msg
    assert type(e.value).__module__ == "builtins"          # ComfyUI shows the type as plain 'CVKInputError'


def _valid_value(kind, opts):   # (the executor fixture puts files in the lists of file combos)
    if isinstance(kind, list):
        return kind[0] if kind else "none"
    return {"INT": opts.get("default", opts.get("min", 0)), "FLOAT": opts.get("default", 0.0),
            "STRING": opts.get("default", ""), "BOOLEAN": opts.get("default", False)}.get(kind)


def float_inputs(pack):
    for node_id, cls in sorted(pack.NODE_CLASS_MAPPINGS.items()):
        for name, (kind, opts, _req) in input_specs(cls).items():
            if kind == "FLOAT":
                yield node_id, cls, name


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_every_float_input_refuses_non_finite_values(pack, executor, bad):
    seen = 0
    for node_id, cls, name in float_inputs(pack):
        kwargs = {n: _valid_value(k, o) for n, (k, o, _r) in input_specs(cls).items()}
        kwargs[name] = bad
        with pytest.raises(CVKInputError) as e:
            getattr(cls(), cls.FUNCTION)(**kwargs)
        assert str(e.value) == f"{node_id}: input '{name}' got {bad!r}; expected a finite number.", str(e.value)
        seen += 1
    assert seen >= 15


def test_every_int_and_float_input_refuses_values_outside_its_range(pack, executor):
    checked = 0
    for node_id, cls in sorted(pack.NODE_CLASS_MAPPINGS.items()):
        specs = input_specs(cls)
        for name, (kind, opts, _req) in specs.items():
            if kind not in ("INT", "FLOAT") or "min" not in opts:
                continue
            kwargs = {n: _valid_value(k, o) for n, (k, o, _r) in specs.items()}
            kwargs[name] = opts["min"] - 1
            with pytest.raises(CVKInputError) as e:
                getattr(cls(), cls.FUNCTION)(**kwargs)
            word = "an integer" if kind == "INT" else "a number"
            assert f"{node_id}: input '{name}' got {opts['min'] - 1!r}; expected {word} from {opts['min']} to " \
                   f"{opts['max']}." == str(e.value)
            checked += 1
    assert checked >= 40


def test_every_choice_and_switch_input_refuses_what_it_does_not_offer(pack, executor):
    """Combos outside their list (file lists excepted: their nodes name the folders searched), non-string
    STRINGs and non-bool BOOLEANs are refused before the node runs."""
    checked = 0
    for node_id, cls in sorted(pack.NODE_CLASS_MAPPINGS.items()):
        specs = input_specs(cls)
        for name, (kind, opts, _req) in specs.items():
            bad = "no such choice" if isinstance(kind, list) else {"STRING": 3, "BOOLEAN": "yes"}.get(kind)
            if bad is None or name in getattr(cls, "FILE_INPUTS", ()):
                continue
            kwargs = {n: _valid_value(k, o) for n, (k, o, _r) in specs.items()}
            kwargs[name] = bad
            with pytest.raises(CVKInputError) as e:
                getattr(cls(), cls.FUNCTION)(**kwargs)
            want = f"one of {kind}" if isinstance(kind, list) else {"STRING": "a string", "BOOLEAN": "true or false"}[kind]
            assert str(e.value) == f"{node_id}: input '{name}' got {bad!r}; expected {want}.", str(e.value)
            checked += 1
    assert checked >= 30
