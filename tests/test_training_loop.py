"""The training loop on real speech: checkpoints, exact resume, logs and pictures."""

import json
import math
from functools import partial

import pytest
import torch
import yaml
from safetensors.torch import load_file

from flowomni.audio import FeatureStats
from flowomni.checkpoint import latest_checkpoint, load_meta
from flowomni.config import to_dict
from flowomni.model.flowomni import FlowOmni
from flowomni.model.layout import Task
from flowomni.model.tokenizer import CharTokenizer
from flowomni.training.config import TrainConfig
from flowomni.training.dataset import TaskDataset, collate
from flowomni.training.loop import RunDirError, train
from flowomni.training.optim import warmup_cosine

from helpers.models import tiny_config
from helpers.speech import MemoryFeatures


@pytest.fixture(scope="module")
def parts(spoken_items):
    cfg, tok = tiny_config(), CharTokenizer()
    fin, fout = MemoryFeatures(cfg.input_mel), MemoryFeatures(cfg.output_mel)
    ds = TaskDataset(
        spoken_items, [t.value for t in Task], tok, fin, fout, group=cfg.group, delay=cfg.delay, stack=cfg.encoder.stack
    )
    stats = (
        FeatureStats.estimate([torch.from_numpy(fin.get(i.question_audio)) for i in spoken_items]),
        FeatureStats.estimate([torch.from_numpy(fout.get(i.answer_audio)) for i in spoken_items]),
    )
    return cfg, tok, ds, stats


def run(parts, run_dir, *, max_steps, resume=False, total=6):
    cfg, tok, ds, stats = parts
    torch.manual_seed(0)
    model = FlowOmni(cfg, tok)
    model.set_stats(*stats)
    tcfg = TrainConfig(
        max_steps=total,
        batch_size=5,
        grad_accum=2,
        lr=3e-3,
        warmup_steps=2,
        log_every=1,
        eval_every=3,
        eval_batches=2,
        save_every=3,
        keep_checkpoints=5,
        tensorboard=True,
    )
    collate_fn = partial(collate, group=cfg.group, pad_id=tok.pad_id, silence=math.log(1e-5))
    out = train(
        model,
        ds,
        ds,
        collate_fn,
        tcfg,
        run_dir,
        config_yaml=yaml.safe_dump({"model": to_dict(cfg)}),
        resume=resume,
        max_steps=max_steps,
        files=model.checkpoint_files(),
    )
    return model, out


def train_records(run_dir):
    return [r for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines()) if r["split"] == "train"]


def test_resumed_run_matches_uninterrupted_run(parts, tmp_path):
    full, out = run(parts, tmp_path / "full", max_steps=None)
    assert out["step"] == 6
    _, first = run(parts, tmp_path / "split", max_steps=3)
    assert first["step"] == 3 and load_meta(latest_checkpoint(tmp_path / "split"))["step"] == 3
    resumed, _ = run(parts, tmp_path / "split", max_steps=None, resume=True)

    a, b = train_records(tmp_path / "full"), train_records(tmp_path / "split")
    assert [r["step"] for r in b] == [1, 2, 3, 4, 5, 6], "resume must not duplicate or skip logged steps"
    for ra, rb in zip(a, b):
        assert ra["loss"] == pytest.approx(rb["loss"], rel=1e-5, abs=1e-6), ra["step"]
    for (name, pa), pb in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.allclose(pa, pb, atol=1e-6), name


def test_run_writes_checkpoints_logs_and_pictures(parts, tmp_path):
    _, out = run(parts, tmp_path, max_steps=None)
    ckpt = latest_checkpoint(tmp_path)
    assert ckpt.name == "step_00000006" and (tmp_path / "step_00000003").is_dir()
    names = {p.name for p in ckpt.iterdir()}
    assert {
        "model.safetensors",
        "config.yaml",
        "meta.json",
        "optimizer.safetensors",
        "rng.safetensors",
        "tokenizer",
        "backbone",
    } <= names, names
    assert "out_mean" in load_file(str(ckpt / "model.safetensors")), "normalisation stats travel with the weights"
    reloaded = FlowOmni.from_checkpoint(ckpt)
    trained = load_file(str(ckpt / "model.safetensors"))
    assert all(torch.equal(reloaded.checkpoint_state()[k], v) for k, v in trained.items())
    assert (tmp_path / "plots" / "mels_step_00000006.png").stat().st_size > 1000
    assert (tmp_path / "loss_curves.png").stat().st_size > 1000
    assert any((tmp_path / "tensorboard").iterdir())
    valid = [r for r in map(json.loads, (tmp_path / "metrics.jsonl").read_text().splitlines()) if r["split"] == "valid"]
    assert [r["step"] for r in valid] == [3, 6] and all(r["flow"] > 0 for r in valid)
    assert out["frames_per_s"] > 0 and 0 < out["lr"] <= 3e-3


def test_existing_run_is_not_overwritten_without_resume(parts, tmp_path):
    run(parts, tmp_path, max_steps=3)
    with pytest.raises(RunDirError, match="--resume"):
        run(parts, tmp_path, max_steps=3)


def test_warmup_then_cosine_to_floor():
    f = warmup_cosine(10, 110, 1e-3, 1e-5)
    lrs = [f(s) * 1e-3 for s in range(111)]
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-3)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    assert lrs[110] == pytest.approx(1e-5)


def test_weights_only_checkpoint_resumes_with_the_schedule_where_it_was(parts, tmp_path):
    import shutil

    run(parts, tmp_path / "a", max_steps=3)
    ckpt = tmp_path / "a" / "step_00000003"
    for f in ("optimizer.safetensors", "optimizer.json", "rng.safetensors", "rng.json"):
        (ckpt / f).unlink()
    shutil.copytree(ckpt, tmp_path / "b" / ckpt.name)
    _, out = run(parts, tmp_path / "b", max_steps=None, resume=True)
    assert out["step"] == 6
    recs = train_records(tmp_path / "b")
    assert [r["step"] for r in recs] == [4, 5, 6]
    f = warmup_cosine(2, 6, 3e-3, 5e-6)
    assert recs[-1]["lr"] == pytest.approx(3e-3 * f(6))  # the lr after step 6, as without the restart


def test_written_items_add_more_of_a_lagging_skill_from_past_the_first_n():
    from flowomni.data.manifest import Item
    from flowomni.training.dataset import written_items

    items = [Item(f"t{i}", "q", "a", meta={"skill": "comparison" if i % 3 == 0 else "facts"}) for i in range(30)]
    got = written_items(items, 10, {"comparison": 4, "calendar": 2})
    assert [it.id for it in got] == [f"t{i}" for i in range(10)] + ["t12", "t15", "t18", "t21"]
    assert written_items(items, 0, {}) == items and written_items(items, 5, {}) == items[:5]
    assert len(written_items(items, 10, {"facts": 1000})) == 10 + 14  # as many as there are


def test_tts_manifest_adds_tts_examples_of_its_sentences_to_training_only(tmp_path, spoken_items):
    """data.tts_manifest: answer-voice sentences ("utterance" items, `flowomni data synth
    --tts-size`) join the training set as TTS examples, `tts_items` of them; valid is untouched."""
    import shutil

    from flowomni.config import from_dict
    from flowomni.data.manifest import Item, write_manifest
    from flowomni.model.tokenizer import CharTokenizer
    from flowomni.training.experiment import ExperimentConfig, build_datasets

    from helpers.corpus import corpus_data, make_corpus
    from helpers.models import tiny_config

    make_corpus(tmp_path / "corpus", spoken_items)
    said = []
    for i, it in enumerate(spoken_items):
        wav = shutil.copy(it.answer_audio, tmp_path / f"said{i}.wav")
        said.append(Item(f"tts-{i}", it.answer_text, it.answer_text, None, wav, "utterance"))
    write_manifest(tmp_path / "tts.jsonl", said)

    def built(**extra):
        data = {**corpus_data(tmp_path), "tasks": ["s2t"], "tts_manifest": str(tmp_path / "tts.jsonl"), **extra}
        cfg = from_dict(ExperimentConfig, {"model": to_dict(tiny_config()), "data": data})
        return build_datasets(cfg, CharTokenizer())

    ds, without = built(), built(tts_manifest="")
    tts = [e for e in ds.train_set.examples if e.task.value == "tts"]
    assert not [e for e in without.train_set.examples if e.task.value == "tts"]
    assert len(ds.train_set.examples) == len(without.train_set.examples) + len(said)
    assert [e.item.id for e in tts] == [i.id for i in said]
    assert len(ds.valid_set.examples) == len(without.valid_set.examples)
    assert len([e for e in built(tts_items=1).train_set.examples if e.task.value == "tts"]) == 1
