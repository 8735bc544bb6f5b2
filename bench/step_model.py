"""What a training step costs, from its phases' seconds and the placement: with and without
one-step-off overlap, and with K learner ranks (docs/PERFORMANCE.md checks it against measured runs).

A step without overlap runs its phases in turn: generate, score, learn, sync. With overlap the
generators sample step t + 1 while the learner trains on step t, so on devices of their own the two
cost the longer of them; scoring and the sync stay in line (the scores of step t + 1 are taken at
the start of that step, and the sync needs the finished update). On cores they share, the two
phases split the same cores, so overlap cannot save time: the model gives the sum, a lower bound
(contention, a second OpenMP team on the same cores, comes on top; the measured slowdown is that).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Phases:
    """Seconds of one step's phases, as the driver records them (``generate_s``, ...)."""

    generate: float
    score: float
    learn: float
    sync: float
    other: float = 0.0


def learn_seconds(learn_one_rank: float, ranks: int, allreduce_s: float = 0.0) -> float:
    """The learner's phase on ``ranks`` data-parallel ranks, each on a device of its own: the
    batch's compute splits evenly, and each optimizer step adds the gradients' all-reduce."""
    return learn_one_rank / ranks + (allreduce_s if ranks > 1 else 0.0)


def ring_allreduce_seconds(grad_bytes: float, ranks: int, bytes_per_s: float) -> float:
    """A ring all-reduce of ``grad_bytes``: each rank sends and receives 2 (K - 1) / K of them."""
    return 2 * (ranks - 1) / ranks * grad_bytes / bytes_per_s if ranks > 1 else 0.0


def step_seconds(p: Phases, *, overlap: bool, separate: bool, ranks: int = 1, allreduce_s: float = 0.0) -> float:
    """Predicted seconds per step. ``p.learn`` is one rank's; ``separate``: the generators and the
    learner run on devices (or cores) of their own."""
    learn = learn_seconds(p.learn, ranks, allreduce_s)
    if overlap and separate:
        return p.score + max(learn, p.generate) + p.sync + p.other
    return p.generate + p.score + learn + p.sync + p.other
