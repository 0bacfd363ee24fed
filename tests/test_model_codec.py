"""MelCodec: residual VQ of mel groups fitted by k-means on real (espeak-ng) speech."""

import math

import pytest
import torch

from flowomni.audio import answer_mel_config
from flowomni.model.codec import CodecError, MelCodec, kmeans_pp, lloyd, nearest, to_groups

from helpers.speech import MemoryFeatures

GROUP, SILENCE = 4, math.log(1e-5)


@pytest.fixture(scope="module")
def groups(spoken_items):
    feats = MemoryFeatures(answer_mel_config())
    return torch.cat([to_groups(torch.from_numpy(feats.get(i.answer_audio)), GROUP, SILENCE) for i in spoken_items])


def fitted(groups, n_q=4, size=16, iters=8, seed=0):
    codec = MelCodec(n_q, size, GROUP, 80)
    codec.fit(groups, iters=iters, seed=seed)
    return codec


def test_to_groups_pads_the_last_group_with_silence():
    mel = torch.arange(10 * 3, dtype=torch.float32).view(10, 3)
    g = to_groups(mel, 4, -11.5)
    assert g.shape == (3, 4, 3)
    assert torch.equal(g.flatten(0, 1)[:10], mel) and (g[2, 2:] == -11.5).all()


def test_error_falls_as_codebooks_are_added(groups):
    codec = fitted(groups)
    errors = codec.error(groups)
    print("normalised mse after 1..4 stages:", [round(e, 3) for e in errors])
    assert len(errors) == 4 and errors[0] < 1.0  # one stage already beats predicting the mean
    assert all(b < 0.95 * a for a, b in zip(errors, errors[1:]))
    # encode/decode with the first q codebooks reproduces exactly those errors (in raw log-mel)
    for q in (1, 4):
        rec = codec.decode(codec.encode(groups, n_q=q))
        assert rec.shape == groups.shape
        mse = ((rec - groups) / codec.std.view(1, 1, -1)).pow(2).mean()
        torch.testing.assert_close(mse.item(), errors[q - 1], rtol=1e-3, atol=1e-4)


def test_kmeans_beats_its_seeding_and_random_codebooks(groups):
    trained = fitted(groups, iters=10).error(groups)[-1]
    seeded_only = fitted(groups, iters=0).error(groups)[-1]
    rand = fitted(groups, iters=0)
    rand.codebooks.normal_(generator=torch.Generator().manual_seed(0))
    random_error = rand.error(groups)[-1]
    print(f"final mse: k-means {trained:.3f}, k-means++ seeds only {seeded_only:.3f}, random {random_error:.3f}")
    assert trained < 0.9 * seeded_only < 0.9 * random_error


def test_lloyd_reseeds_empty_clusters():
    x = torch.tensor([[0.0], [0.1], [10.0], [10.1]])
    centres = lloyd(x, torch.tensor([[0.0], [100.0]]), iters=3)  # the far centre owns nothing
    assert sorted(nearest(x, centres)[0].tolist()) == [0, 0, 1, 1]
    g = torch.Generator().manual_seed(0)
    assert kmeans_pp(x, 4, g).unique(dim=0).shape[0] == 4  # distinct points get picked


def test_fitting_is_deterministic(groups):
    a, b = fitted(groups, seed=3), fitted(groups, seed=3)
    assert torch.equal(a.codebooks, b.codebooks) and torch.equal(a.encode(groups), b.encode(groups))
    assert not torch.equal(a.codebooks, fitted(groups, seed=4).codebooks)


def test_pad_codes_add_nothing(groups):
    codec = fitted(groups, n_q=2)
    codes = codec.encode(groups[:3])
    assert codes.dtype == torch.long and codes.shape == (3, 2) and codes.max() < codec.pad
    coarse = codec.decode(codes[:, :1])
    padded = codec.decode(torch.stack([codes[:, 0], torch.full_like(codes[:, 0], codec.pad)], -1))
    torch.testing.assert_close(coarse, padded)
    silent = codec.decode(torch.full((1, 2), codec.pad))
    torch.testing.assert_close(silent[0], codec.mean.expand(GROUP, 80))  # nothing: the mean frame


def test_save_load_round_trip_and_clear_errors(groups, tmp_path):
    codec = fitted(groups, n_q=2)
    codec.save(tmp_path / "codec", {"valid_mse": [0.5, 0.4]})
    back = MelCodec.load(tmp_path / "codec")
    assert torch.equal(back.encode(groups), codec.encode(groups))
    assert sorted(p.name for p in (tmp_path / "codec").iterdir()) == ["config.yaml", "meta.json", "model.safetensors"]
    with pytest.raises(CodecError, match="model config asks for"):
        back.check_fits(8, 16, GROUP, 80)
    with pytest.raises(CodecError, match="train-codec"):
        MelCodec.load(tmp_path / "nowhere")
    with pytest.raises(CodecError, match="cannot fill a codebook"):
        MelCodec(1, 4096, GROUP, 80).fit(groups)
    with pytest.raises(ValueError, match="groups"):
        codec.encode(torch.zeros(2, 3, 80))


def test_train_codec_cli_fits_reports_and_feeds_a_discrete_model(spoken_items, tmp_path, capsys):
    import json
    import shutil

    import yaml

    from flowomni.cli import main
    from flowomni.model.flowomni import FlowOmni
    from flowomni.model.tokenizer import CharTokenizer

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    lines = []
    for i, it in enumerate(spoken_items):
        shutil.copy(it.answer_audio, corpus / f"a{i}.wav")
        lines.append(
            {"id": it.id, "question_text": it.question_text, "answer_text": it.answer_text, "answer_audio": f"a{i}.wav"}
        )
    (corpus / "broken.wav").write_bytes(b"not audio")
    lines.append({"id": "bad", "question_text": "q", "answer_text": "a", "answer_audio": "broken.wav"})
    (corpus / "train.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    (corpus / "valid.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines[:2]))
    cfg = {
        "model": {
            "speech_head": "discrete",
            "codec": {"n_q": 2, "codebook_size": 16, "iters": 3, "path": str(tmp_path / "codec")},
        },
        "data": {
            "train_manifest": str(corpus / "train.jsonl"),
            "valid_manifest": str(corpus / "valid.jsonl"),
            "cache_dir": str(tmp_path / "cache"),
        },
    }
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["train-codec", str(tmp_path / "exp.yaml")]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["skipped"] == {"bad answer audio": 1}
    assert report["valid_answers"] == 2 and report["train_answers"] == 2  # valid answers are held out
    assert len(report["valid_mse"]) == 2 and report["valid_mse"][1] < report["valid_mse"][0] < 1.0
    assert report["valid_logmel_rmse"] > 0 and report["train_groups"] > 16
    assert json.loads((tmp_path / "codec" / "meta.json").read_text())["valid_mse"] == report["valid_mse"]
    assert main(["eval-codec", str(tmp_path / "exp.yaml"), "--items", "2", "--vocoder", "griffin-lim-8"]) == 0
    resynth = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert json.loads((tmp_path / "codec" / "meta.json").read_text())["resynthesis"] == resynth
    assert resynth["items"] == 2 and set(resynth["wer"]) == {"vocoded", "codec_q1", "codec_q2"}
    # one 16-word codebook garbles speech more than vocoding the recorded mel does
    assert resynth["wer"]["codec_q1"] > resynth["wer"]["vocoded"]
    assert resynth["examples"][0]["ref"] == spoken_items[0].answer_text

    from flowomni.config import from_dict
    from flowomni.model.config import ModelConfig

    model = FlowOmni(from_dict(ModelConfig, cfg["model"]), CharTokenizer())
    assert model.speech.codec.fitted
    assert torch.equal(model.speech.codec.codebooks, MelCodec.load(tmp_path / "codec").codebooks)

    assert main(["eval-codec", str(tmp_path / "exp.yaml"), "--codec", str(tmp_path / "none")]) == 2
    assert "train-codec" in capsys.readouterr().err  # no codec there: a clear error
    assert main(["train-codec", str(tmp_path / "exp.yaml"), "--set", "model.codec.codebook_size=100000"]) == 2
    assert "cannot fill a codebook" in capsys.readouterr().err
    assert main(["train-codec", str(tmp_path / "exp.yaml"), "--set", "model.codec.bogus=1"]) == 2
