"""The optimizer's groups: decay on matrices only, frozen weights left out, per-prefix lr scales
that the warmup-cosine schedule keeps in ratio."""

import pytest
import torch
from torch import nn

from flowomni.training.optim import build_optimizer, warmup_cosine


def named() -> list[tuple[str, nn.Parameter]]:
    model = nn.ModuleDict({"encoder": nn.Linear(4, 4), "head": nn.Linear(4, 2), "frozen": nn.Linear(2, 2)})
    model["frozen"].requires_grad_(False)
    return list(model.named_parameters())


def lrs(opt: torch.optim.Optimizer) -> dict[str, float]:
    """parameter name -> its group's lr."""
    ids = {id(p): n for n, p in PARAMS}
    return {ids[id(p)]: g["lr"] for g in opt.param_groups for p in g["params"]}


PARAMS = named()


def test_scaled_prefixes_get_their_lr_and_keep_the_ratio_through_the_schedule():
    opt = build_optimizer(PARAMS, 1e-3, 0.01, [0.9, 0.98], {"encoder.": 0.1})
    got = lrs(opt)
    assert got == pytest.approx({"encoder.weight": 1e-4, "encoder.bias": 1e-4, "head.weight": 1e-3, "head.bias": 1e-3})
    decay = {id(p): g["weight_decay"] for g in opt.param_groups for p in g["params"]}
    assert [decay[id(p)] for n, p in PARAMS if not n.startswith("frozen")] == [0.01, 0.0, 0.01, 0.0]
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(2, 10, 1e-3, 1e-5))
    for _ in range(5):
        opt.step()
        sched.step()
    got = lrs(opt)
    assert got["encoder.weight"] == pytest.approx(0.1 * got["head.weight"]) and got["head.weight"] < 1e-3


def test_without_scales_the_two_groups_are_as_before():
    opt = build_optimizer(PARAMS, 1e-3, 0.01, [0.9, 0.98])
    assert [g["weight_decay"] for g in opt.param_groups] == [0.01, 0.0]
    assert set(lrs(opt).values()) == {1e-3}


def test_a_scale_naming_no_parameter_or_out_of_range_is_refused():
    with pytest.raises(ValueError, match="no parameter is named 'encoder.layers.9.'"):
        build_optimizer(PARAMS, 1e-3, 0.0, [0.9, 0.98], {"encoder.layers.9.": 0.1})
    for bad in (-1.0, "x"):
        with pytest.raises(ValueError, match="not a number in 0..100"):
            build_optimizer(PARAMS, 1e-3, 0.0, [0.9, 0.98], {"head.": bad})
    with pytest.raises(ValueError, match="no trainable parameters"):
        build_optimizer([("frozen.weight", PARAMS[-2][1])], 1e-3, 0.0, [0.9, 0.98])
