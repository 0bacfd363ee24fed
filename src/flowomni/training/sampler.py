"""Length-bucketed, rank-sharded batches that are a pure function of (seed, epoch).

Padding wastes compute in proportion to the length spread inside a batch, so examples are
shuffled, cut into pools of `bucket_batches` global batches, and sorted by length inside a
pool. A *global* batch holds `batch_size * world_size` examples of similar length; rank r
takes every world_size-th of them, so ranks see disjoint items and similar shapes. Because
the order depends only on (seed, epoch), a resumed run can skip exactly the batches it has
already consumed.
"""

from __future__ import annotations

import random
from collections.abc import Iterator


class BucketBatchSampler:
    def __init__(
        self,
        lengths: list[int],
        batch_size: int,
        *,
        max_positions: int = 0,
        bucket_batches: int = 50,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        shuffle: bool = True,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, {world_size})")
        self.lengths, self.batch_size = lengths, batch_size
        self.max_positions, self.bucket_batches = max_positions, bucket_batches
        self.seed, self.rank, self.world_size, self.shuffle = seed, rank, world_size, shuffle
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def global_batches(self, epoch: int) -> list[list[int]]:
        """All ranks' batches of an epoch. Each holds world_size * (<= batch_size) indices;
        a final remainder smaller than world_size is dropped (it differs every epoch)."""
        order = list(range(len(self.lengths)))
        rng = random.Random(self.seed * 1_000_003 + epoch)
        if self.shuffle:
            rng.shuffle(order)
        per_global = self.batch_size * self.world_size
        pool = per_global * self.bucket_batches
        batches: list[list[int]] = []
        for start in range(0, len(order), pool):
            chunk = sorted(order[start : start + pool], key=lambda i: self.lengths[i])
            batches.extend(self._split(chunk))
        if self.shuffle:
            rng.shuffle(batches)
        return [b for b in batches if len(b) >= self.world_size]

    def _split(self, chunk: list[int]) -> list[list[int]]:
        """Cut a length-sorted run into global batches, closing one early when the padded
        size of the longest example times the rank batch would pass max_positions."""
        out: list[list[int]] = []
        cur: list[int] = []
        for i in chunk:
            per_rank = len(cur) // self.world_size + 1
            too_big = self.max_positions and per_rank * self.lengths[i] > self.max_positions and cur
            if len(cur) == self.batch_size * self.world_size or too_big:
                out.append(cur)
                cur = []
            cur.append(i)
        if cur:
            out.append(cur)
        return out

    def batches(self, epoch: int) -> list[list[int]]:
        """This rank's share of every global batch of `epoch`."""
        return [b[self.rank :: self.world_size] for b in self.global_batches(epoch)]

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches(self.epoch))

    def __len__(self) -> int:
        return len(self.global_batches(self.epoch))
