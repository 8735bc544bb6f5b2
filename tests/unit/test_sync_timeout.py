"""A collective weight broadcast whose peer died or hangs fails within ``cluster.sync_timeout_s``
(gloo on CPU), instead of waiting for the process group's default timeout (30 minutes for gloo)."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import torch

from remax_ray.sync.collective import init_group, listen_socket

_PEER = """
import sys, time
import vllm.distributed.utils  # imported before "ready": rank 0's store waits for us from then on
from remax_ray.sync.collective import init_group
print("ready", flush=True)
group = init_group("127.0.0.1", int(sys.argv[1]), 1, 2, "gloo", 5.0)
print("joined", flush=True)
if sys.argv[2] == "hang":
    time.sleep(600)  # alive but never receives: a wedged worker, or a network partition
# else: exits here, the way a killed generator worker leaves the group
"""


@pytest.mark.parametrize("peer_fate", ["exit", "hang"])
def test_a_broadcast_to_a_dead_or_stuck_peer_fails_within_the_timeout(peer_fate):
    sock = listen_socket("127.0.0.1")
    port = sock.getsockname()[1]
    peer = subprocess.Popen([sys.executable, "-c", _PEER, str(port), peer_fate], stdout=subprocess.PIPE,
                            text=True)
    try:
        assert peer.stdout.readline().strip() == "ready"
        group = init_group("127.0.0.1", port, 0, 2, "gloo", 5.0, listen=sock)
        assert peer.stdout.readline().strip() == "joined"
        if peer_fate == "exit":
            peer.wait(timeout=60)
        start = time.monotonic()
        with pytest.raises(RuntimeError):
            for _ in range(3):  # a first send may still fit in a socket buffer
                group.broadcast(torch.ones(1 << 22), 0).wait()
        elapsed = time.monotonic() - start
        # At most 3 broadcasts x the 5 s bound, with slack for a loaded 2-core machine; without the
        # bound gloo would wait 30 minutes.
        assert elapsed < 60, elapsed
    finally:
        peer.kill()


def test_a_rank_that_never_joins_fails_the_rendezvous_with_the_stores_error():
    """Rank 0 hosts the store on its listening socket and waits for the others within the timeout;
    the error says so (not the EBADF of vLLM closing the socket's fd a second time)."""
    sock = listen_socket("127.0.0.1")
    start = time.monotonic()
    with pytest.raises(torch.distributed.DistStoreError, match="waiting for clients"):
        init_group("127.0.0.1", sock.getsockname()[1], 0, 2, "gloo", 1.0, listen=sock)
    assert time.monotonic() - start < 30
