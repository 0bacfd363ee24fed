"""The discrete (Mini-Omni-style) speech head: same model, codec codes delayed across codebooks."""

import math

import pytest
import torch

from flowomni.audio import FeatureStats
from flowomni.checkpoint import save_checkpoint
from flowomni.inference.decoder import Decoder, GenerationConfig, Prompt
from flowomni.model.code_head import delay_codes, forced_pad, undelay_codes
from flowomni.model.codec import MelCodec, to_groups
from flowomni.model.flowomni import FlowOmni
from flowomni.model.layout import GEN, IGNORE, STOP, Task
from flowomni.model.tokenizer import CharTokenizer
from flowomni.training.dataset import TaskDataset

from helpers.decoding import assert_batched_equals_single, decode
from helpers.models import SILENCE, batch_of, overfit, tiny_config
from helpers.speech import MemoryFeatures

N_Q, SIZE = 3, 32


def discrete_config(codec_path=""):
    cfg = tiny_config()
    cfg.speech_head = "discrete"
    cfg.codec.n_q, cfg.codec.codebook_size, cfg.codec.path = N_Q, SIZE, str(codec_path)
    return cfg


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Small matrices: on a shared 2-core machine extra threads only spin (20x slower here)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def setup(one_thread, spoken_items, tmp_path_factory):
    torch.manual_seed(0)
    cfg, tok = discrete_config(), CharTokenizer()
    fin, fout = MemoryFeatures(cfg.input_mel), MemoryFeatures(cfg.output_mel)
    groups = torch.cat(
        [to_groups(torch.from_numpy(fout.get(i.answer_audio)), cfg.group, SILENCE) for i in spoken_items]
    )
    codec = MelCodec(N_Q, SIZE, cfg.group, cfg.output_mel.n_mels)
    codec.fit(groups, iters=5)
    path = codec.save(tmp_path_factory.mktemp("codec") / "codec")
    cfg.codec.path = str(path)
    ds = TaskDataset(
        spoken_items,
        [t.value for t in Task],
        tok,
        fin,
        fout,
        group=cfg.group,
        delay=cfg.delay,
        stack=cfg.encoder.stack,
        extra_groups=cfg.extra_groups,
    )
    model = FlowOmni(cfg, tok)  # a fresh model loads the codec named by model.codec.path
    model.set_stats(
        FeatureStats.estimate([torch.from_numpy(fin.get(i.question_audio)) for i in spoken_items]),
        FeatureStats.estimate([torch.from_numpy(fout.get(i.answer_audio)) for i in spoken_items]),
    )
    return cfg, tok, ds, model, codec


def test_delayed_codes_by_hand():
    # item 0: 3 real groups (codes 10+g, 20+g, 30+g in codebooks 0..2); item 1: 1 real group
    codes = torch.tensor([[[10, 20, 30], [11, 21, 31], [12, 22, 32]], [[15, 25, 35], [99, 99, 99], [99, 99, 99]]])
    out = delay_codes(codes, torch.tensor([3, 1]), pad=64)
    print("\nitem 0, step x codebook:\n", out[0], "\nitem 1:\n", out[1])
    P = 64
    assert out[0].tolist() == [[10, P, P], [11, 20, P], [12, 21, 30], [P, 22, 31], [P, P, 32]]
    assert out[1].tolist() == [[15, P, P], [P, 25, P], [P, P, 35], [P, P, P], [P, P, P]]
    assert torch.equal(undelay_codes(out[0]), codes[0])
    assert torch.equal(undelay_codes(out[1])[:1], codes[1, :1])
    # the slots fixed by position and end; codebook 0's PAD right after the last group is a choice
    forced = forced_pad(torch.arange(5), torch.full((5,), 3), 3)
    assert forced.int().tolist() == [[0, 1, 1], [0, 0, 1], [0, 0, 0], [0, 0, 0], [1, 1, 0]]
    assert delay_codes(codes[:, :0], torch.tensor([0, 0]), pad=P).shape == (2, 2, 3)


def test_layout_lengths_are_exact_with_the_extra_groups(setup, spoken_items):
    cfg, tok, ds, model, _ = setup
    assert ds.lengths == [len(ds[i]["layout"]) for i in range(len(ds))]
    i = next(i for i, e in enumerate(ds.examples) if e.task is Task.TTS)
    item = ds[i]
    n_groups = math.ceil(item["out_mel"].shape[0] / cfg.group)
    assert item["layout"].kind.count(GEN) == n_groups + N_Q - 1
    assert item["layout"].state_target.count(STOP) == 1
    batch = batch_of(ds, [i], tok, cfg)
    assert model.n_real_groups(batch).tolist() == [n_groups]


def test_units_are_the_codec_codes_delayed(setup):
    cfg, tok, ds, model, codec = setup
    idx = [i for i, e in enumerate(ds.examples) if e.task is Task.S2S][:2]
    batch = batch_of(ds, idx, tok, cfg)
    units = model.speech_units(batch)
    n = model.n_real_groups(batch)
    assert units.shape == (2, batch["out_groups"].shape[1] + N_Q - 1, N_Q)
    for b in range(2):
        k = int(n[b])
        real = codec.encode(batch["out_groups"][b, :k])
        assert torch.equal(undelay_codes(units[b, : k + N_Q - 1]), real)
        assert units[b, k, 0] == SIZE  # END: codebook 0's PAD after the last group is trained
        assert (units[b, 0, 1:] == IGNORE).all()  # forced slots are not


def test_checkpoint_round_trip_and_padding_invariance(setup, tmp_path):
    cfg, tok, ds, model, _ = setup
    import yaml

    save_checkpoint(
        tmp_path / "ckpt",
        model_state=model.checkpoint_state(),
        config_yaml=yaml.safe_dump({"model": __import__("dataclasses").asdict(cfg)}),
        meta={"step": 0},
        files=model.checkpoint_files(),
        save_rng=False,
    )
    cfg_moved = tmp_path / "ckpt" / "config.yaml"
    data = yaml.safe_load(cfg_moved.read_text())
    data["model"]["codec"]["path"] = str(tmp_path / "gone")  # the codec travels inside the checkpoint
    cfg_moved.write_text(yaml.safe_dump(data))
    twin = FlowOmni.from_checkpoint(tmp_path / "ckpt")
    assert torch.equal(twin.speech.codec.codebooks, model.speech.codec.codebooks)
    s2s = [i for i, e in enumerate(ds.examples) if e.task is Task.S2S]
    lengths = [len(ds[i]["layout"]) for i in s2s]
    short, long_ = s2s[lengths.index(min(lengths))], s2s[lengths.index(max(lengths))]
    model.eval()
    with torch.no_grad():
        a, b = model(batch_of(ds, s2s[:2], tok, cfg)), twin(batch_of(ds, s2s[:2], tok, cfg))
        alone = model(batch_of(ds, [short], tok, cfg))
        padded = model(pad_batch(batch_of(ds, [short], tok, cfg), positions=30, groups=9))
    for key in ("loss", "text_ce", "flow", "state_ce"):
        torch.testing.assert_close(a[key], b[key])
        torch.testing.assert_close(alone[key], padded[key], atol=1e-5, rtol=1e-5)
    assert abs(float(a["flow"]) - math.log(SIZE + 1)) < 1.0  # about uniform over the codes at init
    # an item's codes do not depend on what it is batched with (n_real comes from its layout)
    units_alone = model.speech_units(batch_of(ds, [short], tok, cfg))[0]
    units_pair = model.speech_units(batch_of(ds, [short, long_], tok, cfg))[0]
    assert units_pair.shape[0] > units_alone.shape[0]
    assert torch.equal(units_alone, units_pair[: units_alone.shape[0]])
    assert (units_pair[units_alone.shape[0] :] == IGNORE).all()


def pad_batch(batch, positions, groups):
    """The same batch with `positions` padding positions and `groups` silent mel groups more."""
    fills = {
        "text": 0,
        "kind": 0,
        "audio_index": -1,
        "group_index": -1,
        "text_target": IGNORE,
        "state_target": IGNORE,
        "flow_target": -1,
        "attention_mask": 0,
    }
    out = dict(batch)
    for k, fill in fills.items():
        out[k] = torch.nn.functional.pad(batch[k], (0, positions), value=fill)
    out["out_groups"] = torch.nn.functional.pad(batch["out_groups"], (0, 0, 0, 0, 0, groups), value=SILENCE)
    return out


def test_a_fresh_discrete_model_needs_a_codec_that_fits(tmp_path, setup):
    from flowomni.model.codec import CodecError

    cfg, tok, _, _, codec = setup
    with pytest.raises(CodecError, match="train-codec"):
        FlowOmni(discrete_config(tmp_path / "missing"), tok)
    bad = discrete_config(cfg.codec.path)
    bad.codec.n_q = 5
    with pytest.raises(CodecError, match="model config asks for"):
        FlowOmni(bad, tok)


def test_overfit_then_decode_batched_equals_single(setup, spoken_items):
    """~100 steps on real spoken items: every loss falls; then free decoding emits whole mel
    groups only after the delay, STOP exactly when the delay has drained, and batching
    changes nothing."""
    cfg, tok, ds, model, _ = setup
    torch.manual_seed(0)
    idx = [i for i, e in enumerate(ds.examples) if e.task in (Task.S2S, Task.TTS, Task.T2T)]
    hist = overfit(model, batch_of(ds, idx, tok, cfg), 100, lr=3e-3)
    first, last = hist[0], {k: sum(h[k] for h in hist[-5:]) / 5 for k in hist[0]}
    print("first", first, "\nlast", last)
    assert all(math.isfinite(h["loss"]) for h in hist)
    assert last["flow"] < 0.6 * first["flow"] and last["text_ce"] < 0.3 * first["text_ce"]
    model.eval()

    fin = MemoryFeatures(cfg.input_mel)
    prompts = [
        Prompt(Task.S2S, audio_mel=torch.from_numpy(fin.get(spoken_items[0].question_audio))),
        Prompt(Task.T2T, text=spoken_items[1].question_text),
        Prompt(Task.S2S, audio_mel=torch.from_numpy(fin.get(spoken_items[2].question_audio))),
    ]
    steps = 90
    dec, batched = assert_batched_equals_single(model, prompts, steps)
    stream = dec.stream
    assert batched[-1][0].speech_done and stream.end[0] > 10  # the first answer was spoken and ended
    for i, p in enumerate(prompts):
        groups = [s[i].group for s in batched if s[i].group is not None]
        if not p.task.speech_out:
            assert not groups and int(stream.steps[i]) == 0
            continue
        assert all(g.shape == (cfg.group, cfg.output_mel.n_mels) for g in groups)
        # group g comes out at delay step g + n_q - 1, and none past the end
        end = int(stream.end[i]) if stream.end[i] >= 0 else 10**9
        assert len(groups) == min(max(0, int(stream.steps[i]) - (N_Q - 1)), end)
        if batched[-1][i].speech_done:  # ended: STOP came exactly when the delay drained
            assert int(stream.steps[i]) == int(stream.end[i]) + N_Q - 1
    pred, target = model.predict_groups(batch_of(ds, [idx[0]], tok, cfg))[0]
    assert pred.shape == target.shape

    # sampled codes keep the delay grammar: PAD exactly in the forced slots, real codes elsewhere
    dec, _ = decode(model, prompts[:1], steps, code_temperature=1.0, code_top_k=5)
    st = dec.stream
    n, end = int(st.steps[0]), int(st.end[0])
    assert end >= 0 and n == end + N_Q - 1  # ended, then drained
    hist = st.history[0, :n]
    forced = forced_pad(torch.arange(n), torch.full((n,), end), N_Q)
    forced[end, 0] = True  # END: the PAD codebook 0 chose
    assert torch.equal(hist == SIZE, forced)


@pytest.mark.slow  # two `flowomni train` processes (~30 s)
def test_train_codec_then_train_end_to_end(tmp_path, spoken_items):
    """flowomni train-codec, then flowomni train on the discrete config; the checkpoint decodes."""
    import json
    import os
    import subprocess
    import sys

    import yaml

    from flowomni.cli import main
    from flowomni.config import to_dict

    from helpers.corpus import make_corpus

    make_corpus(tmp_path / "corpus", spoken_items)
    model_cfg = to_dict(discrete_config(tmp_path / "codec"))
    model_cfg["codec"].update(iters=3)
    cfg = {
        "run_dir": str(tmp_path / "run"),
        "model": model_cfg,
        "data": {"train_manifest": str(tmp_path / "corpus/train.jsonl"), "cache_dir": str(tmp_path / "cache")},
        "train": {
            "batch_size": 4,
            "max_steps": 2,
            "eval_every": 2,
            "save_every": 2,
            "warmup_steps": 1,
            "tensorboard": False,
        },
    }
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))

    def train():
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        return subprocess.run(
            [sys.executable, "-m", "flowomni.cli", "train", str(tmp_path / "cfg.yaml")],
            capture_output=True,
            text=True,
            timeout=600,
            cwd=tmp_path,
            env=env,
        )

    r = train()
    assert r.returncode == 2 and "train-codec" in r.stderr  # no codec yet: a clear error, not random codes
    assert main(["train-codec", str(tmp_path / "cfg.yaml")]) == 0
    r = train()
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    model = FlowOmni.from_checkpoint(out["checkpoint"])
    assert model.cfg.speech_head == "discrete" and model.speech.codec.fitted
    dec = Decoder(model, [Prompt(Task.T2S, text="Hi?")], GenerationConfig(seed=0, max_steps=6))
    while not dec.done:
        dec.step()
    assert dec.n_steps == 6
