"""Tests for remax_ray.algo.seeds.sample_seed: deterministic, bounded, well spread per request."""

from __future__ import annotations

import itertools

import pytest

from remax_ray.algo.seeds import _splitmix64, sample_seed

_M64 = (1 << 64) - 1


def _reference_splitmix64(x: int) -> int:
    # SplitMix64 (Steele, Lea & Flood 2014; Vigna's reference C code), written out independently:
    # z = x + golden gamma; then two xor-shift-multiply rounds and a final xor-shift.
    z = (x + 0x9E3779B97F4A7C15) & _M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return z ^ (z >> 31)


def test_splitmix64_matches_published_vectors() -> None:
    # SplitMix64 seeded with 0 outputs 0xE220A8397B1DCDAF, then 0x6E789E6AA1B965F4. One call of
    # _splitmix64(x) is one generator step from state x, so those are f(0) and f(gamma).
    assert _splitmix64(0) == 0xE220A8397B1DCDAF
    assert _splitmix64(0x9E3779B97F4A7C15) == 0x6E789E6AA1B965F4
    assert _reference_splitmix64(0) == 0xE220A8397B1DCDAF


def test_sample_seed_is_the_documented_chain() -> None:
    # h = f(f(f(f(0 ^ run) ^ step) ^ prompt) ^ sample), then the low 31 bits.
    for args in [(0, 0, 0, 0), (7, 3, 2, 1), (123456789, 42, 17, 3)]:
        h = 0
        for part in args:
            h = _reference_splitmix64(h ^ part)
        assert sample_seed(*args) == h & 0x7FFFFFFF
    # With all zeros the first step is the published vector: 0xE220A8397B1DCDAF.
    h = 0xE220A8397B1DCDAF
    for _ in range(3):
        h = _reference_splitmix64(h)
    assert sample_seed(0, 0, 0, 0) == h & 0x7FFFFFFF


def test_deterministic_across_calls() -> None:
    a = [sample_seed(5, s, p, k) for s in range(3) for p in range(3) for k in range(3)]
    b = [sample_seed(5, s, p, k) for s in range(3) for p in range(3) for k in range(3)]
    assert a == b


@pytest.mark.parametrize("run_seed", [0, 1, 2**40 + 3, -1])
def test_in_range_and_int(run_seed: int) -> None:
    for step, prompt, sample in itertools.product([-1, 0, 1, 10**6], range(4), range(3)):
        s = sample_seed(run_seed, step, prompt, sample)
        assert type(s) is int
        assert 0 <= s < 2**31  # vLLM's SamplingParams.seed and numpy both take it


def test_no_collisions_on_a_20x20x4_grid() -> None:
    seeds = [sample_seed(0, s, p, k) for s in range(20) for p in range(20) for k in range(4)]
    assert len(seeds) == 1600
    # 1600 seeds drawn from 2**31 values: expected collisions ~ 1600**2 / 2**32 ~= 0.0006.
    assert len(set(seeds)) == 1600


def test_depends_on_each_argument() -> None:
    base = (3, 5, 7, 1)
    ref = sample_seed(*base)
    for i in range(4):
        changed = list(base)
        changed[i] += 1
        assert sample_seed(*changed) != ref, f"argument {i} is ignored"


def test_argument_order_matters() -> None:
    # Swapping step and prompt index must not give the same seed (a plain xor/sum would).
    assert sample_seed(0, 1, 2, 0) != sample_seed(0, 2, 1, 0)
    assert sample_seed(0, 0, 1, 2) != sample_seed(0, 0, 2, 1)


def test_run_seeds_give_different_streams() -> None:
    a = {sample_seed(0, 0, p, 0) for p in range(50)}
    b = {sample_seed(1, 0, p, 0) for p in range(50)}
    assert not a & b
