"""The shipped model's answer to one example question, pinned (tests/test_golden.py).

The golden file holds, for examples/question_2.wav decoded as a spoken answer (greedy text,
fp32 steps, seed 0): the token emitted at each step (-1: none), whether the step drew a mel
group (its speech state was GEN) and whether speech had ended (STOP) by then, and the first
mel group. Its metadata names the model it was made from (the SHA-256 of model.safetensors):
when the shipped model is replaced, the test says to regenerate it:

    PYTHONPATH=src python tests/helpers/golden.py
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "data" / "golden_flowomni_tiny.safetensors"
QUESTION = ROOT / "examples" / "question_2.wav"
MAX_STEPS = 120
REGENERATE = "PYTHONPATH=src python tests/helpers/golden.py"


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@torch.no_grad()
def answer(model_dir: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Decode the question with the model in `model_dir`: (tensors, metadata) as stored."""
    from flowomni.audio import MelSpectrogram, load_audio
    from flowomni.inference.decoder import Decoder, GenerationConfig, Prompt
    from flowomni.model.flowomni import FlowOmni
    from flowomni.model.layout import Task

    model = FlowOmni.from_checkpoint(model_dir).float()
    cfg = model.cfg.input_mel
    mel = MelSpectrogram(cfg)(torch.from_numpy(load_audio(QUESTION, cfg.sample_rate)))
    dec = Decoder(
        model, [Prompt(Task.S2S, audio_mel=mel)], GenerationConfig(max_steps=MAX_STEPS, seed=0, decode_dtype="float32")
    )
    tokens, gen, speech_done, first = [], [], [], None
    while not dec.done:
        (out,) = dec.step()
        tokens.append(-1 if out.token is None else out.token)
        gen.append(int(out.group is not None))
        speech_done.append(int(out.speech_done))
        if first is None and out.group is not None:
            first = out.group.float().cpu()
    if first is None:
        raise RuntimeError(f"{model_dir} did not speak its answer to {QUESTION.name} in {MAX_STEPS} steps")
    ids = [t for t in tokens if t >= 0]
    tensors = {
        "tokens": torch.tensor(tokens),
        "gen": torch.tensor(gen),
        "speech_done": torch.tensor(speech_done),
        "first_group": first.contiguous(),
    }
    meta = {
        "model_sha256": sha256(Path(model_dir) / "model.safetensors"),
        "question": QUESTION.name,
        "text": model.tokenizer.decode(ids),
        "torch": torch.__version__,
    }
    return tensors, meta


def main() -> None:
    from safetensors.torch import save_file

    from flowomni.paths import SHIPPED_MODEL

    model_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else SHIPPED_MODEL
    tensors, meta = answer(model_dir)
    GOLDEN.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(GOLDEN), metadata=meta)
    print(f"{GOLDEN}: {meta['text']!r}, {int(tensors['gen'].sum())} mel groups in {len(tensors['tokens'])} steps")


if __name__ == "__main__":
    main()
