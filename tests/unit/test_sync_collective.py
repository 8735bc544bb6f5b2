"""The collective weight sync: bucketed broadcast in the generators' dtype between two processes over
gloo, one rank per vLLM worker (engines of several workers), and a rendezvous port that stays held."""

from __future__ import annotations

import errno
import json
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from remax_ray.rollout.generator import Generator
from remax_ray.rollout.worker_ext import WeightReloadExtension
from remax_ray.sync import collective
from remax_ray.sync.cpu import WeightBuckets


def fake_weights() -> list[tuple[str, torch.Tensor]]:
    """A two-layer decoder's HF names and float32 tensors (seeded: the peer builds the same ones)."""
    g = torch.Generator().manual_seed(0)
    names = [("model.embed_tokens.weight", (50, 8))]
    for i in range(2):
        names += [(f"model.layers.{i}.self_attn.q_proj.weight", (8, 8)),
                  (f"model.layers.{i}.self_attn.k_proj.weight", (4, 8)),
                  (f"model.layers.{i}.mlp.up_proj.weight", (16, 8)),
                  (f"model.layers.{i}.input_layernorm.weight", (8,))]
    names += [("model.norm.weight", (8,))]
    return [(n, torch.randn(shape, generator=g)) for n, shape in names]


BUCKET_BYTES = 400  # a layer is 464 bytes in bfloat16: every layer group gets a bucket of its own

_SENDER = """
import sys
sys.path.insert(0, sys.argv[1])
import torch
import vllm.distributed.utils  # before the port is printed: the store waits for the receiver from then on
from test_sync_collective import BUCKET_BYTES, fake_weights
from remax_ray.sync.collective import broadcast_buckets, init_group, listen_socket, plan_layouts

named = fake_weights()
layouts = plan_layouts(named, BUCKET_BYTES, torch.bfloat16)
sock = listen_socket("127.0.0.1")
print(sock.getsockname()[1], flush=True)  # rank 0 reports the port it already holds
group = init_group("127.0.0.1", sock.getsockname()[1], 0, 2, "gloo", 60.0, listen=sock)
print(broadcast_buckets(group, named, layouts, "cpu"), flush=True)
"""


def test_buckets_arrive_in_the_generators_dtype_and_reload_one_at_a_time():
    named = fake_weights()
    layouts = collective.plan_layouts(named, BUCKET_BYTES, torch.bfloat16)
    # The CPU transport's plan: whole layer groups per bucket.
    cpu_plan = WeightBuckets(named, BUCKET_BYTES, torch.bfloat16)
    assert [list(l.names) for l in layouts] == [cpu_plan[k].names for k in range(len(cpu_plan))]
    assert len(layouts) == 4  # embeddings, layer 0, layer 1, final norm

    import vllm.distributed.utils  # noqa: F401  (now, not while the sender's store waits for us)

    peer = subprocess.Popen([sys.executable, "-c", _SENDER, str(Path(__file__).parent)],
                            stdout=subprocess.PIPE, text=True)
    try:
        port = int(peer.stdout.readline())
        group = collective.init_group("127.0.0.1", port, 1, 2, "gloo", 60.0)
        calls = []

        def reload(bucket):
            calls.append([(name, t.clone(), t.untyped_storage().data_ptr(), t.untyped_storage().nbytes())
                          for name, t in bucket])
            return len(bucket)

        loaded = collective.receive_buckets(group, layouts, "cpu", reload)
        sent = int(peer.stdout.readline())
        assert peer.wait(timeout=60) == 0
    finally:
        peer.kill()

    assert loaded == len(named)
    # One reload per bucket, as the bucket arrives, with that bucket's tensors only.
    assert [[name for name, *_ in call] for call in calls] == [list(l.names) for l in layouts]
    want = dict(named)
    for call in calls:
        for name, got, *_ in call:
            assert got.dtype == torch.bfloat16
            assert torch.equal(got, want[name].to(torch.bfloat16)), name
    # Every bucket landed in one buffer, the size of the largest bucket (the embeddings' 800 bytes),
    # so the receiver never staged more than one bucket beyond the model.
    storages = {(ptr, nbytes) for call in calls for *_, ptr, nbytes in call}
    assert len(storages) == 1 and storages.pop()[1] == max(l.nbytes for l in layouts) == 800
    # bfloat16 on the wire: half the float32 bytes (plus alignment).
    assert sent == sum(l.nbytes for l in layouts)
    assert sum(t.numel() * 2 for t in want.values()) <= sent < sum(t.numel() * 4 for t in want.values())


def test_layouts_align_every_tensor_and_survive_the_rpc():
    layouts = collective.plan_layouts(fake_weights(), 1 << 20, torch.bfloat16)
    assert len(layouts) == 1
    (layout,) = layouts
    assert set(layout.dtypes) == {"bfloat16"}
    assert all(off % 64 == 0 for off in layout.offsets)
    assert layout.offsets[1] == 832  # after 800 bytes of embeddings, rounded up to 64
    assert layout.nbytes == layout.offsets[-1] + 8 * 2
    assert collective.BucketLayout.from_rpc(json.loads(json.dumps(layout.as_rpc()))) == layout


@pytest.mark.parametrize(("counts", "offsets", "world"), [
    ([1], [1], 2),
    ([2], [1], 3),
    ([4], [1], 5),
    ([1, 1], [1, 2], 3),
    ([2, 2], [1, 3], 5),
    ([4, 4], [1, 5], 9),
    ([4, 1, 2], [1, 5, 6], 8),
])
def test_group_ranks(counts, offsets, world):
    assert collective.group_ranks(counts) == (offsets, world)


def test_group_ranks_rejects_an_engine_without_workers():
    with pytest.raises(ValueError, match="at least one worker"):
        collective.group_ranks([2, 0])


class _FakeWorker(WeightReloadExtension):
    def __init__(self, rank: int):
        self.rank = rank


class _FakeLLM:
    """``collective_rpc`` as vLLM runs it: the method on every worker of the engine."""

    def __init__(self, workers: int):
        self.workers = [_FakeWorker(r) for r in range(workers)]

    def collective_rpc(self, method, args=()):
        return [getattr(w, method)(*args) for w in self.workers]


@pytest.mark.parametrize("workers", [[2], [4], [2, 4], [4, 1, 2]])
def test_every_worker_of_every_engine_gets_its_own_rank(monkeypatch, workers):
    """Engines of 2 and 4 workers, as fakes: a real tensor-parallel vLLM-CPU engine needs manual
    thread binding on a single NUMA node (VLLM_CPU_OMP_THREADS_BIND="0|1") and took over 3 minutes
    to start on the 2-core test machine."""
    joined = []
    monkeypatch.setattr(collective, "init_group",
                        lambda host, port, rank, world, backend, timeout_s: joined.append((rank, world)))
    gens = []
    for count in workers:
        gen = Generator.__new__(Generator)  # no engine: its workers are fakes
        gen.llm = _FakeLLM(count)
        gens.append(gen)
    offsets, world = collective.group_ranks([g.collective_workers() for g in gens])
    for gen, offset in zip(gens, offsets):
        gen.init_collective("127.0.0.1", 1234, offset, world, "gloo", 5.0)
    assert world == 1 + sum(workers)
    assert sorted(rank for rank, _ in joined) == list(range(1, world))  # rank 0 is the learner's
    assert {w for _, w in joined} == {world}


def test_the_rendezvous_port_stays_held_until_the_group_forms():
    """The learner reports a port that no other process can bind before the store takes it over."""
    from remax_ray.cluster.shells import LearnerShell

    learner = SimpleNamespace()
    host, port = LearnerShell.collective_address(learner)
    other = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        with pytest.raises(OSError) as err:
            other.bind((host, port))
        assert err.value.errno == errno.EADDRINUSE
    finally:
        other.close()
        if hasattr(learner, "_listen"):
            learner._listen.close()


_NCCL_RECEIVER = """
import sys
sys.path.insert(0, sys.argv[1])
import torch
from test_sync_collective import BUCKET_BYTES, fake_weights
from remax_ray.sync.collective import init_group, plan_layouts, receive_buckets

torch.cuda.set_device(1)
layouts = plan_layouts(fake_weights(), BUCKET_BYTES, torch.bfloat16)
group = init_group("127.0.0.1", int(sys.argv[2]), 1, 2, "nccl", 60.0)
want = dict(fake_weights())
def check(bucket):
    for name, t in bucket:
        assert t.device.type == "cuda" and torch.equal(t.cpu(), want[name].to(torch.bfloat16)), name
    return len(bucket)
print(receive_buckets(group, layouts, "cuda:1", check), flush=True)
"""


@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="NCCL needs a GPU per rank: two CUDA devices")
def test_nccl_broadcast_between_two_gpus():
    torch.cuda.set_device(0)
    named = [(n, t.cuda(0)) for n, t in fake_weights()]
    layouts = collective.plan_layouts(named, BUCKET_BYTES, torch.bfloat16)
    sock = collective.listen_socket("127.0.0.1")
    port = sock.getsockname()[1]
    peer = subprocess.Popen([sys.executable, "-c", _NCCL_RECEIVER, str(Path(__file__).parent), str(port)],
                            stdout=subprocess.PIPE, text=True)
    try:
        group = collective.init_group("127.0.0.1", port, 0, 2, "nccl", 60.0, listen=sock)
        sent = collective.broadcast_buckets(group, named, layouts, "cuda:0")
        assert int(peer.stdout.readline()) == len(named)
        assert peer.wait(timeout=60) == 0
    finally:
        peer.kill()
    assert sent == sum(l.nbytes for l in layouts)
