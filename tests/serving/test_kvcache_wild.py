"""kvcache-wild: the prefix cache against a naive reference, radix invariants, WA fit, characterisation, inputs."""

import json
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syslab.core.errors import InputError
from syslab.serving import kvcache_wild as kv
from syslab.serving.kvcache_wild.analysis import next_uses


def _trace(requests, types=None, turns=None):
    """requests: list of (timestamp, [block ids])."""
    n = len(requests)
    return kv.Trace(timestamp=np.array([t for t, _ in requests], dtype=float),
                    input_length=np.array([16 * len(b) for _, b in requests]), output_length=np.ones(n, dtype=int),
                    type=types or ["text"] * n, turn=np.array(turns or [1] * n), chat_id=np.arange(n),
                    parent_chat_id=-np.ones(n, dtype=int), blocks=[np.array(b, dtype=np.int64) for _, b in requests])


@st.composite
def prefix_traces(draw):
    """Requests whose block ids form a tree: each prompt is a path from the root of a random trie."""
    n_nodes = draw(st.integers(2, 40))
    parent = [-1] + [draw(st.integers(-1, i - 1)) for i in range(1, n_nodes)]
    def path(v):
        out = []
        while v >= 0:
            out.append(v)
            v = parent[v]
        return out[::-1]
    reqs = [(float(i), path(draw(st.integers(0, n_nodes - 1)))) for i in range(draw(st.integers(1, 40)))]
    return _trace(reqs)


def _naive_lru_hits(trace, capacity):
    """Reference: a list-based prefix cache, LRU over evictable leaves, ties to later prompt positions."""
    cached, last, parent_of = set(), {}, {}
    hits = []
    for i, blocks in enumerate(trace.blocks):
        ids = blocks.tolist()
        h = 0
        for b in ids:
            if b not in cached:
                break
            h += 1
        hits.append(h)
        t = trace.timestamp[i]
        prev = -1
        for j, b in enumerate(ids):
            if b not in cached:
                while len(cached) >= capacity:
                    leaves = [x for x in cached if x not in ids and not any(parent_of[y] == x for y in cached)]
                    if not leaves:
                        break
                    cached.remove(min(leaves, key=lambda x: last[x]))
                if len(cached) >= capacity:
                    break
                cached.add(b)
                parent_of[b] = prev
            last[b] = (t, -j)
            prev = b
    return hits


@settings(max_examples=60, deadline=None)
@given(prefix_traces(), st.integers(1, 12))
def test_lru_prefix_cache_matches_the_naive_reference(trace, capacity):
    r = kv.replay(trace, capacity, "lru")
    assert r.hit_blocks.tolist() == _naive_lru_hits(trace, capacity)


def _naive_wa_hits(trace, capacity, wa):
    """Reference WA: scan every evictable leaf and evict the one least likely to be reused within the window
    (the cache's formula; equal scores go oldest first), the window being the moving average of victims' idle
    times, updated after each request."""
    import math

    cached, key, lane, parent_of = set(), {}, {}, {}
    window = 1.0 / wa.default_rate
    hits = []
    for i, blocks in enumerate(trace.blocks):
        ids, t, cat = blocks.tolist(), float(trace.timestamp[i]), trace.category(i)
        h = 0
        for b in ids:
            if b not in cached:
                break
            h += 1
        hits.append(h)

        def reuse(b, w=window, t=t):
            p, rate = wa.of(str(lane[b]))
            pending = p * math.exp(-rate * (t - key[b]))
            return (1 - math.exp(-rate * w)) * (pending / max(1 - p + pending, 1e-12))

        idles, prev = [], -1
        for j, b in enumerate(ids):
            if b not in cached:
                while len(cached) >= capacity:
                    leaves = [x for x in cached if x not in ids[:j] and not any(parent_of[y] == x for y in cached)]
                    if not leaves:
                        break
                    victim = min(leaves, key=lambda x: (reuse(x), key[x]))
                    idles.append(t - key[victim])
                    cached.remove(victim)
                if len(cached) >= capacity:
                    break
                cached.add(b)
                parent_of[b] = prev
            key[b], lane[b] = t - j * 1e-9, cat
            prev = b
        for idle in idles:
            window += 0.01 * (max(idle, 0.0) - window)
    return hits


@st.composite
def categorised_traces(draw):
    trace = draw(prefix_traces())
    n = len(trace)
    trace.type[:] = [draw(st.sampled_from(["text", "image", "file"])) for _ in range(n)]
    trace.turn[:] = [draw(st.integers(1, 3)) for _ in range(n)]
    trace.timestamp[:] = np.cumsum([draw(st.floats(0.5, 30.0)) for _ in range(n)])
    return trace


@settings(max_examples=80, deadline=None)
@given(categorised_traces(), st.integers(1, 12))
def test_wa_cache_matches_the_naive_reference(trace, capacity):
    half = max(1, len(trace) // 2)
    wa = kv.fit_wa(kv.Trace(trace.timestamp[:half], trace.input_length[:half], trace.output_length[:half],
                            trace.type[:half], trace.turn[:half], trace.chat_id[:half], trace.parent_chat_id[:half],
                            trace.blocks[:half]))
    r = kv.replay(trace, capacity, "wa", wa)
    assert r.hit_blocks.tolist() == _naive_wa_hits(trace, capacity, wa)


@settings(max_examples=60, deadline=None)
@given(prefix_traces(), st.integers(1, 12), st.sampled_from(kv.POLICIES))
def test_cache_keeps_radix_consistency_and_capacity(trace, capacity, policy):
    wa = kv.fit_wa(trace)
    cache = kv.PrefixCache(capacity, policy, wa)
    oracle = next_uses(trace)
    for i in range(len(trace)):
        hits = cache.access(trace.blocks[i], float(trace.timestamp[i]), trace.category(i), oracle[i])
        ids = trace.blocks[i].tolist()
        assert hits <= len(ids) and len(cache) <= capacity
        for p in cache.parent.values():                        # a cached block's prefix is cached
            assert p == -1 or p in cache.parent
        for b in cache.parent:
            assert cache.children[b] == sum(1 for c, p in cache.parent.items() if p == b)


def test_hits_count_only_the_contiguous_prefix():
    tr = _trace([(0.0, [1, 2, 3]), (1.0, [1, 9, 3])])   # 3 is cached but follows a miss
    assert kv.replay(tr, 100, "lru").hit_blocks.tolist() == [0, 1]


def test_wa_fit_recovers_reuse_probability_and_rate():
    # Category text_1 blocks are always reused 10 s later; image_1 blocks never.
    reqs, types = [], []
    for k in range(50):
        reqs += [(100.0 * k, [1000 + k]), (100.0 * k + 10, [1000 + k]), (100.0 * k + 5, [5000 + k])]
        types += ["text", "text", "image"]
    order = np.argsort([t for t, _ in reqs], kind="stable")
    tr = _trace([reqs[i] for i in order], [types[i] for i in order])
    wa = kv.fit_wa(tr)
    assert wa.p["image_1"] == 0.0 and wa.p["text_1"] == pytest.approx(0.5)   # the second access is never reused
    assert 1 / wa.rate["text_1"] == pytest.approx(10.0)


def test_wa_evicts_the_category_that_is_never_reused():
    # Blocks of 'image' requests are never reused; 'text' blocks come back. A 3-block cache.
    reqs, types = [], []
    for k in range(30):
        reqs += [(10.0 * k, [k % 2]), (10.0 * k + 1, [100 + k]), (10.0 * k + 2, [200 + k])]
        types += ["text", "image", "image"]
    tr = _trace(reqs, types)
    wa = kv.fit_wa(tr)
    assert kv.replay(tr, 3, "wa", wa).hit_ratio > kv.replay(tr, 3, "lru").hit_ratio


def test_characterize_on_a_handmade_trace():
    tr = _trace([(0.0, [1, 2]), (1.0, [1, 2, 3]), (2.0, [1, 4])], turns=[1, 2, 1])
    c = kv.characterize(tr)
    assert c["ideal_hit_ratio"] == pytest.approx(3 / 7)           # hits: 0, 2, 1 of 2 + 3 + 2 blocks
    assert c["single_turn_hit_share"] == pytest.approx(1 / 3)
    assert c["top10_reuse_share"] == pytest.approx(2 / 3)        # block 1 holds 2 of the 3 reuses


def test_qttft_runs_on_the_engine_and_a_cached_prefix_shortens_the_prefill():
    tr = _trace([(0.0, [1] * 64), (0.0, [1] * 64)])
    tr.output_length = np.array([1, 1])
    cost = kv.QTTFT_COST
    q = kv.qttft(tr, np.array([0, 0]), cost)
    both = cost.time_s(2048, 2 * 1024 * 1025 / 2, 0, prefill_tokens=2048)     # one batched iteration
    assert q.qttft_s.to_numpy() == pytest.approx([both, both])
    hit = kv.qttft(tr, np.array([0, 63]), cost).qttft_s.to_numpy()            # 63 of 64 blocks cached
    one_cached = cost.time_s(1024 + 16, 1024 * 1025 / 2 + 16 * 1008 + 16 * 17 / 2, 0, prefill_tokens=1040)
    assert hit == pytest.approx([one_cached, one_cached]) and hit[1] < q.qttft_s[1]


def test_engine_prefix_hit_equals_a_prompt_of_the_uncached_suffix_attending_to_the_prefix():
    from syslab.serving import engine as E

    def ttft(prompt, cached):
        r = E.Request(0, 0.0, prompt, 3, cached)
        E.simulate([r], lambda i, s, rd: E.Instance(kv.QTTFT_COST, 100_000, id=i, start_s=s, ready_s=rd))
        return r.first_token_s

    c = kv.QTTFT_COST
    assert ttft(4000, 3000) == pytest.approx(c.time_s(1000, 1000 * 3000 + 1000 * 1001 / 2, 0))
    assert ttft(4000, 10**6) == pytest.approx(c.time_s(1, 3999 + 1, 0))       # at least the last token is run
    assert ttft(4000, 0) > ttft(4000, 3000)


def test_twin_matches_the_published_input_statistics():
    tr = kv.generate(kv.TwinConfig("A", hours=0.5, requests_per_s=3.0), np.random.default_rng(0))
    c = kv.characterize(tr)
    assert 0.5 <= c["ideal_hit_ratio"] <= 0.65 and 0.7 <= c["top10_reuse_share"] <= 0.85
    assert tr.synthetic and set(tr.type) <= set(kv.trace.TYPES)
    for hours, qps in ((0.2, 3.0), (2.0, 6.0)):                 # quick and full scale: the pool grows with it
        b = kv.characterize(kv.generate(kv.TwinConfig("B", hours=hours, requests_per_s=qps), np.random.default_rng(0)))
        # the paper's to-B inputs: ideal hit ratio 0.54, top-10% blocks ~70-80% of reuses, 97% single-turn hits
        assert abs(b["ideal_hit_ratio"] - 0.54) <= 0.05 and 0.7 <= b["top10_reuse_share"] <= 0.85
        assert b["single_turn_hit_share"] >= 0.9


def test_jsonl_roundtrip_and_bad_lines(tmp_path):
    tr = kv.generate(kv.TwinConfig("A", hours=0.05, requests_per_s=2.0), np.random.default_rng(1))
    path = tr.to_jsonl(tmp_path / "t.jsonl")
    back = kv.load_trace(path)
    assert len(back) == len(tr) and all((a == b).all() for a, b in zip(back.blocks, tr.blocks, strict=True))
    line = json.loads(path.read_text().splitlines()[0])
    for field, value, match in (("input_length", -3, "input_length"), ("hash_ids", "x", "hash_ids")):
        bad = dict(line, **{field: value})
        p = tmp_path / f"bad_{field}.jsonl"
        p.write_text(json.dumps(bad) + "\n")
        with pytest.raises(InputError, match=match) as e:
            kv.load_trace(p)
        assert str(p) in str(e.value)
    for name, text, match in (("five", "5\n", "not a JSON object"), ("null", "null\n", "not a JSON object"),
                              ("latin1", None, "UTF-8"), ("big_id", json.dumps(dict(line, chat_id=2**70)), "chat_id"),
                              ("no_blocks", json.dumps(dict(line, hash_ids=[])), "nothing to cache")):
        p = tmp_path / f"{name}.jsonl"
        p.write_bytes(b"\xff\xfe{}\n") if text is None else p.write_text(text)
        with pytest.raises(InputError, match=match):
            kv.load_trace(p)
    p = tmp_path / "missing.jsonl"
    p.write_text(json.dumps({k: v for k, v in line.items() if k != "turn"}) + "\n")
    with pytest.raises(InputError) as e:
        kv.load_trace(p)
    assert e.value.field == "turn"
    p = tmp_path / "unsorted.jsonl"
    p.write_text(json.dumps(dict(line, timestamp=5.0)) + "\n" + json.dumps(dict(line, timestamp=1.0)) + "\n")
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        t = kv.load_trace(p)
    assert t.timestamp.tolist() == [1.0, 5.0] and any("sorted" in str(x.message) for x in w)


def test_bad_cache_configuration():
    with pytest.raises(InputError):
        kv.PrefixCache(0, "lru")
    with pytest.raises(InputError):
        kv.PrefixCache(10, "fifo")
    with pytest.raises(InputError):
        kv.PrefixCache(10, "wa")


def test_cli_replay_json(tmp_path, capsys):
    from syslab.cli import main

    tr = kv.generate(kv.TwinConfig("A", hours=0.05, requests_per_s=2.0), np.random.default_rng(1))
    path = tr.to_jsonl(tmp_path / "t.jsonl")
    with pytest.raises(SystemExit) as e:
        main(["kvcache", "replay", "--trace", str(path), "--capacity-blocks", "500", "--policy", "wa", "--json"])
    d = json.loads(capsys.readouterr().out)
    assert e.value.code == 0 and d["policy"] == "wa" and 0 <= d["hit_ratio"] <= 1 and d["requests"] > 0
    with pytest.raises(SystemExit) as e:
        main(["kvcache", "replay", "--trace", str(path), "--capacity-blocks", "500", "--policy", "nope"])
    assert e.value.code == 2
