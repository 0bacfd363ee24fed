"""Guided text (guide.py): a spoken answer writes what a text reply to the same question
writes, at times it picks itself; the same in decoder.Decoder and in static slots."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from test_inference_slots import assert_same, legacy, static, varied_model
from test_model_flowomni import tiny_config

from flowomni.inference.decoder import Decoder, GenerationConfig, Prompt
from flowomni.inference.guide import TextGuide
from flowomni.inference.slots import SlotDecoder
from flowomni.model import tokenizer as tk
from flowomni.model.flowomni import FlowOmni
from flowomni.model.layout import Task
from flowomni.model.tokenizer import CharTokenizer

TPAD, EOS = 7, 9
GUIDED = GenerationConfig(max_steps=30, seed=0, guided_text=True)


def test_guided_row_waits_copies_and_flushes() -> None:
    """Row 0 copies row 1; row 2 is on its own. Row 0 writes when it would write anything
    (the token it drew is replaced), waits on <tpad>, and copies this very step's token of
    its companion when it has caught up; once its speech ends it writes every step."""
    g = TextGuide(3, 16, TPAD)
    g.reset(0, partner=1)
    g.reset(1)
    g.reset(2)
    no = torch.zeros(3, dtype=torch.bool)
    steps = [  # (tokens drawn by rows 0, 1, 2; row 0's speech done) -> row 0 writes
        ((5, 11, 4), False, 11),  # caught up: this step's token of row 1
        ((TPAD, 12, 4), False, TPAD),  # waits
        ((TPAD, 13, 4), False, TPAD),
        ((3, EOS, 4), False, 12),  # the next one it has not written, whatever it drew
        ((TPAD, TPAD, 4), True, 13),  # speech done: writes though it drew <tpad>
        ((TPAD, TPAD, 4), True, EOS),
    ]
    for drawn, speech_done, want in steps:
        out = g(torch.tensor(drawn), no, torch.tensor([speech_done, True, False]))
        assert out.tolist() == [want, drawn[1], drawn[2]]
    done = torch.tensor([True, False, False])  # a row whose text has ended is left alone
    assert g(torch.tensor([TPAD, 1, 2]), done, no).tolist() == [TPAD, 1, 2]


def text_of(model: FlowOmni, prompt: Prompt, gen: GenerationConfig) -> list[int]:
    toks, _ = legacy(model, prompt, gen)
    return [t for t in toks if t != model.tokenizer.token_id(tk.EOS)]


@pytest.mark.parametrize("seed", [5, 0, 6, 4])
def test_spoken_answer_writes_the_text_reply(seed: int) -> None:
    """Whatever the speech does (the seeds take every state path: never speaks, stops at
    once, speaks on), the guided spoken answer's text is the text reply's, or its beginning
    when the step budget ends first; unguided it is not (a random model: its own text)."""
    m = varied_model(seed)
    gen = dataclasses.replace(GUIDED, max_steps=40)
    spoken, reply = Prompt(Task.T2S, text="Hi there?"), Prompt(Task.T2T, text="Hi there?")
    said, written = text_of(m, spoken, gen), text_of(m, reply, gen)
    assert said and written[: len(said)] == said
    assert text_of(m, spoken, dataclasses.replace(gen, guided_text=False)) != said


def test_slots_decode_guided_answers_as_the_decoder() -> None:
    """In static slots a guided answer takes two rows; answers joining and leaving, guided or
    text-only, each equal the eager decoder's; `free` counts answers, not rows."""
    m = varied_model(4)
    prompts = [
        Prompt(Task.T2S, text="Hi there?"),
        Prompt(Task.T2T, text="What?"),
        Prompt(Task.S2S, audio_mel=torch.randn(120, 80, generator=torch.Generator().manual_seed(0))),
    ]
    # text drawn greedily: Decoder draws one batch's text noise for an answer and its companion
    # from one generator, slots draw each from its own (both a function of the seed alone)
    for gen in (GUIDED, GenerationConfig(max_steps=30, seed=1, flow_temperature=0.7, guided_text=True)):
        gen = dataclasses.replace(gen, decode_dtype="float32")  # 6 rows here, 2 in the eager decoder: one dtype
        dec = SlotDecoder(m, gen, 3)
        assert dec.free == 3
        got = static(dec, prompts, join_at=[0, 0, 4])
        assert dec.free == 3 and not dec.companions
        a, b = dec.join(prompts[:2])  # 3 of 6 rows: one more guided answer fits, not two
        assert dec.free == 1 and len(dec.companions) == 1
        dec.leave(a)
        dec.leave(b)
        assert dec.free == 3 and not dec.companions
        for g, p in zip(got, prompts):
            assert_same(g, legacy(m, p, gen))


def test_only_voice_rows_run_the_flow_head() -> None:
    """Guided slots: spoken answers in the voice rows, companions and text replies in the text
    rows (voice rows once those are full); the step draws mel for the voice rows only."""
    m = varied_model(4)
    dec = SlotDecoder(m, GUIDED, 2)
    assert dec.voice_rows == 2 and len(dec.answers) == 4
    t2s, t2t = Prompt(Task.T2S, text="Hi there?"), Prompt(Task.T2T, text="What?")
    reply, spoken = dec.join([t2t, t2s])
    assert spoken.slot < 2 and dec.companions[spoken.id].slot >= 2 and reply.slot >= 2
    assert dec.free == 0  # one voice row left, no text row
    (late,) = dec.join([t2t])  # a text reply still fits, in the voice row
    assert late.slot < 2 and dec.free == 0
    with pytest.raises(RuntimeError, match="free slots"):
        dec.join([t2s])
    outs = [dec._launch(dec.active) for _ in range(3)]
    assert all(o.raw.shape[0] == 2 for o in outs)  # [voice rows, k, n_mels]
    assert SlotDecoder(m, dataclasses.replace(GUIDED, guided_text=False), 2).voice_rows == 2


def test_discrete_head_decodes_guided_too() -> None:
    """Models without static steps decode with Decoder, which guides the same way."""
    cfg = tiny_config()
    cfg.speech_head = "discrete"
    cfg.codec.n_q, cfg.codec.codebook_size = 2, 16
    torch.manual_seed(0)
    m = FlowOmni(cfg, CharTokenizer()).eval()
    dec = Decoder(m, [Prompt(Task.T2S, text="Hi?"), Prompt(Task.T2T, text="Yo?")], GUIDED)
    while not dec.done:
        assert len(dec.step()) == 2  # the companion's row is never returned
    said = text_of(m, Prompt(Task.T2S, text="Hi?"), GUIDED)
    assert said == text_of(m, Prompt(Task.T2T, text="Hi?"), GUIDED)[: len(said)]


@pytest.mark.slow
def test_shipped_model_speaks_its_text_reply() -> None:
    """The trained model, greedy: the guided spoken answer's text is exactly its text reply,
    and it still speaks and stops by itself."""
    m = FlowOmni.load()
    gen = dataclasses.replace(GUIDED, max_steps=200)
    for q in ("What is two plus three?", "Count from four to eight."):
        toks, mel = legacy(m, Prompt(Task.T2S, text=q), gen)
        assert mel is not None and len(mel) < 4 * 200
        assert text_of(m, Prompt(Task.T2S, text=q), gen) == text_of(m, Prompt(Task.T2T, text=q), gen)
        (got,) = static(SlotDecoder(m, gen, 1), [Prompt(Task.T2S, text=q)])
        assert_same(got, (toks, mel), fp16=True)
