"""The one-step flow student: the head's sampler interface, and `flowomni distill-flow` end to end."""

import json
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file

from flowomni.inference.decoder import GenerationConfig
from flowomni.inference.engine import Done, Engine
from flowomni.model.flow_head import FlowHead, FlowHeadConfig
from flowomni.model.flow_student import FlowStudent
from flowomni.model.flowomni import FlowOmni
from flowomni.training.distill_flow import model_fingerprint, parse_teacher

from helpers.corpus import make_corpus
from helpers.models import saved_flow_model


def test_untrained_student_returns_its_start_point_and_learns_a_map():
    torch.manual_seed(0)
    s = FlowStudent(dim=8, cond_dim=4, width=32, depth=2)
    x0, h = torch.randn(64, 8), torch.randn(64, 4)
    assert torch.equal(s(x0, h), x0)  # zero-initialised output layer
    target = x0 * 0.5 + h.repeat(1, 2)  # depends on both inputs
    opt = torch.optim.Adam(s.parameters(), lr=3e-3)
    first = torch.nn.functional.mse_loss(s(x0, h), target).item()
    for _ in range(300):
        loss = torch.nn.functional.mse_loss(s(x0, h), target)
        opt.zero_grad(), loss.backward(), opt.step()
    assert loss.item() < 0.05 * first


def test_flow_head_student_sampler():
    torch.manual_seed(0)
    h = torch.randn(3, 16)
    plain = FlowHead(FlowHeadConfig(width=32, depth=1, prior="mean"), cond_dim=16, frame_dim=5, group=2)
    with pytest.raises(ValueError, match="distill-flow"):
        plain.sample(h, method="student")
    head = FlowHead(
        FlowHeadConfig(width=32, depth=1, prior="mean", student_width=24, student_depth=1),
        cond_dim=16,
        frame_dim=5,
        group=2,
    )
    out = head.sample(h, method="student", temperature=0.0)
    assert out.shape == (3, 2, 5)
    assert torch.allclose(out.flatten(1), head.prior(h))  # untrained student at T=0: the prior mean
    with pytest.raises(ValueError, match="cfg_scale"):
        head.sample(h, method="student", cfg_scale=2.0)
    # start + integrate is what sample does for ODE methods
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    x = head.integrate(head.start(h, 0.7, g1), h, steps=3, method="midpoint")
    assert torch.allclose(head.sample(h, steps=3, method="midpoint", temperature=0.7, generator=g2).flatten(1), x)


@pytest.mark.parametrize(
    "spec,ok",
    [
        ("euler:4", ("euler", 4)),
        ("midpoint:2", ("midpoint", 2)),
        ("student:1", None),
        ("euler", None),
        ("rk4:3", None),
        ("euler:0", None),
    ],
)
def test_teacher_spec(spec, ok):
    if ok:
        assert parse_teacher(spec) == ok
    else:
        with pytest.raises(ValueError, match="METHOD:STEPS"):
            parse_teacher(spec)


def distill(args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "flowomni.cli", "distill-flow", *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=cwd,
    )


def test_model_fingerprint_tells_teachers_apart():
    a = FlowHead(FlowHeadConfig(width=16, depth=1), cond_dim=8, frame_dim=4, group=2)
    b = FlowHead(FlowHeadConfig(width=16, depth=1), cond_dim=8, frame_dim=4, group=2)
    b.load_state_dict(a.state_dict())
    assert model_fingerprint(a) == model_fingerprint(b) != model_fingerprint(a, "data: other")
    with torch.no_grad():
        next(b.parameters()).add_(1e-3)
    assert model_fingerprint(a) != model_fingerprint(b)


@pytest.mark.slow
def test_distill_flow_cli_trains_resumes_and_writes_a_model(tmp_path, spoken_items):
    make_corpus(tmp_path / "corpus", spoken_items)
    src = saved_flow_model(tmp_path, prior="mean", method="euler", steps=3)
    common = [
        str(src),
        "--out",
        str(tmp_path / "student"),
        "--run-dir",
        str(tmp_path / "run"),
        "--width",
        "64",
        "--depth",
        "1",
        "--groups",
        "400",
        "--valid-groups",
        "40",
        "--batch-size",
        "64",
        "--eval-every",
        "10",
        "--save-every",
        "10",
        "--lr",
        "3e-3",
        "--warmup-steps",
        "1",
    ]
    r = distill([*common, "--steps", "20"], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    first = json.loads(r.stdout)
    assert first["steps"] == 20 and "teacher pairs" in r.stderr
    r = distill([*common, "--steps", "80"], tmp_path)  # continues from step 20 with the same pairs
    assert r.returncode == 0, r.stderr[-3000:]
    assert "resuming the student" in r.stderr and "reusing teacher pairs" in r.stderr
    res = json.loads(r.stdout)
    assert res["steps"] == 80 and res["valid_mse"] < 0.8 * res["valid_mse_of_start_point"]

    # another teacher, distilled into the same run folder (two exports both named `export` share
    # the default one): its own pairs, a fresh student; never the first model's
    other = tmp_path / "other"
    shutil.copytree(src, other)
    weights = load_file(str(other / "model.safetensors"))
    save_file({k: v + 0.01 if "flow.net" in k else v for k, v in weights.items()}, str(other / "model.safetensors"))
    r = distill([str(other), *common[1:], "--steps", "20"], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "reusing teacher pairs" not in r.stderr and "starting the student afresh" in r.stderr
    assert json.loads(r.stdout)["steps"] == 20
    r = distill([*common, "--steps", "80"], tmp_path)  # and the first model gets its own back
    assert "reusing teacher pairs" not in r.stderr and json.loads(r.stdout)["steps"] == 80

    out = FlowOmni.load(tmp_path / "student")
    flow = out.cfg.flow
    assert (flow.method, flow.student_width, flow.student_teacher) == ("student", 64, "euler:3 cfg=1.0")
    assert json.loads((tmp_path / "student/meta.json").read_text())["flow_student"]["steps"] == 80
    engine = Engine(out, "griffin-lim-4", gen=GenerationConfig(max_steps=8, seed=0))
    done = list(engine.respond(text="Hi?"))[-1]
    assert isinstance(done, Done)

    r = distill([str(tmp_path / "student"), "--out", str(tmp_path / "again")], tmp_path)
    assert r.returncode == 2 and "--teacher" in r.stderr  # the student cannot teach itself
    r = distill([str(src), "--out", str(tmp_path / "x"), "--teacher", "rk4:2"], tmp_path)
    assert r.returncode == 2 and "rk4:2" in r.stderr
