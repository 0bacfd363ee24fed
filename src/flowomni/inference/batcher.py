"""One decode loop for every answer in flight, and batch decoding for evaluation.

The server used to run each answer's `Engine.respond` in its own thread, so N answers cost N
batch-1 decode steps per step time, and beyond `max_concurrent` they queued (4 clients: p50
first packet 5.2 s against 0.26 s for one, issue 21). `DecodeLoop` is one thread that owns a
`SlotDecoder` (slots.py): answers join it between steps (one prefill for all that arrived
together), every step advances all of them at once, each answer's events go to its own sink,
and an answer leaves as soon as it is done or its `should_stop` turns true (barge-in frees its
slot before the next step).

`decode_all` is the same loop without threads, for `Engine.answer_batch`: questions join as
slots free up, so a long answer does not hold a batch of short ones.
"""

from __future__ import annotations

import atexit
import dataclasses
import logging
import queue
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from flowomni.inference.decoder import Prompt
from flowomni.inference.slots import SlotAnswer, SlotDecoder

log = logging.getLogger(__name__)

_LOOPS: weakref.WeakSet[DecodeLoop] = weakref.WeakSet()


@atexit.register
def _stop_loops() -> None:
    """End the loops' threads before the interpreter tears torch down under them (a daemon
    thread still inside torch at exit aborts the process)."""
    for loop in list(_LOOPS):
        loop.stop(wait=True)


MAX_JOIN_DELAY_S = 0.25  # longest a question waits for playing answers to get ahead (see DecodeLoop._admit)
Sink = Callable[[Any], None]  # gets events, then an exception if the answer failed, then None (slot freed)


class AnswerJob:
    """One answer for a `DecodeLoop`: `Engine.respond`'s arguments, `should_stop` (polled before
    every step), and, once `start(sink)` hands it over, where its events go. The sink is called
    from the loop's thread with each event, then an exception if the answer failed, and last with
    None once the answer holds no slot any more."""

    def __init__(
        self, loop: DecodeLoop, audio: Any = None, *, should_stop: Callable[[], bool] | None = None, **kw: Any
    ) -> None:
        self.loop, self.audio, self.kw = loop, audio, kw
        self.should_stop = should_stop or (lambda: False)
        self.t0 = time.perf_counter()  # the question is complete when the job is made
        self.sink: Sink | None = None

    def start(self, sink: Sink) -> None:
        self.sink = sink
        self.loop.submit(self)

    def end(self, error: BaseException | None = None) -> None:
        assert self.sink is not None
        if error is not None:
            self.sink(error)
        self.sink(None)


@dataclass
class _Running:
    job: AnswerJob
    answer: SlotAnswer
    decoder: SlotDecoder
    stream: Any  # AnswerStream
    timings: dict[str, float] = field(default_factory=dict)


class DecodeLoop:
    """A thread that decodes every submitted job with `slots` answers at once (more wait).

    `max_join`: answers prefilled between two steps (None: 1 on a CPU, all on a GPU). A CPU
    prefill costs about its length in compute whether questions come together or not, and the
    answers already running wait for it; joining one per step lets the first question start at
    once and keeps the others' audio flowing (4 questions at once, shipped model, 1 thread:
    first packets 156-160 ms all joined together). On a GPU one batched prefill costs about
    what one does."""

    def __init__(self, engine: Any, slots: int, max_join: int | None = None) -> None:
        if slots < 1:
            raise ValueError(f"the decode loop needs at least one slot, got {slots}")
        self.engine, self.capacity = engine, slots
        self.max_join = max_join or (slots if engine.device.type == "cuda" else 1)
        self.join_s = 0.0  # recent cost of a join (features, encoder, prefill), a moving average
        self._inbox: queue.SimpleQueue[AnswerJob | None] = queue.SimpleQueue()
        self._waiting: deque[AnswerJob] = deque()
        self._running: dict[int, _Running] = {}
        self._decoders: dict[Any, SlotDecoder] = {}  # its own: a decoder serves one thread
        self._stopping = False
        self.steps = 0  # decode steps run (all answers in one step count once)
        self._thread = threading.Thread(target=self._run, name="flowomni-decode", daemon=True)
        self._thread.start()
        _LOOPS.add(self)

    def submit(self, job: AnswerJob) -> None:
        if self._stopping:
            raise RuntimeError("this decode loop was stopped")
        self._inbox.put(job)

    def stop(self, wait: bool = True) -> None:
        """Let the answers in flight finish, then end the thread."""
        self._stopping = True
        self._inbox.put(None)
        if wait:
            self._thread.join(timeout=30)

    def stats(self) -> dict[str, int]:
        """Slots, answers decoding and waiting for a slot, steps run (one per batch step)."""
        return {
            "slots": self.capacity,
            "running": len(self._running),
            "waiting": len(self._waiting),
            "steps": self.steps,
        }

    # ---- the thread ----
    def _run(self) -> None:
        while True:
            self._collect(block=not self._running)
            if self._stopping and not self._running and not self._waiting:
                return
            try:
                self._admit()
                self._step()
            except Exception as e:  # noqa: BLE001 - one bad step fails its answers, not the server
                log.exception("decode step failed")
                for run in list(self._running.values()):
                    self._end(run, error=e)

    def _collect(self, block: bool) -> None:
        try:
            job = self._inbox.get(timeout=0.5) if block else self._inbox.get_nowait()
            while True:
                if job is not None:
                    self._waiting.append(job)
                job = self._inbox.get_nowait()
        except queue.Empty:
            pass

    def _slack_s(self) -> float:
        """Least audio any running answer has sent beyond what a player that started with its
        first chunk has played (inf if none has started): how long the loop may stall."""
        now, slack = time.perf_counter(), float("inf")
        for run in self._running.values():
            st = run.stream
            if st.samples and "first_audio_ms" in st.timings:
                played = now - (st.t0 + st.timings["first_audio_ms"] / 1000)
                slack = min(slack, st.samples / st.vocoder.sample_rate - played)
        return slack

    def _admit(self) -> None:
        """Join waiting jobs while their decoder has free slots (one prefill per decoder), unless
        a prefill now would starve an answer that is playing (its first chunks are short): then
        the join waits a step or a few, at most MAX_JOIN_DELAY_S."""
        for job in [j for j in self._waiting if j.should_stop()]:  # cancelled before it started
            self._waiting.remove(job)
            job.end()
        if not self._waiting:
            return
        waited = time.perf_counter() - self._waiting[0].t0
        if waited < MAX_JOIN_DELAY_S and self._slack_s() < self.join_s:
            return
        engine = self.engine
        t_start = time.perf_counter()
        joining: dict[int, tuple[SlotDecoder, list[AnswerJob], list[Prompt]]] = {}
        for job in list(self._waiting):
            try:
                dec = self._decoder(job.kw.get("gen") or engine.gen)
            except ValueError as e:  # a sampling setup the model cannot decode with: this answer fails
                self._waiting.remove(job)
                job.end(e)
                continue
            dec_jobs = joining.setdefault(id(dec), (dec, [], []))
            if len(dec_jobs[1]) >= min(dec.free, self.max_join):
                continue
            self._waiting.remove(job)
            try:
                dec_jobs[2].append(
                    engine.prompt(
                        job.audio,
                        job.kw.get("text"),
                        job.kw.get("speak", True),
                        job.kw.get("sample_rate"),
                        job.kw.get("history"),
                    )
                )
                dec_jobs[1].append(job)
            except (ValueError, OSError) as e:  # bad question audio or text: this answer fails, no other
                job.end(e)
        for dec, jobs, prompts in joining.values():
            if not jobs:
                continue
            t_join = time.perf_counter()
            joined = self._join(dec, jobs, prompts)
            self.join_s = 0.5 * self.join_s + 0.5 * (time.perf_counter() - t_start)  # what the next one may cost
            for job, ans in joined:
                stream = engine.answer_stream(job.kw.get("speak", True), job.t0)
                self._running[ans.id] = _Running(job, ans, dec, stream, {"wait_ms": (t_join - job.t0) * 1000})

    def _join(
        self, dec: SlotDecoder, jobs: list[AnswerJob], prompts: list[Prompt]
    ) -> list[tuple[AnswerJob, SlotAnswer]]:
        """Prefill the jobs together; if that is refused (a prompt over the length limit), one by
        one, so only the bad one fails."""
        gens = [j.kw.get("gen") or self.engine.gen for j in jobs]
        try:
            return list(zip(jobs, dec.join(prompts, [g.seed for g in gens], [g.max_steps for g in gens])))
        except ValueError as e:
            if len(jobs) == 1:
                jobs[0].end(e)
                return []
        return [pair for job, prompt in zip(jobs, prompts) for pair in self._join(dec, [job], [prompt])]

    def _decoder(self, gen: Any) -> SlotDecoder:
        key = dataclasses.astuple(dataclasses.replace(gen, seed=None, max_steps=0))
        if key not in self._decoders:
            self._decoders[key] = SlotDecoder(self.engine.model, gen, self.capacity)
        return self._decoders[key]

    def _step(self) -> None:
        for run in list(self._running.values()):
            if run.job.should_stop():  # barge-in: its slot is free for this very step
                self._end(run)
        if not self._running:
            return
        decoders = {id(r.decoder): r.decoder for r in self._running.values()}
        for dec in decoders.values():
            outs = dec.step()
            self.steps += 1
            for answer_id, out in outs.items():
                run = self._running.get(answer_id)
                if run is not None:
                    for ev in run.stream.feed(out):
                        run.job.sink(ev)
        for run in [r for r in self._running.values() if r.answer.done]:
            self._end(run)

    def _end(self, run: _Running, error: BaseException | None = None) -> None:
        """Free the answer's slot, then send the rest of its audio and Done (or the error)."""
        run.decoder.leave(run.answer)
        del self._running[run.answer.id]
        if error is None:
            a = run.answer
            try:
                for ev in run.stream.finish(
                    {"prefill_ms": a.prefill_s * 1000, "steps": a.steps, "decode_ms": a.step_s * 1000, **run.timings}
                ):
                    run.job.sink(ev)
            except Exception as e:  # noqa: BLE001
                error = e
        run.job.end(error)


def decode_all(dec: SlotDecoder, prompts: list[Prompt]) -> tuple[list[tuple[list[int], list[torch.Tensor]]], int]:
    """Decode every prompt with `dec` (joining as slots free up); per prompt its text tokens and
    mel groups, and the steps run."""
    results: list[tuple[list[int], list[torch.Tensor]]] = [([], []) for _ in prompts]
    todo = deque(enumerate(prompts))
    running: dict[int, tuple[int, SlotAnswer]] = {}
    steps = 0
    while todo or running:
        if todo and dec.free:
            batch = [todo.popleft() for _ in range(min(dec.free, len(todo)))]
            for (i, _), ans in zip(batch, dec.join([p for _, p in batch])):
                running[ans.id] = (i, ans)
        outs = dec.step()
        steps += 1
        for answer_id, out in outs.items():
            ids, groups = results[running[answer_id][0]]
            if out.token is not None:
                ids.append(out.token)
            if out.group is not None:
                groups.append(out.group)
        for answer_id, (_, ans) in list(running.items()):
            if ans.done:
                dec.leave(ans)
                del running[answer_id]
    return results, steps
