"""wlb-llm: packers conserve documents and respect lengths, ILP agrees with brute force, CP shards are exact."""

import itertools
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syslab.core.errors import InputError
from syslab.training import wlb_llm as W

lengths_st = st.lists(st.integers(1, 9000), min_size=1, max_size=120)


@settings(max_examples=50, deadline=None)
@given(lengths_st, st.integers(1, 6))
def test_original_packing_keeps_dataloader_order_and_context(lengths, n):
    context = 10000
    batches = list(W.original_batches(np.array(lengths), context, n))
    flat = [d.length for b in batches for mb in b for d in mb]
    assert flat == lengths                                    # every document, in order
    for it, b in enumerate(batches):
        assert len(b) == n
        for mb in b:
            assert sum(d.length for d in mb) <= context
            assert all(d.arrival == it for d in mb)


@settings(max_examples=50, deadline=None)
@given(lengths_st, st.integers(1, 6))
def test_fixed_greedy_conserves_documents_and_respects_context(lengths, n):
    docs = [W.Doc(x, 0) for x in lengths]
    bins, left = W.fixed_greedy(docs, 10000, n)
    placed = sorted(d.length for b in bins for d in b) + [d.length for d in left]
    assert sorted(placed) == sorted(lengths)
    assert all(sum(d.length for d in b) <= 10000 for b in bins)


def _brute_force_eq1(d, context, m):
    best = None
    for assign in itertools.product(range(m), repeat=len(d)):
        loads = [0] * m
        sq = [0] * m
        for x, j in zip(d, assign, strict=True):
            loads[j] += x
            sq[j] += x * x
        if max(loads) <= context:
            best = max(sq) if best is None else min(best, max(sq))
    return best


@pytest.mark.parametrize("seed", range(4))
def test_fixed_ilp_matches_brute_force_and_beats_greedy(seed):
    rng = np.random.default_rng(seed)
    d = rng.integers(50, 1000, 7).tolist()
    context = int(np.ceil(sum(d) / 3 * 1.2))
    context = max(context, max(d))
    bins, obj = W.fixed_ilp(d, context, 3)
    assert sorted(x for b in bins for x in b) == sorted(d)
    assert all(sum(b) <= context for b in bins)
    assert obj == _brute_force_eq1(d, context, 3)
    gbins, left = W.fixed_greedy([W.Doc(x, 0) for x in d], context, 3)
    if not left:
        assert obj <= max(sum(x.length ** 2 for x in b) for b in gbins)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(1, 60000), min_size=5, max_size=400), st.integers(2, 8),
       st.sampled_from([(), (16384,), (8192, 32768)]))
def test_wlb_packer_conserves_documents_and_respects_max_length(lengths, n, thresholds):
    context = 65536
    batches = list(W.original_batches(np.array(lengths), context, n))
    packer = W.WLBPacker(context, n, thresholds)
    out = []
    for b in batches:
        packing = packer.pack([d for mb in b for d in mb])
        assert len(packing) == n
        for mb in packing:
            assert sum(d.length for d in mb) < packer.max_length
        out += [d for mb in packing for d in mb]
    pending = [d for q in packer.queues for d in q] + packer.deferred
    assert sorted(d.length for d in out + pending) == sorted(lengths)     # nothing lost, nothing duplicated
    assert len({id(d) for d in out + pending}) == len(lengths)
    if thresholds:                                                         # queues hold only outliers
        assert all(d.length >= thresholds[0] for q in packer.queues for d in q)


def test_outliers_wait_until_one_per_microbatch():
    n, context = 4, 131072
    packer = W.WLBPacker(context, n, thresholds=(60000,))
    long_docs = [W.Doc(70000, i) for i in range(3)]
    first = packer.pack(long_docs + [W.Doc(1000, 0) for _ in range(8)])
    assert all(d.length < 60000 for mb in first for d in mb) and packer.pending() == 3
    second = packer.pack([W.Doc(70000, 1)] + [W.Doc(1000, 1) for _ in range(8)])
    outliers_per_mb = [sum(d.length == 70000 for d in mb) for mb in second]
    assert outliers_per_mb == [1, 1, 1, 1] and packer.pending() == 0


def test_deferred_documents_go_first_next_iteration():
    packer = W.WLBPacker(1000, 2, thresholds=(), max_length_factor=1.0)
    packer.pack([W.Doc(900, 0), W.Doc(900, 0), W.Doc(600, 0)])
    assert [d.length for d in packer.deferred] == [600]
    nxt = packer.pack([W.Doc(500, 1)])
    assert any(d.arrival == 0 and d.length == 600 for mb in nxt for d in mb)


def _brute_force_rank_pairs(lengths, cp, per_document):
    """Assign every token to a rank explicitly and add its causal key count p + 1."""
    work = np.zeros(cp)
    if per_document:
        for d in lengths:
            q = d // (2 * cp)
            for p in range(d):
                if p < 2 * cp * q:
                    c = p // q
                    work[c if c < cp else 2 * cp - 1 - c] += p + 1
                else:
                    work[(p - 2 * cp * q) % cp] += p + 1
    else:
        total = sum(lengths)
        bounds = np.linspace(0, total, 2 * cp + 1).round().astype(int)
        g = 0
        for d in lengths:
            for p in range(d):
                c = int(np.searchsorted(bounds, g, side="right")) - 1
                work[c if c < cp else 2 * cp - 1 - c] += p + 1
                g += 1
    return work


@pytest.mark.parametrize("lengths,cp", [([7, 30, 3, 64], 2), ([100], 2), ([5, 5, 50, 17, 2], 4), ([1, 1, 1], 2)])
def test_cp_shards_match_token_by_token_assignment(lengths, cp):
    assert np.allclose(W.per_sequence_shards(lengths, cp), _brute_force_rank_pairs(lengths, cp, False))
    assert np.allclose(W.per_document_shards(lengths, cp), _brute_force_rank_pairs(lengths, cp, True))


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(1, 20000), min_size=1, max_size=40), st.sampled_from([1, 2, 4, 8]))
def test_cp_shards_conserve_attention_work(lengths, cp):
    total = sum(d * (d + 1) / 2 for d in lengths)
    assert W.per_sequence_shards(lengths, cp).sum() == pytest.approx(total)
    assert W.per_document_shards(lengths, cp).sum() == pytest.approx(total)
    # Per-document sharding is balanced up to the < 2*CP remainder tokens of each document.
    doc = W.per_document_shards(lengths, cp)
    assert doc.max() - doc.min() <= sum(2 * cp * d for d in lengths) + 1e-6


def test_per_sequence_is_imbalanced_when_a_long_document_leads():
    lengths = [60000] + [1000] * 60
    assert W.cp_imbalance(W.per_sequence_shards(lengths, 2)) > 1.2
    assert W.cp_imbalance(W.per_document_shards(lengths, 2)) == pytest.approx(1.0, abs=1e-3)


def test_adaptive_picks_per_sequence_for_short_documents_and_per_document_for_long():
    cost = W.CostModel()
    short = [100] * 1300                     # 25-token pieces per document would waste most of each tile
    seq, doc = (W.microbatch_time_s(short, cost, s) for s in ("per-sequence", "per-document"))
    assert seq < doc and W.microbatch_time_s(short, cost, "adaptive") == seq
    mixed = [90000] + [500] * 80
    seq, doc = (W.microbatch_time_s(mixed, cost, s) for s in ("per-sequence", "per-document"))
    assert doc < seq and W.microbatch_time_s(mixed, cost, "adaptive") == doc


def test_cost_model_formulas():
    assert W.imbalance_degree([1, 1, 1, 1]) == 1.0
    assert W.imbalance_degree([2, 1, 1, 0]) == 2.0
    assert W.fig5_iteration_s([1.0, 2.0], pp=4) == pytest.approx(3 * (3 * 2.0 + 3.0))
    cost = W.CostModel()
    # Attention is quadratic (its efficiency rising with the keys a query block visits, so short documents cost
    # a little more per pair) and linear work is linear in document length.
    short, long_ = (cost.attention_s(np.array([2 * d]))[0] / cost.attention_s(np.array([d]))[0] for d in (1000, 32000))
    assert 3.0 < short < 4.0 and long_ == pytest.approx(4, rel=0.01)
    assert cost.attention_pairs_s(2e6, 500) == pytest.approx(2 * cost.attention_pairs_s(1e6, 500), rel=1e-9)
    assert cost.linear_s(2000) / cost.linear_s(1000) == pytest.approx(2)


def test_threshold_tuning_respects_the_delay_budget():
    rng = np.random.default_rng(0)
    lengths = np.concatenate([rng.integers(500, 6000, 3000), rng.integers(40000, 120000, 40)])
    rng.shuffle(lengths)
    batches = list(W.original_batches(lengths, 131072, 8))[:20]
    cost = W.CostModel()
    th = W.tune_thresholds(batches, 131072, 8, 2, cost)
    _, imb, delay = W.replay_wlb(batches, 131072, 8, th, cost)
    assert len(th) == 2 and th[0] < th[1] and delay <= 1.0
    _, imb_none, _ = W.replay_wlb(batches, 131072, 8, (), cost)
    assert imb <= imb_none


def test_compare_packers_json_keys():
    rng = np.random.default_rng(1)
    r = W.compare_packers(rng.integers(100, 30000, 2000), context=65536, microbatches=4, queues=1)
    assert set(r) >= {"original", "fixed_greedy", "wlb", "wlb_mean_delay_iters"}
    assert r["wlb"]["imbalance"] <= r["original"]["imbalance"]
    assert all("imbalance" in r[k] for k in ("original", "fixed_greedy", "wlb"))


# --- bad input -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("content,field", [("[100, -5]", "lengths[1]"), ("[1.5]", "lengths[0]"), ("{}", "lengths"),
                                           ("[]", "lengths"), ('["a"]', "lengths[0]"), ("[true]", "lengths[0]")])
def test_bad_lengths_files(tmp_path, content, field):
    p = tmp_path / "l.json"
    p.write_text(content)
    with pytest.raises(InputError) as e:
        W.load_lengths(p)
    assert e.value.field == field and str(p) in str(e.value)
    assert p.read_text() == content


def test_context_smaller_than_a_document():
    with pytest.raises(InputError, match="--split-long") as e:
        W.check_context(np.array([10, 70000]), 65536, 8)
    assert e.value.field == "lengths[1]"
    assert W.check_context(np.array([10, 70000]), 65536, 8, split_long=True).tolist() == [10, 65536, 70000 - 65536]
    with pytest.raises(InputError):
        W.check_context(np.array([10]), 0, 8)
    with pytest.raises(InputError):
        W.check_context(np.array([10]), 100, 0)


def test_json_list_roundtrip(tmp_path):
    p = tmp_path / "l.json"
    p.write_text(json.dumps([3, 1, 2]))
    assert W.load_lengths(p).tolist() == [3, 1, 2]


def test_crossover_is_where_attention_equals_linear_work():
    cost = W.CostModel()
    x = cost.crossover_tokens
    assert cost.attention_s(np.array([x]))[0] == pytest.approx(cost.linear_s(x), rel=1e-9)
    assert cost.with_crossover(6000).crossover_tokens == pytest.approx(6000)
    assert cost.with_crossover(6000).linear_s(1000) == cost.linear_s(1000)      # only attention is scaled


def test_the_sharding_estimator_picks_from_its_profile_and_never_beats_the_oracle():
    from syslab.training.wlb_llm import cp as CP
    from syslab.training.wlb_llm.cost import CostModel

    cost = CostModel()
    prof = CP.AttentionProfile.of(cost, 131072)
    for pairs in prof.pairs[[0, 7, 23]]:                               # exact on the profiled shapes
        assert prof.estimate_s(pairs) == pytest.approx(float(cost.attention_pairs_s(pairs)), rel=1e-9)
    rng = np.random.default_rng(3)
    for _ in range(20):
        d = np.minimum(rng.lognormal(8, 1.5, 30).astype(int) + 1, 131072)
        d = d[np.cumsum(d) <= 131072]
        oracle = CP.microbatch_time_s(d, cost, "oracle")
        adaptive = CP.microbatch_time_s(d, cost, "adaptive")
        pick = CP.choose_sharding(d, cost, CP._profile(cost, int(d.sum())))
        assert adaptive == CP.microbatch_time_s(d, cost, pick) and adaptive >= oracle - 1e-15
