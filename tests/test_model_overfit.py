"""The whole model can fit a handful of real spoken utterances (all six tasks)."""

import pytest
import torch

from flowomni.audio import FeatureStats
from flowomni.model.flowomni import FlowOmni
from flowomni.model.layout import Task
from flowomni.model.tokenizer import CharTokenizer
from flowomni.training.dataset import TaskDataset

from helpers.models import batch_of, overfit, tiny_config
from helpers.speech import MemoryFeatures


@pytest.mark.slow
def test_overfit_handful_of_spoken_utterances(spoken_items, tmp_path):
    torch.manual_seed(0)
    cfg, tok = tiny_config(), CharTokenizer()
    cfg.flow.p_uncond = 0.0
    fin, fout = MemoryFeatures(cfg.input_mel), MemoryFeatures(cfg.output_mel)
    ds = TaskDataset(
        spoken_items, [t.value for t in Task], tok, fin, fout, group=cfg.group, delay=cfg.delay, stack=cfg.encoder.stack
    )
    model = FlowOmni(cfg, tok)
    model.set_stats(
        FeatureStats.estimate([torch.from_numpy(fin.get(i.question_audio)) for i in spoken_items]),
        FeatureStats.estimate([torch.from_numpy(fout.get(i.answer_audio)) for i in spoken_items]),
    )
    batch = batch_of(ds, list(range(len(ds))), tok, cfg)
    history = overfit(model, batch, 300, lr=2e-3)
    first = history[0]
    last = {k: sum(h[k] for h in history[-10:]) / 10 for k in first}
    print("first", first, "\nlast", last)
    assert last["text_ce"] < 0.1 * first["text_ce"]
    assert last["flow"] < 0.4 * first["flow"]
    assert last["state_ce"] < 0.1 * first["state_ce"]
    model.eval()
    s2s = next(i for i, e in enumerate(ds.examples) if e.task is Task.S2S)
    one = batch_of(ds, [s2s], tok, cfg)
    pred, target = model.predict_groups(one, steps=8, generator=torch.Generator().manual_seed(0))[0]
    # teacher-forced samples are much closer to the target than its own mean is
    assert (pred - target).pow(2).mean() < 0.5 * target.var()

    # ...and, decoding freely with the KV cache, it answers: text replies to spoken and written
    # questions exactly; a spoken reply starts speech (START, mel groups) after its text begins.
    from flowomni.inference.decoder import Decoder, GenerationConfig, Prompt

    items = spoken_items
    mels = [torch.from_numpy(fin.get(i.question_audio)) for i in items]
    prompts = [Prompt(Task.S2T, audio_mel=m) for m in mels] + [Prompt(Task.T2T, text=i.question_text) for i in items]
    prompts += [Prompt(Task.S2S, audio_mel=m) for m in mels]
    dec = Decoder(model, prompts, GenerationConfig(seed=0, max_steps=200))
    texts, groups = [[] for _ in prompts], [[] for _ in prompts]
    while not dec.done:
        for i, o in enumerate(dec.step()):
            if o.token is not None:
                texts[i].append(o.token)
            if o.group is not None:
                groups[i].append(o.group)
    n = len(items)
    got = [tok.decode(t) for t in texts]
    print(got)
    correct = sum(g == a for g, a in zip(got[: 2 * n], [i.answer_text for i in items] * 2))
    assert correct >= 2 * n - 1, got[: 2 * n]  # seen once: "repeat after me" may be transcribed instead
    assert all(not g for g in groups[: 2 * n])  # text replies stay silent
    for i, item in enumerate(items):
        assert got[2 * n + i][:3] == item.answer_text[:3]  # text leads; speech starts after `delay`
        assert groups[2 * n + i] and groups[2 * n + i][0].shape == (cfg.group, cfg.output_mel.n_mels)
