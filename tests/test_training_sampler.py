"""Length-bucketed batches: deterministic, disjoint across ranks, no gaps, bounded padding."""

import pytest

from flowomni.training.sampler import BucketBatchSampler


def lengths(n: int) -> list[int]:
    return [(i * 37) % 101 + 5 for i in range(n)]


def test_deterministic_per_epoch_and_different_across_epochs():
    s = BucketBatchSampler(lengths(200), 8, seed=3, bucket_batches=4)
    assert s.batches(0) == s.batches(0)
    assert s.batches(0) != s.batches(1)
    assert s.batches(0) != BucketBatchSampler(lengths(200), 8, seed=4, bucket_batches=4).batches(0)


def test_one_process_sees_every_item_exactly_once():
    s = BucketBatchSampler(lengths(203), 8, bucket_batches=4)
    seen = [i for b in s.batches(0) for i in b]
    assert sorted(seen) == list(range(203))


@pytest.mark.parametrize("world", [2, 3, 4])
def test_ranks_are_disjoint_and_cover_the_epoch(world):
    n = 8 * world * 10  # a multiple of world_size: nothing may be dropped
    shards = [BucketBatchSampler(lengths(n), 8, seed=1, rank=r, world_size=world).batches(2) for r in range(world)]
    assert len({len(s) for s in shards}) == 1, "every rank must run the same number of steps"
    items = [i for s in shards for b in s for i in b]
    assert len(items) == len(set(items)) == n


def test_leftover_smaller_than_world_is_the_only_gap():
    world, n = 4, 8 * 4 * 5 + 3
    shards = [BucketBatchSampler(lengths(n), 8, rank=r, world_size=world).batches(0) for r in range(world)]
    items = [i for s in shards for b in s for i in b]
    assert len(items) == len(set(items)) >= n - (world - 1)
    assert all(len(b) > 0 for s in shards for b in s)


def test_bucketing_reduces_padding():
    ls = lengths(400)
    bucketed = BucketBatchSampler(ls, 8, bucket_batches=50).batches(0)
    random_ = BucketBatchSampler(ls, 8, bucket_batches=1).batches(0)

    def waste(batches):
        return sum(max(ls[i] for i in b) * len(b) - sum(ls[i] for i in b) for b in batches)

    assert waste(bucketed) < 0.25 * waste(random_)


def test_max_positions_caps_padded_batch_size():
    ls = lengths(300)
    s = BucketBatchSampler(ls, 32, max_positions=400, bucket_batches=10)
    for b in s.batches(0):
        assert len(b) == 1 or len(b) * max(ls[i] for i in b) <= 400


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="batch_size"):
        BucketBatchSampler([1, 2], 0)
    with pytest.raises(ValueError, match="rank"):
        BucketBatchSampler([1, 2], 1, rank=2, world_size=2)
