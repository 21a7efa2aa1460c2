"""NanoFlow: dense-batch accounting, the nano-operation graph, its schedule under SM shares, the search space
(which holds the sequential pipeline), the cost model's shape and the ``syslab nanoflow`` tool."""

import itertools
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from syslab.core.errors import InputError
from syslab.serving import nanoflow as N
from syslab.serving.nanoflow import pipeline as P

HW = N.LLAMA2_70B_A100
BATCH = N.dense_batch(np.array([1020] * 10), np.array([129] * 10))
COSTS = N.Costs(HW, BATCH)


def test_dense_batch_splits_the_budget_by_token_shares():
    b = N.dense_batch(np.array([1000, 3000]), np.array([100, 300]))
    assert b.decode + b.prefill == 2048
    assert b.decode == round(2048 * 400 / 4400)
    # Context of a decode step, weighted by output tokens: prompt + half the output.
    assert b.decode_context == pytest.approx((100 * 1050 + 300 * 3150) / 400)
    with pytest.raises(InputError):
        N.dense_batch(np.array([]), np.array([]))
    with pytest.raises(InputError):
        N.dense_batch(np.array([10, 20]), np.array([5]))


def test_optimal_bound_and_op_times_come_from_core_gpu():
    from syslab.core import gpu as G
    # Eq. 5 on the measured (modelled) GEMM peak, below the datasheet bound
    peak = max(G.gemm_tflops(m, m, m, HW.device) for m in (4096, 8192, 16384)) * 1e12
    assert HW.optimal_tok_s_per_gpu == pytest.approx(peak / (2 * HW.shape.active_params))
    assert HW.optimal_tok_s_per_gpu < HW.datasheet_optimal_tok_s_per_gpu == pytest.approx(
        312e12 / (2 * HW.shape.active_params))
    assert HW.gemm_s(2048, 8192, 1024, 1.0) == pytest.approx(G.gemm_s(2048, 8192, 1024, HW.device))
    assert HW.gemm_s(2048, 8192, 1024, 0.5) > 1.8 * HW.gemm_s(2048, 8192, 1024, 1.0)
    # decode attention saturates HBM at the curve's memory saturation point; collectives at theirs
    sat = G.DEFAULT_CURVE.memory_saturation
    assert HW.gemv_s(1e6, sat) == pytest.approx(HW.gemv_s(1e6, 1.0))
    assert HW.gemv_s(1e6, sat / 2) > 1.8 * HW.gemv_s(1e6, 1.0)
    net = G.DEFAULT_CURVE.collective_saturation
    assert HW.allreduce_s(2048, net) == pytest.approx(HW.allreduce_s(2048, 1.0))
    slow = N.Hardware(HW.shape, HW.device, HW.tp, curve=G.SMCurve(memory_saturation=0.8))
    assert slow.gemv_s(1e6, 0.4) > HW.gemv_s(1e6, 0.4)
    # a compute op's time on s SMs is the shared model's at s / SMs of the GPU
    assert COSTS.compute_s("o", 512, 54) == pytest.approx(HW.gemm_s(512, *COSTS.shapes["o"], 0.5))


def test_tile_splits_and_the_artifact_structure():
    for parts in (1, 2, 3, 4):
        for sizes in N.tile_splits(2048, parts):
            assert sum(sizes) == 2048 and len(sizes) == parts and all(m % N.TILE == 0 for m in sizes)
    assert (640, 1408) in N.tile_splits(2048, 2) and (768, 1280) in N.tile_splits(2048, 2)
    # pipeline/config_all/llama2-70B/2048.json: kqv1 256, nanobatch_1 640, kqv3 768
    assert N.artifact_splits(2048) == ((256, 384, 768, 640), (640, 1408), (640, 1408))
    assert N.artifact_splits(128) == ((128,),) * 3
    with pytest.raises(InputError):
        N.graph(N.Config(((1024, 512), (2048,), (2048,))), 2048, 1)


def test_the_sequential_configuration_is_exactly_the_non_overlap_sum():
    seq = N.Config.sequential(2048)
    total = N.sequential_layer_s(COSTS, seq.splits)
    assert total == pytest.approx(sum(COSTS.full_s(k, 2048) for k in N.KINDS))
    for layers in (1, 3):
        sch = N.simulate(COSTS, seq, layers)
        assert sch.makespan == pytest.approx(layers * total, rel=1e-12)
        assert sum(op.duration_s for op in sch.ops.values()) == pytest.approx(sch.makespan, rel=1e-12)
    one_stream = N.Config(N.artifact_splits(2048), overlap=False)
    assert N.layer_time_s(COSTS, one_stream, 2) == pytest.approx(N.sequential_layer_s(COSTS, one_stream.splits))


class Stub(N.Costs):
    """Closed-form op times: GEMMs linear in rows and in SMs (c / (sms / 108)); capped ops fixed per row."""

    def __init__(self, gemm, capped):
        self.hw, self.batch, self.g, self.c = HW, N.DenseBatch(2048, 0, 2048, 0.0, 0.0), gemm, capped

    def compute_s(self, kind, m, sms):
        return self.g[kind] * m / 2048 * 108 / sms

    def capped_s(self, kind, m, share):
        return self.c[kind] * m / 2048


@pytest.mark.parametrize("attn, expect_attn1_end", [(6.0, 7.0), (2.0, 3.5)])
def test_gemm_takes_the_sms_the_capped_kernels_leave(attn, expect_attn1_end):
    # attention block in 2 nano-batches: qkv0 [0, 1]; attn0 from 1 at share 0.5; qkv1 at half speed beside it
    gemm = {"qkv": 2.0, "o": 1.0, "upgate": 1.0, "down": 1.0}
    capped = {"attn": attn, "ar1": 0.5, "ar2": 0.25}
    cfg = N.Config(((1024, 1024), (2048,), (2048,)), attn_share=0.5, ar1_share=0.15, ar2_share=0.15)
    sch = N.simulate(Stub(gemm, capped), cfg, layers=1)
    assert sch.end["L0.qkv0"] == pytest.approx(1.0)
    # long attention: qkv1 ends at 3 (half speed throughout); short: half done at 2, the rest at full speed by 2.5
    assert sch.end["L0.qkv1"] == pytest.approx(3.0 if attn == 6.0 else 2.5)
    assert sch.end["L0.attn1"] == pytest.approx(expect_attn1_end)
    assert sch.makespan == pytest.approx(expect_attn1_end + 1.0 + 0.5 + 1.0 + 1.0 + 0.25)


def _invariants(costs, cfg, layers):
    sch = N.simulate(costs, cfg, layers)
    names = list(sch.ops)
    for name, op in sch.ops.items():
        for d in op.deps:
            assert sch.start[name] >= sch.end[d] - 1e-15
        kind, m = op.category, op.args["rows"][1] - op.args["rows"][0]
        modelled = sch.end[name] - sch.start[name]      # simulated time, not a clock
        if kind in N.CAPPED:
            assert modelled == pytest.approx(costs.capped_s(kind, m, cfg.share(kind)))
        else:      # a GEMM is only ever slowed by sharing
            assert modelled >= costs.full_s(kind, m) * (1 - 1e-9)
    by_stream = {}
    for n in names:
        by_stream.setdefault(sch.ops[n].resource, []).append((sch.start[n], sch.end[n]))
    for spans in by_stream.values():                 # a stream runs one op at a time
        spans.sort()
        assert all(b[0] >= a[1] - 1e-15 for a, b in itertools.pairwise(spans))
    for n in names:                                  # capped shares never exceed the GPU
        t = sch.start[n]
        held = sum(sch.ops[o].args["share"] for o in names if sch.ops[o].category in N.CAPPED
                   and sch.start[o] <= t < sch.end[o])
        assert held <= 1.0 + 1e-9
    compute = sum(costs.full_s(k, b - a) for k in N.KINDS if k not in N.CAPPED
                  for a, b in P._rows(cfg.splits[P.BLOCK[k]]))
    assert sch.makespan >= layers * compute * (1 - 1e-9)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.tuples(*[st.sampled_from(N.block_options(2048))] * 3), st.sampled_from(N.ATTN_SHARES),
       st.sampled_from(N.NET_SHARES), st.sampled_from(N.NET_SHARES), st.sampled_from(N.SKEWS),
       st.integers(1, 3))
def test_any_point_of_the_space_schedules_within_its_constraints(splits, v, n1, n2, skew, layers):
    _invariants(COSTS, N.Config(splits, v, n1, n2, skew), layers)


def test_issue_order_respects_dependencies_for_every_skew():
    for skew in (0.0, 1.0, 100.0):
        nodes = N.graph(N.Config(((512,) * 4, (2048,), (1024, 1024)), skew=skew), 2048, 3)
        assert all(d < i for i, n in enumerate(nodes) for d in n.deps)
        assert len(nodes) == 3 * (4 + 4 + 1 + 1 + 2 + 2 + 2)


def test_staged_search_never_loses_to_sequential_and_exhaustive_matches_brute_force():
    b = N.dense_batch(np.array([1020] * 10), np.array([129] * 10), tokens=512)
    costs = N.Costs(HW, b)
    space = dict(counts=(1, 2), skews=(0.0, 100.0), attn_shares=(0.4, 1.0), net_shares=(0.15, 1.0))
    ex = N.search(HW, b, exhaustive=True, costs=costs, **space)
    brute = min(N.layer_time_s(costs, N.Config(s, v, n1, n2, k), 2)
                for s in itertools.product(N.block_options(512, (1, 2)), repeat=3)
                for k in (0.0, 100.0) for v in (0.4, 1.0) for n1 in (0.15, 1.0) for n2 in (0.15, 1.0))
    assert ex.per_layer_s == pytest.approx(min(brute, ex.sequential_s), rel=1e-12)
    assert ex.evaluated == 1 + 27 * 2 * 8
    staged = N.search(HW, b, costs=costs, **space)
    assert ex.per_layer_s <= staged.per_layer_s <= staged.sequential_s
    assert staged.sequential_s == pytest.approx(N.sequential_layer_s(costs, N.Config.sequential(512).splits))


def test_evaluate_nanoflow_beats_non_overlap_on_the_paper_setting_and_control_ties_it():
    rows = N.evaluate(HW, BATCH)
    cfg = rows["nanoflow"]["cfg"]
    assert rows["nanoflow"]["per_layer_s"] < rows["non-overlap"]["per_layer_s"]
    assert 2 <= cfg.max_nano_batches <= 4 and cfg.overlap
    assert cfg.attn_share + cfg.ar1_share < 1.0            # the GEMMs keep SMs beside the capped kernels
    assert rows["nanobatch-only"]["per_layer_s"] > rows["non-overlap"]["per_layer_s"]
    speedup = rows["non-overlap"]["per_layer_s"] / rows["nanoflow"]["per_layer_s"]
    assert 1.0 < speedup <= rows["bound"] + 0.02
    ctl = N.evaluate(HW, BATCH, control=True)
    assert ctl["nanoflow"]["per_layer_s"] == ctl["non-overlap"]["per_layer_s"]
    assert ctl["nanoflow"]["cfg"] == N.Config.sequential(2048)


def test_less_gemm_interference_means_more_overlap_gain():
    gains = []
    for alpha in (1.0, 0.0):
        r = N.evaluate(N.Hardware(HW.shape, HW.device, HW.tp, alpha), BATCH)
        gains.append(r["non-overlap"]["per_layer_s"] / r["nanoflow"]["per_layer_s"])
    assert 1.0 < gains[0] < gains[1]


def test_without_anything_to_hide_the_search_keeps_the_sequential_pipeline():
    # one GPU (no collectives) and prefill only (no decode attention): overlap only costs nano-batching
    hw = N.Hardware(HW.shape, HW.device, 1)
    b = N.DenseBatch(512, 0, 512, 0.0, 0.0)
    rows = N.evaluate(hw, b, counts=(1, 2), skews=(0.0,))
    assert rows["nanoflow"]["per_layer_s"] <= rows["non-overlap"]["per_layer_s"]
    assert rows["nanoflow"]["per_layer_s"] == pytest.approx(rows["non-overlap"]["per_layer_s"], rel=0.02)


@settings(max_examples=25, deadline=None)
@given(st.integers(16, 4096), st.integers(1, 2048), st.sampled_from([1, 8]), st.sampled_from([512, 1024]))
def test_nanoflow_is_never_slower_than_non_overlap(prompt, output, tp, tokens):
    hw = N.Hardware(HW.shape, HW.device, tp)
    b = N.dense_batch(np.array([prompt]), np.array([output]), tokens=tokens)
    rows = N.evaluate(hw, b, counts=(1, 2), skews=(0.0, 100.0), attn_shares=(0.4, 1.0), net_shares=(0.15, 1.0))
    assert rows["nanoflow"]["per_layer_s"] <= rows["non-overlap"]["per_layer_s"]
    assert rows["nanoflow"]["tok_s_per_gpu"] >= rows["non-overlap"]["tok_s_per_gpu"]


@pytest.mark.parametrize("sizes", [(24,), (1, 23), (5, 7, 12), (8, 8, 8)])
def test_nano_batched_layer_equals_the_full_batch(sizes):
    assert N.nano_batching_is_exact(np.random.default_rng(0), sizes) < 1e-12


def test_tiny_layer_is_causal():
    rng = np.random.default_rng(1)
    d, f = 16, 32
    w = {"qkv": rng.normal(0, 0.2, (d, 3 * d)), "o": rng.normal(0, 0.2, (d, d)),
         "up": rng.normal(0, 0.2, (d, 2 * f)), "down": rng.normal(0, 0.2, (f, d))}
    x = rng.normal(size=(6, d))
    y = N.tiny_layer_forward([x], w)[0]
    x2 = x.copy()
    x2[-1] += 1.0                                   # changing the last token cannot change earlier outputs
    y2 = N.tiny_layer_forward([x2], w)[0]
    assert np.allclose(y[:-1], y2[:-1]) and not np.allclose(y[-1], y2[-1])


def _tool(*args):
    import typer
    from typer.testing import CliRunner

    from syslab.serving.nanoflow.cli import app
    mount = typer.Typer(add_completion=False)
    mount.add_typer(app, name="nanoflow")
    return CliRunner().invoke(mount, ["nanoflow", *args])


def test_tool_json():
    r = _tool("search", "--model", "llama3-8b", "--gpu", "A100", "--tp", "1", "--batch", "512", "--json")
    assert r.exit_code == 0, r.output
    v = json.loads(r.output)
    assert v["batch"] == 512 and v["tp"] == 1
    assert sum(v["config"]["splits"][0]) == 512
    e = v["engines"]
    assert e["nanoflow"]["per_layer_s"] <= e["non-overlap"]["per_layer_s"]
    assert v["speedup_vs_nonoverlap"] == pytest.approx(e["non-overlap"]["per_layer_s"] / e["nanoflow"]["per_layer_s"])
    r = _tool("search", "--batch", "256")
    assert r.exit_code == 0 and "nanoflow" in r.output


@pytest.mark.parametrize("args, field", [
    (("--model", "gpt-5"), "--model"),
    (("--gpu", "TPU-v5"), "--gpu"),
    (("--batch", "1000"), "--batch"),
    (("--batch", "0"), "--batch"),
    (("--batch", "1000000"), "--batch"),
    (("--tp", "3"), "--tp"),
    (("--tp", "16"), "--tp"),
    (("--prompt", "0"), "--prompt"),
    (("--output", "-4"), "--output"),
])
def test_tool_rejects_impossible_options(args, field):
    r = _tool("search", *args)
    assert isinstance(r.exception, InputError), r.output
    assert r.exception.field == field and r.exception.fix
