"""JENGA: the sparse paths equal the dense one when nothing is dropped, kept blocks keep their order and
positions, and dropping tokens saves activation memory."""

import pytest

torch = pytest.importorskip("torch")

import numpy as np  # noqa: E402

from syslab.training.jenga import accuracy as A  # noqa: E402
from syslab.training.jenga import model as M  # noqa: E402
from syslab.training.jenga import reproduce as R  # noqa: E402

CFG = M.Config(vocab=32, hidden=32, heads=2, ffn=64, layers=3)


def _x(n=256, seed=0):
    return torch.randn(2, n, CFG.hidden, generator=torch.Generator().manual_seed(seed))


def test_keeping_everything_is_the_dense_layer():
    layer = M.TinyLlama(CFG).layers[0]
    x = _x()
    dense = layer(x)
    assert torch.allclose(layer(x, kept=torch.arange(256)), dense, atol=1e-6)
    assert torch.allclose(layer(x, mlp_keep=1.0), dense, atol=1e-6)


def test_kept_tokens_attend_as_in_the_full_sequence_restricted_to_them():
    layer = M.TinyLlama(CFG).layers[0]
    x = _x()
    kept = torch.cat([torch.arange(0, 64), torch.arange(192, 256)])
    got = layer.attention(x[:, kept], kept)
    # reference: full attention with the dropped keys masked out, read at the kept queries
    n = 256
    keep_mask = torch.zeros(n, dtype=torch.bool)
    keep_mask[kept] = True
    xn = M.rms_norm(x, layer.n1, CFG.eps)
    q, k, v = layer.qkv(xn).split(CFG.hidden, dim=-1)
    lora = torch.einsum("bnh,khr,krd->kbnd", xn, layer.lora_a, layer.lora_b)
    q, v = q + lora[0], v + lora[1]
    heads = lambda t: t.view(2, n, CFG.heads, CFG.head_dim).transpose(1, 2)  # noqa: E731
    pos = torch.arange(n)
    q, k, v = M.rope(heads(q), pos), M.rope(heads(k), pos), heads(v)
    mask = (pos[:, None] >= pos[None, :]) & keep_mask[None, :]
    ref = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    ref = layer.o(ref.transpose(1, 2).reshape(2, n, CFG.hidden))[:, kept]
    assert torch.allclose(got, ref, atol=1e-5)


def test_kept_blocks_are_ordered_and_keep_the_ends():
    scores = torch.tensor([0.1, 5.0, 0.2, 4.0, 0.3, 3.0, 0.4, 0.05])
    idx = M.kept_tokens(scores, 0.5, 8 * M.BLOCK)
    blocks = sorted(set((idx // M.BLOCK).tolist()))
    assert blocks == [0, 1, 3, 7] and torch.equal(idx, idx.sort().values)
    assert len(idx) == 4 * M.BLOCK


def test_dropping_tokens_saves_activation_memory_and_keeps_the_loss_finite():
    model = M.TinyLlama(CFG)
    tokens = R.task_batch(CFG, 2, 256, torch.Generator().manual_seed(1))
    dense, loss_d = R.saved_bytes(lambda: R.lm_loss(model, tokens))
    plan = [(None, None), (torch.arange(128), 0.5), (None, None)]
    sparse, loss_s = R.saved_bytes(lambda: R.lm_loss(model, tokens, plan))
    assert sparse < dense and torch.isfinite(loss_s)
    loss_s.backward()
    assert all(p.grad is not None for p in model.lora_parameters()[2:4])   # the sparse layer still trains


def test_predictor_and_recall():
    pred = M.BlockPredictor(CFG.hidden)
    out = pred(_x(512))
    assert out.shape == (8,) and torch.isfinite(out).all()
    truth = torch.arange(8.0)
    assert M.recall(truth, truth, 0.5) == 1.0 and M.recall(-truth, truth, 0.5) == 0.0


def test_segment_wise_mlp_gives_the_same_result_and_gradients_with_less_saved():
    model = M.TinyLlama(CFG)
    tokens = R.task_batch(CFG, 2, 256, torch.Generator().manual_seed(2))
    whole, loss_a = R.saved_bytes(lambda: R.lm_loss(model, tokens))
    loss_a.backward()
    grads_a = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    seg, loss_b = R.saved_bytes(lambda: R.lm_loss(model, tokens, segments=4))
    loss_b.backward()
    assert seg < whole and torch.allclose(loss_a, loss_b, atol=1e-6)
    assert all(torch.allclose(a, p.grad, atol=1e-5) for a, p in zip(grads_a, model.parameters(), strict=True))


def test_the_elastic_predictor_prunes_only_dead_neurons_and_keeps_its_output():
    import torch

    from syslab.training.jenga.model import BLOCK, BlockPredictor

    torch.manual_seed(0)
    p = BlockPredictor(32, width=16)
    with torch.no_grad():
        p.q[0].bias[:5] = -1e6                                       # five q neurons can never fire
    x = torch.randn(2, 4 * BLOCK, 32)
    p.tracking = True
    before = p(x)
    p.tracking = False
    widths = p.prune(0.999)                                          # only the neurons that never fired
    assert widths[0] <= 11 and p.q[0].weight.shape == (widths[0], 32)
    assert torch.allclose(p(x), before, atol=1e-6)                   # dead neurons contributed nothing
    p.tracking = True
    p(x)
    assert all(a <= b for a, b in zip(p.prune(0.8), widths, strict=True))     # the artifact's 80% takes more


def test_cli_profile_json_and_bad_input(tmp_path, capsys):
    import json

    from syslab.cli import main

    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"hidden_size": 64, "num_hidden_layers": 4, "num_attention_heads": 4,
                               "intermediate_size": 128, "vocab_size": 100}))
    with pytest.raises(SystemExit) as e:
        main(["jenga", "profile", "--config", str(cfg), "--seq", "256", "--repeats", "1", "--json"])
    d = json.loads(capsys.readouterr().out)
    assert e.value.code == 0 and d["sparse_layers"] == [2] and d["block_sparsity"] == 0.5
    assert d["jenga"]["saved_activation_bytes"] < d["dense"]["saved_activation_bytes"]
    ids = tmp_path / "ids.npy"
    np.save(ids, np.arange(300) % 100)
    with pytest.raises(SystemExit) as e:
        main(["jenga", "profile", "--config", str(cfg), "--seq", "256", "--repeats", "1", "--tokens", str(ids)])
    assert e.value.code == 0
    capsys.readouterr()
    bad_cfg = tmp_path / "bad.json"
    bad_cfg.write_text(json.dumps({"hidden_size": 65, "num_hidden_layers": 4, "num_attention_heads": 4,
                                   "intermediate_size": 128, "vocab_size": 100}))
    np.save(tmp_path / "big_ids.npy", np.full(300, 1000))
    for args in (["--seq", "100"], ["--seq", "256", "--keep", "2"], ["--layers", "2"], ["--config", str(bad_cfg)],
                 ["--tokens", str(tmp_path / "big_ids.npy"), "--seq", "256"], ["--tokens", str(ids), "--seq", "512"],
                 ["--config", str(tmp_path / "missing.json")]):
        argv = ["jenga", "profile", "--config", str(cfg), *args]
        with pytest.raises(SystemExit) as e:
            main(argv)
        err = capsys.readouterr().err
        assert e.value.code == 2 and "Traceback" not in err, args


def test_the_recall_task_plants_the_needle_in_a_distant_block_and_scores_only_the_answers():
    n_fill, n_key, n_val = A.vocab_split(A.CONFIG)
    seq = 512
    tokens, targets = A.recall_batch(A.CONFIG, 16, seq, torch.Generator().manual_seed(3))
    again = A.recall_batch(A.CONFIG, 16, seq, torch.Generator().manual_seed(3))
    assert torch.equal(tokens, again[0]) and torch.equal(targets, again[1])           # seeded
    assert tokens.shape == (16, seq + 1) and targets.shape == (16, seq)
    for t, y in zip(tokens, targets, strict=True):
        keys = torch.nonzero((t >= n_fill) & (t < n_fill + n_key)).flatten()
        needle, queries = keys[keys < seq + 1 - 2 * A.PAIRS], keys[keys >= seq + 1 - 2 * A.PAIRS]
        assert len(needle) == len(queries) == A.PAIRS
        blocks = set((needle // M.BLOCK).tolist()) | set(((needle + 1) // M.BLOCK).tolist())
        assert len(blocks) == 1 and 1 <= blocks.pop() < seq // M.BLOCK // 2              # one distant block
        answer = {int(t[k]): int(t[k + 1]) for k in needle}
        assert torch.equal(torch.nonzero(y != A.IGNORE).flatten(), queries)               # only the answers
        assert all(int(y[k]) == answer[int(t[k])] == int(t[k + 1]) for k in queries)
        assert all(n_fill + n_key <= int(y[k]) < n_fill + n_key + n_val for k in queries)


def test_copy_targets_repeat_an_earlier_span():
    tokens, targets = A.copy_batch(A.CONFIG, 8, 128, torch.Generator().manual_seed(4))
    for t, y in zip(tokens, targets, strict=True):
        at = torch.nonzero(y != A.IGNORE).flatten()
        assert len(at) >= 128 // 8 - 1 and torch.equal(y[at], t[at + 1])
        m = len(at) + 1
        c = int(at[0])                                           # the repeat starts at c, its span at a < c
        span = t[c:c + m]
        assert any(torch.equal(t[a:a + m], span) for a in range(0, c - m + 1))


def test_the_answer_loss_ignores_unscored_positions_and_sparse_eval_with_nothing_dropped_is_dense():
    model = M.TinyLlama(A.CONFIG)
    tokens, targets = A.recall_batch(A.CONFIG, 2, 256, torch.Generator().manual_seed(5))
    logits = model(tokens[:, :-1])
    mask = targets != A.IGNORE
    ref = torch.nn.functional.cross_entropy(logits[mask], targets[mask])
    assert torch.allclose(R.lm_loss(model, tokens, targets=targets), ref, atol=1e-6)
    plan, scores = R.make_plan(model, tokens, "oracle", keep=1.0, mlp_keep=1.0)
    assert A.answer_accuracy(model, tokens, targets, plan, scores) == A.answer_accuracy(model, tokens, targets)
    everything = A.retrieval_accuracy(model, 256, 6, lambda t: R.make_plan(model, t, "oracle", keep=1.0, mlp_keep=1.0),
                                      sequences=4)
    assert everything == A.retrieval_accuracy(model, 256, 6, sequences=4)


def test_staged_pretraining_is_deterministic_for_a_seed_and_reports_its_curve():
    def curve(seed):
        model = M.TinyLlama(A.CONFIG, seed=seed)
        return A.pretrain(model, [64, 128], [A.CHECK_EVERY, A.CHECK_EVERY], seed, lambda _: None)

    a, b = curve(0), curve(0)
    assert a == b and [n for _, n, _, _ in a] == [64, 128] and all(0 <= acc <= 1 for *_, acc in a)
    assert A.schedule(512) == ([32, 64, 128, 256, 512], [800, 200, 200, 200, 200])


def test_the_accuracy_check_counts_only_where_dense_solves_the_task():
    assert R.accuracy_check(0.96, 0.95, "").holds and R.accuracy_check(A.SOLVED, A.SOLVED, "").holds
    assert not R.accuracy_check(0.96, 0.80, "").holds                 # JENGA loses accuracy
    assert not R.accuracy_check(0.86, 0.86, "").holds                 # dense has not solved it: nothing is shown


def test_finetune_restores_the_weights_and_evaluates_the_fine_tuned_model():
    model = M.TinyLlama(A.CONFIG, seed=1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    seen = []

    def evaluate(m):
        seen.append(sum(float(p.detach().abs().sum()) for p in m.lora_parameters()))
        return 7

    out = R.finetune(model, "dense", 2, 128, 0, batch=A.recall_batch, evaluate=evaluate)
    assert out[3] == 7 and len(out[0]) == 2 and seen[0] > 0
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
