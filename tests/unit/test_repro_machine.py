"""The other-load fraction that decides whether a run's seconds and memory enter the table."""

from __future__ import annotations

import math
from collections import namedtuple

import pytest

from remax_ray.repro import machine
from remax_ray.repro.machine import QUIET_LOAD, CpuSample, busy_seconds, is_quiet, other_load, tree_seconds

Times = namedtuple("Times", "user nice system idle iowait irq softirq steal guest guest_nice")
ProcTimes = namedtuple("ProcTimes", "user system children_user children_system")


def test_other_load_by_hand():
    # 100 s of wall on 2 cores = 200 CPU-s available. The machine was busy 130 CPU-s, 120 of them ours:
    # 10 CPU-s of other work = 5%.
    before, after = CpuSample(1000.0, 5000.0, 40.0), CpuSample(1100.0, 5130.0, 160.0)
    assert other_load(before, after, cores=2) == pytest.approx(0.05)
    assert not is_quiet(other_load(before, after, cores=2))  # the threshold is strict
    assert is_quiet(0.049) and QUIET_LOAD == 0.05
    # Our tree alone: 0; rounding of the two counters may make it a hair negative, clamped to 0.
    assert other_load(CpuSample(0, 0, 0), CpuSample(10, 19.9, 20.0), cores=2) == 0.0
    assert other_load(CpuSample(0, 0, 0), CpuSample(10, 40.0, 0.0), cores=2) == 1.0
    assert math.isnan(other_load(CpuSample(5, 0, 0), CpuSample(5, 1, 0), cores=2))
    assert not is_quiet(float("nan")) and not is_quiet(None)


def test_busy_seconds_leave_out_idle_iowait_and_guest():
    t = Times(user=10.0, nice=1.0, system=4.0, idle=100.0, iowait=7.0, irq=0.5, softirq=0.25, steal=2.0,
              guest=3.0, guest_nice=0.5)
    # guest is already inside user on Linux; steal is time the run could not have.
    assert busy_seconds(t) == pytest.approx(10 + 1 + 4 + 0.5 + 0.25 + 2)


class FakeProcess:
    def __init__(self, times, children=()):
        self.times, self.kids = times, list(children)

    def cpu_times(self):
        if self.times is None:
            import psutil

            raise psutil.NoSuchProcess(1)
        return self.times

    def children(self, recursive=False):
        out = []
        for k in self.kids:
            out += [k, *k.children(recursive=True)]
        return out


def test_tree_seconds_count_descendants_and_reaped_children():
    raylet = FakeProcess(ProcTimes(2.0, 1.0, 30.0, 5.0), [FakeProcess(ProcTimes(7.0, 1.0, 0.0, 0.0))])
    gone = FakeProcess(None)  # ended between the listing and the read
    driver = FakeProcess(ProcTimes(3.0, 1.0, 0.5, 0.5), [raylet, gone])
    assert tree_seconds(driver) == pytest.approx(5.0 + 38.0 + 8.0)


def test_sample_reads_this_machine():
    s = machine.sample()
    assert s.busy_s > 0 and s.tree_s > 0 and machine.cores() >= 1
    assert machine.code_version() != ""
