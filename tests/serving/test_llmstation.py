"""LLMStation: the tiny model's three paths agree, a suspended step equals a whole one, the engine conserves
requests and tokens, the controller moves the right way, and each policy runs end to end."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from syslab.core.errors import InputError  # noqa: E402
from syslab.serving.llmstation import model as M  # noqa: E402
from syslab.serving.llmstation import reproduce as R  # noqa: E402
from syslab.serving.llmstation import serve as S  # noqa: E402

SMALL = M.TinyConfig(vocab=128, hidden=64, heads=4, ffn=96, layers=3, context=96)


def _requests(n=5, seed=0, prompt=(3, 20), output=(1, 12), rate=200.0):
    rng = np.random.default_rng(seed)
    arrivals = np.cumsum(rng.exponential(1 / rate, n))
    return S.make_requests(arrivals, rng.integers(*prompt, n), rng.integers(*output, n), SMALL, rng)


def test_decode_with_the_cache_equals_a_fresh_prefill_of_the_whole_prefix():
    m = M.TinyLlama(SMALL, seed=1)
    cache = M.KVCache(SMALL, 4)
    prompt = torch.randint(0, SMALL.vocab, (9,), generator=torch.Generator().manual_seed(0))
    tokens = [m.prefill(prompt, 2, cache, slot=3)]
    for k in range(6):
        pos = torch.tensor([len(prompt) + k])
        tokens.append(int(m.decode(torch.tensor([tokens[-1]]), torch.tensor([2]), cache, torch.tensor([3]), pos)))
    scratch = M.KVCache(SMALL, 1)
    for k in range(1, len(tokens)):
        prefix = torch.cat([prompt, torch.tensor(tokens[:k])])
        assert m.prefill(prefix, 2, scratch, slot=0) == tokens[k]


def test_serving_adapters_change_the_output():
    m = M.TinyLlama(SMALL, seed=1)
    prompt = torch.arange(12) % SMALL.vocab
    x = m.embed[prompt] + m.pos[:12]
    outs = [m._inference_layer(m.layers[0], x, torch.full((12,), a), _causal) for a in range(2)]
    assert not torch.allclose(outs[0], outs[1])


def _causal(q, k, v):
    out = torch.nn.functional.scaled_dot_product_attention(q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1),
                                                           is_causal=True)
    return out.transpose(0, 1)


def test_joint_iteration_gives_the_same_tokens_and_the_same_forward():
    m = M.TinyLlama(SMALL, seed=2)
    reqs = _requests(4, output=(20, 30))
    samples = S.markov_samples(2, 16, SMALL, np.random.default_rng(0))
    outs = []
    for joint in (False, True):
        engine = S.Engine(m, slots=4)
        clock = S.Clock()
        for r in reqs:
            engine.admit(S.Request(r.rid, 0.0, r.prompt, r.output_tokens, r.adapter))
        engine.step(clock)
        step = M.FineTuneStep(m, samples, torch.optim.SGD(m.lora_parameters(), lr=0.0))
        seg = M.JointSegment(step, range(0, SMALL.layers)) if joint else None
        engine.step(clock, seg)
        if not joint:
            step.run_to_end()
        outs.append(([r.last_token for r in engine.running], step.loss))
    assert outs[0][0] == outs[1][0]
    assert outs[0][1] == pytest.approx(outs[1][1], rel=1e-5)


def test_tasklet_suspended_step_equals_an_uninterrupted_one():
    diff, dloss, moved = R.tasklet_equivalence(SMALL, np.random.default_rng(0))
    assert diff <= 1e-5 and dloss <= 1e-5
    assert moved > 1e-4                                               # the step did change the adapter


def _grads_by(run_step, seed=3):
    """The LoRA gradients of one step (SGD at lr 1 moves each weight by minus its gradient)."""
    m = M.TinyLlama(SMALL, seed=seed)
    with torch.no_grad():                              # non-zero B so the gradients reach both factors
        for layer in m.layers:
            layer.lora_b.copy_(torch.linspace(-0.01, 0.01, layer.lora_b.numel()).view_as(layer.lora_b))
    before = [p.detach().clone() for p in m.lora_parameters()]
    loss = run_step(m, torch.optim.SGD(m.lora_parameters(), lr=1.0))
    return loss, [b - p.detach() for b, p in zip(before, m.lora_parameters(), strict=True)]


@pytest.mark.parametrize("chunk", [1, 7, 16, 40, 64])
def test_chunked_step_equals_one_uninterrupted_step(chunk):
    tokens = S.markov_samples(2, 40, SMALL, np.random.default_rng(0))
    whole_loss, whole = _grads_by(lambda m, opt: M.FineTuneStep(m, tokens, opt).run_to_end())
    step = {}

    def chunked(m, opt):
        step["s"] = M.ChunkedStep(m, tokens, opt, chunk)
        return step["s"].run_to_end()

    loss, grads = _grads_by(chunked)
    assert step["s"].chunks == -(-40 // chunk)
    assert loss == pytest.approx(whole_loss, rel=1e-5)
    assert max(float(g.abs().max()) for g in whole) > 1e-4             # the gradients are not all zero
    for g, w in zip(grads, whole, strict=True):
        assert torch.allclose(g, w, atol=1e-6, rtol=1e-4)


def test_chunked_backward_frees_each_chunk_and_needs_the_whole_forward_first():
    m = M.TinyLlama(SMALL, seed=0)
    step = M.ChunkedStep(m, S.markov_samples(1, 30, SMALL, np.random.default_rng(0)),
                         torch.optim.SGD(m.lora_parameters(), lr=0.1), 10)
    step.forward_chunk()
    with pytest.raises(AssertionError):
        step.backward_chunk()
    while not step.forward_done:
        step.forward_chunk()
    step.backward_chunk()
    assert step._graphs[-1] is None and step._graphs[0] is not None and not step.done
    step.run_to_end()
    assert step.done and all(p.grad is None for p in m.lora_parameters())


def test_warm_up_leaves_the_adapter_untouched():
    m = M.TinyLlama(SMALL, seed=0)
    before = [p.detach().clone() for p in m.lora_parameters()]
    R.warm_up(_requests(6), m, S.markov_samples(4, 16, SMALL, np.random.default_rng(0)), 0)
    assert all(torch.equal(a, b) for a, b in zip(before, m.lora_parameters(), strict=True))


def test_the_step_actually_trains_the_adapter():
    m = M.TinyLlama(SMALL, seed=0)
    before = [p.detach().clone() for p in m.lora_parameters()]
    tuner = S.Tuner(m, S.markov_samples(8, 24, SMALL, np.random.default_rng(0)), lr=1e-2)
    for _ in range(30):
        step = tuner.new_step()
        step.run_to_end()
        tuner.finished(step)
    assert any(not torch.equal(a, b) for a, b in zip(before, m.lora_parameters(), strict=True))
    assert np.mean(tuner.losses[-5:]) < np.mean(tuner.losses[:5])     # the bigram chain is learnable
    assert tuner.done_samples == 30


def test_backward_tasklets_free_each_layer_graph():
    m = M.TinyLlama(SMALL, seed=0)
    step = M.FineTuneStep(m, S.markov_samples(1, 16, SMALL, np.random.default_rng(0)),
                          torch.optim.SGD(m.lora_parameters(), lr=0.1))
    while not step.forward_done:
        step.forward_layer()
    assert step.loss is not None and not step.done
    step.backward_layer()
    assert step.outputs[-1] is None and step.outputs[0] is not None
    while not step.done:
        step.backward_layer()
    assert all(p.grad is None for p in m.lora_parameters())         # the optimizer stepped and zeroed


@pytest.mark.parametrize("policy", [S.Isolated(), S.Temporal(every=2), S.Chunked(chunk=5), S.Chunked(8, every=3),
                                    S.LLMStation(fixed_wait_s=0.0),
                                    S.LLMStation(fixed_wait_s=0.01, joint=False)])
def test_every_request_finishes_once_with_all_its_tokens(policy):
    m = M.TinyLlama(SMALL, seed=0)
    reqs = _requests(12, seed=3)
    tuner = S.Tuner(m, S.markov_samples(4, 16, SMALL, np.random.default_rng(0)))
    stats = S.serve(reqs, policy, m, tuner, slots=4)
    assert sorted(r.rid for r in stats.requests) == sorted(r.rid for r in reqs)
    for r, orig in zip(sorted(stats.requests, key=lambda r: r.rid), sorted(reqs, key=lambda r: r.rid), strict=True):
        assert r.generated == orig.output_tokens
        assert r.arrival_s <= r.first_token_s <= r.finish_s
    assert all(r.generated == 0 for r in reqs)                         # the caller's requests are untouched
    if policy.name == "isolated":
        assert stats.ft_samples == 0
    kinds = {s.kind for s in stats.spans}
    assert {"prefill"} <= kinds
    if isinstance(policy, S.LLMStation) and policy.joint:
        assert "joint" in kinds and "backward" in kinds
    if policy.name == "chunked":
        assert {"forward", "backward"} <= kinds


def test_engine_never_uses_more_slots_than_it_has():
    m = M.TinyLlama(SMALL, seed=0)
    engine = S.Engine(m, slots=3)
    clock = S.Clock()
    for r in _requests(8, output=(5, 9)):
        engine.admit(S.Request(r.rid, 0.0, r.prompt, r.output_tokens, r.adapter))
    finished = 0
    while engine.busy:
        engine.step(clock)
        assert len(engine.running) + len(engine.free) <= 3
        assert len({r.slot for r in engine.running}) == len(engine.running)
        finished = 8 - len(engine.waiting) - len(engine.running)
    assert finished == 8 and sorted(engine.free) == [0, 1, 2]


def test_controller_backs_off_when_over_and_speeds_up_when_under():
    slo = S.SLO(ttft_s=0.1, tpot_s=0.030)
    c = S.WaitController(slo, isolated_gap_s=0.010, isolated_p99_tpot_s=0.020, window=4)
    assert c.target_s == pytest.approx(0.010 + 0.8 * 0.010)
    c.first_tasklet(0.008)
    w0 = c.wait_s
    assert w0 == pytest.approx(0.008 * 0.010 / (c.target_s - 0.010))
    for _ in range(4):
        c.observe_gap(0.030)
    assert c.wait_s == pytest.approx(w0 * c.up)
    for _ in range(4):
        c.observe_gap(0.005)
    assert c.wait_s == pytest.approx(w0 * c.up * c.down)
    c.observe_ttft(0.095)                                              # above margin x TTFT SLO
    for _ in range(4):
        c.observe_gap(0.005)
    assert c.wait_s == pytest.approx(w0 * c.up * c.down * c.up)
    c.observe_tpot(0.026)                                              # a finished request above margin x TPOT SLO
    for _ in range(4):
        c.observe_gap(0.005)
    assert c.wait_s == pytest.approx(w0 * c.up * c.down * c.up * c.up)


def test_slo_and_best_at_slo():
    fast = S.RunStats("temporal", "a", [], 10, 1.0)
    slow = S.RunStats("temporal", "b", [], 2, 1.0)
    slo = S.SLO(1.0, 1.0)
    fast.p99_ttft = slow.p99_ttft = lambda: 0.5                        # type: ignore[method-assign]
    fast.p99_tpot = lambda: 2.0                                        # type: ignore[method-assign]
    slow.p99_tpot = lambda: 0.5                                        # type: ignore[method-assign]
    assert R.best_at_slo([fast, slow], slo) is slow
    assert slo.worst_ratio(fast) == 2.0
    assert R.best_at_slo([fast], slo) is None


def test_bad_requests_are_input_errors():
    with pytest.raises(InputError, match="context"):
        S.make_requests(np.zeros(1), np.array([90]), np.array([10]), SMALL, np.random.default_rng(0))
    with pytest.raises(InputError, match="at least 1"):
        S.make_requests(np.zeros(2), np.array([5, 0]), np.array([3, 3]), SMALL, np.random.default_rng(0))
    with pytest.raises(InputError):
        S.make_requests(np.zeros(2), np.array([5]), np.array([3, 3]), SMALL, np.random.default_rng(0))


def test_spatial_worker_runs_beside_serving_and_is_reaped():
    m = M.TinyLlama(SMALL, seed=0)
    tuner = S.Tuner(m, S.markov_samples(4, 16, SMALL, np.random.default_rng(5)), data_seed=5)
    stats = S.serve(_requests(6, rate=20.0), S.Spatial(duty=1.0), m, tuner, slots=4)
    assert stats.ft_samples >= 1
    assert all(r.generated == r.output_tokens for r in stats.requests)
    assert any(s.kind == "step" for s in stats.spans)


def test_cli_compare_on_a_small_trace(tmp_path, capsys):
    import json

    from syslab.cli import main

    p = tmp_path / "t.csv"
    rows = ["TIMESTAMP,ContextTokens,GeneratedTokens"] + [
        f"2023-11-16 18:00:0{s}.500000,{300 if s == 2 else 20 + s},{4 + s}" for s in (3, 1, 2)]  # unsorted: warns
    p.write_text("\n".join(rows) + "\n")
    before = p.read_text()
    with pytest.warns(UserWarning, match="sorted"), pytest.raises(SystemExit) as e:
        main(["llmstation", "compare", "--trace", str(p), "--time-scale", "4", "--max-output", "8", "--json"])
    d = json.loads(capsys.readouterr().out)
    assert e.value.code == 0 and p.read_text() == before
    assert d["clipped_requests"] == 1                                   # the 300-token prompt
    policies = {v["policy"] for v in d["policies"].values()}
    assert policies == {"isolated", "temporal", "spatial", "chunked", "llmstation"}
    assert all(v["requests"] == 3 for v in d["policies"].values())
    assert d["slo"]["p99_tpot_s"] > 0


@pytest.mark.parametrize("args, field", [(["--max-requests", "0"], "--max-requests"),
                                         (["--time-scale", "-1"], "--time-scale")])
def test_cli_compare_rejects_bad_options(tmp_path, capsys, args, field):
    from syslab.cli import main

    p = tmp_path / "t.csv"
    p.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:00:00,5,5\n")
    with pytest.raises(SystemExit) as e:
        main(["llmstation", "compare", "--trace", str(p), *args])
    err = capsys.readouterr().err
    assert e.value.code == 2 and field in err and "Traceback" not in err
    p.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:00:00,5,5\n2023-11-16 18:00:01,0,5\n")
    with pytest.raises(SystemExit) as e:                 # an empty prompt is not silently served as 1 token
        main(["llmstation", "compare", "--trace", str(p)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "empty prompt" in err and "Traceback" not in err
    p.write_text("TIMESTAMP,ContextTokens\n2023-11-16 18:00:00,5\n")
    with pytest.raises(SystemExit) as e:
        main(["llmstation", "compare", "--trace", str(p)])
    assert e.value.code == 2
