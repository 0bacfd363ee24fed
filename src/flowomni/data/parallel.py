"""One job list through worker processes, with a progress bar: the corpus builder's and the
feature cache's shared loop.

Workers are spawned (not forked: a forked torch or onnxruntime can deadlock) and set up once
by `init(*init_args)`; each runs one torch thread if torch is loaded (one core per worker).
Results come back in completion order. Few jobs, or one worker, run in this process instead
(`init` runs here too), where spawning would cost more than it saves.
"""

from __future__ import annotations

import multiprocessing as mp
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

J = TypeVar("J")
R = TypeVar("R")


def run_jobs(
    fn: Callable[[J], R],
    jobs: Sequence[J],
    *,
    workers: int,
    init: Callable[..., None],
    init_args: tuple[Any, ...] = (),
    min_jobs: int = 16,
    chunksize: int = 16,
    desc: str = "",
    unit: str = "it",
    progress: bool = True,
    smoothing: float = 0.3,
) -> Iterator[R]:
    """Yield `fn(job)` for every job (`fn` and `init`: module-level functions, so they pickle)."""
    from tqdm import tqdm

    bar = tqdm(total=len(jobs), desc=desc, unit=unit, disable=not progress, file=sys.stderr, smoothing=smoothing)
    pool = None
    if workers <= 1 or len(jobs) < min_jobs:
        init(*init_args)
        results: Iterator[R] = map(fn, jobs)
    else:
        pool = mp.get_context("spawn").Pool(workers, _start_worker, (init, init_args))
        results = pool.imap_unordered(fn, jobs, chunksize=chunksize)
    try:
        for result in results:
            yield result
            bar.update()
    finally:
        bar.close()
        if pool is not None:
            pool.terminate()
            pool.join()


def _start_worker(init: Callable[..., None], init_args: tuple[Any, ...]) -> None:
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)  # one core per worker process
    init(*init_args)
