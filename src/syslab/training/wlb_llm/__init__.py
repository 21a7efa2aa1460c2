"""WLB-LLM: Workload-Balanced 4D Parallelism for Large Language Model Training (OSDI 2025).

Wang, Cai, Xie, et al. (UC San Diego and Meta); arXiv 2503.17924. No official code; this module is written
from the paper.

**What it does.** Long-context training packs documents into sequences with a per-document causal mask, so
attention work grows with sum(d_i^2) while everything else grows with sum(d_i): micro-batches with equal
token counts carry unequal work. Under 4D parallelism the slowest micro-batch stretches the pipeline and
the busiest context-parallel (CP) rank stretches every micro-batch. WLB-LLM (i) packs *variable-length*
micro-batches by estimated workload, (ii) holds outlier-length documents in multi-level queues until there
is one for every micro-batch (Algorithm 1), and (iii) shards each *document*, not the packed sequence,
across CP ranks, choosing per micro-batch the sharding its estimator (a profiled table of attention
latency by shape) says is cheaper (adaptive CP).

**What runs for real here (HYBRID).** Every packer (original dataloader order, fixed-length greedy, the
fixed-length ILP on toy instances via HiGHS, WLB-LLM with its persistent outlier queues and deferrals), the
threshold tuning by replay, and CP shard assignment with exact per-rank causal-attention FLOPs, all on the
real document lengths of dataset ``wlb_doc_lengths`` (a long-tail sample of 99,519 lengths whose
provenance upstream is "the WLB-LLM distribution"; no licence file, used as test input only).

**What is modelled: H100 step time.** A micro-batch's time on one pipeline stage is its linear work W_l (the
layer GEMMs and elementwise passes of ``core.gpu.ForwardModel`` at a packed micro-batch's token count, as a
per-token rate) plus its attention W_a (``core.gpu.attention_pairs_s``: FlashAttention-3 on H100, fitted on the
FA3 paper's and repository's measurements), over PP x TP x CP GPUs, the CP group waiting for its busiest rank;
the iteration time comes from simulating the 1F1B schedule (``training.pipeline``) with backward = 2 x forward,
and the paper's closed form T = (p - 1) max_j t_j + sum_j t_j (Fig. 5) is reported beside it as a cross-check.
No efficiency is set here: ``attn_scale`` (default 1) exists only for the report's sensitivity sweep.

- Shapes from ``core.models`` (Llama-2 7B, the paper's 7B model shape); GPU from ``core.hardware`` (H100 SXM).
- Query tiles of 128 rows (FA3's forward block size for head dim 128): a document segment of q tokens costs
  as ceil(q / 128) * 128 rows, which is what makes per-document sharding lose on short documents.
- Parallel layout of the paper's 7B-128K run: TP 8, CP 2, PP 4; N = 8 micro-batches per iteration.
- The variable-length memory bound S_max = 1.25 S is our assumption (the paper gives no number).

The imbalance degree follows Table 2: max micro-batch forward latency x #micro-batches / total latency.
"""

from syslab.core.claims import Fidelity, System
from syslab.training.wlb_llm.cost import TILE, CostModel, fig5_iteration_s, imbalance_degree, iteration_s
from syslab.training.wlb_llm.cp import (
    cp_imbalance,
    microbatch_time_s,
    per_document_shards,
    per_sequence_shards,
)
from syslab.training.wlb_llm.packing import (
    Doc,
    Packing,
    WLBPacker,
    check_context,
    compare_packers,
    doc_lengths,
    fixed_greedy,
    fixed_ilp,
    load_lengths,
    mean_imbalance,
    original_batches,
    replay_wlb,
    split_documents,
    synthetic_lengths,
    training_throughput,
    tune_thresholds,
    validate_lengths,
)
from syslab.training.wlb_llm.reproduce import CLAIMS, reproduce

__all__ = [
    "CLAIMS", "SYSTEM", "TILE", "CostModel", "Doc", "Packing", "WLBPacker", "check_context", "compare_packers",
    "cp_imbalance", "doc_lengths", "fig5_iteration_s", "fixed_greedy", "fixed_ilp", "imbalance_degree",
    "iteration_s", "load_lengths", "mean_imbalance", "microbatch_time_s", "original_batches", "per_document_shards",
    "per_sequence_shards", "replay_wlb", "reproduce", "split_documents", "synthetic_lengths",
    "training_throughput", "tune_thresholds", "validate_lengths",
]

SYSTEM = System(
    key="wlb-llm",
    name="WLB-LLM",
    paper="WLB-LLM: Workload-Balanced 4D Parallelism for Large Language Model Training",
    venue="OSDI 2025",
    domain="training",
    fidelity=Fidelity.HYBRID,
    real="every packer (original, fixed greedy, fixed ILP, WLB-LLM with outlier queues), threshold tuning and "
         "CP sharding with exact per-rank attention FLOPs, on real document lengths",
    modelled="H100 step time: the Llama-2 7B shape's kernels on the shared GPU cost model (core.gpu), a simulated "
             "1F1B schedule",
    claims=CLAIMS,
    reproduce=reproduce,
)
