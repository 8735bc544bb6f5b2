"""Pairwise preference loss for reward-model training (stage 2 of RLHF).

Under the Bradley-Terry model the probability that ``chosen`` is preferred to
``rejected`` is ``sigmoid(r_chosen - r_rejected)``; the reward model is fit by
maximising that likelihood over comparison pairs. Only score *differences*
are identified, so the reward's offset is arbitrary, which is harmless for
ReMax: its advantage is itself a difference of two rewards.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def _check_pair(chosen: Tensor, rejected: Tensor) -> None:
    if chosen.dim() != 1 or chosen.shape != rejected.shape:
        raise ValueError(
            f"chosen and rejected must both be [N], got {tuple(chosen.shape)} and {tuple(rejected.shape)}"
        )
    if chosen.numel() == 0:
        raise ValueError("need at least one pair")


def bradley_terry_loss(chosen: Tensor, rejected: Tensor) -> Tensor:
    """Mean negative log-likelihood that each chosen response beats its rejected one.

    Args:
        chosen: [N] reward of each pair's preferred response.
        rejected: [N] reward of each pair's other response.

    Returns:
        scalar ``mean(-logsigmoid(chosen - rejected))``, in float32 at least (log 2 for a tie).
    """
    _check_pair(chosen, rejected)
    # logsigmoid is the stable form of log(sigmoid(x)): no overflow for large |x|.
    diff = chosen.float() - rejected.float()
    return -F.logsigmoid(diff).mean()


def pairwise_accuracy(chosen: Tensor, rejected: Tensor) -> float:
    """Fraction of pairs ranked correctly (``chosen > rejected``); a tie counts as wrong."""
    _check_pair(chosen, rejected)
    with torch.no_grad():
        return float((chosen > rejected).float().mean())
