"""Step-wise decoding: KV-cached steps match a full forward; batching changes nothing."""

import pytest
import torch

from flowomni.inference.decoder import Decoder, GenerationConfig, Prompt
from flowomni.model.flowomni import FlowOmni
from flowomni.model.layout import Task
from flowomni.model.sampling import sample_tokens
from flowomni.model.tokenizer import CharTokenizer

from helpers.decoding import assert_batched_equals_single
from helpers.models import tiny_config
from helpers.speech import MemoryFeatures


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return FlowOmni(tiny_config(), CharTokenizer()).eval()


@pytest.fixture(scope="module")
def question_mel(spoken_items, model):
    return torch.from_numpy(MemoryFeatures(model.cfg.input_mel).get(spoken_items[0].question_audio))


def test_batched_decoding_equals_single(model, question_mel):
    prompts = [
        Prompt(Task.S2S, audio_mel=question_mel),
        Prompt(Task.T2T, text="What is two plus two?"),
        Prompt(Task.T2S, text="Hi?"),
        Prompt(Task.T2T, text="And three?", history=[("Two plus two?", "Four.")]),
    ]
    # (fp32 steps: exact comparisons; fp16 steps are test_inference_precision.py's)
    assert_batched_equals_single(model, prompts, 12, flow_temperature=0.0, decode_dtype="float32")


def test_cached_steps_match_full_forward(model):
    dec = Decoder(model, [Prompt(Task.T2T, text="abc")], GenerationConfig(seed=0, decode_dtype="float32"))
    for _ in range(5):
        dec.step()
    # recompute the last hidden state without the cache, from the embeddings of all positions
    full = model.backbone(_all_embeddings(model, dec), dec.mask, position_ids=dec.pos_all).last_hidden_state[:, -1]
    torch.testing.assert_close(dec.h, full, atol=1e-4, rtol=1e-4)


def _all_embeddings(model, dec):
    return torch.cat(dec.embeds, dim=1)


def test_sampling_knobs():
    logits = torch.tensor([[0.0, 5.0, 4.0, -3.0]])
    assert sample_tokens(logits).item() == 1
    g = torch.Generator().manual_seed(0)
    draws = {sample_tokens(logits, temperature=1.0, top_k=2, generator=g).item() for _ in range(200)}
    assert draws == {1, 2}
    draws = {sample_tokens(logits, temperature=1.0, top_p=0.5, generator=g).item() for _ in range(100)}
    assert draws == {1}


def test_missing_inputs_are_clear_errors(model):
    with pytest.raises(ValueError, match="needs question audio"):
        Decoder(model, [Prompt(Task.S2S)])
    with pytest.raises(ValueError, match="needs question text"):
        Decoder(model, [Prompt(Task.T2T, text="")])
    with pytest.raises(ValueError, match="no prompts"):
        Decoder(model, [])
