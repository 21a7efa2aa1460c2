"""LLMStation's tiny model on this CPU: what one decode iteration, one prefill and one tasklet cost, how the
decode cost grows with the batch, and what joint batching saves. These costs set how much fine-tuning an SLO
leaves room for; peak memory is printed at the end."""

import resource
import time

import numpy as np
import torch

from syslab.serving.llmstation import model as M
from syslab.serving.llmstation import serve as S
from syslab.serving.llmstation.reproduce import CFG


def timed(fn, repeats=7):
    fn()
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return float(np.median(out)) * 1e3


if __name__ == "__main__":
    torch.set_num_threads(2)
    rng = np.random.default_rng(0)
    model = M.TinyLlama(CFG)
    clock = S.Clock()
    print(f"model: {CFG.layers} layers, hidden {CFG.hidden}, "
          f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f} M parameters (fp32)")
    print(f"{'batch':>6} {'decode (ms)':>12}")
    for b in (1, 4, 8, 16):
        engine = S.Engine(model, slots=16)
        for r in S.make_requests(np.zeros(b), np.full(b, 64), np.full(b, 100), CFG, rng):
            engine.admit(S.Request(r.rid, 0.0, r.prompt, 10**6, r.adapter))
        engine.step(clock)
        print(f"{b:>6} {timed(lambda e=engine: e.step(clock)):>12.2f}")
    cache = M.KVCache(CFG, 1)
    for n in (32, 128):
        prompt = torch.from_numpy(rng.integers(0, CFG.vocab, n))
        print(f"prefill of {n} tokens: {timed(lambda p=prompt: model.prefill(p, 0, cache, 0)):.1f} ms")
    for tokens in (128, 512):
        samples = S.markov_samples(1, tokens, CFG, rng)
        opt = torch.optim.AdamW(model.lora_parameters(), lr=1e-3)

        def fwd(s=samples, o=opt):
            M.FineTuneStep(model, s, o).forward_layer()

        def whole(s=samples, o=opt):
            M.FineTuneStep(model, s, o).run_to_end()

        print(f"{tokens}-token sample: forward tasklet {timed(fwd):.1f} ms, whole step {timed(whole, 3):.0f} ms "
              f"({2 * CFG.layers} tasklets)")
    from syslab.serving.llmstation.reproduce import joint_batching_gain
    for tokens in (128, 512):
        g = joint_batching_gain(model, tokens, rng)
        print(f"joint batching, {tokens}-token tasklet + 8-request decode: apart {g['apart_s'] * 1e3:.1f} ms, "
              f"joint {g['joint_s'] * 1e3:.1f} ms ({1 - g['joint_s'] / g['apart_s']:+.0%} saved)")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    print("decode cost grows with batch x (hidden^2 + context x hidden); a tasklet with its sample's tokens")
