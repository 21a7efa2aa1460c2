"""``syslab optimus``: Optimus's plan for a multimodal job (an LLM and a ViT encoder) on a modelled H100 pipeline."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from syslab.core.cli_support import out, print_json
from syslab.core.errors import InputError

app = typer.Typer(help="Optimus: schedule a multimodal LLM's encoder into the LLM pipeline's bubbles.",
                  no_args_is_help=True)

# Each plan simulates the LLM's pipeline (stages x chunks x micro-batches forwards and backwards) some 50 times
# for GetEncLLMDep and packs every candidate plan: 8 x 12 x 32 takes ~15 s here, so at most twice that.
MAX_PASSES = 6144


def _resolve(name: str, names: list[str], field: str) -> str:
    key = name.strip().lower().replace("llama-2", "llama2").replace("llama-3", "llama3").replace("gpt-3", "gpt3")
    if key not in names:
        raise InputError(f"unknown {field.strip('-')} {name!r}.", field=field, fix=f"use one of {', '.join(names)}.")
    return key


@app.command("plan")
def optimus_plan(
        llm: Annotated[str, typer.Option(help="the LLM backbone (core.models), e.g. gpt3-175b, llama2-70b")]
        = "gpt3-175b",
        encoder: Annotated[str, typer.Option(help="the ViT encoder (the paper's Table 8): vit-3b, vit-5b, vit-10b, "
                                                  "vit-22b")] = "vit-22b",
        gpus: Annotated[int, typer.Option(help="GPUs in all: data-parallel pipelines x --pp x --tp")] = 3072,
        pp: Annotated[int, typer.Option(help="pipeline stages of the LLM")] = 8,
        tp: Annotated[int, typer.Option(help="tensor-parallel GPUs per stage (one DGX H100 node: at most 8)")] = 8,
        chunks: Annotated[int, typer.Option(help="model chunks per stage of the interleaved schedule (V)")] = 12,
        microbatches: Annotated[int, typer.Option(help="micro-batches per iteration and pipeline (a multiple of "
                                                       "--pp)")] = 16,
        micro_batch_size: Annotated[int, typer.Option(help="sequences per micro-batch")] = 2,
        seq: Annotated[int, typer.Option(help="tokens per sequence")] = 2048,
        adjust: Annotated[bool, typer.Option(help="GetEncLLMDep's warm-up adjustment (--no-adjust: Megatron's "
                                                  "warm-up counts)")] = True,
        as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False) -> None:
    """Optimus's encoder plan and packed iteration time against Megatron-LM (1F1B, the encoder in stage 0) and
    Megatron-LM balanced (interleaved 1F1B over the min-max layer partition), all modelled on H100s."""
    from syslab.core.inputs import option
    from syslab.core.models import MODELS
    from syslab.training.optimus import model as M
    from syslab.training.optimus import schedule as S

    llm = _resolve(llm, list(MODELS), "--llm")
    encoder = _resolve(encoder, list(M.ENCODERS), "--encoder")
    gpus = option(gpus, "--gpus", min=1, max=1_000_000, integer=True)
    pp = option(pp, "--pp", min=1, max=128, integer=True)
    tp = option(tp, "--tp", min=1, max=8, integer=True, fix="use 1 to 8 (TP stays inside one 8-GPU node).")
    chunks = option(chunks, "--chunks", min=1, max=128, integer=True)
    microbatches = option(microbatches, "--microbatches", min=1, max=4096, integer=True)
    micro_batch_size = option(micro_batch_size, "--micro-batch-size", min=1, max=1024, integer=True)
    seq = option(seq, "--seq", min=1, max=1_048_576, integer=True)
    if gpus % (pp * tp):
        raise InputError(f"{gpus} GPUs do not split into pipelines of {pp} stages x {tp} GPUs.", field="--gpus",
                         fix="use a multiple of --pp x --tp.")
    if pp * chunks * microbatches > MAX_PASSES:
        raise InputError(f"{pp} stages x {chunks} chunks x {microbatches} micro-batches = "
                         f"{pp * chunks * microbatches:,} forward passes per iteration.", field="--microbatches",
                         fix=f"keep stages x chunks x micro-batches <= {MAX_PASSES:,}.")
    job = M.LLMJob(microbatches, pp=pp, chunks=chunks, tp=tp, dp=gpus // (pp * tp), seq=seq,
                   micro_batch_size=micro_batch_size, name=llm, encoder=encoder)
    meg, _ = S.megatron(job)
    bal, _, sizes = S.balanced(job)
    timeline = S.get_enc_llm_dep(job, adjust)
    plan, fine, tried = S.optimus(job, fine=True, timeline=timeline)
    _, coarse, _ = S.optimus(job, fine=False, timeline=timeline)
    problems = S.check_dependencies(fine) + S.check_no_overlap(job, fine)
    alone = S.llm_only(job, timeline)
    res = {"llm": llm, "encoder": encoder, "gpus": gpus, "dp": job.dp, "pp": pp, "tp": tp, "chunks": chunks,
           "microbatches": microbatches, "micro_batch_size": micro_batch_size, "seq": seq,
           "iteration_s": {"megatron": meg, "balanced": bal, "optimus_coarse": coarse.iteration_s,
                           "optimus": fine.iteration_s, "llm_alone": alone},
           "cut_vs_megatron": 1 - fine.iteration_s / meg, "cut_vs_balanced": 1 - fine.iteration_s / bal,
           "plan": {"encoder_stages": plan.enc_pp, "encoder_pipelines": plan.pipelines, "split": list(plan.split),
                    "plans_tried": tried, "memory_overhead": S.memory_overhead(job, plan)},
           "efficiency": {"coarse": S.efficiency(job, coarse.iteration_s, timeline),
                          "fine": S.efficiency(job, fine.iteration_s, timeline)},
           "warmups": list(timeline.warmups), "llm_start_s": fine.llm_start, "problems": problems}
    if as_json:
        print_json(res)
        return
    table = Table("schedule", "iteration (s)", "vs Optimus",
                  title=f"{llm} + {encoder} on {gpus} H100s (DP {job.dp} x PP {pp} x TP {tp}, V = {chunks}), "
                        f"{microbatches} micro-batches of {micro_batch_size} x {seq} tokens")
    for name, key in (("Megatron-LM (encoder in stage 0, 1F1B)", "megatron"),
                      ("Megatron-LM balanced (min-max partition)", "balanced"),
                      ("Optimus, coarse bubbles only", "optimus_coarse"), ("Optimus", "optimus"),
                      ("LLM alone (no encoder)", "llm_alone")):
        t = res["iteration_s"][key]
        table.add_row(name, f"{t:.3f}", f"{t / fine.iteration_s:.3f}x")
    out.print(table)
    out.print(f"plan: {plan.enc_pp} encoder stages x {plan.pipelines} encoder pipelines, split {plan.split} "
              f"({tried} plans tried); extra encoder states {res['plan']['memory_overhead']:.1%} of the LLM's; "
              f"warm-ups {' '.join(map(str, timeline.warmups))}; "
              f"{'no dependency or overlap problems' if not problems else problems[0]}")
