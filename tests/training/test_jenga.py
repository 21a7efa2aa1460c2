"""JENGA: the sparse paths equal the dense one when nothing is dropped, kept blocks keep their order and
positions, and dropping tokens saves activation memory."""

import pytest

torch = pytest.importorskip("torch")

import numpy as np  # noqa: E402

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
