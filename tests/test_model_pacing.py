"""Aligned text pacing: each answer character placed `lead` steps before its sound, in order."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from flowomni.model import tokenizer as tk
from flowomni.model.layout import GEN, IGNORE, Task, layout
from flowomni.model.pacing import aligned_slots, char_times, token_times
from flowomni.model.tokenizer import CharTokenizer


def test_char_times_follow_the_words():
    times = char_times("Big red.", [[0.1, 0.3], [0.5, 0.9]], duration=1.0)
    assert len(times) == len("Big red.")
    assert times[:3] == pytest.approx([0.1, 0.1 + 0.2 / 3, 0.1 + 0.4 / 3])
    assert times[3] == 0.5  # the space goes with the next word
    assert times[4] == 0.5 and times[-1] == pytest.approx(0.5 + 0.4 * 3 / 4)
    # no timings, or timings that do not fit the words: evenly over the clip
    assert char_times("ab cd", None, 1.0) == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8])
    assert char_times("ab cd", [[0.0, 1.0]], 1.0) == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8])


def test_token_times_of_subword_tokens():
    chars = [0.0, 0.1, 0.2, 0.3, 0.4]
    decode = {1: "ab", 2: " ", 3: "cd"}
    assert token_times("ab cd", [1, 2, 3], lambda ids: decode[ids[0]], chars) == [0.0, 0.2, 0.3]


def test_slots_keep_their_lead_and_order():
    g = 0.05  # seconds per mel group
    times = [0.0, 0.3, 0.31, 0.32, 1.0]
    slots = aligned_slots(times, g, delay=2, lead=3)
    assert slots == sorted(set(slots)) and slots[0] >= 0
    for t, s in zip(times, slots):
        assert s <= max(2 + int(t / g) - 3, slots.index(s))  # lead kept unless the answer's start forbids it
    assert slots[-1] == 2 + 20 - 3  # an isolated token sits exactly `lead` before its group
    assert slots[1:4] == [2 + 6 - 3 - 2, 2 + 6 - 3 - 1, 2 + 6 - 3]  # crowded tokens move earlier


def test_aligned_layout_interleaves_text_with_pads():
    tok = CharTokenizer()
    ids = tok.encode("Hi.")
    lay = layout(Task.S2S, tok, answer_ids=ids, n_audio=3, n_groups=8, delay=2, text_slots=[0, 3, 5])
    p = lay.prefix_len
    tpad, eos = tok.token_id(tk.TEXT_PAD), tok.token_id(tk.EOS)
    answer = lay.text[p:]
    assert answer[:7] == [ids[0], tpad, tpad, ids[1], tpad, ids[2], eos]
    # targets: the text stream predicts every position up to <eos>, pads included
    targets = [t for t in lay.text_target[p - 1 : p + 6]]
    assert targets == [ids[0], tpad, tpad, ids[1], tpad, ids[2], eos]
    assert all(t == IGNORE for t in lay.text_target[p + 6 :])
    # the speech stream is exactly the free-pacing one
    free = layout(Task.S2S, tok, answer_ids=ids, n_audio=3, n_groups=8, delay=2)
    assert lay.kind[p:] == free.kind[p:] + [0] * (len(lay) - len(free))
    assert sum(k == GEN for k in lay.kind) == 8
    with pytest.raises(ValueError, match="increasing"):
        layout(Task.S2S, tok, answer_ids=ids, n_audio=3, n_groups=8, text_slots=[0, 2, 2])


def test_dataset_paces_spoken_replies_only(spoken_items):
    import numpy as np

    from flowomni.training.dataset import TaskDataset

    class Frames:
        def __init__(self, n: int) -> None:
            self.n = n

        def get(self, path):
            return np.zeros((self.n, 80), np.float32)

    item = SimpleNamespace(**vars(spoken_items[0]))
    item.meta = {"answer_words": [[0.05, 0.25], [0.3, 0.5], [0.55, 0.8], [0.85, 1.2]]}  # "Two plus three is five."
    item.answer_text = "Two plus three is five."
    item.meta["answer_words"].append([1.25, 1.6])
    tok = CharTokenizer()
    ds = TaskDataset(
        [item],
        ["s2s", "s2t"],
        tok,
        Frames(120),
        Frames(150),
        group=4,
        delay=2,
        stack=2,
        text_pacing="aligned",
        text_lead=3,
    )
    by_task = {ds.examples[i].task: ds[i]["layout"] for i in range(len(ds))}
    spoken, written = by_task[Task.S2S], by_task[Task.S2T]
    tpad = tok.token_id(tk.TEXT_PAD)
    chars = [t for t in spoken.text[spoken.prefix_len :] if t != tpad]
    assert tok.decode(chars) == item.answer_text
    assert tpad in spoken.text[spoken.prefix_len : spoken.prefix_len + 10]  # paced: pads between characters
    assert tpad not in written.text[written.prefix_len : written.prefix_len + len(item.answer_text)]  # dense
    assert ds.lengths == [len(by_task[ex.task]) for ex in ds.examples]
    # "five" (starting 1.25 s, group 27 at 86 Hz / 4) is written 3 steps before its group is drawn
    f_id = tok.encode("f")[0]
    five = spoken.prefix_len + [i for i, t in enumerate(spoken.text[spoken.prefix_len :]) if t == f_id][-1]
    assert five - spoken.prefix_len == 2 + int(1.25 / (4 / 86.13)) - 3
