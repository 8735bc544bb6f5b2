"""The learner group's routing: each shell method the driver calls is declared with where it goes
(every rank, rank 0, or the FSDP2 gather), and an undeclared one is an AttributeError rather than
a silent default (fake ranks that record their calls, no Ray)."""

from __future__ import annotations

import pytest

from remax_ray.cluster.learner_group import LearnerGroup


class _Rank:
    def __init__(self, rank: int, calls: list):
        self.rank, self.calls = rank, calls

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        rank, calls = self.rank, self.calls

        class _Call:
            @staticmethod
            def remote(*args, **kwargs):
                calls.append((rank, name))
                return f"{name}@{rank}"

        return _Call


@pytest.mark.parametrize("strategy, gathered_by", [("ddp", [0]), ("fsdp", [0, 1])])
def test_each_method_reaches_the_ranks_it_is_declared_for(strategy, gathered_by) -> None:
    calls: list = []
    group = LearnerGroup([_Rank(0, calls), _Rank(1, calls)], strategy)
    for method in ("weight_buckets", "weight_layouts", "collective_address", "init_collective", "node_id"):
        calls.clear()
        assert getattr(group, method).remote() == f"{method}@0"
        assert calls == [(0, method)]
    for method in ("export_bucket", "export_bucket_shared", "broadcast_weights"):
        calls.clear()
        assert getattr(group, method).remote(0) == f"{method}@0"  # rank 0's payload
        assert [r for r, _ in calls] == gathered_by


def test_an_undeclared_method_is_an_error_not_a_default_route() -> None:
    group = LearnerGroup([_Rank(0, []), _Rank(1, [])], "ddp")
    with pytest.raises(AttributeError):
        group.learner_logprobs.remote([[1, 2]])
