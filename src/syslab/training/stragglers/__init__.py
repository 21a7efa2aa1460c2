"""Understanding Stragglers in Large Model Training Using What-if Analysis (OSDI 2025).

Lin, Jiang, Ye, et al. (NYU, ByteDance Seed, ZJU); arXiv 2505.05713; artifact
ByteDance-Seed/StragglerAnalysis (Apache-2.0). syslab's implementation is written from the paper and the
artifact's documented semantics; no artifact code is reused.

**What it does.** A training job's recorded per-op trace (one row per forward/backward compute, PP
send/recv, DP collective, optimizer and GC op, for every step, DP rank and PP stage) is replayed through a
dependency model of one step. Re-simulating the job as if some ops had *ideal* durations answers "what
if": the ratio of the step time without CPU launch gaps to the ideal step time is the job's **straggler
slowdown** (Eq. 1), and re-simulations that restore one group of ops at a time attribute it to op types,
DP ranks and PP stages (Eqs. 2, 4). Two root-cause metrics follow: M_S, the share of the slowdown removed
by idealising the last PP stage, and M_W, the share removed by idealising the 3% slowest workers.

**What runs for real here: everything (REAL).** The analysis runs on the three real production traces of
dataset ``straggler_traces`` and on any trace a user brings in the same schema. Only the traces of the
attribution test are synthetic: they come from a 1F1B job model (``synthesize_trace``) with injected
causes, and are labelled as such. No constant is calibrated: the analysis has none besides the paper's
thresholds (decompose when S >= 1.03; M_W over the top 3% of workers; 10 ms tolerance on clock skew).

**Cost.** Building the model is O(ops in one step of one DP rank). Each simulation is a pass over the
N ops of one step, vectorised over the K = steps x DP ranks copies: O(N x K) arithmetic in O(N) numpy
calls. The analysis runs 2 + |op types| + DP + PP + 4 simulations.
"""

from syslab.core.claims import Fidelity, System
from syslab.training.stragglers.model import DependencyModel, build_dependency_model
from syslab.training.stragglers.reproduce import CLAIMS, plot_heatmap, reproduce
from syslab.training.stragglers.simulator import Simulator, TraceTensor, to_tensor
from syslab.training.stragglers.synthetic import CAUSES, SynthConfig, synthesize_trace, synthetic_model
from syslab.training.stragglers.trace import (
    DECOMPOSE_THRESHOLD,
    KNOWN_OPTYPES,
    P2P,
    TRACE_COLUMNS,
    JobMeta,
    load_meta,
    load_trace,
    meta_from_dict,
    validate_trace,
)
from syslab.training.stragglers.whatif import (
    Analysis,
    Explained,
    Replay,
    analyze,
    analyze_files,
    ideal_values,
    launch_delays,
    name_root_cause,
    synchronized_gc_recovery,
    transfer_durations,
    write_timeline,
)

__all__ = [
    "CAUSES", "CLAIMS", "DECOMPOSE_THRESHOLD", "KNOWN_OPTYPES", "P2P", "SYSTEM", "TRACE_COLUMNS", "Analysis",
    "DependencyModel", "Explained", "JobMeta", "Replay", "Simulator", "SynthConfig", "TraceTensor", "analyze",
    "analyze_files", "build_dependency_model", "ideal_values", "launch_delays", "load_meta", "load_trace",
    "meta_from_dict", "name_root_cause", "plot_heatmap", "reproduce", "synchronized_gc_recovery",
    "synthesize_trace", "synthetic_model", "to_tensor", "transfer_durations", "validate_trace", "write_timeline",
]

SYSTEM = System(
    key="stragglers",
    name="Stragglers what-if analysis",
    paper="Understanding Stragglers in Large Model Training Using What-if Analysis",
    venue="OSDI 2025",
    domain="training",
    fidelity=Fidelity.REAL,
    real="the whole what-if analysis (dependency model, simulation, S, attribution, M_S, M_W) on three real "
         "production traces",
    modelled="nothing; the attribution and synchronised-GC tests use synthetic 1F1B traces, labelled as such",
    claims=CLAIMS,
    reproduce=reproduce,
)
