"""Bradley-Terry loss and pairwise accuracy against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from remax_ray.algo import bradley_terry_loss, pairwise_accuracy


def test_tie_costs_log_two() -> None:
    loss = bradley_terry_loss(torch.tensor([0.3, -1.0]), torch.tensor([0.3, -1.0]))
    assert float(loss) == pytest.approx(math.log(2))


def test_hand_computed_mean() -> None:
    # diffs 1 and -2: -log(sigmoid(1)) = log(1 + e^-1), -log(sigmoid(-2)) = log(1 + e^2).
    loss = bradley_terry_loss(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0]))
    want = (math.log1p(math.exp(-1)) + math.log1p(math.exp(2))) / 2
    assert float(loss) == pytest.approx(want, rel=1e-6)


def test_only_the_difference_matters() -> None:
    chosen, rejected = torch.tensor([0.5, 2.0, -1.0]), torch.tensor([0.0, 3.0, -4.0])
    shifted = bradley_terry_loss(chosen + 100.0, rejected + 100.0)
    assert float(shifted) == pytest.approx(float(bradley_terry_loss(chosen, rejected)), rel=1e-6)


def test_stable_for_large_margins() -> None:
    assert float(bradley_terry_loss(torch.tensor([1000.0]), torch.tensor([0.0]))) == 0.0
    assert float(bradley_terry_loss(torch.tensor([0.0]), torch.tensor([1000.0]))) == pytest.approx(1000.0)


def test_gradient_pushes_chosen_up_and_rejected_down() -> None:
    chosen = torch.tensor([0.0], requires_grad=True)
    rejected = torch.tensor([0.0], requires_grad=True)
    bradley_terry_loss(chosen, rejected).backward()
    # d/dc of -logsigmoid(c - r) at 0 is -(1 - sigmoid(0)) = -0.5.
    assert float(chosen.grad) == pytest.approx(-0.5)
    assert float(rejected.grad) == pytest.approx(0.5)


def test_bf16_inputs_give_a_float32_loss() -> None:
    loss = bradley_terry_loss(torch.zeros(3, dtype=torch.bfloat16), torch.zeros(3, dtype=torch.bfloat16))
    assert loss.dtype == torch.float32


def test_pairwise_accuracy_counts_ties_as_wrong() -> None:
    acc = pairwise_accuracy(torch.tensor([1.0, 0.0, 2.0, 5.0]), torch.tensor([0.0, 0.0, 3.0, 4.0]))
    assert acc == pytest.approx(0.5)


@pytest.mark.parametrize(
    "chosen, rejected",
    [(torch.zeros(2), torch.zeros(3)), (torch.zeros(2, 1), torch.zeros(2, 1)), (torch.zeros(0), torch.zeros(0))],
)
def test_shape_errors(chosen: torch.Tensor, rejected: torch.Tensor) -> None:
    with pytest.raises(ValueError):
        bradley_terry_loss(chosen, rejected)
    with pytest.raises(ValueError):
        pairwise_accuracy(chosen, rejected)
