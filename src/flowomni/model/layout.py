"""The two-stream sequence layout of Flow-Omni, for all four tasks (plus ASR and TTS).

Every position carries a text token and a speech input; their embeddings are summed.

    prefix  : <bos> <instruction> [question] <reply_text|reply_speech>
    answer  : text stream   y1 y2 ... yn <eos> <tpad> ...
              speech stream PAD*delay START G1 G2 ... GK STOP PAD ...

A spoken question occupies `A` positions whose speech input is the adapter's output
(kind AUDIO) and whose text token is <tpad>; a written question occupies one position per
token with speech kind PAD. In the answer, text leads speech by `delay` positions; G_j
carries mel group j as input. Position t predicts position t+1: its text token, its speech
kind, and, where that kind is GEN, the mel group (flow-matching target). Targets after <eos>
(text) and after STOP (speech) are masked: inference forces them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from flowomni.model import tokenizer as tk

IGNORE = -100

# speech kinds
PAD, START, GEN, STOP, AUDIO = 0, 1, 2, 3, 4
KIND_NAMES = ["PAD", "START", "GEN", "STOP", "AUDIO"]
NUM_STATES = 4  # states the state head predicts (AUDIO is input-only)


class Task(str, Enum):  # noqa: UP042 - StrEnum would change str(Task.S2S), which messages print
    ASR = "asr"  # question speech -> its transcript
    TTS = "tts"  # answer text -> the same text, spoken
    S2S = "s2s"  # spoken question -> text + spoken answer
    S2T = "s2t"  # spoken question -> text answer
    T2S = "t2s"  # written question -> text + spoken answer
    T2T = "t2t"  # written question -> text answer

    @property
    def speech_in(self) -> bool:
        return self in (Task.ASR, Task.S2S, Task.S2T)

    @property
    def speech_out(self) -> bool:
        return self in (Task.TTS, Task.S2S, Task.T2S)

    @property
    def instruction(self) -> str:
        return {Task.ASR: tk.TRANSCRIBE, Task.TTS: tk.REPEAT}.get(self, tk.ANSWER)


@dataclass
class Layout:
    """One example laid out; all lists have the sequence length."""

    text: list[int]  # text token id per position
    kind: list[int]  # speech kind per position
    audio_index: list[int]  # for AUDIO positions: index of the adapter frame, else -1
    group_index: list[int]  # for GEN positions: index of the mel group fed in, else -1
    text_target: list[int]  # next text token, or IGNORE
    state_target: list[int]  # next speech kind, or IGNORE
    flow_target: list[int]  # index of the mel group to predict at this position, else -1
    prefix_len: int

    def __len__(self) -> int:
        return len(self.text)

    def render(self, tok: tk.Tokenizer) -> str:
        """A readable two-row picture of the layout (for tests and debugging)."""

        def tname(i: int) -> str:
            s = tok.decode([i])
            if s:
                return s
            for sp in tk.SPECIALS:
                if tok.token_id(sp) == i:
                    return sp
            return f"#{i}"

        def sname(t: int) -> str:
            k = KIND_NAMES[self.kind[t]]
            if self.kind[t] == GEN:
                return f"G{self.group_index[t]}"
            if self.kind[t] == AUDIO:
                return f"A{self.audio_index[t]}"
            return k

        cols = [(tname(self.text[t]), sname(t)) for t in range(len(self))]
        return "text:   " + " ".join(c[0] for c in cols) + "\nspeech: " + " ".join(c[1] for c in cols)


Turn = tuple[list[int], list[int]]  # an earlier (question ids, answer ids) of the conversation


def history_ids(tok: tk.Tokenizer, history: list[Turn] | None) -> list[int]:
    """Earlier turns as text, each laid out like a text->text example:
    <bos> <answer> question <reply_text> answer <eos>."""
    out: list[int] = []
    for q, a in history or []:
        out += [
            tok.token_id(tk.BOS),
            tok.token_id(tk.ANSWER),
            *q,
            tok.token_id(tk.REPLY_TEXT),
            *a,
            tok.token_id(tk.EOS),
        ]
    return out


def prefix(
    task: Task, tok: tk.Tokenizer, question_ids: list[int] | None, n_audio: int, history: list[Turn] | None = None
) -> Layout:
    """The question part: everything the model reads before it answers (after any earlier
    turns of the conversation, which are context only: no targets)."""
    tpad = tok.token_id(tk.TEXT_PAD)
    text = [*history_ids(tok, history), tok.token_id(tk.BOS), tok.token_id(task.instruction)]
    kind = [PAD] * len(text)
    audio = [-1] * len(text)
    if task.speech_in:
        if n_audio <= 0:
            raise ValueError(f"task {task.value} needs question audio")
        text += [tpad] * n_audio
        kind += [AUDIO] * n_audio
        audio += list(range(n_audio))
    else:
        if not question_ids:
            raise ValueError(f"task {task.value} needs question text")
        text += list(question_ids)
        kind += [PAD] * len(question_ids)
        audio += [-1] * len(question_ids)
    text.append(tok.token_id(tk.REPLY_SPEECH if task.speech_out else tk.REPLY_TEXT))
    kind.append(PAD)
    audio.append(-1)
    n = len(text)
    return Layout(text, kind, audio, [-1] * n, [IGNORE] * n, [IGNORE] * n, [-1] * n, prefix_len=n)


def layout(
    task: Task,
    tok: tk.Tokenizer,
    *,
    answer_ids: list[int],
    question_ids: list[int] | None = None,
    n_audio: int = 0,
    n_groups: int = 0,
    delay: int = 2,
    history: list[Turn] | None = None,
    text_slots: list[int] | None = None,
) -> Layout:
    """Full training layout of one example (prefix + answer, with targets). `text_slots`: the
    answer position of each answer token in a spoken reply (aligned pacing, see pacing.py);
    None writes the tokens in the first positions (free pacing)."""
    if task.speech_out and n_groups <= 0:
        raise ValueError(f"task {task.value} needs answer audio (n_groups > 0)")
    lay = prefix(task, tok, question_ids, n_audio, history)
    eos, tpad = tok.token_id(tk.EOS), tok.token_id(tk.TEXT_PAD)
    if text_slots is not None and task.speech_out:
        if len(text_slots) != len(answer_ids) or any(b <= a for a, b in zip(text_slots, text_slots[1:])):
            raise ValueError("text_slots must give each answer token its own, increasing position")
        end = text_slots[-1] + 1 if text_slots else 0
        ans_text = [tpad] * end + [eos]
        for slot, token in zip(text_slots, answer_ids):
            ans_text[slot] = token
    else:
        ans_text = list(answer_ids) + [eos]
    if task.speech_out:
        ans_kind = [PAD] * delay + [START] + [GEN] * n_groups + [STOP]
        ans_group = [-1] * (delay + 1) + list(range(n_groups)) + [-1]
    else:
        ans_kind, ans_group = [PAD], [-1]
    length = max(len(ans_text), len(ans_kind))
    # Masks: text targets stop after <eos>; speech targets stop after STOP (or, for a text
    # reply, after the text ends: the state head learns to stay PAD).
    text_valid = len(ans_text)
    kind_valid = len(ans_kind) if task.speech_out else len(ans_text)
    ans_text += [tpad] * (length - len(ans_text))
    ans_kind += [PAD] * (length - len(ans_kind))
    ans_group += [-1] * (length - len(ans_group))

    p = lay.prefix_len
    lay.text += ans_text
    lay.kind += ans_kind
    lay.audio_index += [-1] * length
    lay.group_index += ans_group
    n = p + length
    lay.text_target = [IGNORE] * n
    lay.state_target = [IGNORE] * n
    lay.flow_target = [-1] * n
    for j in range(length):  # position p-1+j predicts answer position j
        src = p - 1 + j
        if j < text_valid:
            lay.text_target[src] = ans_text[j]
        if j < kind_valid:
            lay.state_target[src] = ans_kind[j]
        if ans_kind[j] == GEN:
            lay.flow_target[src] = ans_group[j]
    # The final position would predict past the end of the answer: causality makes its
    # input irrelevant to every loss, so it is dropped.
    for lst in (
        lay.text,
        lay.kind,
        lay.audio_index,
        lay.group_index,
        lay.text_target,
        lay.state_target,
        lay.flow_target,
    ):
        lst.pop()
    return lay
