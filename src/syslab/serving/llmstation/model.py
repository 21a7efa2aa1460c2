"""A tiny Llama-style model that serves multi-LoRA requests and fine-tunes its own LoRA adapter, built so that
a fine-tuning step can be cut into tasklets and its forward tokens can ride in an inference batch.

Shape: RMSNorm, multi-head attention with LoRA on q and v (rank 8, as in the paper's artifact
``--max-lora-rank 8``), SwiGLU MLP, tied-free LM head. Learned absolute positions replace RoPE: positions are
not what this paper is about and it keeps the decode path short.

Three entry points share the same frozen base weights:

* ``prefill`` / ``decode``: inference with a slot-indexed KV cache, each request with its own adapter
  (vLLM's ``--max-loras 4``: four fixed adapters, applied per row by a gathered batched matmul);
* ``ft_layer_forward``: one decoder layer of the fine-tuning forward on a packed sample, where the sample's
  hidden states enter the layer through a *leaf* tensor so that the backward of each layer can be run on its
  own later (a per-layer tasklet; see ``FineTuneStep``);
* ``joint_layer``: the same decoder layer computed for inference rows and fine-tuning rows at once. Every base
  GEMM runs once over the concatenated rows; attention and LoRA stay per segment. The base weights are frozen,
  so the joint GEMM's autograd node only keeps the fine-tuning rows (``_SharedGEMM``).

Cost: one layer is O(tokens x hidden^2) for the GEMMs plus O(tokens x context x hidden) for attention.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class TinyConfig:
    vocab: int = 2048
    hidden: int = 512
    heads: int = 8
    ffn: int = 1408          # Llama's ~2.75x hidden (SwiGLU)
    layers: int = 6
    context: int = 384
    lora_rank: int = 8
    lora_alpha: float = 16.0
    serving_adapters: int = 4
    eps: float = 1e-5

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads


def rms_norm(x: Tensor, weight: Tensor, eps: float) -> Tensor:
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


class _SharedGEMM(torch.autograd.Function):
    """``cat(a, b) @ w.T`` as one GEMM, returning the two row blocks. ``a`` (inference rows) never needs a
    gradient and ``w`` is frozen, so backward only forms ``grad_b @ w``: the inference rows cost nothing in the
    fine-tuning backward and are not kept alive by the graph."""

    @staticmethod
    def forward(ctx, a: Tensor, b: Tensor, w: Tensor) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        ctx.save_for_backward(w)
        out = torch.cat([a, b]) @ w.T
        return out[: a.shape[0]], out[a.shape[0]:]

    @staticmethod
    def backward(ctx, grad_a: Tensor | None, grad_b: Tensor) -> tuple[None, Tensor, None]:  # type: ignore[override]
        (w,) = ctx.saved_tensors
        return None, grad_b @ w, None


class Layer(nn.Module):
    def __init__(self, cfg: TinyConfig) -> None:
        super().__init__()
        h, f, r = cfg.hidden, cfg.ffn, cfg.lora_rank
        self.cfg = cfg
        self.norm1 = nn.Parameter(torch.ones(h), requires_grad=False)
        self.norm2 = nn.Parameter(torch.ones(h), requires_grad=False)
        self.qkv = nn.Parameter(torch.randn(3 * h, h) / math.sqrt(h), requires_grad=False)
        self.o = nn.Parameter(torch.randn(h, h) / math.sqrt(h), requires_grad=False)
        self.up = nn.Parameter(torch.randn(2 * f, h) / math.sqrt(h), requires_grad=False)   # gate and up, fused
        self.down = nn.Parameter(torch.randn(h, f) / math.sqrt(f), requires_grad=False)
        # the trainable adapter (q and v), zero-initialised on B as in LoRA
        self.lora_a = nn.Parameter(torch.randn(2, h, r) / math.sqrt(h))
        self.lora_b = nn.Parameter(torch.zeros(2, r, h))
        # serving adapters: [adapter, q|v, ...], fixed
        n = cfg.serving_adapters
        self.serve_a = nn.Parameter(torch.randn(n, 2, h, r) / math.sqrt(h), requires_grad=False)
        self.serve_b = nn.Parameter(torch.randn(n, 2, r, h) * 0.02, requires_grad=False)

    @property
    def lora_scale(self) -> float:
        return self.cfg.lora_alpha / self.cfg.lora_rank

    # --- pieces shared by every path -------------------------------------------------------------------
    def _serve_lora(self, x: Tensor, adapter: Tensor) -> Tensor:
        """Per-row serving adapters for q and v: [n, 2, h] (a gathered batched matmul, like vLLM's BGMV)."""
        a = self.serve_a[adapter]                       # [n, 2, h, r]
        b = self.serve_b[adapter]                       # [n, 2, r, h]
        z = torch.einsum("nh,nkhr->nkr", x, a)
        return torch.einsum("nkr,nkrh->nkh", z, b) * self.lora_scale

    def _train_lora(self, x: Tensor) -> Tensor:
        """The trainable adapter for q and v: [n, 2, h]."""
        z = torch.einsum("nh,khr->nkr", x, self.lora_a)
        return torch.einsum("nkr,krh->nkh", z, self.lora_b) * self.lora_scale

    def _mlp_out(self, x: Tensor, up: Tensor) -> Tensor:
        gate, val = up.chunk(2, dim=-1)
        return F.silu(gate) * val

    # --- inference ---------------------------------------------------------------------------------------
    def attend_cached(self, q: Tensor, k: Tensor, v: Tensor, cache: KVCache, layer: int, slots: Tensor,
                      positions: Tensor, lengths: Tensor) -> Tensor:
        """Decode attention: one new token per slot against that slot's cache (padded to the longest)."""
        cache.k[layer, slots, :, positions] = k
        cache.v[layer, slots, :, positions] = v
        t = int(lengths.max())
        keys = cache.k[layer, :, :, :t].index_select(0, slots)   # [n, H, t, d]; copies only t positions
        vals = cache.v[layer, :, :, :t].index_select(0, slots)
        mask = torch.arange(t).unsqueeze(0) < lengths.unsqueeze(1)   # [n, t]
        out = F.scaled_dot_product_attention(q.unsqueeze(2), keys, vals, attn_mask=mask[:, None, None, :])
        return out.squeeze(2)                           # [n, H, d]

    def inference_rows(self, x: Tensor, adapter: Tensor, qkv: Tensor, attend) -> tuple[Tensor, Tensor]:
        """From the base qkv of inference rows to the attention output's o-input (needs ``attend``)."""
        cfg = self.cfg
        n = x.shape[0]
        lora = self._serve_lora(rms_norm(x, self.norm1, cfg.eps), adapter)
        q, k, v = qkv.split(cfg.hidden, dim=-1)
        q = (q + lora[:, 0]).view(n, cfg.heads, cfg.head_dim)
        v = (v + lora[:, 1]).view(n, cfg.heads, cfg.head_dim)
        k = k.view(n, cfg.heads, cfg.head_dim)
        return attend(q, k, v).reshape(n, cfg.hidden), x

    def ft_attention(self, xn: Tensor, qkv: Tensor, seq_len: int) -> Tensor:
        """Causal self-attention of packed fine-tuning samples (rows = samples x seq_len)."""
        cfg = self.cfg
        lora = self._train_lora(xn)
        q, k, v = qkv.split(cfg.hidden, dim=-1)
        q = q + lora[:, 0]
        v = v + lora[:, 1]
        b = xn.shape[0] // seq_len

        def heads(t: Tensor) -> Tensor:
            return t.view(b, seq_len, cfg.heads, cfg.head_dim).transpose(1, 2)

        out = F.scaled_dot_product_attention(heads(q), heads(k), heads(v), is_causal=True)
        return out.transpose(1, 2).reshape(b * seq_len, cfg.hidden)

    def forward_ft(self, x: Tensor, seq_len: int) -> Tensor:
        """The fine-tuning forward of this layer on its own (no inference rows)."""
        cfg = self.cfg
        xn = rms_norm(x, self.norm1, cfg.eps)
        attn = self.ft_attention(xn, xn @ self.qkv.T, seq_len)
        h = x + attn @ self.o.T
        hn = rms_norm(h, self.norm2, cfg.eps)
        return h + self._mlp_out(hn, hn @ self.up.T) @ self.down.T


class KVCache:
    """Per-slot key/value cache: [layers, slots, heads, context, head_dim] for keys and for values."""

    def __init__(self, cfg: TinyConfig, slots: int) -> None:
        shape = (cfg.layers, slots, cfg.heads, cfg.context, cfg.head_dim)
        self.k = torch.zeros(shape)
        self.v = torch.zeros(shape)
        self.slots = slots


class TinyLlama(nn.Module):
    def __init__(self, cfg: TinyConfig = TinyConfig(), seed: int = 0) -> None:
        super().__init__()
        self.seed = seed
        gen_state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        self.cfg = cfg
        self.embed = nn.Parameter(torch.randn(cfg.vocab, cfg.hidden) * 0.5, requires_grad=False)
        self.pos = nn.Parameter(torch.randn(cfg.context, cfg.hidden) * 0.1, requires_grad=False)
        self.layers = nn.ModuleList(Layer(cfg) for _ in range(cfg.layers))
        self.norm = nn.Parameter(torch.ones(cfg.hidden), requires_grad=False)
        self.head = nn.Parameter(torch.randn(cfg.vocab, cfg.hidden) / math.sqrt(cfg.hidden), requires_grad=False)
        torch.random.set_rng_state(gen_state)

    def lora_parameters(self) -> list[Tensor]:
        return [p for layer in self.layers for p in (layer.lora_a, layer.lora_b)]

    def logits(self, x: Tensor) -> Tensor:
        return rms_norm(x, self.norm, self.cfg.eps) @ self.head.T

    # --- inference ---------------------------------------------------------------------------------------
    @torch.no_grad()
    def prefill(self, prompt: Tensor, adapter: int, cache: KVCache, slot: int) -> int:
        """Run one prompt, fill its slot of the cache, return the first generated token (greedy)."""
        n = prompt.shape[0]
        x = self.embed[prompt] + self.pos[:n]
        ad = torch.full((n,), adapter, dtype=torch.long)
        for i, layer in enumerate(self.layers):
            def attend(q, k, v, i=i):
                cache.k[i, slot, :, :n] = k.transpose(0, 1)
                cache.v[i, slot, :, :n] = v.transpose(0, 1)
                out = F.scaled_dot_product_attention(q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1),
                                                     is_causal=True)
                return out.transpose(0, 1)
            x = self._inference_layer(layer, x, ad, attend)
        return int(self.logits(x[-1]).argmax())

    @torch.no_grad()
    def decode(self, tokens: Tensor, adapters: Tensor, cache: KVCache, slots: Tensor, positions: Tensor,
               ft: JointSegment | None = None) -> Tensor:
        """One decode step for a batch of slots; returns the next tokens (greedy). If ``ft`` is given, the
        fine-tuning rows ride along through the layers ``ft`` names (joint batching)."""
        x = self.embed[tokens] + self.pos[positions]
        lengths = positions + 1
        for i, layer in enumerate(self.layers):
            def attend(q, k, v, i=i, layer=layer):
                return layer.attend_cached(q, k, v, cache, i, slots, positions, lengths)
            if ft is not None and i in ft.layer_range:
                with torch.enable_grad():
                    x = ft.joint(layer, i, x, adapters, attend)
            else:
                x = self._inference_layer(layer, x, adapters, attend)
        return self.logits(x).argmax(-1)

    def _inference_layer(self, layer: Layer, x: Tensor, adapters: Tensor, attend) -> Tensor:
        cfg = self.cfg
        xn = rms_norm(x, layer.norm1, cfg.eps)
        attn, _ = layer.inference_rows(x, adapters, xn @ layer.qkv.T, attend)
        h = x + attn @ layer.o.T
        hn = rms_norm(h, layer.norm2, cfg.eps)
        return h + layer._mlp_out(hn, hn @ layer.up.T) @ layer.down.T


# ---------------------------------------------------------------------------------------------------------
# A fine-tuning step as tasklets
# ---------------------------------------------------------------------------------------------------------


class FineTuneStep:
    """One LoRA fine-tuning step on a packed batch, as a sequence of tasklets that can stop between any two.

    Forward: layer ``i`` takes a *detached leaf* copy of layer ``i-1``'s output, so each layer keeps its own
    little autograd graph. Backward: the loss's backward gives the gradient at the last layer's input; then
    layer by layer, ``torch.autograd.backward(out_i, grad_out_i)`` accumulates that layer's LoRA gradients and
    leaves the gradient for layer ``i-1`` on its leaf. The result is the same as one uninterrupted
    ``loss.backward()`` (tested to allclose); the order of gradient accumulation is what differs.

    Tasklets: ``layers`` forward tasklets (or fewer, joint with inference), one loss tasklet, ``layers``
    backward tasklets, then the optimizer step.
    """

    def __init__(self, model: TinyLlama, tokens: Tensor, optimizer: torch.optim.Optimizer) -> None:
        self.model = model
        self.tokens = tokens                                     # [batch, seq_len + 1]
        self.seq_len = tokens.shape[1] - 1
        self.optimizer = optimizer
        b = tokens.shape[0]
        inputs = tokens[:, :-1].reshape(-1)
        self.targets = tokens[:, 1:].reshape(-1)
        self._x = (model.embed[inputs] + model.pos[: self.seq_len].repeat(b, 1)).detach()
        self.inputs: list[Tensor] = []                            # leaf per layer
        self.outputs: list[Tensor] = []
        self.next_forward = 0
        self.next_backward = model.cfg.layers - 1
        self.loss: float | None = None
        self._grad: Tensor | None = None

    @property
    def rows(self) -> int:
        return self._x.shape[0]

    @property
    def forward_done(self) -> bool:
        return self.next_forward == self.model.cfg.layers

    @property
    def done(self) -> bool:
        return self.loss is not None and self.next_backward < 0

    def _leaf(self) -> Tensor:
        leaf = self._x.detach().requires_grad_(True)
        self.inputs.append(leaf)
        return leaf

    def forward_layer(self) -> None:
        """Forward tasklet: the next layer on its own."""
        layer = self.model.layers[self.next_forward]
        with torch.enable_grad():
            out = layer.forward_ft(self._leaf(), self.seq_len)
        self._push(out)

    def _push(self, out: Tensor) -> None:
        self.outputs.append(out)
        self._x = out
        self.next_forward += 1
        if self.forward_done:
            self._loss()

    def _loss(self) -> None:
        leaf = self._leaf()
        with torch.enable_grad():
            loss = F.cross_entropy(self.model.logits(leaf), self.targets)
            loss.backward()
        self.loss = float(loss.detach())
        self._grad = leaf.grad

    def backward_layer(self) -> None:
        """Backward tasklet: the next layer (from the top), then the optimizer step after the first layer."""
        i = self.next_backward
        torch.autograd.backward(self.outputs[i], self._grad)
        self._grad = self.inputs[i].grad
        self.inputs[i] = self.outputs[i] = None  # type: ignore[call-overload]  # free the layer's graph
        self.next_backward -= 1
        if self.next_backward < 0:
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)

    def run_to_end(self) -> float:
        """Every remaining tasklet back to back (a whole, uninterrupted step)."""
        while not self.forward_done:
            self.forward_layer()
        while not self.done:
            self.backward_layer()
        assert self.loss is not None
        return self.loss


@dataclass
class JointSegment:
    """The fine-tuning rows that ride in one inference batch through ``layer_range``."""

    step: FineTuneStep
    layer_range: range

    def joint(self, layer: Layer, index: int, x: Tensor, adapters: Tensor, attend) -> Tensor:
        """One layer for inference rows ``x`` and the step's fine-tuning rows, base GEMMs shared."""
        cfg = layer.cfg
        step = self.step
        assert index == step.next_forward, "fine-tuning rows must enter at their next layer"
        ft_in = step._leaf()
        n = x.shape[0]
        xn = rms_norm(x.detach(), layer.norm1, cfg.eps)
        fn = rms_norm(ft_in, layer.norm1, cfg.eps)
        qkv_i, qkv_f = _SharedGEMM.apply(xn, fn, layer.qkv)
        with torch.no_grad():
            attn_i, _ = layer.inference_rows(x, adapters, qkv_i, attend)
        attn_f = layer.ft_attention(fn, qkv_f, step.seq_len)
        o_i, o_f = _SharedGEMM.apply(attn_i, attn_f, layer.o)
        h_i, h_f = x + o_i.detach(), ft_in + o_f
        hn_i = rms_norm(h_i, layer.norm2, cfg.eps)
        hn_f = rms_norm(h_f, layer.norm2, cfg.eps)
        up_i, up_f = _SharedGEMM.apply(hn_i, hn_f, layer.up)
        m_i, m_f = layer._mlp_out(hn_i, up_i.detach()), layer._mlp_out(hn_f, up_f)
        d_i, d_f = _SharedGEMM.apply(m_i.detach(), m_f, layer.down)
        step._push(h_f + d_f)
        assert n == h_i.shape[0]
        return (h_i + d_i).detach()


class ChunkedStep:
    """One fine-tuning step cut along the *sequence* into chunks of ``chunk`` tokens: the chunked-training
    baseline (the artifact's ``chunked`` runs, knob ``chunk_size``; their ``benchmarks/chunked_peft`` splits a
    sample's forward and backward into token chunks that attend to the earlier chunks' keys and values).

    Forward tasklet ``c``: every layer for tokens [s, e) of each sample, attending causally to its own keys and
    values and to the earlier chunks' (held as detached leaves, so each chunk keeps its own small graph).
    Backward tasklets run from the last chunk to the first: chunk ``c``'s backward takes its loss plus the
    gradients later chunks left on its keys and values, and leaves the gradients for the earlier chunks' keys
    and values on its leaves. The result is the same as one uninterrupted ``loss.backward()`` (tested to
    allclose). Then the optimizer step. Cost: chunk c's attention is O(b x chunk x e x hidden); the GEMMs are
    the whole step's, split evenly."""

    def __init__(self, model: TinyLlama, tokens: Tensor, optimizer: torch.optim.Optimizer, chunk: int) -> None:
        if chunk < 1:
            raise ValueError("chunk must be at least 1 token")
        self.model = model
        self.optimizer = optimizer
        self.seq_len = t = tokens.shape[1] - 1
        self.bounds = [(s, min(s + chunk, t)) for s in range(0, t, chunk)]
        self._x0 = (model.embed[tokens[:, :-1]] + model.pos[:t]).detach()          # [b, t, hidden]
        self._targets = tokens[:, 1:]
        self._total = tokens.shape[0] * t                                          # the loss is a mean over all
        layers = model.cfg.layers
        self._keys: list[list[Tensor]] = [[] for _ in range(layers)]              # detached, per chunk
        self._values: list[list[Tensor]] = [[] for _ in range(layers)]
        self._graphs: list[tuple | None] = []
        self._grads: list[list[list[Tensor | None]]] = []                          # [chunk][layer] = [dk, dv]
        self.next_forward = 0
        self.next_backward = len(self.bounds) - 1
        self._loss_sum = 0.0
        self.loss: float | None = None

    @property
    def chunks(self) -> int:
        return len(self.bounds)

    @property
    def forward_done(self) -> bool:
        return self.next_forward == self.chunks

    @property
    def done(self) -> bool:
        return self.loss is not None

    def forward_chunk(self) -> None:
        c = self.next_forward
        s, e = self.bounds[c]
        cfg = self.model.cfg
        b, n = self._x0.shape[0], e - s
        mask = torch.arange(e).unsqueeze(0) <= (s + torch.arange(n)).unsqueeze(1)   # [n, e]: causal, offset s
        own, leaves = [], []
        with torch.enable_grad():
            x = self._x0[:, s:e]
            for i, layer in enumerate(self.model.layers):
                xn = rms_norm(x, layer.norm1, cfg.eps)
                q, k, v = (xn @ layer.qkv.T).split(cfg.hidden, dim=-1)
                lora = layer._train_lora(xn.reshape(-1, cfg.hidden)).view(b, n, 2, cfg.hidden)
                q, v = q + lora[:, :, 0], v + lora[:, :, 1]

                def heads(z: Tensor) -> Tensor:
                    return z.view(b, n, cfg.heads, cfg.head_dim).transpose(1, 2)

                q, k, v = heads(q), heads(k), heads(v)
                if c:
                    pk = torch.cat(self._keys[i], dim=2).requires_grad_(True)
                    pv = torch.cat(self._values[i], dim=2).requires_grad_(True)
                    keys, vals = torch.cat([pk, k], dim=2), torch.cat([pv, v], dim=2)
                    leaves.append((pk, pv))
                else:
                    keys, vals = k, v
                self._keys[i].append(k.detach())
                self._values[i].append(v.detach())
                own.append((k, v))
                attn = F.scaled_dot_product_attention(q, keys, vals, attn_mask=mask)
                h = x + attn.transpose(1, 2).reshape(b, n, cfg.hidden) @ layer.o.T
                hn = rms_norm(h, layer.norm2, cfg.eps)
                x = h + layer._mlp_out(hn, hn @ layer.up.T) @ layer.down.T
            logits = self.model.logits(x)
            loss = F.cross_entropy(logits.reshape(-1, cfg.vocab), self._targets[:, s:e].reshape(-1),
                                   reduction="sum") / self._total
        self._loss_sum += float(loss.detach())
        self._graphs.append((loss, own, leaves))
        self._grads.append([[None, None] for _ in self.model.layers])
        self.next_forward += 1

    def backward_chunk(self) -> None:
        assert self.forward_done, "backward runs after the whole forward, last chunk first"
        c = self.next_backward
        graph = self._graphs[c]
        assert graph is not None
        loss, own, leaves = graph
        tensors, grads = [loss], [torch.ones_like(loss)]
        for (k, v), (dk, dv) in zip(own, self._grads[c], strict=True):
            for t, g in ((k, dk), (v, dv)):
                if g is not None and t.requires_grad:   # what later chunks' attention sent back to these keys
                    tensors.append(t)
                    grads.append(g)
        torch.autograd.backward(tensors, grads)
        widths = [e - s for s, e in self.bounds[:c]]
        for i, (pk, pv) in enumerate(leaves):         # hand the earlier chunks their share, chunk by chunk
            if pk.grad is None or pv.grad is None:      # keys of a layer no trainable weight feeds (the first)
                continue
            for j, (gk, gv) in enumerate(zip(pk.grad.split(widths, dim=2), pv.grad.split(widths, dim=2),
                                             strict=True)):
                slot = self._grads[j][i]
                slot[0] = gk if slot[0] is None else slot[0] + gk
                slot[1] = gv if slot[1] is None else slot[1] + gv
        self._graphs[c] = None                          # free the chunk's graph
        self._grads[c] = []
        self.next_backward -= 1
        if self.next_backward < 0:
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            self.loss = self._loss_sum

    def tasklet(self) -> None:
        """The next chunk tasklet: forward chunks in order, then backward chunks from the last."""
        if not self.forward_done:
            self.forward_chunk()
        else:
            self.backward_chunk()

    def run_to_end(self) -> float:
        while not self.done:
            self.tasklet()
        assert self.loss is not None
        return self.loss
