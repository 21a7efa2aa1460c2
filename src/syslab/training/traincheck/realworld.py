"""The paper's real-world silent bugs, replayed as our own miniature programs (``programs/realworld/``).

The artifact (OrderLab/TrainCheck-Evaluation-Workloads, ``silent-issue-detection``) lists 18 bug ids (the paper
counts 20 bugs; its table shares traces between some ids). Each one we
can reproduce with plain CPU PyTorch (two gloo processes where it needs ranks) has a miniature here: a small
training program with the bug's root cause behind ``--bug`` and its clean twin without it. Every miniature is
replayed the same way: invariants learned from two clean runs (seeds 0 and 1), then checked on a third clean
run (seed 2: any violation is a false alarm) and on the buggy run (seed 3). A bug is *caught* if the buggy
run's first violation comes at its trigger iteration or the next one; *early* if before it (the clean
prefix set off an alarm); *missed* otherwise. The trigger is the first iteration the root cause acts in,
counted as the tracer counts iterations (each ``Optimizer.step`` ends one), fixed with each program before
any run.

Three bugs share one miniature, as they share one trace in the artifact (pytorch-84803, pytorch-96600 and
baichuan2-86 are one root cause: data lost in GPU peer-to-peer transfers, reproduced there and here by fault
injection). Two are simulations, as in the artifact: pytorch-115607 (a torch._dynamo guard bug, fixed in
torch 2.x; its mechanism is re-enacted by a cached step specialisation) and pytorch-84803's family (hardware).
"""

from __future__ import annotations

import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from syslab.training.traincheck import relations as R
from syslab.training.traincheck.collect import collect_many
from syslab.training.traincheck.instrument import ENV_APIS

PROGRAMS = Path(__file__).parent / "programs" / "realworld"
REFERENCE_SEEDS = (0, 1)
CLEAN_SEED = 2
BUG_SEED = 3


@dataclass(frozen=True)
class Case:
    bugs: tuple[str, ...]          # the artifact's bug ids this miniature replays
    script: str
    trigger: int                   # the first iteration the root cause acts in
    what: str                      # the root cause, in one line
    ranks: int = 1
    apis: tuple[str, ...] = ()     # more APIs the tracer must see (``--api``)
    simulated: str = ""            # how the miniature stands in for what cannot run here

    def command(self, seed: int, bug: bool) -> list[str]:
        return [sys.executable, str(PROGRAMS / self.script), "--seed", str(seed), *(("--bug",) if bug else ())]


CASES = (
    Case(("pytorch-51800",), "pt51800_spectral_eval.py", 0,
         "a spectral-norm model evaluated before any training forward (power iteration never ran)"),
    Case(("pytorch-115607",), "pt115607_stale_compiled_step.py", 2,
         "a cached (compiled) optimizer step specialised on 'no gradients' is reused once gradients are back",
         simulated="dynamo's guard bug re-enacted by a cached step (fixed in torch 2.x)"),
    Case(("pytorch-forum-84911",), "forum84911_frozen_finetune.py", 0,
         "the freezing loop also freezes the head, the only parameters the optimizer holds"),
    Case(("stackoverflow-60335387",), "so60335387_no_zero_grad.py", 0,
         "the loop never calls optimizer.zero_grad(); gradients accumulate"),
    Case(("stackoverflow-67180955",), "so67180955_worker_rng.py", 1,
         "DataLoader workers inherit one random state, so every worker returns the same samples"),
    Case(("transformers-17877",), "tf17877_repeated_init.py", 0,
         "the init function re-initialises every parameter below each module it is applied to",
         apis=("torch.Tensor.normal_",)),
    Case(("transformers-33844",), "tf33844_eval_dropout.py", 4,
         "attention calls F.dropout without training=self.training: dropout stays on in eval"),
    Case(("transformers-34204",), "tf34204_collated_batch.py", 0,
         "the batch is aggregated into a single sample: the model trains on one row per batch"),
    Case(("mmpretrain-702",), "mmpretrain702_frozen_stages.py", 0,
         "frozen_stages applied only in train(), which the script never calls: frozen layers train"),
    Case(("pytorch-84803", "pytorch-96600", "baichuan2-86"), "pt84803_comm_data_loss.py", 3,
         "a collective delivers zeros to one rank (data lost in peer-to-peer transfer)", ranks=2,
         simulated="hardware fault injected into the gradient all-reduce, as the artifact does"),
    Case(("pytorch-104336",), "pt104336_ddp_retype.py", 3,
         "the DDP-wrapped model's parameters are re-typed and back, dropping DDP's gradient hooks", ranks=2),
    Case(("x-jxmnop-ddp-out-of-sync",), "x_jxmnop_ddp_wrap.py", 4,
         "the model is DDP-wrapped only on odd steps; even steps skip gradient synchronisation", ranks=2),
    Case(("deepspeed-1801",), "deepspeed1801_tp_clip.py", 3,
         "gradient clipping skips replicated parameters on tensor-parallel rank 1: LayerNorm goes out of sync",
         ranks=2),
)

# The bugs of the artifact's list with no miniature here, and why.
NOT_REPLAYED = {
    "deepspeed-5794": "a hang, not a silent error: MoE workers call all_to_all with inconsistent arguments and "
                      "block (the artifact does not evaluate it either); gloo has no all_to_all to reproduce it",
    "lightning-thunder-725": "a bug in lightning-thunder's jit autocast transform (non-torch-symbol prims skip "
                             "autocast); plain torch has no such transform to break, so a miniature would be "
                             "our own compiler pass, not the bug",
    "transformers-23723": "inference only: Whisper's generate recomputes max_new_tokens before trimming the "
                          "prompt; there is no training iteration, and none of our templates relates a "
                          "generated length to an argument",
}

QUICK = tuple(c for c in CASES if c.ranks == 1)        # the 2-rank ones take ~4 s a run: full scale only


@dataclass
class Replay:
    case: Case
    invariants: int
    first_violation: int | None
    violations: list[R.Violation]
    clean_violations: list[R.Violation]
    baseline: int | None = None            # the loss monitor's first flag on the buggy run

    @property
    def verdict(self) -> str:
        t, v = self.case.trigger, self.first_violation
        return "missed" if v is None else "early" if v < t else "caught" if v <= t + 1 else "late"


def replay(cases: tuple[Case, ...] = CASES, workers: int = 2, progress=lambda m: None,
           control: bool = False) -> list[Replay]:
    """Trace every case's references, clean run and buggy run, learn and check. ``control``: trace only the
    buggy runs, and no invariants (the loss monitor alone)."""
    from syslab.training.traincheck.reproduce import loss_anomaly, losses

    out = []
    with tempfile.TemporaryDirectory(prefix="syslab-traincheck-rw-") as tmp:
        jobs: dict[tuple[str, ...], list[tuple[Case, str, list[str]]]] = {}
        for c in cases:
            runs = [] if control else [(c, f"ref{s}", c.command(s, False)) for s in REFERENCE_SEEDS] + [
                (c, "clean", c.command(CLEAN_SEED, False))]
            jobs.setdefault(c.apis, []).extend(runs + [(c, "bug", c.command(BUG_SEED, True))])
        traces: dict[tuple[str, str], R.Run] = {}
        for apis, batch in jobs.items():            # one tracer setting per batch
            dirs = [Path(tmp) / f"{c.script}-{name}" for c, name, _ in batch]
            collect_many([cmd for _, _, cmd in batch], dirs, workers, timeout_s=300,
                         progress=lambda m: progress(f"traced {m}"),
                         tracer_env={ENV_APIS: ",".join(apis)} if apis else None)
            for (c, name, _), d in zip(batch, dirs, strict=True):
                traces[(c.script, name)] = R.Run.load(d)
        for c in cases:
            bug = traces[(c.script, "bug")]
            monitor = loss_anomaly(losses(bug))
            if control:
                out.append(Replay(c, 0, monitor, [], [], monitor))
                continue
            invariants = R.infer([traces[(c.script, f"ref{s}")] for s in REFERENCE_SEEDS])
            v = R.check(bug, invariants)
            out.append(Replay(c, len(invariants), min((x.iter for x in v), default=None), v,
                              R.check(traces[(c.script, "clean")], invariants), monitor))
    return out


def table_rows(replays: list[Replay]) -> list[list]:
    rows = []
    for r in replays:
        first = r.violations[0] if r.violations else None
        rows.append([", ".join(r.case.bugs), r.case.what + (f" [{r.case.simulated}]" if r.case.simulated else ""),
                     r.case.trigger, "-" if r.first_violation is None else r.first_violation, r.verdict,
                     f"{first.invariant.text} ({first.subject})" if first else "-", len(r.clean_violations),
                     "-" if r.baseline is None else r.baseline])
    for bug, why in NOT_REPLAYED.items():
        rows.append([bug, why, "-", "-", "not replayed", "-", "-", "-"])
    return rows


COLUMNS = ["bug (artifact id)", "root cause in the miniature", "trigger", "first violation", "verdict",
           "first violated invariant", "false alarms on its clean twin", "loss monitor flags at"]
