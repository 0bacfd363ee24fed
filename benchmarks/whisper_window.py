"""Does a frozen Whisper encoder hear short questions better at any length or in its 30 s window?

Whisper was trained on 30 s windows (short clips padded with silence); flowomni's encoder runs
any length (masked), which is ~10x cheaper on a 3 s question. A linear CTC probe (characters)
is trained on each variant's frozen features of the same training questions and its greedy
character error rate measured on held-out questions: the features a linear map reads the
words from best are the ones the LLM can use. Encoder time per clip is measured too (median,
in this process, interleaved).

    python benchmarks/whisper_window.py --json [--encoder whisper-tiny.en] [--train 600 --test 200]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from torch import nn

from flowomni.audio import MelSpectrogram, input_mel_config
from flowomni.audio.io import load_audio
from flowomni.data.manifest import read_manifest
from flowomni.model.encoder import EncoderConfig, SpeechEncoder, whisper_weights
from flowomni.model.tokenizer import CharTokenizer
from flowomni.training.encoder_ctc import CTCEncoder, pad_batch

from common import emit, environment

ROOT = Path(__file__).resolve().parents[1]


class Precomputed(nn.Module):
    """Stands in for the encoder when its outputs are computed already (the probe learns only the head)."""

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x, lengths


def features(enc: SpeechEncoder, mels: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[float]]:
    out, ms = [], []
    with torch.inference_mode():
        for m in mels:
            t = time.perf_counter()
            h, n = enc(m[None], torch.tensor([m.shape[0]]))
            ms.append(1000 * (time.perf_counter() - t))
            out.append(h[0, : int(n)].clone())
    return out, ms


def probe(
    train: list[tuple[torch.Tensor, list[int]]],
    test: list[tuple[torch.Tensor, str]],
    d: int,
    tok: CharTokenizer,
    steps: int,
    seed: int = 0,
) -> tuple[float, list[tuple[str, str]]]:
    from jiwer import cer

    torch.manual_seed(seed)
    model = CTCEncoder(Precomputed(), d, tok.vocab_size)
    opt = torch.optim.Adam(model.head.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(len(train), (32,), generator=gen).tolist()
        x, n = pad_batch([train[i][0] for i in idx])
        loss = model.loss(x, n, [train[i][1] for i in idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    hyps = []
    for i in range(0, len(test), 32):
        x, n = pad_batch([f for f, _ in test[i : i + 32]])
        hyps += [tok.decode(ids) for ids in model.greedy(x, n)]
    refs = [r for _, r in test]
    return float(cer(refs, hyps)), list(zip(refs, hyps))[:3]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--encoder", default="whisper-tiny.en")
    ap.add_argument("--corpus", type=Path, default=ROOT / "data" / "spoken_qa")
    ap.add_argument("--train", type=int, default=600, help="training questions for the probe")
    ap.add_argument("--test", type=int, default=200, help="held-out questions (test split: unseen voices)")
    ap.add_argument("--steps", type=int, default=1500, help="probe optimizer steps")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    tok = CharTokenizer()
    mel_fn = MelSpectrogram(input_mel_config("whisper"))
    w = whisper_weights(args.encoder)
    encoders = {}
    for name, pad in (("any_length", 0), ("window_30s", 3000)):
        enc = SpeechEncoder(EncoderConfig(**w.shape, pad_to=pad)).eval()
        enc.load_state_dict(w.state)
        encoders[name] = enc

    def clips(manifest: str, n: int) -> list[tuple[torch.Tensor, str]]:
        items = [it for it in read_manifest(args.corpus / manifest)[0] if it.question_audio is not None][:n]
        return [(mel_fn(torch.from_numpy(load_audio(it.question_audio, 16000))), it.question_text) for it in items]

    train, test = clips("train.jsonl", args.train), clips("test.jsonl", args.test)
    result = {
        "encoder": args.encoder,
        "train_clips": len(train),
        "test_clips": len(test),
        "mean_test_seconds": statistics.fmean(m.shape[0] / 100 for m, _ in test),
        "modes": {},
    }
    for name, enc in encoders.items():
        tr, tr_ms = features(enc, [m for m, _ in train])
        te, te_ms = features(enc, [m for m, _ in test])
        cer_, examples = probe(
            [(f, tok.encode(t)) for f, (_, t) in zip(tr, train)],
            [(f, t) for f, (_, t) in zip(te, test)],
            w.shape["d_model"],
            tok,
            args.steps,
        )
        result["modes"][name] = {
            "probe_cer_test": cer_,
            "encode_ms_median": statistics.median(tr_ms + te_ms),
            "examples": examples,
        }
    any_, win = result["modes"]["any_length"], result["modes"]["window_30s"]
    result["cer_window_minus_any"] = win["probe_cer_test"] - any_["probe_cer_test"]
    result["encode_cost_window_over_any"] = win["encode_ms_median"] / any_["encode_ms_median"]
    result["environment"] = environment()
    emit(result, args.json)


if __name__ == "__main__":
    main()
