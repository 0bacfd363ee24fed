"""Decode-step precision: the fp16 step copy, KV-cache casting, and what "auto" picks."""

import pytest
import torch

from flowomni.inference.decoder import Decoder, GenerationConfig, Prompt
from flowomni.inference.engine import Done, Engine
from flowomni.inference.precision import cast_cache, decode_dtype, step_model
from flowomni.model.layout import Task

from helpers.models import speaking_model


def test_auto_is_fp16_for_small_cpu_batches_only():
    cpu = torch.device("cpu")
    assert decode_dtype("auto", cpu, 1, torch.float32) == torch.float16
    assert decode_dtype("auto", cpu, 16, torch.float32) == torch.float32  # fp16 matrix products are slow on CPU
    assert decode_dtype("auto", torch.device("cuda"), 1, torch.bfloat16) == torch.bfloat16
    assert decode_dtype("float32", cpu, 1, torch.float32) == torch.float32
    with pytest.raises(ValueError, match="decode_dtype 'int8'"):
        decode_dtype("int8", cpu, 1, torch.float32)


def test_step_copy_is_cached_and_follows_weight_changes():
    model = speaking_model()
    half = step_model(model, torch.float16)
    assert next(half.parameters()).dtype == torch.float16 and step_model(model, torch.float16) is half
    assert step_model(model, torch.float32) is model
    with torch.no_grad():
        model.state_head.bias.add_(1.0)  # e.g. an optimizer step or a load
    fresh = step_model(model, torch.float16)
    assert fresh is not half and torch.allclose(fresh.state_head.bias.float(), model.state_head.bias, atol=1e-2)


def test_fp16_steps_continue_the_fp32_prefill():
    model = speaking_model()
    with torch.no_grad():  # a fresh velocity MLP is zero: give the flow head an output to compare
        for p in model.speech.flow.net.parameters():
            p.normal_(0, 0.05)
    gen = dict(max_steps=10, seed=0, flow_temperature=0.0)
    decs = {}
    for name in ("float32", "float16"):
        dec = Decoder(model, [Prompt(Task.T2S, text="Hi?")], GenerationConfig(decode_dtype=name, **gen))
        groups = []
        while not dec.done:
            groups += [o.group for o in dec.step() if o.group is not None]
        decs[name] = (dec, groups)
    (d32, g32), (d16, g16) = decs["float32"], decs["float16"]
    assert d16.cache.layers[0].keys.dtype == torch.float16 and d32.cache.layers[0].keys.dtype == torch.float32
    assert len(g16) == len(g32) > 0 and all(g.dtype == torch.float32 for g in g16)  # vocoders get fp32
    # same prefill, steps in half precision: the drawn mel stays close to the fp32 one
    err = (torch.stack(g16) - torch.stack(g32)).abs().mean() / torch.stack(g32).abs().mean()
    assert err < 0.05, err


def test_cast_cache_converts_every_layer():
    model = speaking_model()
    emb = torch.randn(1, 5, model.state_emb.embedding_dim)
    out = model.backbone(emb, torch.ones(1, 5, dtype=torch.long), use_cache=True)
    cache = cast_cache(out.past_key_values, torch.float16)
    assert all(layer.keys.dtype == layer.values.dtype == torch.float16 for layer in cache.layers)


def test_engine_answers_in_fp16_steps(spoken_items):
    engine = Engine(speaking_model(), "griffin-lim-4", gen=GenerationConfig(max_steps=8, seed=0))
    done = list(engine.respond(str(spoken_items[0].question_audio)))[-1]
    assert isinstance(done, Done) and done.audio_seconds > 0
