"""REAL, toy scale: FlexPipe's live reconfiguration through host-side TwinLayer copies (§5), with torch on
this CPU.

A small MLP (8 tanh layers) is trained with Adam on a fixed stream of mini-batches while its pipeline
mapping changes between iterations: "devices" are per-device dictionaries of layer replicas (parameters
and Adam state), a mapping says which layers form each stage and which devices replicate it, and every
replica of a stage takes an equal shard of the mini-batch (data parallelism, gradients summed across
replicas before the step, so the global batch and its loss are unchanged). After every step the layers'
parameters and optimizer state are copied to the host TwinLayer store; a reconfiguration builds each
device's new layers from that store and drops the ones it no longer holds (grow: more stages; shrink:
fewer stages, more replicas). Nothing else carries over, so if training ends where uninterrupted
single-device training with the same seed ends, no state was lost or mixed up.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

LAYERS, WIDTH = 8, 32
LR, BETAS, EPS = 1e-2, (0.9, 0.999), 1e-8


@dataclass(frozen=True)
class Stage:
    layers: tuple[int, ...]
    devices: tuple[int, ...]


def init_layers(seed: int, dtype: torch.dtype = torch.float64) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [{"w": (torch.randn(WIDTH, WIDTH, generator=g) / WIDTH ** 0.5).to(dtype),
             "b": torch.zeros(WIDTH, dtype=dtype)} for _ in range(LAYERS)]


def batches(seed: int, n: int, size: int = 16,
            dtype: torch.dtype = torch.float64) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed + 1)
    target = torch.randn(WIDTH, WIDTH, generator=g) / WIDTH ** 0.5
    out = []
    for _ in range(n):
        x = torch.randn(size, WIDTH, generator=g)
        out.append((x.to(dtype), torch.tanh(x @ target).to(dtype)))
    return out


def _adam(p: torch.Tensor, grad: torch.Tensor, state: dict[str, torch.Tensor], step: int) -> None:
    state["m"].mul_(BETAS[0]).add_(grad, alpha=1 - BETAS[0])
    state["v"].mul_(BETAS[1]).addcmul_(grad, grad, value=1 - BETAS[1])
    m_hat = state["m"] / (1 - BETAS[0] ** step)
    v_hat = state["v"] / (1 - BETAS[1] ** step)
    p.sub_(LR * m_hat / (v_hat.sqrt() + EPS))


class Cluster:
    """Devices holding layer replicas, the host TwinLayer store, and the current mapping."""

    def __init__(self, layers: list[dict[str, torch.Tensor]], mapping: list[Stage]):
        self.host = {i: {"params": {k: v.clone() for k, v in layer.items()},
                         "adam": {k: {"m": torch.zeros_like(v), "v": torch.zeros_like(v)} for k, v in layer.items()}}
                     for i, layer in enumerate(layers)}
        self.devices: dict[int, dict[int, dict]] = {}
        self.mapping: list[Stage] = []
        self.step_count = 0
        self.bytes_moved = 0
        self.reconfigure(mapping)

    def reconfigure(self, mapping: list[Stage]) -> None:
        """Give each device exactly the layers its stage needs, copied from the host TwinLayers; drop the rest."""
        if sorted(i for s in mapping for i in s.layers) != list(range(LAYERS)):
            raise ValueError(f"mapping {mapping} must cover layers 0..{LAYERS - 1} once, in order")
        wanted = {d: s.layers for s in mapping for d in s.devices}
        for d in list(self.devices):
            if d not in wanted:
                del self.devices[d]
        for d, layer_ids in wanted.items():
            held = self.devices.setdefault(d, {})
            for i in list(held):
                if i not in layer_ids:
                    del held[i]                                   # grow / shrink: redundant layers are deleted
            for i in layer_ids:
                if i not in held:                                 # shrink / grow: new layers from the host copy
                    twin = self.host[i]
                    held[i] = {"params": {k: v.clone() for k, v in twin["params"].items()},
                               "adam": {k: {s: t.clone() for s, t in st.items()} for k, st in twin["adam"].items()}}
                    self.bytes_moved += sum(v.numel() * v.element_size() * 3 for v in twin["params"].values())
        self.mapping = mapping

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> float:
        """One iteration: each stage's replicas take equal shards; gradients are summed per stage across
        replicas (the global batch's mean loss); every replica steps; the TwinLayers are refreshed."""
        n = x.shape[0]
        self.step_count += 1
        grads: dict[int, dict[str, torch.Tensor]] = {}
        loss_total = 0.0
        shards = max(len(s.devices) for s in self.mapping)
        for k in range(shards):
            h = x[k * n // shards:(k + 1) * n // shards]
            yk = y[k * n // shards:(k + 1) * n // shards]
            params = []
            for s in self.mapping:
                dev = s.devices[k % len(s.devices)]
                for i in s.layers:
                    p = {key: t.detach().requires_grad_() for key, t in self.devices[dev][i]["params"].items()}
                    params.append((i, p))
                    h = torch.tanh(h @ p["w"] + p["b"])
            loss = ((h - yk) ** 2).sum() / (n * WIDTH)            # this shard's part of the global mean
            loss.backward()
            loss_total += float(loss.detach())
            for i, p in params:
                acc = grads.setdefault(i, {key: torch.zeros_like(t) for key, t in p.items()})
                for key, t in p.items():
                    acc[key] += t.grad
        for s in self.mapping:
            for d in s.devices:
                for i in s.layers:
                    rep = self.devices[d][i]
                    for key, t in rep["params"].items():
                        _adam(t, grads[i][key], rep["adam"][key], self.step_count)
            for i in s.layers:                                     # refresh the host TwinLayer from one replica
                rep = self.devices[s.devices[0]][i]
                self.host[i] = {"params": {k: v.clone() for k, v in rep["params"].items()},
                                "adam": {k: {a: t.clone() for a, t in st.items()} for k, st in rep["adam"].items()}}
        return loss_total

    def replicas_agree(self) -> float:
        """Largest difference between replicas of the same layer (0 if DP kept them in lockstep)."""
        diff = 0.0
        for s in self.mapping:
            for i in s.layers:
                ref = self.devices[s.devices[0]][i]["params"]
                for d in s.devices[1:]:
                    for k, v in self.devices[d][i]["params"].items():
                        diff = max(diff, float((v - ref[k]).abs().max()))
        return diff

    def parameters(self) -> list[dict[str, torch.Tensor]]:
        return [self.host[i]["params"] for i in range(LAYERS)]


def even(stages: int, devices: int) -> list[Stage]:
    per_layer, per_dev = LAYERS // stages, devices // stages
    return [Stage(tuple(range(s * per_layer, (s + 1) * per_layer)), tuple(range(s * per_dev, (s + 1) * per_dev)))
            for s in range(stages)]


def run(seed: int = 0, iterations: int = 40, devices: int = 4,
        plan: tuple[tuple[int, int], ...] = ((0, 2), (10, 4), (20, 1), (30, 2)),
        dtype: torch.dtype = torch.float64) -> dict:
    """Train with the mapping changing at the given iterations ((iteration, stages), even splits), and the
    same training on one device without any change; compare the final parameters. In float64, so that
    what remains is the mechanism, not the rounding of sharded gradient sums (which Adam's normalisation
    amplifies to ~1e-5 in float32)."""
    data = batches(seed, iterations, dtype=dtype)
    cluster = Cluster(init_layers(seed, dtype), even(plan[0][1], devices))
    switches = dict(plan[1:])
    losses = []
    for it, (x, y) in enumerate(data):
        if it in switches:
            cluster.reconfigure(even(switches[it], devices))
        losses.append(cluster.train_step(x, y))
    reference = Cluster(init_layers(seed, dtype), [Stage(tuple(range(LAYERS)), (0,))])
    ref_losses = [reference.train_step(x, y) for x, y in data]
    diff = max(float((a[k] - b[k]).abs().max()) for a, b in zip(cluster.parameters(), reference.parameters(),
                                                                strict=True) for k in a)
    return {"max_param_diff": diff, "replica_diff": cluster.replicas_agree(), "loss_first": losses[0],
            "loss_last": losses[-1], "ref_loss_last": ref_losses[-1], "bytes_moved": cluster.bytes_moved,
            "switches": len(switches), "iterations": iterations}
