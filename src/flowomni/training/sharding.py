"""FSDP (PyTorch's `fully_shard`) for backbones too large for a full replica per process.

DDP keeps the whole model, its gradients and both Adam moments on every process; FSDP
splits them across processes and gathers one transformer layer's weights at a time. Each
decoder layer of the backbone is one shard group; everything else (embeddings, encoder,
heads) is the root group. Works on GPUs (NCCL) and on CPUs (gloo, as the tests run it).

Checkpoints keep the single-process format (full tensors; optimizer state indexed by
parameter position, as `optimizer.state_dict()` of one process would index it), so a run
saved under FSDP resumes under DDP or on one CPU and vice versa.

A root-group parameter that a batch leaves unused (no question audio: the encoder idles)
would get no gradient on one rank while another rank reduces one: the collectives would
disagree and abort. The root forward therefore adds `0 * sum(p)` over its own parameters,
which keeps each of them in every rank's graph at no cost to the loss.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

SHARDINGS = ("ddp", "fsdp")


def check_sharding(name: str) -> None:
    if name not in SHARDINGS:
        raise ValueError(f"train.sharding must be one of {SHARDINGS}, got {name!r}")


def _full() -> Any:
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, cpu_offload=True)


def layer_modules(model: nn.Module) -> list[nn.Module]:
    """The transformer layers of every Hugging Face model inside `model` (their classes are
    listed in the model's `_no_split_modules`)."""
    names: set[str] = set()
    for m in model.modules():
        names.update(getattr(m, "_no_split_modules", None) or [])
    return [m for m in model.modules() if type(m).__name__ in names]


def shard_model(model: nn.Module) -> nn.Module:
    """Shard `model` in place across the default process group (call after loading weights
    and before building the optimizer)."""
    from torch.distributed.fsdp import fully_shard

    layers = layer_modules(model)
    if not layers:
        raise ValueError(f"{type(model).__name__}: no transformer layers found to shard")
    for layer in layers:
        fully_shard(layer)
    in_layers = {id(p) for layer in layers for p in layer.parameters()}
    own = {n for n, p in model.named_parameters() if id(p) not in in_layers}

    def keep_in_graph(module: nn.Module, args: Any, out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if torch.is_grad_enabled() and "loss" in out:
            touch = sum(p.sum() for n, p in module.named_parameters() if n in own and p.requires_grad)
            out = {**out, "loss": out["loss"] + 0.0 * touch}
        return out

    # registered before the root is sharded, so it runs while the root's weights are gathered
    model.register_forward_hook(keep_in_graph)
    fully_shard(model)
    return model


def full_model_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter and buffer as a full CPU tensor on rank 0 (empty elsewhere). Collective."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    return get_model_state_dict(model, options=_full())


class FullStateOptimizer:
    """A sharded model's optimizer seen through full, position-indexed state dicts (the
    format `torch.optim.Optimizer.state_dict()` has in one process). Both methods are
    collective: every rank calls them."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        self.model, self.optimizer = model, optimizer

    def _fqn_state(self) -> dict[str, Any]:
        from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

        return get_optimizer_state_dict(self.model, self.optimizer, options=_full())

    def state_dict(self) -> dict[str, Any]:
        """The full state on rank 0; an empty dict on the other ranks."""
        sd = self._fqn_state()
        if not sd:
            return {}
        index = {fqn: i for i, fqn in enumerate(f for g in sd["param_groups"] for f in g["params"])}
        return {
            "state": {index[k]: v for k, v in sd["state"].items()},
            "param_groups": [{**g, "params": [index[f] for f in g["params"]]} for g in sd["param_groups"]],
        }

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

        names = {id(p): n for n, p in self.model.named_parameters()}
        fqns = [names[id(p)] for g in self.optimizer.param_groups for p in g["params"]]  # position -> name
        groups = [{**g, "params": [fqns[i] for i in g["params"]]} for g in sd["param_groups"]]
        state = {fqns[int(i)]: v for i, v in sd["state"].items()}
        set_optimizer_state_dict(
            self.model,
            self.optimizer,
            {"state": state, "param_groups": groups},
            options=StateDictOptions(full_state_dict=True),
        )
