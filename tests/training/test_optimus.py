import itertools
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syslab.core.errors import InputError
from syslab.training.optimus import model as M
from syslab.training.optimus import schedule as S


def brute_partition(costs, parts):
    best = np.inf
    for cuts in itertools.combinations(range(1, len(costs)), parts - 1):
        edges = (0, *cuts, len(costs))
        best = min(best, max(sum(costs[a:b]) for a, b in zip(edges, edges[1:], strict=False)))
    return best


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(0.1, 10.0), min_size=2, max_size=9), st.integers(1, 4))
def test_min_max_partition_is_optimal(costs, parts):
    parts = min(parts, len(costs))
    sizes = S.min_max_partition(costs, parts)
    assert sum(sizes) == len(costs) and min(sizes) >= 1 and len(sizes) == parts
    edges = np.concatenate([[0], np.cumsum(sizes)])
    got = max(sum(costs[a:b]) for a, b in zip(edges, edges[1:], strict=False))
    assert got == pytest.approx(brute_partition(costs, parts))


def test_partition_rejects_impossible_requests():
    with pytest.raises(InputError):
        S.min_max_partition([1.0, 2.0], 3)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 50), st.floats(0.01, 5)), max_size=12),
       st.lists(st.tuples(st.floats(0, 60), st.floats(0.01, 3)), min_size=1, max_size=12))
def test_gaps_place_earliest_fit_without_overlap(busy, requests):
    intervals = []
    for s, d in sorted(busy):
        if not intervals or s >= intervals[-1][1]:
            intervals.append((s, s + d))
    g = S.Gaps(np.array(intervals).reshape(-1, 2), [(0.0, np.inf)])
    taken = list(intervals)
    for t, d in requests:
        s = g.place(t, d)
        assert s >= t
        assert all(s + d <= a + 1e-9 or s >= b - 1e-9 for a, b in taken)       # no overlap
        # earliest: no feasible start in [t, s) (checked on candidate starts: t and every busy end)
        for cand in [c for c in [t] + [b for _, b in taken] if t <= c < s - 1e-9]:
            assert any(not (cand + d <= a + 1e-9 or cand >= b - 1e-9) for a, b in taken)
        taken.append((s, s + d))


def test_packed_plans_meet_dependencies_and_never_overlap_llm_work():
    job = M.LLMJob(16)
    plan, packed, tried = S.optimus(job)
    assert tried >= 2
    assert S.check_dependencies(packed) == [] and S.check_no_overlap(job, packed) == []
    assert S.llm_only(job) <= packed.iteration_s
    assert S.memory_overhead(job, plan) <= S.MEMORY_BOUND


def test_checks_catch_a_broken_packing():
    job = M.LLMJob(16)
    packed = S.pack(job, S.EncoderPlan(8, (16,)), keep=True)
    packed.enc_forward_end[0] = max(packed.llm_forward_start) + 1.0          # an encoder forward arrives too late
    assert S.check_dependencies(packed)
    d, name, s, e, comm = next(p for p in packed.placed if not p[4])
    llm_busy = packed.timeline.busy(packed.llm_start)[d]["compute"]
    a, b = llm_busy[len(llm_busy) // 2]
    packed.placed.append((d, "bogus", float(a), float(b), False))          # on top of an LLM kernel
    assert any("overlap" in p for p in S.check_no_overlap(job, packed))


def test_llm_kernels_add_up_to_the_layer_times():
    job = M.LLMJob(8)
    busy = S.llm_timeline(job).busy(0.0)
    per_dev = job.chunks * job.microbatches * job.layers_per_virtual_stage
    compute = (busy[0]["compute"][:, 1] - busy[0]["compute"][:, 0]).sum()
    assert compute == pytest.approx(per_dev * (job.compute_fwd_s + job.compute_bwd_s))
    link = (busy[0]["link"][:, 1] - busy[0]["link"][:, 0]).sum()
    assert link == pytest.approx(per_dev * 4 * job.allreduce_s)
    assert sum(k.duration_s for k in M.encoder_kernels(False)) == pytest.approx(M.ENC_FWD_MS * 1e-3)
    assert sum(k.duration_s for k in M.encoder_kernels(True)) == pytest.approx(M.ENC_BWD_MS * 1e-3)


# A small job for the schedule tests: Llama-2-7B (32 layers) on 4 stages x 2 chunks, the paper's Fig. 12 shape.
def small_job(mbs=8, **kw):
    return M.LLMJob(mbs, **{"pp": 4, "chunks": 2, "name": "llama2-7b", "dp": 4, **kw})


def test_megatron_baseline_is_the_papers_layout_encoder_in_stage_0_under_plain_1f1b():
    # Appendix D: Megatron-LM runs (DP, PP = 8, TP = 8) with no virtual chunks; §5.1: the encoder sits in the
    # first stage's pre-process. Stage 0 then holds all 48 ViT layers and its 12 of GPT-175B's 96 layers.
    job = M.LLMJob(16)
    _, sch = S.megatron(job)
    stages = {op.args["vs"] for op in sch.ops.values() if "vs" in op.args}
    assert stages == set(range(job.pp))                                  # one chunk per stage
    f = {v: sch.end[f"F{v}.0"] - sch.start[f"F{v}.0"] for v in range(job.pp)}
    llm_stage = job.layers // job.pp * job.layer_fwd_s()
    assert f[1] == pytest.approx(llm_stage)
    assert f[0] == pytest.approx(llm_stage + job.enc.depth * M.encoder_layer_s(False))
    # the balanced baseline gets the paper's V = 12 and spreads the encoder over several virtual stages
    _, bal, sizes = S.balanced(job)
    assert len(sizes) == job.pp * job.chunks == 96 and sum(sizes) == job.layers + job.enc.depth
    assert max(op.args["vs"] for op in bal.ops.values() if "vs" in op.args) == 95


def test_get_enc_llm_dep_defers_the_late_forward_points_without_lengthening_the_pipeline():
    job = small_job()
    plain, adjusted = S.get_enc_llm_dep(job, adjust=False), S.get_enc_llm_dep(job)
    assert adjusted.makespan == pytest.approx(plain.makespan)
    assert all(a <= d for a, d in zip(adjusted.warmups, plain.warmups, strict=True))
    assert adjusted.warmups != plain.warmups
    assert (adjusted.forward_points >= plain.forward_points - 1e-12).all()
    assert adjusted.forward_points[-4:].sum() > plain.forward_points[-4:].sum() + 1e-6    # F5..F8 move later
    assert (adjusted.backward_points <= plain.backward_points + 1e-12).all()
    np.testing.assert_allclose(adjusted.forward_points[:4], plain.forward_points[:4])    # F1..F4 stay
    # Megatron's counts are (p - s - 1) x 2 + (V - 1) x p
    assert plain.warmups == tuple((4 - s - 1) * 2 + 4 for s in range(4))


def test_packing_against_the_adjusted_points_is_valid():
    job = small_job(enc_scale=0.1)
    for adjust in (True, False):
        plan, packed, _ = S.optimus(job, timeline=S.get_enc_llm_dep(job, adjust))
        assert S.check_dependencies(packed) == [] and S.check_no_overlap(job, packed) == []
        assert packed.iteration_s >= S.llm_only(job) - 1e-12


def test_no_module_level_cache_of_kernel_intervals():
    assert not hasattr(M, "_INTERVALS") and not hasattr(S, "_llm_timeline_cached")
    a, b = S.llm_timeline(small_job(8)), S.llm_timeline(small_job(12))
    first = a.busy(0.0)
    first[0]["compute"][:] = -1.0                                      # a caller scribbling on its copy
    assert (a.busy(0.0)[0]["compute"] >= 0).all()                      # ... does not reach the memo
    np.testing.assert_allclose(a.busy(2.0)[1]["link"], a.busy(0.0)[1]["link"] + 2.0)
    assert len(b.busy()[0]["compute"]) == len(a.busy()[0]["compute"]) * 12 // 8
    np.testing.assert_allclose(M.kernel_intervals(a.job, a.schedule)[3]["compute"], a.busy()[3]["compute"])


def test_smaller_vits_scale_from_vit_22b():
    small = M.encoder_layer_s(False, enc=M.ENCODERS["vit-5b"])
    assert 0 < small < M.encoder_layer_s(False) == pytest.approx(M.ENC_FWD_MS * 1e-3)
    assert M.ENCODERS["vit-22b"].compute_ratio == 1.0


@pytest.mark.parametrize("kw", [{"microbatches": 0}, {"pp": 5}, {"tp": 5}, {"chunks": 0}, {"name": "gpt-9"},
                                {"encoder": "vit-1t"}, {"microbatches": 9}, {"enc_scale": float("nan")},
                                {"name": "mixtral-8x7b"}])
def test_impossible_jobs_are_input_errors(kw):
    with pytest.raises(InputError):
        M.LLMJob(**{"microbatches": 16, **kw})


def test_cli_plan_on_a_user_job(capsys):
    from syslab.cli import main

    with pytest.raises(SystemExit) as e:
        main(["optimus", "plan", "--llm", "Llama-2-7B", "--encoder", "vit-5b", "--gpus", "64", "--pp", "4",
              "--tp", "8", "--chunks", "2", "--microbatches", "8", "--json"])
    d = json.loads(capsys.readouterr().out)
    assert e.value.code == 0 and d["llm"] == "llama2-7b" and d["dp"] == 2 and d["problems"] == []
    t = d["iteration_s"]
    assert t["llm_alone"] - 1e-9 <= t["optimus"] <= t["optimus_coarse"] + 1e-9
    assert d["plan"]["memory_overhead"] <= S.MEMORY_BOUND and sum(d["plan"]["split"]) == 8


@pytest.mark.parametrize("args", [["--llm", "gpt-9"], ["--encoder", "vit-1t"], ["--gpus", "100"], ["--pp", "0"],
                                  ["--pp", "5", "--gpus", "40", "--tp", "8"], ["--microbatches", "-2"],
                                  ["--microbatches", "12"], ["--tp", "16"], ["--seq", "nan"], ["--chunks", "7"],
                                  ["--microbatches", "4096"], ["--micro-batch-size", "0"]])
def test_cli_rejects_malformed_jobs_without_a_traceback(args, capsys):
    from syslab.cli import main

    with pytest.raises(SystemExit) as e:
        main(["optimus", "plan", *args])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "Traceback" not in err and ("Fix" in err or "Usage" in err), args
