"""Training examples of the paper's tasks, built from corpus items and cached features.

Each corpus item (question + answer, each as text and possibly audio) yields one example
per configured task it has the modalities for: ASR (question audio -> its text), TTS
(answer text -> answer text + speech), and the four dialogue tasks. Features come from
feature caches; items whose audio cannot be read are skipped and counted, never fatal.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np
import torch
from torch.utils.data import Dataset

from flowomni.config import Bounds
from flowomni.data.augment import AugmentConfig
from flowomni.model.encoder import n_adapter_frames
from flowomni.model.layout import Layout, Task, history_ids, layout
from flowomni.model.tokenizer import Tokenizer

log = logging.getLogger(__name__)


class FeatureSource(Protocol):
    def get(self, audio_path: Path) -> np.ndarray: ...  # [frames, n_mels] log-mel


@dataclass
class DataConfig:
    # allowed ranges, checked when read (flowomni.config.check_bounds)
    BOUNDS: ClassVar[Bounds] = {
        "max_question_seconds": (0.01, 3600),
        "max_answer_seconds": (0.01, 3600),
        "max_items": (0, None),
        "text_items": (0, None),
        "tts_items": (0, None),
        "stats_items": (0, None),
        "history_prob": (0, 1),
    }

    train_manifest: str = ""
    valid_manifest: str = ""
    # written questions (e.g. the corpus's train_text.jsonl) trained beside the spoken ones, with
    # their own tasks: many more phrasings than audio can cover, at a fraction of the cost
    text_manifest: str = ""
    text_tasks: list[str] = field(default_factory=lambda: ["t2t"])
    text_items: int = 0  # 0: all
    # skill -> how many more written items of it to read from past the first text_items (by the
    # manifest's "skill" field): extra practice for a skill that lags, without more of the rest
    text_more: dict[str, int] = field(default_factory=dict)
    # sentences in the answer voice (the corpus's train_tts.jsonl, "utterance" items) trained with
    # TTS only: the speech path practises far more sentences than the answers' few thousand
    tts_manifest: str = ""
    tts_items: int = 0  # 0: all
    cache_dir: str = ".cache/features"
    tasks: list[str] = field(default_factory=lambda: ["s2s", "s2t", "t2s", "t2t", "asr", "tts"])
    stage1_tasks: list[str] = field(default_factory=lambda: ["asr", "tts"])
    max_question_seconds: float = 15.0
    max_answer_seconds: float = 10.0
    max_items: int = 0  # 0: all
    # question-audio augmentation (with a frozen encoder: cached versions per clip, see encoder_cache.py)
    augment: AugmentConfig = field(default_factory=lambda: AugmentConfig(variants=1))
    stats_items: int = 256  # clips used to estimate normalisation stats
    history_prob: float = 0.2  # share of examples preceded by an unrelated earlier text turn


def written_items(items: list[Any], first: int, more: dict[str, int]) -> list[Any]:
    """The first `first` items (0: all), then up to more[skill] later items of each named skill."""
    chosen = items[:first] if first else list(items)
    wanted = dict(more)
    for it in items[len(chosen) :]:
        skill = it.meta.get("skill")
        if wanted.get(skill, 0) > 0:
            chosen.append(it)
            wanted[skill] -= 1
    return chosen


@dataclass
class Example:
    item: Any  # flowomni.data.manifest.Item
    task: Task


class TaskDataset(Dataset):
    def __init__(
        self,
        items: list[Any],
        tasks: list[str],
        tokenizer: Tokenizer,
        in_feats: FeatureSource,
        out_feats: FeatureSource,
        *,
        group: int,
        delay: int,
        stack: int,
        in_frame_rate: float = 100.0,
        out_frame_rate: float = 86.13,
        max_question_seconds: float = 15.0,
        max_answer_seconds: float = 10.0,
        history_prob: float = 0.0,
        extra_groups: int = 0,
        encoded: bool = False,
        text_pacing: str = "free",
        text_lead: int = 3,
        more: list[tuple[list[Any], list[str]]] | None = None,
    ) -> None:
        """`extra_groups`: GEN positions a spoken answer has beyond its mel groups (the
        discrete speech head's codebook delay: model.cfg.extra_groups). `encoded`: `in_feats`
        gives a frozen encoder's outputs (50 Hz frames, batch key "in_enc"), not log-mel; if it
        has several `variants` per clip (augmentation), each epoch reads another one. `more`:
        (items, tasks) pairs of more items with tasks of their own (written questions: t2t, t2s,
        tts; answer-voice sentences: tts)."""
        self.tokenizer, self.in_feats, self.out_feats = tokenizer, in_feats, out_feats
        sources = [(items, tasks), *(more or [])]
        self.items, self.history_prob = [it for its, _ in sources for it in its], history_prob
        self.group, self.delay, self.stack = group, delay, stack
        self.extra_groups, self.encoded, self.epoch = extra_groups, encoded, 0
        self.text_pacing, self.text_lead, self.out_frame_rate = text_pacing, text_lead, out_frame_rate
        self.skipped: Counter[str] = Counter()
        max_in = int(max_question_seconds * in_frame_rate)
        max_out = int(max_answer_seconds * out_frame_rate)
        self.examples: list[Example] = []
        self.lengths: list[int] = []
        for item, task_list in ((it, [Task(t) for t in ts]) for its, ts in sources for it in its):
            n_in = self._frames(in_feats, item.question_audio, max_in, "question")
            n_out = self._frames(out_feats, item.answer_audio, max_out, "answer")
            for task in task_list:
                if item.kind == "utterance" and task not in (Task.ASR, Task.TTS):
                    continue  # audio + its own transcript: only recognition and synthesis
                if (task.speech_in and not n_in) or (task.speech_out and not n_out):
                    continue
                self.examples.append(Example(item, task))
                self.lengths.append(self._length(item, task, n_in, n_out, len(self.examples) - 1))
        if self.skipped:
            log.warning("skipped %d clip(s): %s", sum(self.skipped.values()), dict(self.skipped))

    def _frames(self, feats: FeatureSource, path: Path | None, max_frames: int, what: str) -> int:
        """Frame count of a clip, or 0 if it is absent, unreadable or too long (counted)."""
        if path is None:
            return 0
        try:
            n = int(feats.get(Path(path)).shape[0])
        except Exception as e:  # noqa: BLE001 - whatever is wrong with one clip, training goes on without it
            self.skipped[f"bad {what} audio"] += 1
            log.warning("skipping %s: %s", path, e)
            return 0
        if n > max_frames:
            self.skipped[f"{what} too long"] += 1
            return 0
        return n

    def _length(self, item: Any, task: Task, n_in: int, n_out: int, index: int) -> int:
        """Exact sequence length of the example's layout (for length bucketing)."""
        question = item.answer_text if task is Task.TTS else item.question_text
        q = self.positions(n_in) if task.speech_in else len(self.tokenizer.encode(question))
        slots = self.text_slots(item, task, n_out)
        if slots is not None:
            a = slots[-1] + 2 if slots else 1
        else:
            a = len(self.tokenizer.encode(self._answer_text(item, task))) + 1
        s = self.delay + 2 + self.n_groups(n_out) if task.speech_out else 0
        return 3 + q + max(a, s) - 1 + len(history_ids(self.tokenizer, self.history_of(index)))

    def text_slots(self, item: Any, task: Task, n_out_frames: int) -> list[int] | None:
        """Aligned pacing of a spoken reply: each answer token's position (None: free pacing)."""
        if self.text_pacing != "aligned" or not task.speech_out:
            return None
        from flowomni.model.pacing import aligned_slots, char_times, token_times

        text = self._answer_text(item, task)
        ids = self.tokenizer.encode(text)
        chars = char_times(
            text,
            (item.meta or {}).get("answer_words") if hasattr(item, "meta") else None,
            n_out_frames / self.out_frame_rate,
        )
        times = token_times(text, ids, self.tokenizer.decode, chars)
        return aligned_slots(times, self.group / self.out_frame_rate, self.delay, self.text_lead)

    def positions(self, n_in: int) -> int:
        """LLM positions of a question of `n_in` input frames (log-mel, or encoder frames)."""
        return math.ceil(n_in / self.stack) if self.encoded else n_adapter_frames(n_in, self.stack)

    def set_epoch(self, epoch: int) -> None:
        """Which augmented version of each question this epoch reads (see `question`)."""
        self.epoch = epoch

    def question(self, path: Path, i: int) -> np.ndarray:
        """The question features of example `i`: one of the source's versions, a fixed function
        of (i, epoch), so a resumed run reads what the uninterrupted one would."""
        n = getattr(self.in_feats, "variants", 1)
        if n <= 1:
            return self.in_feats.get(path)
        return self.in_feats.get(path, ((i * 2654435761 + self.epoch * 40503) >> 7) % n)  # type: ignore[call-arg]

    def n_groups(self, n_frames: int) -> int:
        """GEN positions of an answer of `n_frames` mel frames."""
        return math.ceil(n_frames / self.group) + self.extra_groups

    def history_of(self, i: int) -> list[tuple[list[int], list[int]]]:
        """The earlier turn example `i` is preceded by (often none). The choice is a fixed
        function of `i`, so epochs and resumed runs see the same sequences; the earlier turn
        is another item's written Q/A (never one asking the example's own question), which
        teaches the model to keep context without letting it change the answer."""
        h = (i * 2654435761) % 2**32
        if not self.items or h / 2**32 >= self.history_prob:
            return []
        own = self.examples[i].item.question_text
        n = len(self.items)
        others = (self.items[(h + k) % n] for k in range(n))  # the first one after the pick that asks another question
        other = next((it for it in others if it.question_text != own), None)
        if other is None:
            return []
        return [(self.tokenizer.encode(other.question_text), self.tokenizer.encode(other.answer_text))]

    @staticmethod
    def _answer_text(item: Any, task: Task) -> str:
        if task is Task.ASR:
            return item.question_text
        return item.answer_text

    def __len__(self) -> int:
        return len(self.examples)

    def build_layout(self, ex: Example, n_in: int, n_groups: int, index: int = -1, n_out: int = 0) -> Layout:
        tok = self.tokenizer
        task, item = ex.task, ex.item
        question = item.answer_text if task is Task.TTS else item.question_text
        return layout(
            task,
            tok,
            answer_ids=tok.encode(self._answer_text(item, task)),
            question_ids=tok.encode(question),
            n_audio=self.positions(n_in) if task.speech_in else 0,
            n_groups=n_groups,
            delay=self.delay,
            history=self.history_of(index) if index >= 0 else None,
            text_slots=self.text_slots(item, task, n_out),
        )

    def __getitem__(self, i: int) -> dict[str, Any]:
        ex = self.examples[i]
        in_mel = out_mel = None
        if ex.task.speech_in:
            in_mel = np.asarray(self.question(Path(ex.item.question_audio), i), dtype=np.float32)
        if ex.task.speech_out:
            out_mel = np.asarray(self.out_feats.get(Path(ex.item.answer_audio)), dtype=np.float32)
        n_in = 0 if in_mel is None else in_mel.shape[0]
        n_groups = 0 if out_mel is None else self.n_groups(out_mel.shape[0])
        lay = self.build_layout(ex, n_in, n_groups, i, 0 if out_mel is None else out_mel.shape[0])
        return {
            "layout": lay,
            "in_mel": in_mel,
            "out_mel": out_mel,
            "task": ex.task.value,
            "id": ex.item.id,
            "in_key": "in_enc" if self.encoded else "in_mel",
        }


def collate(examples: list[dict[str, Any]], *, group: int, pad_id: int, silence: float) -> dict[str, Any]:
    """Right-pad a list of examples into batch tensors (see FlowOmni.forward for the keys).

    Answer mel is cut into groups of `group` frames, the last one padded with `silence`
    (the log-mel floor), so a group never mixes speech with garbage.
    """
    b = len(examples)
    L = max(len(e["layout"]) for e in examples)

    def stack_field(name: str, fill: int) -> torch.Tensor:
        out = torch.full((b, L), fill, dtype=torch.long)
        for i, e in enumerate(examples):
            v = getattr(e["layout"], name)
            out[i, : len(v)] = torch.tensor(v, dtype=torch.long)
        return out

    from flowomni.model.layout import IGNORE, PAD

    batch: dict[str, Any] = {
        "text": stack_field("text", pad_id),
        "kind": stack_field("kind", PAD),
        "audio_index": stack_field("audio_index", -1),
        "group_index": stack_field("group_index", -1),
        "text_target": stack_field("text_target", IGNORE),
        "state_target": stack_field("state_target", IGNORE),
        "flow_target": stack_field("flow_target", -1),
        "attention_mask": torch.zeros(b, L, dtype=torch.long),
        "tasks": [e["task"] for e in examples],
        "ids": [e["id"] for e in examples],
    }
    for i, e in enumerate(examples):
        batch["attention_mask"][i, : len(e["layout"])] = 1

    ins = [e["in_mel"] for e in examples]
    in_key = examples[0].get("in_key", "in_mel")  # "in_enc": a frozen encoder's cached outputs
    n_mels_in = next((m.shape[1] for m in ins if m is not None), 1)
    t_in = max((m.shape[0] for m in ins if m is not None), default=0)
    batch[in_key] = torch.zeros(b, t_in, n_mels_in)
    batch["in_len"] = torch.zeros(b, dtype=torch.long)
    for i, m in enumerate(ins):
        if m is not None:
            batch[in_key][i, : m.shape[0]] = torch.from_numpy(m)
            batch["in_len"][i] = m.shape[0]

    outs = [e["out_mel"] for e in examples]
    n_mels_out = next((m.shape[1] for m in outs if m is not None), 1)
    k_max = max((math.ceil(m.shape[0] / group) for m in outs if m is not None), default=0)
    groups = torch.full((b, k_max * group, n_mels_out), silence)
    for i, m in enumerate(outs):
        if m is not None:
            groups[i, : m.shape[0]] = torch.from_numpy(m)
    batch["out_groups"] = groups.view(b, k_max, group, n_mels_out)
    batch["num_frames"] = torch.tensor(int(batch["in_len"].sum()) + sum(m.shape[0] for m in outs if m is not None))
    batch.update(position_rows(batch))
    return batch


def position_rows(batch: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Flat indices (b * L + t) of the positions each part of the model reads or predicts,
    found here, in the data pipeline, so the training step on a GPU never waits to learn how
    many there are (a boolean-mask index does: it syncs with the host)."""
    from flowomni.model.layout import AUDIO, GEN, IGNORE

    def rows(mask: torch.Tensor) -> torch.Tensor:
        return mask.flatten().nonzero().squeeze(1)

    return {
        "text_rows": rows(batch["text_target"] != IGNORE),
        "state_rows": rows(batch["state_target"] != IGNORE),
        "flow_rows": rows(batch["flow_target"] >= 0),
        "gen_rows": rows(batch["kind"] == GEN),
        "audio_rows": rows(batch["kind"] == AUDIO),
    }


def teacher_forced_examples(
    model: Any, items: list[Any], task: str, cache_dir: str = ".cache/features"
) -> tuple[TaskDataset, Callable[[list[dict[str, Any]]], dict[str, Any]]]:
    """`items` as training examples of one task for `model` (features from the cache), and the
    collate function that batches them as training does: for teacher-forced passes outside
    training (benchmarks, `flowomni vocoder-mels`)."""
    from flowomni.data.features import FeatureCache

    cfg = model.cfg
    ds = TaskDataset(
        items,
        [task],
        model.tokenizer,
        FeatureCache(cache_dir, cfg.input_mel),
        FeatureCache(cache_dir, cfg.output_mel),
        group=cfg.group,
        delay=cfg.delay,
        stack=cfg.encoder.stack,
        extra_groups=cfg.extra_groups,
        in_frame_rate=cfg.input_mel.frame_rate,
        out_frame_rate=cfg.output_mel.frame_rate,
        text_pacing=cfg.text_pacing,
        text_lead=cfg.text_lead,
    )
    return ds, partial(
        collate, group=cfg.group, pad_id=model.tokenizer.pad_id, silence=math.log(cfg.output_mel.log_floor)
    )
