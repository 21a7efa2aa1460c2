"""TrainCheck's instrumentation overhead on small training loops (the paper: usually under 2% with selective
instrumentation, 1.6x at worst), and the cost of inference and checking. Our tracer snapshots every
parameter at four API boundaries per iteration, so its cost grows with parameters x iterations and is
largest, relative to the work, for tiny models; the larger model shows how it amortises."""

import tempfile
import time

import torch

from syslab.training.traincheck import relations as R
from syslab.training.traincheck.api import tracing
from syslab.training.traincheck.instrument import Tracer


def loop(width: int, steps: int, batch: int = 64) -> None:
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Linear(width, width), torch.nn.ReLU(), torch.nn.Dropout(0.1),
                            torch.nn.Linear(width, width), torch.nn.ReLU(), torch.nn.Linear(width, 10))
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3)
    for _ in range(steps):
        x, y = torch.randn(batch, width), torch.randint(0, 10, (batch,))
        opt.zero_grad()
        torch.nn.functional.cross_entropy(m(x), y).backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
        opt.step()


def best_of(fn, repeats: int = 3) -> float:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return min(out)


if __name__ == "__main__":
    torch.set_num_threads(2)
    print("overhead of tracing: full (learn), and state sampled every 10th iteration (check --every 10)")
    print(f"{'width':>6} {'params':>9} {'steps':>6} {'plain (s)':>10} {'full':>8} {'every 10':>9}")
    for width, steps in ((64, 200), (512, 100), (2048, 30)):
        plain = best_of(lambda w=width, s=steps: loop(w, s))
        row = []
        for every in (1, 10):
            with tempfile.TemporaryDirectory() as d:
                def traced(w=width, s=steps, d=d, every=every):
                    tracer = Tracer(d, every=every).install()
                    try:
                        loop(w, s)
                    finally:
                        tracer.close()
                row.append(best_of(traced) / plain - 1)
        params = 2 * width * width + width * 10 + 2 * width + 10
        print(f"{width:>6} {params:>9} {steps:>6} {plain:>10.3f} {row[0]:>8.0%} {row[1]:>9.0%}")
    with tracing() as box:
        loop(64, 100)
    run = box["run"]
    t0 = time.perf_counter()
    n = sum(1 for _ in R.examples(run))
    invs = R.infer([run])
    t1 = time.perf_counter()
    R.check(run, invs)
    t2 = time.perf_counter()
    print(f"inference on 100 iterations: {n} examples, {len(invs)} invariants in {t1 - t0:.2f} s; "
          f"checking {t2 - t1:.2f} s (both linear in examples)")
