"""JENGA: Enhancing LLM Long-Context Fine-tuning with Contextual Token Sparsity (ATC 2025).

Tsinghua University and Microsoft Research; artifact Pairshoe/Jenga-AE (arXiv v1: LeMo, 2501.09767). Written
from the paper's abstract, the artifact's structure as our notes describe it, and our notes; no artifact
code is reused.

**What it does.** Long-context fine-tuning is bound by activation memory. JENGA drops, per layer, the
64-token blocks that a small learned predictor says receive little attention: only the kept tokens are
projected, attended and saved for backward, while the others ride the residual stream; the MLP likewise runs
on its most active tokens only.

**What runs for real here (REAL, tiny scale).** Everything, on this CPU with torch (``model.py``): a tiny
Llama-style model (8 layers, hidden 128, RoPE, SwiGLU, LoRA on q and v) briefly pre-trained on a SYNTHETIC
long-context task, then LoRA fine-tuned dense and with JENGA's attention token elimination (oracle and
trained-predictor block scores, RoPE at original positions, permutation-free) and MLP token sparsity;
activation memory is measured exactly with ``torch.autograd.graph.saved_tensors_hooks``. Step times are CPU
times, not GPU speed-ups. Segment-wise execution runs the MLP checkpointed over token segments; the
predictor's elastic size prunes its dead ReLU neurons after training (the artifact's elastic predictor).

**Accuracy (``accuracy.py``).** A second tiny model (3 layers, hidden 64) is pre-trained from scratch until dense
attention solves a SYNTHETIC associative recall at the fine-tuning length (key-value pairs in one distant block,
queried at the end; only the answers scored), then LoRA fine-tuned dense, with oracle and with predicted blocks;
each fine-tuned model is scored on fresh sequences evaluated dense (as the paper evaluates) and with its own
token-sparse forward.

Tool: ``syslab jenga profile --config config.json`` runs one LoRA step dense and with JENGA on a model of your
shape.
"""

from syslab.core.claims import Fidelity, System
from syslab.training.jenga import reproduce as _reproduction

SYSTEM = System(
    key="jenga",
    name="JENGA",
    paper="Jenga: Enhancing LLM Long-Context Fine-tuning with Contextual Token Sparsity",
    venue="ATC 2025",
    domain="training",
    fidelity=Fidelity.REAL,
    real="a tiny Llama with LoRA fine-tuned dense and with block-level token elimination and MLP token sparsity "
         "on CPU; activation bytes measured from autograd's saved tensors",
    modelled="nothing (toy scale; CPU step times)",
    claims=_reproduction.CLAIMS,
    reproduce=_reproduction.reproduce,
    requires=("torch",),
)
