"""A generator's record of which weight sync it serves (``rollout.generator.WeightVersion``): what
the driver compares with the sync it last pushed, to notice a generator restarted between calls."""

from __future__ import annotations

from remax_ray.rollout.generator import WeightVersion


def test_a_sync_counts_once_every_bucket_of_it_is_loaded_in_order():
    weights = WeightVersion()
    assert weights.version == 0  # the model the engine was built (or restarted) from
    served = []
    for index in range(3):
        weights.bucket_loaded(1, index, 3)
        served.append(weights.version)
    assert served == [WeightVersion.MIXED, WeightVersion.MIXED, 1]  # half a sync is no version at all
    weights.bucket_loaded(2, 0, 1)
    assert weights.version == 2


def test_a_process_that_missed_the_start_of_a_sync_never_claims_it():
    restarted = WeightVersion()  # restarted while the driver was sending bucket 0
    for index in (1, 2):
        restarted.bucket_loaded(1, index, 3)
    assert restarted.version == WeightVersion.MIXED  # model.path with two of three buckets: re-sync
    restarted.bucket_loaded(2, 0, 3)
    restarted.bucket_loaded(2, 2, 3)  # bucket 1 of sync 2 lost
    assert restarted.version == WeightVersion.MIXED


def test_a_collective_sync_loads_whole():
    weights = WeightVersion()
    weights.bucket_loaded(1, 0, 2)  # an interrupted CPU sync, then a broadcast of everything
    weights.whole_sync_loaded(4)
    assert weights.version == 4
