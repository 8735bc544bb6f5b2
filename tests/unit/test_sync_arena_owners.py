"""Which arena the vLLM worker's ArenaReader maps, when arenas' owners come and go (remax_ray.sync.cpu).

In ``remax-ray repro`` the generators outlive the learners: a worker sees one learner's arenas, then
the next one's. A new learner may get a dead learner's PID, and its arena the same fd number, so the
path ``/proc/<pid>/fd/<fd>`` a slice names says nothing about which file it leads to. The owners
here are real processes (each a fresh interpreter, like a new learner), so that nothing carried over
inside one process, such as a counter, can tell their arenas apart.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from remax_ray.sync.cpu import ArenaReader, ArenaSlice, SharedArena

# Writes 64 bytes of one value into an arena of its own, prints where, and keeps the arena until its
# stdin closes.
_OWNER = r"""
import sys
import numpy as np
from remax_ray.sync.cpu import SharedArena

arena = SharedArena()
where = arena.write([np.full(64, int(sys.argv[1]), dtype=np.uint8)])
print(where.path, where.capacity, where.generation, flush=True)
sys.stdin.readline()
"""


@dataclasses.dataclass
class Owner:
    proc: subprocess.Popen
    where: ArenaSlice
    inode: int

    def exit(self) -> None:
        self.proc.stdin.close()
        assert self.proc.wait(timeout=60) == 0


@contextmanager
def owner(value: int) -> Iterator[Owner]:
    """A process that owns an arena holding ``value`` in its first 64 bytes."""
    proc = subprocess.Popen([sys.executable, "-c", _OWNER, str(value)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        path, capacity, generation = proc.stdout.readline().split()
        inode = os.stat(path).st_ino  # the memfd the path leads to while its owner lives
        yield Owner(proc, ArenaSlice(path, int(capacity), generation, [0]), inode)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _read(reader: ArenaReader, where: ArenaSlice) -> list[int]:
    (_, t), = reader.tensors(where, ["w"], ["uint8"], [[64]])
    return sorted(set(t.tolist()))


def _mapped(inode: int) -> int:
    """How many mappings of this process are of the arena file ``inode`` (/proc/self/maps)."""
    counts: Counter[int] = Counter()
    for line in Path("/proc/self/maps").read_text().splitlines():
        fields = line.split()
        if len(fields) >= 6 and "remax-weights" in fields[5]:
            counts[int(fields[4])] += 1
    return counts[inode]


def test_a_new_owner_at_the_same_path_gets_its_own_bytes_read(tmp_path: Path) -> None:
    # The link stands for /proc/<pid>/fd/<fd> when a new learner got the dead one's pid and fd:
    # one path, another file behind it, and the same capacity.
    link = tmp_path / "arena"
    reader = ArenaReader()
    try:
        with owner(1) as first:
            link.symlink_to(first.where.path)
            assert _read(reader, dataclasses.replace(first.where, path=str(link))) == [1]
            first.exit()
        with owner(2) as second:
            assert second.where.capacity == first.where.capacity
            link.unlink()
            link.symlink_to(second.where.path)
            assert _read(reader, dataclasses.replace(second.where, path=str(link))) == [2]
            assert _mapped(first.inode) == 0 and _mapped(second.inode) == 1
    finally:
        reader.close()


def test_the_mapping_of_an_owner_that_exited_is_dropped() -> None:
    # Each run of `remax-ray repro` used to leave its learner's arenas mapped in every worker.
    reader = ArenaReader()
    try:
        with owner(1) as first:
            assert _read(reader, first.where) == [1]
            assert _mapped(first.inode) == 1
            first.exit()
        with owner(2) as second:
            assert _read(reader, second.where) == [2]
            assert _mapped(first.inode) == 0 and _mapped(second.inode) == 1
    finally:
        reader.close()


def test_a_slice_whose_path_leads_to_another_arena_is_refused() -> None:
    arenas, reader = (SharedArena(), SharedArena()), ArenaReader()
    try:
        a, b = (arena.write([np.full(64, v, dtype=np.uint8)]) for arena, v in zip(arenas, (1, 2)))
        assert _read(reader, b) == [2]
        with pytest.raises(RuntimeError, match="no longer leads to arena"):
            reader.tensors(dataclasses.replace(a, path=b.path), ["w"], ["uint8"], [[64]])
        arenas[0].close()  # its owner closed it: the slice names a path that leads nowhere now
        with pytest.raises(RuntimeError, match="no longer leads to arena"):
            reader.tensors(a, ["w"], ["uint8"], [[64]])
    finally:
        reader.close()
        for arena in arenas:
            arena.close()


def test_live_mappings_are_bounded() -> None:
    # Owners alive but no longer sending (a generator serving one learner after another, say):
    # the least recently used mappings go; a later slice maps its arena again.
    arenas, reader = [SharedArena() for _ in range(8)], ArenaReader()
    try:
        slices = [arena.write([np.full(64, v, dtype=np.uint8)]) for v, arena in enumerate(arenas)]
        for v, where in enumerate(slices):
            assert _read(reader, where) == [v]
        inodes = [os.stat(where.path).st_ino for where in slices]
        by_reader = [_mapped(i) - 1 for i in inodes]  # each arena is mapped once by its writer
        assert sum(by_reader) <= 4 and by_reader[-1] == 1
        assert _read(reader, slices[0]) == [0]
    finally:
        reader.close()
        for arena in arenas:
            arena.close()
