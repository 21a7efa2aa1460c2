import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syslab.core.errors import InputError
from syslab.training.pipeline import one_f_one_b, one_f_one_b_order, one_f_one_b_schedule
from syslab.training.wlb_llm import fig5_iteration_s, iteration_s


@pytest.mark.parametrize("pp,m", [(4, 8), (4, 2), (1, 3), (8, 8)])
def test_uniform_1f1b_makespan_is_p_minus_1_plus_m_times_f_plus_b(pp, m):
    f, b = 1.0, 2.0
    s = one_f_one_b_schedule(np.full((pp, m), f), np.full((pp, m), b))
    assert s.makespan == pytest.approx((pp - 1 + m) * (f + b))
    # The paper's closed form agrees for uniform micro-batches.
    assert iteration_s([f] * m, pp) == pytest.approx(fig5_iteration_s([f] * m, pp))


def test_order_has_warmup_then_alternation():
    assert one_f_one_b_order(0, 4, 6)[:4] == [("F", 0), ("F", 1), ("F", 2), ("F", 3)]
    assert one_f_one_b_order(3, 4, 6)[:4] == [("F", 0), ("B", 0), ("F", 1), ("B", 1)]
    for stage in range(4):
        order = one_f_one_b_order(stage, 4, 6)
        assert sorted(order) == sorted([("F", j) for j in range(6)] + [("B", j) for j in range(6)])


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 5), st.integers(1, 9), st.integers(0, 1000))
def test_1f1b_respects_pipeline_dependencies(pp, m, seed):
    rng = np.random.default_rng(seed)
    fwd = rng.uniform(0.1, 1.0, (pp, m))
    s = one_f_one_b_schedule(fwd, 2 * fwd, p2p_s=0.01)
    for j in range(m):
        for st_ in range(1, pp):
            assert s.start[f"F{st_}.{j}"] >= s.end[f"F{st_ - 1}.{j}"] + 0.01 - 1e-9
        assert s.start[f"B{pp - 1}.{j}"] >= s.end[f"F{pp - 1}.{j}"] - 1e-9
    # Never faster than the busiest stage's total work.
    assert s.makespan >= (3 * fwd).sum(axis=1).max() - 1e-9


def test_shape_mismatch_is_an_input_error():
    with pytest.raises(InputError):
        one_f_one_b(np.ones((2, 3)), np.ones((3, 2)))


# --- interleaved 1F1B, memory, validation, bubbles ----------------------------------------------------------

from syslab.training import pipeline as P  # noqa: E402


@pytest.mark.parametrize("pp, v, m", [(2, 2, 4), (4, 2, 8), (4, 3, 12), (3, 2, 3)])
def test_interleaved_order_runs_every_chunk_and_microbatch_once(pp, v, m):
    for s in range(pp):
        order = P.interleaved_order(s, pp, v, m)
        assert sorted(x for x in order if x[0] == "F") == [("F", c, j) for c in range(v) for j in range(m)]
        assert sorted(x for x in order if x[0] == "B") == [("B", c, j) for c in range(v) for j in range(m)]
    sch = P.interleaved_schedule(np.ones((pp, m)), 2 * np.ones((pp, m)), v, p2p_s=0.1)
    assert P.validate(sch) == []


def test_interleaved_shrinks_the_bubble_by_the_number_of_chunks():
    pp, v, m, f, b = 4, 2, 8, 1.0, 2.0
    one = P.one_f_one_b_schedule(np.full((pp, m), f), np.full((pp, m), b))
    inter = P.interleaved_schedule(np.full((pp, m), f), np.full((pp, m), b), v)
    assert one.makespan == pytest.approx(m * (f + b) + (pp - 1) * (f + b))
    assert inter.makespan == pytest.approx(m * (f + b) + (pp - 1) * (f + b) / v)
    bubbles = P.bubble_fraction(one)
    assert bubbles["stage0"] == pytest.approx((pp - 1) / (m + pp - 1))


def test_activation_peaks_of_1f1b_and_interleaved():
    pp, m, v = 4, 8, 2
    one = P.one_f_one_b_schedule(np.ones((pp, m)), 2 * np.ones((pp, m)))
    peaks = P.activation_peaks(one)
    assert [peaks[f"stage{s}"] for s in range(pp)] == [min(pp - s, m) for s in range(pp)]
    inter = P.interleaved_schedule(np.ones((pp, m)), 2 * np.ones((pp, m)), v)
    # each chunk's forward holds 1/v of a stage's activations: stage 0 holds warm-up + 1 of them at its peak
    ipeaks = P.activation_peaks(inter, 1.0 / v)
    assert ipeaks["stage0"] == pytest.approx(((pp - 1) * 2 + (v - 1) * pp + 1) / v)
    assert P.validate(one, memory_limit=pp) == []
    assert any("above the limit" in p for p in P.validate(one, memory_limit=pp - 1))


def test_validate_catches_broken_schedules():
    sch = P.one_f_one_b_schedule(np.ones((2, 2)), np.ones((2, 2)))
    sch.start["B0.0"] = 0.0                                   # before its dependency and on top of F0.0
    problems = P.validate(sch)
    assert any("before its dependency" in p for p in problems) and any("overlap" in p for p in problems)
    with pytest.raises(InputError, match="multiple"):
        P.interleaved_order(0, 4, 2, 6)


@pytest.mark.parametrize("pp, m", [(2, 4), (4, 8), (8, 32)])
def test_zero_bubble_is_valid_within_1f1b_memory_and_beats_1f1b(pp, m):
    ones = np.ones((pp, m))
    zb = P.zero_bubble_schedule(ones, ones, ones, p2p_s=0.0)
    assert P.validate(zb) == []
    assert sum(1 for n in zb.ops if n[0] in "FBW" and n[1].isdigit()) == 3 * pp * m
    for s in range(pp):
        for j in range(m):
            assert zb.start[f"W{s}.{j}"] >= zb.end[f"B{s}.{j}"]
    one = P.one_f_one_b_schedule(ones, 2 * ones)
    peaks, one_peaks = P.activation_peaks(zb), P.activation_peaks(one)
    assert all(peaks[r] <= one_peaks[r] for r in one_peaks)
    assert 3 * m + (pp - 1) <= zb.makespan < one.makespan                 # H1's bound <= ours < 1F1B


@settings(max_examples=25, deadline=None)
@given(st.integers(2, 5), st.integers(1, 10), st.integers(0, 2**31 - 1))
def test_zero_bubble_with_random_times_respects_dependencies(pp, m, seed):
    rng = np.random.default_rng(seed)
    f, b, w = (rng.uniform(0.2, 2.0, (pp, m)) for _ in range(3))
    zb = P.zero_bubble_schedule(f, b, w, p2p_s=0.05)
    assert P.validate(zb) == []
    assert zb.makespan >= (f + b + w).sum(axis=1).max() - 1e-9           # no stage works faster than its work


# --- the general simulator: links, policies, freezing, replay ----------------------------------------------

from syslab.core.timeline import schedule as replay  # noqa: E402


def test_simulated_ops_replay_exactly_through_core_timeline():
    st = P.uniform_stages(4, 6, 1.0, 1.0, 1.0, chunks=2, v_shape=True, message_bytes=1.0,
                          links=P.cross_dc_links(4, [2], P.Link(0.7, 0.4)))
    sch = P.simulate(st, P.Greedy(4.0, phases=True))
    again = replay(list(sch.ops.values()))
    for name in sch.ops:
        assert again.start[name] == pytest.approx(sch.start[name])


def test_bandwidth_occupies_the_link_but_latency_does_not():
    # Stage 0 has two forwards done by t = 2 (1F1B's warm-up plus one); serialising a message takes 3.0.
    ones = np.ones((2, 3))
    slow = P.simulate(P.Stages(ones, ones, message_bytes=1.0, default_link=P.Link(0.0, 3.0)), P.orders_1f1b(2, 3))
    sends = sorted(n for n in slow.ops if n.startswith("send-F"))
    starts = [slow.start[n] for n in sends]
    assert starts[:2] == pytest.approx([1.0, 4.0])                    # F0.1 waits behind F0.0's message (FIFO)
    late = P.simulate(P.Stages(ones, ones, message_bytes=1.0, default_link=P.Link(3.0, 0.0)), P.orders_1f1b(2, 3))
    assert late.start["F1.0"] == pytest.approx(1.0 + 3.0)
    # both messages are in flight at once ([1, 4] and [2, 5]): latency is no queue
    assert (late.start["send-F0.1"], late.end["send-F0.1"]) == pytest.approx((2.0, 5.0))
    assert P.validate(slow) == [] and P.validate(late) == []


def test_cross_dc_links_cover_exactly_the_boundary_pairs():
    links = P.cross_dc_links(4, [2], P.Link(1.0))
    assert set(links) == {(a, b) for a in (0, 1) for b in (2, 3)} | {(b, a) for a in (0, 1) for b in (2, 3)}


@settings(max_examples=25, deadline=None)
@given(st.integers(2, 5), st.integers(1, 8), st.sampled_from(["UD", "Wave", "Loop"]), st.booleans(),
       st.integers(0, 2**31 - 1))
def test_greedy_respects_dependencies_and_memory_on_every_placement(pp, m, pattern, phases, seed):
    rng = np.random.default_rng(seed)
    chunks = 1 if pattern == "UD" else 2
    n = pp * chunks
    placement = [v % pp if not (pattern == "Wave" and v >= pp) else 2 * pp - 1 - v for v in range(n)]
    f, b, w = (rng.uniform(0.2, 2.0, (n, m)) for _ in range(3))
    stg = P.Stages(f, b, w, placement, message_bytes=1.0, default_link=P.Link(rng.uniform(0, 1), rng.uniform(0, 1)))
    limit = float(pp)
    sch = P.simulate(stg, P.Greedy(limit, phases=phases))
    assert P.validate(sch, memory_limit=limit) == []
    frozen = P.simulate(stg, P.orders_of(sch))                       # freezing the order reproduces it
    assert frozen.makespan == pytest.approx(sch.makespan)


def test_zb_orders_keep_their_memory_and_beat_1f1b():
    pp, m = 4, 8
    h1 = P.simulate(P.uniform_stages(pp, m, 1, 1, 1), P.orders_zb_h1(pp, m))
    assert max(P.activation_peaks(h1).values()) <= pp
    zbv = P.simulate(P.uniform_stages(pp, m, 1, 1, 1, chunks=2, v_shape=True), P.orders_zb_v(pp, m))
    assert max(P.activation_peaks(zbv).values()) <= pp
    one = P.one_f_one_b_schedule(np.ones((pp, m)), 2 * np.ones((pp, m)))
    assert zbv.makespan < h1.makespan < one.makespan
    assert 3 * m <= zbv.makespan


def test_an_order_that_contradicts_the_dependencies_stalls_with_an_input_error():
    stg = P.Stages(np.ones((2, 2)), np.ones((2, 2)))
    orders = P.orders_1f1b(2, 2)
    orders[1] = [("B", 1, 0), ("F", 1, 0), ("F", 1, 1), ("B", 1, 1)]   # backward before its forward
    with pytest.raises(InputError, match="stalled"):
        P.simulate(stg, orders)
    orders[1] = orders[1][:-1]
    with pytest.raises(InputError, match="exactly once"):
        P.simulate(stg, orders)


def test_weight_pieces_split_w_and_free_memory_at_the_last_piece():
    stg = P.uniform_stages(2, 3, 1, 1, 1, weight_pieces=4)
    sch = P.simulate(stg, P.Greedy(2.0, phases=True))
    pieces = [n for n in sch.ops if n.startswith("W0.0/")]
    assert len(pieces) == 4 and all(sch.ops[n].duration_s == pytest.approx(0.25) for n in pieces)
    assert P.validate(sch, memory_limit=2.0) == []


def test_no_op_starts_before_the_previous_one_on_its_device_ends_not_even_by_rounding():
    # Regression: events within 1e-12 were processed together at the earliest time, so a device could start
    # a forward a hair before its backward ended, and the memory accounting then saw both micro-batches. Stage
    # times that are not exact in binary (as Obscura's per-stage costs were when the bug showed) provoke it.
    stg = P.uniform_stages(8, 32, forward_s=0.1 / 3, backward_s=0.2 / 3 + 1e-13)
    sch = P.simulate(stg, P.orders_1f1b(8, 32))
    by_dev = {}
    for n, op in sch.ops.items():
        if op.resource and op.resource.startswith("stage"):
            by_dev.setdefault(op.resource, []).append((sch.start[n], sch.end[n]))
    assert len(by_dev) == 8
    for spans in by_dev.values():
        spans.sort()
        assert all(b[0] >= a[1] for a, b in zip(spans, spans[1:], strict=False))
    peaks = P.activation_peaks(sch)
    assert [round(peaks[f"stage{s}"], 9) for s in range(8)] == [8 - s for s in range(8)]


@pytest.mark.parametrize("pp, m", [(2, 7), (3, 10), (4, 8), (6, 19), (8, 32)])
def test_zb_h1_reaches_the_papers_bubble(pp, m):
    # Qi et al. (2024): ZB-H1's bubble is (p - 1)(F + B - W), p - 1 units at F = B = W = 1
    h1 = P.simulate(P.uniform_stages(pp, m, 1, 1, 1), P.orders_zb_h1(pp, m))
    assert h1.makespan == pytest.approx(3 * m + pp - 1)
    assert P.validate(h1, memory_limit=pp) == []


def _device_spans(sch):
    spans = {}
    for n, op in sch.ops.items():
        if op.resource and op.resource.startswith("stage"):
            a, b = spans.get(op.resource, (np.inf, -np.inf))
            spans[op.resource] = (min(a, sch.start[n]), max(b, sch.end[n]))
    return spans


@pytest.mark.parametrize("pp, m", [(2, 4), (3, 6), (4, 8), (4, 12), (6, 12), (8, 16), (8, 24)])
def test_zb_v_reaches_the_papers_zero_bubble_at_equal_times(pp, m):
    # Qi et al. (ICLR'24 §6; controllable-memory paper's V-ZB): at T_F = T_B = T_W, zero bubble (bubble rate
    # 1 - (F + B + W) m / longest stage time = 0) with 1F1B's activation memory, p micro-batches per device.
    st = P.uniform_stages(pp, m, 1, 1, 1, chunks=2, v_shape=True)
    zbv = P.simulate(st, P.orders_zb_v(pp, m))
    assert P.validate(zbv, memory_limit=pp) == []                  # dependencies, one item at a time, memory
    assert max(P.activation_peaks(zbv).values()) == pytest.approx(pp)
    spans = _device_spans(zbv)
    for lo, hi in spans.values():
        assert hi - lo == pytest.approx(3 * m)                     # no device idles between first and last item
    # device r starts r chunk-forwards (T_F / 2 each) late, which no schedule avoids: makespan 3m + (p - 1) / 2
    assert zbv.makespan == pytest.approx(3 * m + (pp - 1) / 2)


def test_zb_v_order_is_the_v_shape_and_beats_the_greedy_at_eight_stages():
    pp, m = 8, 16
    orders = P.orders_zb_v(pp, m)
    for r, order in orders.items():
        assert {v for _, v, _ in order} == {r, 2 * pp - 1 - r}
        assert order[:2 * (pp - r) - 1] == [("F", r, j) for j in range(2 * (pp - r) - 1)]
        assert sum(1 for k, _, _ in order if k == "W") == 2 * m
    st = P.uniform_stages(pp, m, 1, 1, 1, chunks=2, v_shape=True)
    greedy = P.simulate(st, P.Greedy(float(pp)))
    assert P.simulate(st, orders).makespan < greedy.makespan


@pytest.mark.parametrize("pp, m", [(4, 1), (4, 3), (8, 5)])
def test_zb_v_with_few_microbatches_drops_the_missing_ones_and_stays_valid(pp, m):
    st = P.uniform_stages(pp, m, 1, 1, 1, chunks=2, v_shape=True)
    sch = P.simulate(st, P.orders_zb_v(pp, m))
    assert P.validate(sch, memory_limit=pp) == []
    assert len([o for o in sch.ops.values() if o.args.get("kind") == "F"]) == 2 * pp * m


def test_interleaved_warmup_override_keeps_every_item_and_rejects_impossible_counts():
    pp, v, m = 4, 2, 8
    default = P.orders_interleaved(pp, v, m)
    fewer = P.orders_interleaved(pp, v, m, [7, 6, 5, 4])
    assert all(sorted(default[s]) == sorted(fewer[s]) for s in range(pp)) and fewer != default
    assert [P.interleaved_warmup(s, pp, v, m) for s in range(pp)] == [10, 8, 6, 4]
    with pytest.raises(InputError):
        P.interleaved_order(0, pp, v, m, warmup=17)
