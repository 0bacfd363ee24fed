"""The full model on real (espeak-ng) speech: padding, stages, checkpoints, pictures."""

import dataclasses
import random

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from flowomni.audio import FeatureStats
from flowomni.model.flowomni import FlowOmni
from flowomni.model.layout import Task
from flowomni.model.tokenizer import CharTokenizer
from flowomni.training.dataset import TaskDataset

from helpers.models import SILENCE, batch_of, tiny_config
from helpers.speech import MemoryFeatures


@pytest.fixture(scope="module")
def setup(spoken_items):
    torch.manual_seed(0)
    cfg, tok = tiny_config(), CharTokenizer()
    fin, fout = MemoryFeatures(cfg.input_mel), MemoryFeatures(cfg.output_mel)
    ds = TaskDataset(
        spoken_items, [t.value for t in Task], tok, fin, fout, group=cfg.group, delay=cfg.delay, stack=cfg.encoder.stack
    )
    model = FlowOmni(cfg, tok).eval()
    model.set_stats(
        FeatureStats.estimate([torch.from_numpy(fin.get(i.question_audio)) for i in spoken_items]),
        FeatureStats.estimate([torch.from_numpy(fout.get(i.answer_audio)) for i in spoken_items]),
    )
    return cfg, tok, ds, model


def test_every_task_appears_once_per_item(setup, spoken_items):
    _, _, ds, _ = setup
    assert len(ds) == 6 * len(spoken_items)
    assert sorted({e.task.value for e in ds.examples}) == sorted(t.value for t in Task)
    assert len(ds.lengths) == len(ds) and all(n > 0 for n in ds.lengths)
    assert ds.lengths == [len(ds[i]["layout"]) for i in range(len(ds))]


def test_padding_does_not_change_the_loss(setup):
    """An example alone == the same example padded inside a batch with longer ones."""
    cfg, tok, ds, model = setup
    s2s = [i for i, e in enumerate(ds.examples) if e.task is Task.S2S]
    lengths = [len(ds[i]["layout"]) for i in s2s]
    short, long_ = s2s[int(np.argmin(lengths))], s2s[int(np.argmax(lengths))]
    alone = batch_of(ds, [short], tok, cfg)
    padded = batch_of(ds, [short, long_], tok, cfg)
    assert padded["text"].shape[1] > alone["text"].shape[1]
    with torch.no_grad():
        torch.manual_seed(3)
        a = model(alone)
        # same rows for the flow loss: compare the short item's rows only, by padding a copy of itself
        padded_self = batch_of(ds, [short], tok, cfg)
        extra = padded["text"].shape[1] - padded_self["text"].shape[1]
        keys = (
            "text",
            "kind",
            "audio_index",
            "group_index",
            "text_target",
            "state_target",
            "flow_target",
            "attention_mask",
        )
        for k in keys:
            fill = {
                "text": tok.pad_id,
                "text_target": -100,
                "state_target": -100,
                "audio_index": -1,
                "group_index": -1,
                "flow_target": -1,
            }.get(k, 0)
            padded_self[k] = torch.nn.functional.pad(padded_self[k], (0, extra), value=fill)
        padded_self["in_mel"] = torch.nn.functional.pad(padded_self["in_mel"], (0, 0, 0, 50))
        padded_self["out_groups"] = torch.nn.functional.pad(
            padded_self["out_groups"], (0, 0, 0, 0, 0, 7), value=SILENCE
        )
        torch.manual_seed(3)
        b = model(padded_self)
    for key in ("text_ce", "state_ce", "flow", "loss"):
        torch.testing.assert_close(a[key], b[key], atol=1e-5, rtol=1e-5)
    # and in a real mixed batch, the deterministic losses of the pair are the token-weighted mean
    with torch.no_grad():
        other = batch_of(ds, [long_], tok, cfg)
        both, o = model(padded), model(other)
    n_a, n_o = (alone["text_target"] != -100).sum(), (other["text_target"] != -100).sum()
    torch.testing.assert_close(
        both["text_ce"], (a["text_ce"] * n_a + o["text_ce"] * n_o) / (n_a + n_o), atol=1e-5, rtol=1e-5
    )


def test_stage_one_freezes_backbone_and_encoder(setup):
    _, _, _, model = setup
    model.set_stage(1)
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert any(n.startswith("encoder.") for n in frozen)
    assert any(n.startswith("lm.model.layers") for n in frozen)
    trainable = {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad}
    assert {"adapter", "speech", "state_head", "state_emb"} <= trainable
    assert all(p.requires_grad for p in model.speech.parameters())
    model.set_stage(2)
    assert all(p.requires_grad for p in model.parameters())
    with pytest.raises(ValueError, match="stage must be 1 or 2"):
        model.set_stage(3)


def test_checkpoint_state_round_trips_through_safetensors(setup, tmp_path):
    cfg, tok, ds, model = setup
    save_file(model.checkpoint_state(), str(tmp_path / "m.safetensors"))
    twin = FlowOmni(cfg, tok)
    twin.load_checkpoint_state(load_file(str(tmp_path / "m.safetensors")))
    batch = batch_of(ds, [0, 1], tok, cfg)
    twin.eval()
    with torch.no_grad():
        torch.manual_seed(0)
        a = model(batch)
        torch.manual_seed(0)
        b = twin(batch)
    torch.testing.assert_close(a["loss"], b["loss"])
    torch.testing.assert_close(twin.out_std, model.out_std)
    with pytest.raises(ValueError, match="does not fit"):
        twin.load_checkpoint_state({"bogus": torch.zeros(1)})


def test_plot_example_writes_png(setup, tmp_path):
    cfg, tok, ds, model = setup
    s2s = next(i for i, e in enumerate(ds.examples) if e.task is Task.S2S)
    model.plot_example(batch_of(ds, [s2s], tok, cfg), tmp_path / "mel.png")
    assert (tmp_path / "mel.png").read_bytes()[:4] == b"\x89PNG"


def history_dataset(items, tasks: list[str], history_prob: float) -> TaskDataset:
    """A dataset of `tasks` over `items` whose examples get an earlier turn with `history_prob`."""
    cfg = tiny_config()
    return TaskDataset(
        items,
        tasks,
        CharTokenizer(),
        MemoryFeatures(cfg.input_mel),
        MemoryFeatures(cfg.output_mel),
        group=cfg.group,
        delay=cfg.delay,
        stack=cfg.encoder.stack,
        history_prob=history_prob,
    )


def test_history_examples_have_exact_lengths(spoken_items):
    ds = history_dataset(spoken_items, ["s2t", "t2t"], 0.5)
    with_history = [i for i in range(len(ds)) if ds.history_of(i)]
    assert 0 < len(with_history) < len(ds)
    assert ds.lengths == [len(ds[i]["layout"]) for i in range(len(ds))]
    # fixed per index: another dataset, built under other random states and read in another
    # epoch, gives every example the same earlier turn (a resumed run sees the same sequences)
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    twin = history_dataset(spoken_items, ["s2t", "t2t"], 0.5)
    twin.set_epoch(3)
    assert [twin.history_of(i) for i in range(len(ds))] == [ds.history_of(i) for i in range(len(ds))]


def test_an_earlier_turn_never_asks_the_examples_own_question(spoken_items):
    tok = CharTokenizer()
    ds = history_dataset(spoken_items, ["s2t", "t2t"], 1.0)
    for i, ex in enumerate(ds.examples):
        ((question, _),) = ds.history_of(i)
        assert tok.decode(question) != ex.item.question_text
    alone = history_dataset(spoken_items[:1], ["t2t"], 1.0)
    assert alone.history_of(0) == []  # no other item to take a turn from


def test_speech_inputs_start_at_the_token_embedding_scale():
    """Inputs summed with text must not drown it: at init, state and mel-group embeddings are
    within a small factor of the token embeddings' norm (nn.Embedding's default was ~50x)."""
    torch.manual_seed(0)
    model = FlowOmni(tiny_config(), CharTokenizer())
    text = model.lm.get_input_embeddings().weight.norm(dim=-1).median()
    state = model.state_emb.weight.norm(dim=-1).median()
    mel = model.embed_speech(torch.randn(32, 4, 80)).norm(dim=-1).median()
    assert 0.2 < float(state / text) < 5 and 0.1 < float(mel / text) < 5, (text, state, mel)


def test_the_speech_head_has_one_name_and_files_keep_theirs(setup, tmp_path):
    """`model.speech.flow` is the flow head (no second, flat `model.flow` that could drift
    from it); checkpoint files name its weights `flow.*` as they always did, and files with
    either naming load."""
    cfg, tok, _, model = setup
    assert not hasattr(model, "flow") and not hasattr(model, "mel_in")
    assert dict(model.named_children())["speech"] is model.speech
    seen: list[torch.nn.Module] = []
    model.apply(seen.append)  # VelocityMLP.apply shadowed nn.Module.apply (a TypeError)
    assert model.speech.flow.net in seen
    file_keys = set(model.checkpoint_state())
    assert "flow.null_cond" in file_keys and not any(k.startswith("speech.") for k in file_keys)
    swapped = FlowOmni(cfg, tok)
    torch.nn.init.normal_(swapped.speech.flow.null_cond)
    model_copy = FlowOmni(cfg, tok)
    model_copy.speech.flow = swapped.speech.flow  # what a benchmark does: the model now saves and uses it
    assert torch.equal(model_copy.checkpoint_state()["flow.null_cond"], swapped.speech.flow.null_cond)
    twin = FlowOmni(cfg, tok)
    twin.load_checkpoint_state(model.state_dict())  # module names load too
    torch.testing.assert_close(twin.speech.flow.null_cond, model.speech.flow.null_cond)


def test_self_feedback_replaces_a_share_of_the_fed_back_groups(setup):
    """Parallel scheduled sampling: share 0 feeds back every true group, share 1 none (each is
    the head's draw from the teacher-forced pass, what `draw` gives), in between some; the
    losses still target the true groups, and training with it runs and back-propagates."""
    cfg, tok, ds, model = setup
    s2s = [i for i, e in enumerate(ds.examples) if e.task is Task.S2S][:3]
    batch = batch_of(ds, s2s, tok, cfg)
    units = model.speech_units(batch)
    rows = (batch["flow_target"] >= 0).flatten().nonzero().squeeze(1)
    n = batch["kind"].shape[1]
    b, g = rows // n, batch["flow_target"].flatten()[rows]
    keep = model.self_fed(batch, units, rows, 0.0)
    assert torch.equal(keep, units)
    gen = torch.Generator().manual_seed(0)
    drawn = model.self_fed(batch, units, rows, 1.0, generator=gen)
    changed = (drawn[b, g] != units[b, g]).flatten(1).any(1)
    assert changed.all() and torch.isfinite(drawn).all()
    mask = torch.ones_like(units, dtype=torch.bool)
    mask[b, g] = False
    assert torch.equal(drawn[mask], units[mask])  # groups no position predicts stay as they were
    half = model.self_fed(batch, units, rows, 0.5, generator=torch.Generator().manual_seed(1))
    replaced = (half[b, g] != units[b, g]).flatten(1).any(1).float().mean()
    assert 0.2 < replaced < 0.8
    trained = FlowOmni(dataclasses.replace(cfg, self_feedback=0.5), tok).train()
    trained.set_stats(model.in_stats, model.out_stats)
    out = trained(batch)
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and trained.speech.mel_in[0].weight.grad.abs().sum() > 0


def test_self_feedback_is_for_the_flow_head():
    cfg = tiny_config()
    cfg.speech_head = "discrete"
    with pytest.raises(ValueError, match="self_feedback"):
        dataclasses.replace(cfg, self_feedback=0.5)
