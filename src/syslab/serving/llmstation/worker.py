"""The fine-tuning process of the spatial baseline, started by ``serve.Spatial`` as
``python -m syslab.serving.llmstation.worker JSON``."""

from __future__ import annotations

import json
import select
import sys
import time

import numpy as np
import torch

from syslab.serving.llmstation.model import TinyConfig, TinyLlama
from syslab.serving.llmstation.serve import Tuner, markov_samples


def main(args: dict) -> None:
    """The fine-tuning process of the spatial baseline (``python -m syslab.serving.llmstation.worker JSON``):
    one torch thread, steps throttled to ``duty``; talks over stdin/stdout (go, stop -> JSON result)."""
    torch.set_num_threads(1)
    cfg = TinyConfig(**args["cfg"])
    model = TinyLlama(cfg, args["seed"])
    samples = markov_samples(args["n_samples"], args["seq_len"], cfg, np.random.default_rng(args["data_seed"]))
    tuner = Tuner(model, samples, args["micro_batch"])
    print("ready", flush=True)
    sys.stdin.readline()                                            # go
    steps = []
    duty = args["duty"]
    while not select.select([sys.stdin], [], [], 0)[0]:
        t0 = time.perf_counter()
        step = tuner.new_step()
        step.run_to_end()
        t1 = time.perf_counter()
        steps.append((t0, t1))
        tuner.finished(step)
        if duty < 1.0:
            time.sleep((t1 - t0) * (1.0 - duty) / duty)
    sys.stdin.readline()                                            # stop
    print(json.dumps({"steps": steps, "losses": tuner.losses, "micro_batch": tuner.micro_batch}), flush=True)


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
