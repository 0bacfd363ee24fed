"""`flowomni distill-flow MODEL --out DIR`: a one-step student for a trained model's flow head.

The flow head's sampler costs several passes over its weights per mel group; on a CPU at
batch 1 that is more than the small backbone's whole decode step (benchmarks/latency.py).
This command distils the model's own sampler (its config's method and steps, or --teacher)
into `FlowStudent`, one pass over fewer weights:

1. conditions: hidden states at the GEN positions of training (and validation) examples,
   teacher-forced through the trained backbone, i.e. what the head sees while training;
2. pairs: per condition a start point x0 = prior mean + T * noise (T = 0 for a share
   `p_zero_temperature`, else uniform in (0, max_temperature]) and the teacher's end point;
3. the student learns MSE(student(x0, h), x1) with AdamW and a cosine schedule; it is saved
   every `save_every` steps under --run-dir, and a rerun resumes (pairs are kept too);
4. OUT = MODEL plus the student's weights, with `flow.method: student` (the model's default
   sampler) and the teacher named in `flow.student_teacher`; meta.json holds the metrics.

Whether the student speaks as intelligibly as its teacher is measured by
`benchmarks/flow_steps.py --settings euler:4 student:1` (ASR WER), not by the MSE here.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
import yaml

from flowomni.config import Bounds, check_bounds
from flowomni.model.flow_head import FLOW_METHODS, FlowHead
from flowomni.model.flow_student import FlowStudent


@dataclass
class DistillConfig:
    # allowed ranges, checked when read (flowomni.config.check_bounds)
    BOUNDS: ClassVar[Bounds] = {
        "width": (1, 65536),
        "depth": (0, 256),
        "groups": (1, 10**9),
        "valid_groups": (1, 10**9),
        "steps": (1, 10**10),
        "batch_size": (1, 1 << 20),
        "lr": (0, 10),
        "min_lr": (0, 10),
        "warmup_steps": (0, None),
        "p_zero_temperature": (0, 1),
        "max_temperature": (0, 100),
        "eval_every": (1, None),
        "save_every": (1, None),
    }

    width: int = 512
    depth: int = 3
    groups: int = 60_000  # training conditions (teacher-forced GEN positions)
    valid_groups: int = 4_000
    steps: int = 3_000
    batch_size: int = 512
    lr: float = 1e-3
    min_lr: float = 5e-5
    warmup_steps: int = 100
    p_zero_temperature: float = 0.5
    max_temperature: float = 1.0
    eval_every: int = 250
    save_every: int = 500
    seed: int = 0


def parse_teacher(spec: str) -> tuple[str, int]:
    """'euler:4' -> ("euler", 4); the student cannot be its own teacher."""
    method, _, steps = spec.partition(":")
    if method not in FLOW_METHODS or method == "student" or not steps.isdigit() or int(steps) < 1:
        raise ValueError(f"teacher sampler {spec!r}: expected METHOD:STEPS with METHOD euler or midpoint")
    return method, int(steps)


@torch.no_grad()
def collect_conditions(
    model: Any, dataset: Any, collate_fn: Any, n_groups: int, *, batch_size: int = 16, seed: int = 0
) -> torch.Tensor:
    """Hidden states [n, D] at the GEN positions of up to `n_groups` groups of `dataset`'s
    spoken answers, teacher-forced (examples in a seeded random order)."""
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed)).tolist()
    found, total = [], 0
    for start in range(0, len(order), batch_size):
        items = [dataset[i] for i in order[start : start + batch_size]]
        items = [it for it in items if it["out_mel"] is not None]
        if not items:
            continue
        batch = collate_fn(items)
        fm = batch["flow_target"] >= 0
        h = model.backbone(model.embed(batch), batch["attention_mask"]).last_hidden_state
        found.append(h[fm].float())
        total += found[-1].shape[0]
        if total >= n_groups:
            break
    if not found:
        raise ValueError("no spoken answers in the data: the student needs examples of tasks with speech out")
    return torch.cat(found)[:n_groups]


@torch.no_grad()
def teacher_pairs(
    flow: FlowHead,
    h: torch.Tensor,
    teacher: tuple[str, int],
    cfg: DistillConfig,
    generator: torch.Generator,
    chunk: int = 2048,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Start points x0 and the teacher sampler's end points x1, both [n, k*F]."""
    n = h.shape[0]
    temps = torch.rand(n, generator=generator) * cfg.max_temperature
    temps = torch.where(torch.rand(n, generator=generator) < cfg.p_zero_temperature, torch.zeros_like(temps), temps)
    noise = torch.randn(n, flow.group * flow.frame_dim, generator=generator)
    x0s, x1s = [], []
    for i in range(0, n, chunk):
        hc = h[i : i + chunk]
        x0 = flow.start(hc, 0.0) + temps[i : i + chunk, None] * noise[i : i + chunk]
        x1 = flow.integrate(x0, hc, steps=teacher[1], method=teacher[0], cfg_scale=flow.cfg.cfg_scale)
        x0s.append(x0)
        x1s.append(x1)
    return torch.cat(x0s), torch.cat(x1s)


def student_mse(student: FlowStudent, data: dict[str, torch.Tensor], batch: int = 4096) -> float:
    """Mean squared error of the student against the teacher on a pair set."""
    with torch.no_grad():
        err = sum(
            F.mse_loss(
                student(data["x0"][i : i + batch], data["h"][i : i + batch]), data["x1"][i : i + batch], reduction="sum"
            ).item()
            for i in range(0, data["h"].shape[0], batch)
        )
    return err / data["x1"].numel()


def model_fingerprint(model: torch.nn.Module, config_text: str = "") -> str:
    """A hash of every weight (and the config the pairs' data comes from): the pairs cached in a
    run folder belong to one teacher, and another model must never reuse them (two exports
    both named `export` share the default run folder)."""
    h = hashlib.sha1(config_text.encode())
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def train_student(
    student: FlowStudent,
    train: dict[str, torch.Tensor],
    valid: dict[str, torch.Tensor],
    cfg: DistillConfig,
    run_dir: Path,
    log: Any = print,
    pairs: str = "",
) -> dict[str, Any]:
    """Fit the student to the pairs; resumes from run_dir/student if a save of a student of the
    same pairs (`pairs`: their key's hash) is there, and starts afresh over any other."""
    from flowomni.checkpoint import load_meta, load_model_state, load_training_state, save_checkpoint
    from flowomni.training.optim import build_optimizer, warmup_cosine

    opt = build_optimizer(list(student.named_parameters()), cfg.lr, 0.0, [0.9, 0.99])
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(cfg.warmup_steps, cfg.steps, cfg.lr, cfg.min_lr))
    ckpt, step = run_dir / "student", 0
    saved = load_meta(ckpt) if (ckpt / "meta.json").is_file() else None
    if saved is not None and saved.get("pairs", "") != pairs:
        log(f"{ckpt} learned from other teacher pairs: starting the student afresh")
    elif saved is not None:
        student.load_state_dict(load_model_state(ckpt))
        load_training_state(ckpt, opt, sched)
        step = int(saved["step"])
        log(f"resuming the student from {ckpt} at step {step}")
    n = train["h"].shape[0]
    history: list[dict[str, float]] = []
    t0 = time.time()
    while step < cfg.steps:
        idx = torch.randint(0, n, (cfg.batch_size,))
        loss = F.mse_loss(student(train["x0"][idx], train["h"][idx]), train["x1"][idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
        opt.step()
        sched.step()
        step += 1
        if step % cfg.eval_every == 0 or step == cfg.steps:
            row = {
                "step": step,
                "train_mse": loss.item(),
                "valid_mse": student_mse(student, valid),
                "seconds": time.time() - t0,
            }
            history.append(row)
            log(json.dumps(row))
        if step % cfg.save_every == 0 or step == cfg.steps:
            save_checkpoint(
                ckpt,
                model_state=student.state_dict(),
                config_yaml=yaml.safe_dump(asdict(cfg)),
                meta={"step": step, "pairs": pairs},
                optimizer=opt,
                scheduler=sched,
            )
    return {"steps": step, "valid_mse": student_mse(student, valid), "history": history}


def load_or_make_pairs(
    model: Any, cfg: DistillConfig, teacher: tuple[str, int], run_dir: Path, log: Any = print
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], str]:
    """Teacher pairs for training and validation, cached in run_dir (made once per settings and
    teacher model), and the hash of their key."""
    from safetensors.torch import load_file, save_file

    from flowomni.config import load_config
    from flowomni.training.experiment import ExperimentConfig, build_datasets

    config_path = Path(model.checkpoint_path) / "config.yaml"
    path, key = (
        run_dir / "pairs.safetensors",
        json.dumps(
            {
                "model": model_fingerprint(model, config_path.read_text()),
                "groups": cfg.groups,
                "valid_groups": cfg.valid_groups,
                "teacher": list(teacher),
                "seed": cfg.seed,
                "p0": cfg.p_zero_temperature,
                "tmax": cfg.max_temperature,
            }
        ),
    )
    digest = hashlib.sha1(key.encode()).hexdigest()
    if path.is_file() and (run_dir / "pairs.json").is_file() and (run_dir / "pairs.json").read_text() == key:
        sd = load_file(str(path))
        log(f"reusing teacher pairs from {path}")
        return (
            {k[6:]: v.float() for k, v in sd.items() if k.startswith("train.")},
            {k[6:]: v.float() for k, v in sd.items() if k.startswith("valid.")},
            digest,
        )
    exp_cfg = load_config(ExperimentConfig, config_path)
    data = build_datasets(exp_cfg, model.tokenizer, model)
    if data.valid_set is None:
        raise ValueError("the model's config names no data.valid_manifest: the student needs held-out conditions")
    gen = torch.Generator().manual_seed(cfg.seed)
    sets = {}
    for name, ds, n in (("train", data.train_set, cfg.groups), ("valid", data.valid_set, cfg.valid_groups)):
        t = time.time()
        h = collect_conditions(model, ds, data.collate_fn, n, seed=cfg.seed)
        x0, x1 = teacher_pairs(model.speech.flow, h, teacher, cfg, gen)
        sets[name] = {"h": h, "x0": x0, "x1": x1}
        log(f"{name}: {h.shape[0]} teacher pairs in {time.time() - t:.0f} s")
    run_dir.mkdir(parents=True, exist_ok=True)
    save_file({f"{s}.{k}": v.half().contiguous() for s, d in sets.items() for k, v in d.items()}, str(path))
    (run_dir / "pairs.json").write_text(key)
    return sets["train"], sets["valid"], digest


def write_model(
    src: Path,
    out: Path,
    student: FlowStudent,
    cfg: DistillConfig,
    teacher: tuple[str, int],
    metrics: dict[str, Any],
    *,
    make_default: bool = True,
) -> Path:
    """Copy the model folder to `out` with the student's weights and config added."""
    from safetensors.torch import load_file, save_file

    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp)
    sd = load_file(str(tmp / "model.safetensors"))
    sd = {k: v for k, v in sd.items() if not k.startswith("flow.student.")}
    dtype = sd["flow.null_cond"].dtype  # fp16 if the model was exported with --half
    sd.update({f"flow.student.{k}": v.detach().to(dtype).contiguous() for k, v in student.state_dict().items()})
    save_file(sd, str(tmp / "model.safetensors"))
    conf = yaml.safe_load((tmp / "config.yaml").read_text())
    flow = conf.setdefault("model", {}).setdefault("flow", {})
    cfg_scale = flow.get("cfg_scale", 1.0)
    flow.update(
        student_width=cfg.width, student_depth=cfg.depth, student_teacher=f"{teacher[0]}:{teacher[1]} cfg={cfg_scale}"
    )
    if make_default:
        flow["method"] = "student"
    (tmp / "config.yaml").write_text(yaml.safe_dump(conf, sort_keys=False))
    meta = json.loads((tmp / "meta.json").read_text())
    meta["flow_student"] = {
        "teacher": flow["student_teacher"],
        "distill": asdict(cfg),
        **{k: v for k, v in metrics.items() if k != "history"},
    }
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return out


def distill(
    model_dir: str | Path,
    out: str | Path,
    cfg: DistillConfig,
    *,
    teacher: str | None = None,
    run_dir: str | Path | None = None,
    make_default: bool = True,
    log: Any = print,
) -> dict[str, Any]:
    from flowomni.model.flowomni import FlowOmni

    src, out = Path(model_dir), Path(out)
    run_dir = Path(run_dir) if run_dir else Path("runs") / f"distill_{out.name}"
    model = FlowOmni.load(src).float()
    if model.cfg.speech_head != "flow":
        raise ValueError(f"{src} has a {model.cfg.speech_head} speech head: only flow heads have a sampler to distil")
    fcfg = model.cfg.flow
    if teacher is None and fcfg.method == "student":
        raise ValueError(f"{src}'s default sampler is already its student: name the teacher, e.g. --teacher euler:4")
    teacher_t = parse_teacher(teacher or f"{fcfg.method}:{fcfg.steps}")
    torch.manual_seed(cfg.seed)
    train, valid, pairs = load_or_make_pairs(model, cfg, teacher_t, run_dir, log)
    flow = model.speech.flow
    student = FlowStudent(flow.group * flow.frame_dim, train["h"].shape[1], cfg.width, cfg.depth)
    baseline = student_mse(student, valid)  # the untrained student returns x0: the prior mean's error
    metrics = train_student(student, train, valid, cfg, run_dir, log, pairs)
    metrics["valid_mse_of_start_point"] = baseline
    write_model(src, out, student.eval(), cfg, teacher_t, metrics, make_default=make_default)
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=1))
    return metrics


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="a model folder (flowomni export) or training checkpoint")
    p.add_argument("--out", required=True, help="model folder to write (the model plus its student)")
    p.add_argument(
        "--teacher",
        default=None,
        metavar="METHOD:STEPS",
        help="sampler to imitate (default: the model's own, e.g. euler:4)",
    )
    p.add_argument("--run-dir", default=None, help="where pairs and student saves go (default runs/distill_<out>)")
    p.add_argument("--keep-method", action="store_true", help="add the student but keep the model's default sampler")
    for f in fields(DistillConfig):
        p.add_argument(f"--{f.name.replace('_', '-')}", type=type(f.default), default=f.default)


def run(args: argparse.Namespace) -> int:
    from flowomni.checkpoint import CheckpointError

    cfg = DistillConfig(**{f.name: getattr(args, f.name) for f in fields(DistillConfig)})
    try:
        check_bounds(cfg)  # ConfigError (a ValueError) naming the option and its range
        metrics = distill(
            args.model,
            args.out,
            cfg,
            teacher=args.teacher,
            run_dir=args.run_dir,
            make_default=not args.keep_method,
            log=lambda s: print(s, file=sys.stderr),
        )
    except (CheckpointError, FileNotFoundError, ValueError) as e:
        print(f"flowomni distill-flow: {e}", file=sys.stderr)
        return 2
    print(json.dumps({k: v for k, v in metrics.items() if k != "history"}))
    return 0
