"""FlexPipe: Maximizing Training Efficiency for Transformer-based Models with Variable-Length Inputs (ATC 2025).

Jilin University and UC Riverside; no public code. Written from our notes on the paper; no artifact code
exists or is reused.

**What it does.** The longest sequence in a mini-batch swings widely from one iteration to the next. Before
each iteration FlexPipe reads the next mini-batch, and keeps, shrinks or grows the pipeline (or only turns
memory optimisation on) using a bounded search over stage mappings (HBSA) and trigger conditions (FMOP), and
reconfigures live, layer by layer, from host-memory copies of every layer (TwinLayer).

**What runs for real here (HYBRID).** HBSA, FMOP and the trace-driven loop with its path-dependent mapping,
on real request lengths (LMSYS-Chat) mixed with long documents; a REAL toy live reconfiguration in torch:
an 8-layer model trained with Adam whose stages are grown and shrunk mid-training through host TwinLayers
ends exactly where uninterrupted training ends. **Modelled:** A100 compute, NVLink and InfiniBand, memory (the
paper's M_peak with Korthikanti et al.'s activation bytes, every in-flight micro-batch at the longest length;
``model.py``), and the switch stall (the paper's 0.79 s). HBSA searches every mapping with and without
recomputation, and a guard of ours (``plan.flexpipe``) keeps FlexPipe from ever ending slower than the static
pipeline it starts on.
"""

from syslab.core.claims import Fidelity, System
from syslab.training.flexpipe import reproduce as _reproduction

SYSTEM = System(
    key="flexpipe",
    name="FlexPipe",
    paper="FlexPipe: Maximizing Training Efficiency for Transformer-based Models with Variable-Length Inputs",
    venue="ATC 2025",
    domain="training",
    fidelity=Fidelity.HYBRID,
    real="HBSA, FMOP and the trace-driven loop on real lengths; live reconfiguration through host TwinLayers of "
         "a torch model trained on CPU",
    modelled="A100 compute and memory, NVLink / InfiniBand (core.gpu), the 0.8 s switch stall",
    claims=_reproduction.CLAIMS,
    reproduce=_reproduction.reproduce,
    requires=("torch",),
)
