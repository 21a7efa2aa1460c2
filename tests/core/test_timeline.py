import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syslab.core.errors import InputError
from syslab.core.timeline import Op, schedule


def test_chain_and_resource_serialisation():
    s = schedule([Op("a", 1.0, "gpu0"), Op("b", 2.0, "gpu0"), Op("c", 1.0, "gpu1", deps=("a",)),
                  Op("d", 0.5, None, deps=("b", "c"))])
    assert s.start == {"a": 0.0, "b": 1.0, "c": 1.0, "d": 3.0}
    assert s.makespan == 3.5
    assert s.utilisation() == {"gpu0": pytest.approx(3 / 3.5), "gpu1": pytest.approx(1 / 3.5)}
    assert s.critical_path() == ["a", "b", "d"]


def test_cycle_and_unknown_dependency_are_input_errors():
    with pytest.raises(InputError, match="cycle"):
        schedule([Op("a", 1, "r", deps=("b",)), Op("b", 1, "r")])
    with pytest.raises(InputError, match="unknown op"):
        schedule([Op("a", 1, deps=("zz",))])


def test_chrome_trace_has_one_event_per_op(tmp_path):
    s = schedule([Op("a", 1e-3, "gpu0", category="fwd"), Op("b", 2e-3, "link", deps=("a",))])
    path = s.write_chrome_trace(tmp_path / "t.json")
    events = json.loads(path.read_text())["traceEvents"]
    spans = [e for e in events if e["ph"] == "X"]
    assert len(spans) == 2 and spans[1]["ts"] == pytest.approx(1000.0) and spans[1]["dur"] == pytest.approx(2000.0)


@st.composite
def dags(draw):
    n = draw(st.integers(1, 25))
    ops = []
    for i in range(n):
        deps = draw(st.lists(st.integers(0, i - 1), max_size=3, unique=True)) if i else []
        ops.append(Op(f"o{i}", draw(st.floats(0, 5)), draw(st.sampled_from(["r0", "r1", None])),
                      tuple(f"o{d}" for d in deps)))
    return ops


@settings(max_examples=60, deadline=None)
@given(dags())
def test_schedule_respects_dependencies_and_resources(ops):
    s = schedule(ops)
    for op in ops:
        assert s.end[op.name] == pytest.approx(s.start[op.name] + op.duration_s)
        for d in op.deps:
            assert s.start[op.name] >= s.end[d] - 1e-9
    for r in ("r0", "r1"):
        names = [op.name for op in ops if op.resource == r]          # in given order, never overlapping
        for a, b in zip(names, names[1:], strict=False):
            assert s.start[b] >= s.end[a] - 1e-9
    path = s.critical_path()
    assert s.end[path[-1]] == pytest.approx(max(s.end.values()))
