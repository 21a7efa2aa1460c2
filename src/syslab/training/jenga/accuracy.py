"""Does JENGA keep accuracy? A retrieval task the tiny model must actually solve, scored dense and with JENGA.

The memory and time experiment (``reproduce``) trains on a language whose loss is mostly local, where a planted
key-value pair is never scored. Here the model is small enough to pre-train from scratch until dense attention
solves a long-range retrieval, and only the answers are scored, so token elimination that drops the wrong block
shows up as lost accuracy.

Task (SYNTHETIC, ``recall_batch``): associative recall. Uniform filler tokens; ``PAIRS`` key-value pairs planted
together in one *needle* block of the first half (never block 0, which JENGA always keeps); in the last block the
same keys queried in another order, each followed by its value; only those values are scored. At 512 tokens the
needle lies 256-450 tokens before the queries. Chance is 1/16 (a value); copying *some* value from the context
gives 1/4.

Model and budget, chosen on dense accuracy alone before JENGA ran on this task: 3 layers (the fewest for which
JENGA has an attention-sparse layer: the upper half but the last), hidden 64, 2 heads of 32, vocab 64, pre-trained
from scratch in stages 32 -> 64 -> ... -> the fine-tuning length, 2048 tokens a step, AdamW 3e-3 then 1e-3.
Tried first (held-out dense accuracy on the first stage): 4 heads of 16 at 64 tokens plateaued at 0.25-0.4 (the
copy-any-value plateau) for 500 steps, with and without the copy task; 2 heads with a 64-token first stage formed
the induction circuit within 600 steps for 1 seed of 3 (hidden 128 / 4 heads: 0 of 1); 1,024 tokens a step: 0 of
1; a 32-token first stage (or 75% copy): 2 of 2 of the failing seeds, at 350-475 steps. Every stage mixes in a
copy task (a span repeated at a random offset: dense induction targets with no positional shortcut; recall alone
at 512 was unstable, 0.73 -> 0.41); the stages after the first run at 1e-3 (at 3e-3 the 512-token stage plateaued
at 0.82-0.90 and oscillated). A stage ends when dense accuracy on a held-out batch reaches ``STAGE_DONE``.

Accuracy is measured after each LoRA fine-tuning variant on fresh sequences, evaluated dense (the model the
fine-tuning produced, as the paper evaluates it) and with the variant's own token-sparse forward, each sequence
alone so it gets its own kept blocks (training batches share one kept set, as in ``make_plan``).

Cost: pre-training is O(steps x tokens x (hidden^2 + length x hidden)); at quick scale ~450 steps of 2,048 tokens,
the bulk of this experiment's time on one thread."""

from __future__ import annotations

import torch

from syslab.training.jenga.model import BLOCK, Config, TinyLlama

CONFIG = Config(vocab=64, hidden=64, heads=2, ffn=172, layers=3)   # chosen on dense retrieval only (module doc)
PAIRS = 4              # key-value pairs planted per sequence (and queried at its end)
IGNORE = -100          # target of the positions that carry no answer

PRE_TOKENS = 2048      # tokens per pre-training step (batch = PRE_TOKENS / length)
PRE_LR = 3e-3
EXTEND_LR = 1e-3       # the stages after the first: few sequences a step at long lengths make 3e-3 unstable
COPY_SHARE = 0.5       # of each pre-training batch: copy sequences (dense induction targets), the rest recall
SOLVED = 0.9           # dense "solves" the retrieval: far above the 1 / PAIRS plateau of copying any value
STAGE_DONE = 0.95      # a pre-training stage ends once held-out dense accuracy at its length reaches this
CHECK_EVERY = 25
EVAL_SEQUENCES = 64


def vocab_split(cfg: Config) -> tuple[int, int, int]:
    """Token ids: [0, filler) filler, [filler, filler + keys) keys, the rest values."""
    quarter = cfg.vocab // 4
    return 2 * quarter, quarter, cfg.vocab - 3 * quarter


def recall_batch(cfg: Config, batch: int, seq: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Associative recall: tokens [batch, seq + 1] and next-token targets [batch, seq] (the value after each
    query key, ``IGNORE`` elsewhere: filler is unpredictable). With >= 4 blocks the needle lies in a block of the
    first half other than the first; shorter (pre-training) sequences put it anywhere before the queries."""
    n_fill, n_key, n_val = vocab_split(cfg)
    out = torch.randint(0, n_fill, (batch, seq + 1), generator=gen)
    target = torch.full((batch, seq), IGNORE)
    nb, q = seq // BLOCK, seq + 1 - 2 * PAIRS
    for b in range(batch):
        keys = torch.randperm(n_key, generator=gen)[:PAIRS] + n_fill
        values = torch.randint(0, n_val, (PAIRS,), generator=gen) + n_fill + n_key
        if nb >= 4:
            block = int(torch.randint(1, nb // 2, (1,), generator=gen))
            start = block * BLOCK + int(torch.randint(0, BLOCK - 2 * PAIRS + 1, (1,), generator=gen))
        else:
            start = int(torch.randint(0, q - 2 * PAIRS + 1, (1,), generator=gen))
        out[b, start:start + 2 * PAIRS:2], out[b, start + 1:start + 2 * PAIRS:2] = keys, values
        order = torch.randperm(PAIRS, generator=gen)
        out[b, q::2], out[b, q + 1::2] = keys[order], values[order]
        target[b, q::2] = values[order]
    return out, target


def copy_batch(cfg: Config, batch: int, seq: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Copy task (pre-training only): filler with a random span of seq/8 to seq/4 tokens repeated at a random
    later offset; the targets are the repeat's tokens (an induction task with no fixed offset)."""
    n_fill = vocab_split(cfg)[0]
    out = torch.randint(0, n_fill, (batch, seq + 1), generator=gen)
    target = torch.full((batch, seq), IGNORE)
    for b in range(batch):
        m = int(torch.randint(seq // 8, seq // 4 + 1, (1,), generator=gen))
        a = int(torch.randint(0, seq + 1 - 2 * m + 1, (1,), generator=gen))
        c = int(torch.randint(a + m, seq + 1 - m + 1, (1,), generator=gen))
        span = torch.randint(0, cfg.vocab, (m,), generator=gen)
        out[b, a:a + m] = out[b, c:c + m] = span
        target[b, c:c + m - 1] = span[1:]
    return out, target


def answer_loss(model: TinyLlama, tokens: torch.Tensor, targets: torch.Tensor, plan=None, scores=None,
                segments: int = 1) -> torch.Tensor:
    """Cross-entropy of the model on ``tokens[:, :-1]`` against ``targets``, ``IGNORE`` skipped."""
    logits = model(tokens[:, :-1], plan, scores, segments)
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                                             ignore_index=IGNORE)


@torch.no_grad()
def answer_accuracy(model: TinyLlama, tokens: torch.Tensor, targets: torch.Tensor, plan=None, scores=None
                    ) -> float:
    """Share of the answer positions whose target the model's argmax hits."""
    pred = model(tokens[:, :-1], plan, scores).argmax(-1)
    mask = targets != IGNORE
    return float((pred[mask] == targets[mask]).float().mean())


def pretrain(model: TinyLlama, lengths: list[int], caps: list[int], seed: int, progress) -> list[tuple]:
    """Staged pre-training of every weight, short to long: each stage trains at one length on batches half recall,
    half copy, at ``PRE_LR`` in the first stage and ``EXTEND_LR`` after; a stage ends once dense accuracy on a
    fixed held-out batch at that length reaches ``STAGE_DONE`` (checked every ``CHECK_EVERY`` steps) or at its
    cap. Returns the curve: (step, length, training loss, held-out accuracy)."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=PRE_LR, weight_decay=0.0)
    curve, step = [], 0
    for seq, cap in zip(lengths, caps, strict=True):
        batch = max(2, PRE_TOKENS // seq)
        n_copy = int(round(COPY_SHARE * batch))
        for group in opt.param_groups:
            group["lr"] = PRE_LR if seq == lengths[0] else EXTEND_LR
        held_out = recall_batch(model.cfg, 32, seq, torch.Generator().manual_seed(seed + 10_000 + seq))
        for s in range(1, cap + 1):
            tokens, targets = recall_batch(model.cfg, batch - n_copy, seq, gen)
            copy_tokens, copy_targets = copy_batch(model.cfg, n_copy, seq, gen)
            loss = answer_loss(model, torch.cat([tokens, copy_tokens]), torch.cat([targets, copy_targets]))
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            if s % CHECK_EVERY == 0 or s == cap:
                acc = answer_accuracy(model, *held_out)
                curve.append((step, seq, loss.item(), acc))
                progress(f"pre-training the retrieval model at {seq} tokens: step {step}, accuracy {acc:.2f}")
                if acc >= STAGE_DONE:
                    break
    return curve


def schedule(seq: int) -> tuple[list[int], list[int]]:
    """Stage lengths 32, 64, ... up to ``seq`` and their step caps (the first stage forms the circuit)."""
    lengths = [32]
    while lengths[-1] < seq:
        lengths.append(lengths[-1] * 2)
    return lengths, [800] + [200] * (len(lengths) - 1)


def retrieval_accuracy(model: TinyLlama, seq: int, seed: int, plan_for=None,
                       sequences: int = EVAL_SEQUENCES) -> float:
    """Share of the query answers (``PAIRS`` per fresh sequence) the model predicts (argmax): dense, or with
    ``plan_for(tokens) -> (plan, scores)`` chosen for each sequence alone (JENGA's forward)."""
    tokens, targets = recall_batch(model.cfg, sequences, seq, torch.Generator().manual_seed(seed))
    if plan_for is None:
        return answer_accuracy(model, tokens, targets)
    hits = 0.0
    for t, y in zip(tokens.split(1), targets.split(1), strict=True):
        hits += answer_accuracy(model, t, y, *plan_for(t))
    return hits / sequences
