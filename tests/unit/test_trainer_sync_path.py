"""Which path the trainer's CPU weight sync takes: the learner's shared memory when the learner and
every generator share a node, else the object store, decided at every sync (the fake actors of
test_trainer_failures.py, no Ray)."""

from __future__ import annotations

import pytest

import test_trainer_failures as failures

_Method = failures._Method
make = failures.make  # the fixture that builds a Trainer on fake actors


def _with_shared_export(t, learner_node: str, generator_node: str):
    """The trainer's fakes with an ``export_bucket_shared`` and the given nodes; calls counted anew
    (the trainer's constructor already synced once: actors given means generators to refresh)."""
    learner, (gen,) = t.actors.learner, t.actors.generators
    learner.export_bucket_shared = _Method(learner._wrap("export_bucket_shared", lambda k, mb, dtype: b"shm"))
    learner.node_id, gen.node_id = _Method(lambda: learner_node), _Method(lambda: generator_node)
    learner.calls.clear()
    return learner, gen


def test_sync_writes_through_the_learners_shared_memory_when_all_share_a_node(make):
    t = make()
    learner, gen = _with_shared_export(t, "node-a", "node-a")
    t.sync()
    assert learner.calls.get("export_bucket_shared") == 1 and "export_bucket" not in learner.calls
    gen.node_id = _Method(lambda: "node-b")  # Ray restarted the generator on another node
    t.sync()
    assert learner.calls.get("export_bucket") == 1  # the object store, decided at every sync


@pytest.mark.parametrize("transport, path", [("objects", "export_bucket"), ("shm", "export_bucket_shared")])
def test_sync_transport_forces_a_path(make, transport, path):
    import dataclasses

    t = make()
    t.weights.cfg = dataclasses.replace(t.cfg, cluster=dataclasses.replace(t.cfg.cluster, sync_transport=transport))
    learner, _ = _with_shared_export(t, "node-a", "node-a")
    t.sync()
    assert [k for k in learner.calls if k.startswith("export")] == [path]


def test_shm_transport_refuses_generators_on_another_node(make):
    # The fakes' learner and generator are on two nodes; the constructor's first sync refuses.
    with pytest.raises(RuntimeError, match="cluster.sync_transport=shm needs the learner and every generator"):
        make("cluster.sync_transport=shm")
