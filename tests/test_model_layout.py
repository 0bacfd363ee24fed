"""The exact two-stream layouts of every task, printed and checked."""

import pytest

from flowomni.model.layout import GEN, IGNORE, PAD, START, STOP, Task, layout
from flowomni.model.tokenizer import CharTokenizer

tok = CharTokenizer()


def lay(task: Task, **kw):
    kw.setdefault("answer_ids", tok.encode("hi"))
    kw.setdefault("question_ids", tok.encode("q?"))
    return layout(task, tok, **kw)


def test_speech_to_speech_layout_exact():
    lo = lay(Task.S2S, n_audio=3, n_groups=3, delay=2)
    print(lo.render(tok))
    assert lo.render(tok) == (
        "text:   <bos> <answer> <tpad> <tpad> <tpad> <reply_speech> h i <eos> <tpad> <tpad> <tpad>\n"
        "speech: PAD PAD A0 A1 A2 PAD PAD PAD START G0 G1 G2"
    )
    h, i, eos = tok.encode("hi") + [tok.token_id("<eos>")]
    # position t predicts position t+1; text stops after <eos>, speech after STOP
    assert lo.text_target == [IGNORE] * 5 + [h, i, eos] + [IGNORE] * 4
    assert lo.state_target == [IGNORE] * 5 + [PAD, PAD, START, GEN, GEN, GEN, STOP]
    assert lo.flow_target == [-1] * 8 + [0, 1, 2, -1]
    assert lo.prefix_len == 6


def test_text_to_text_layout_exact():
    lo = lay(Task.T2T)
    print(lo.render(tok))
    assert lo.render(tok) == "text:   <bos> <answer> q ? <reply_text> h i\nspeech: PAD PAD PAD PAD PAD PAD PAD"
    assert lo.state_target == [IGNORE] * 4 + [PAD, PAD, PAD]  # state head learns to stay silent
    assert all(f == -1 for f in lo.flow_target)


def test_asr_and_tts_use_their_instructions():
    asr = lay(Task.ASR, n_audio=2)
    tts = lay(Task.TTS, n_groups=2, delay=1)
    print(asr.render(tok), tts.render(tok), sep="\n")
    assert asr.render(tok).startswith("text:   <bos> <transcribe> <tpad> <tpad> <reply_text> h i")
    assert tts.render(tok) == (
        "text:   <bos> <repeat> q ? <reply_speech> h i <eos> <tpad>\nspeech: PAD PAD PAD PAD PAD PAD START G0 G1"
    )
    assert tts.kind[tts.prefix_len :] == [PAD, START, GEN, GEN]
    assert tts.state_target[tts.prefix_len - 1 :] == [PAD, START, GEN, GEN, STOP]


@pytest.mark.parametrize("delay", [0, 1, 4])
def test_text_leads_speech_by_delay(delay):
    lo = lay(Task.T2S, n_groups=2, delay=delay)
    start = lo.kind.index(START)
    assert start - lo.prefix_len == delay
    assert lo.text[lo.prefix_len] == tok.encode("h")[0]


def test_long_text_outlasts_speech():
    lo = lay(Task.T2S, answer_ids=tok.encode("a long answer"), n_groups=1, delay=0)
    eos = tok.token_id("<eos>")
    assert eos in lo.text_target and STOP in lo.state_target
    assert lo.state_target.index(STOP) < lo.text_target.index(eos)


def test_missing_modalities_raise_clear_errors():
    with pytest.raises(ValueError, match="needs question audio"):
        lay(Task.S2T, n_audio=0)
    with pytest.raises(ValueError, match="needs answer audio"):
        lay(Task.T2S, n_groups=0)
    with pytest.raises(ValueError, match="needs question text"):
        layout(Task.T2T, tok, answer_ids=[5], question_ids=[])


def test_earlier_turns_are_text_context_without_targets():
    lo = lay(Task.S2T, n_audio=2, history=[(tok.encode("a?"), tok.encode("b"))])
    print(lo.render(tok))
    assert lo.render(tok) == (
        "text:   <bos> <answer> a ? <reply_text> b <eos> <bos> <answer> <tpad> <tpad> <reply_text> h i\n"
        "speech: PAD PAD PAD PAD PAD PAD PAD PAD PAD A0 A1 PAD PAD PAD"
    )
    first_target = next(t for t, v in enumerate(lo.text_target) if v != IGNORE)
    assert first_target == lo.prefix_len - 1 == 11
