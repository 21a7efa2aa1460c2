"""LLMStation: Resource Multiplexing in Tuning and Serving Large Language Models (ATC 2025).

He, Yang, Lu, Klimovic, Alonso (ETH Zurich, NUS); artifact llm-db/llmstation. Written from the paper's
abstract, the artifact's run scripts (knobs and metrics) and our notes; no artifact code is reused.

**What it does.** LLMStation runs LoRA fine-tuning on the GPUs that serve multi-LoRA inference. Its autograd
engine turns each fine-tuning step into a pipeline of suspendable *tasklets* (per-layer forward and backward
chunks); an iteration-level scheduler runs a few tasklets, then yields to inference for a wait, adapting the
waits to the observed P99 TTFT/TPOT against the SLO; and the inference engine batches fine-tuning forward
tokens with inference tokens so that they share the base-weight GEMMs. The goal is the most fine-tuning
samples per second that keeps inference within its SLOs.

**What runs for real here (REAL, scaled down).** Everything, on this CPU with torch: a tiny Llama-style model
(``model.py``) serving requests with continuous batching and a KV cache, four serving LoRA adapters, and a
trainable adapter fine-tuned on packed 512-token samples. ``FineTuneStep`` is the suspendable step (each
layer's backward runs on its own from a saved boundary, and the result equals an uninterrupted step);
``serve.py`` has the engine, the LLMStation scheduler with its adaptive wait controller (the control law is
ours), and the baselines: temporal sharing at step granularity (FineInfer-like), chunked training (each step
cut along the sequence into token chunks, one chunk between inference iterations; ``model.ChunkedStep``,
equal to a whole step) and a static spatial split
(a second process with one thread; *not* MPS). Latencies are wall-clock; the SLO is 2x / 1.5x the P99
TTFT / TPOT of serving alone on the same requests (our notes' suggestion; the paper's SLO values are not in
our notes).

**What is not like the paper.** CPU GEMMs are compute-bound already at small batches, so the joint batch
saves little here (measured and reported); two CPU processes on two cores are not two MPS clients on a GPU;
absolute numbers are toy-scale CPU numbers and only the ratios between policies mean anything.
"""

from syslab.core.claims import Fidelity, System
from syslab.serving.llmstation import reproduce as _reproduction

SYSTEM = System(
    key="llmstation",
    name="LLMStation",
    paper="Resource Multiplexing in Tuning and Serving Large Language Models",
    venue="ATC 2025",
    domain="serving",
    fidelity=Fidelity.REAL,
    real="a tiny Llama with LoRA serving requests and fine-tuning at once on this CPU: tasklets, joint batching, "
         "the adaptive wait, temporal, chunked and spatial baselines, all timed on the wall clock",
    modelled="nothing; toy scale (8 layers, hidden 512), CPU instead of GPUs, two processes instead of MPS",
    claims=_reproduction.CLAIMS,
    reproduce=_reproduction.reproduce,
    requires=("torch",),
)
