"""Tests for remax_ray.algo.logprobs."""

from __future__ import annotations

import math

import pytest
import torch

from remax_ray.algo.logprobs import response_mask, token_logprobs

from helpers import reference_entropy


def test_token_logprobs_by_hand() -> None:
    # One row, two positions, V = 2.
    # pos 0: logits (0, 0)        -> p = (1/2, 1/2); token 1 -> log(1/2)
    # pos 1: logits (log 3, 0)    -> p = (3/4, 1/4); token 0 -> log(3/4)
    logits = torch.tensor([[[0.0, 0.0], [math.log(3.0), 0.0]]])
    tokens = torch.tensor([[1, 0]])
    out = token_logprobs(logits, tokens)
    assert out.dtype == torch.float32 and out.shape == (1, 2)
    torch.testing.assert_close(out, torch.tensor([[math.log(0.5), math.log(0.75)]]))


def test_token_logprobs_temperature_by_hand() -> None:
    # logits (log 9, 0) at T = 2 -> (log 3, 0) -> p = (3/4, 1/4).
    logits = torch.tensor([[[math.log(9.0), 0.0]]])
    out0 = token_logprobs(logits, torch.tensor([[0]]), temperature=2.0)
    out1 = token_logprobs(logits, torch.tensor([[1]]), temperature=2.0)
    torch.testing.assert_close(out0, torch.tensor([[math.log(0.75)]]))
    torch.testing.assert_close(out1, torch.tensor([[math.log(0.25)]]))
    # At T = 1 the same logits give p = (9/10, 1/10).
    torch.testing.assert_close(token_logprobs(logits, torch.tensor([[1]])), torch.tensor([[math.log(0.1)]]))


def test_token_logprobs_bf16_matches_fp32_reference() -> None:
    gen = torch.Generator().manual_seed(0)
    logits32 = torch.randn(3, 7, 5000, generator=gen) * 8.0
    tokens = torch.randint(0, 5000, (3, 7), generator=gen)
    logits16 = logits32.bfloat16()
    out = token_logprobs(logits16, tokens, temperature=0.7)
    assert out.dtype == torch.float32
    # Same (bf16-rounded) logits computed fully in fp32: only reduction order differs.
    ref_same_inputs = torch.log_softmax(logits16.float() / 0.7, -1).gather(-1, tokens[..., None])[..., 0]
    torch.testing.assert_close(out, ref_same_inputs, atol=1e-5, rtol=1e-5)
    # Against the unrounded fp32 logits the error is bounded by bf16 input
    # rounding (|x| <= ~40, relative 2^-8 -> <= ~0.16 per logit / 0.7 and the
    # logsumexp term moves by at most the same): 0.5 nats is a loose bound.
    ref32 = torch.log_softmax(logits32 / 0.7, -1).gather(-1, tokens[..., None])[..., 0]
    assert (out - ref32).abs().max() < 0.5


def test_token_logprobs_gradient_flows() -> None:
    logits = torch.zeros(1, 1, 3, requires_grad=True)
    token_logprobs(logits, torch.tensor([[2]])).sum().backward()
    # d log softmax_2 / d logits = onehot(2) - p = (-1/3, -1/3, 2/3)
    torch.testing.assert_close(logits.grad, torch.tensor([[[-1 / 3, -1 / 3, 2 / 3]]]))


def test_token_logprobs_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        token_logprobs(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError):
        token_logprobs(torch.zeros(1, 1, 2), torch.zeros(1, 1, dtype=torch.long), temperature=0.0)


def test_entropy_by_hand() -> None:
    # (0, 0) -> uniform over 2: H = log 2.  (log 3, 0) -> (3/4, 1/4):
    # H = -(3/4 log 3/4 + 1/4 log 1/4).
    logits = torch.tensor([[[0.0, 0.0], [math.log(3.0), 0.0]]])
    h = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    torch.testing.assert_close(reference_entropy(logits), torch.tensor([[math.log(2.0), h]]))
    # T = 2 on (log 9, 0) is (log 3, 0): the same entropy h.
    torch.testing.assert_close(
        reference_entropy(torch.tensor([[[math.log(9.0), 0.0]]]), temperature=2.0), torch.tensor([[h]])
    )


def test_entropy_bf16_and_extreme_logits() -> None:
    logits = torch.tensor([[[1000.0, -1000.0, 0.0]]]).bfloat16()
    out = reference_entropy(logits)
    # A near one-hot distribution: entropy ~0, and crucially finite (no NaN).
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    assert out.abs().max() < 1e-6


def test_entropy_with_masked_vocabulary_is_finite() -> None:
    # (0, 0, -inf): uniform over the two live tokens -> log 2, gradient finite.
    logits = torch.tensor([[[0.0, 0.0, float("-inf")]]], requires_grad=True)
    out = reference_entropy(logits)
    out.sum().backward()
    torch.testing.assert_close(out, torch.tensor([[math.log(2.0)]]))
    assert torch.isfinite(logits.grad).all()


def test_response_mask_first_eos_inclusive() -> None:
    eos = 2
    ids = torch.tensor(
        [
            [5, 6, 2, 7, 2],  # EOS at 2: ones through index 2
            [2, 5, 5, 5, 5],  # EOS first: only the EOS itself
            [5, 5, 5, 5, 5],  # truncated, no EOS: all ones
        ]
    )
    expected = torch.tensor([[1, 1, 1, 0, 0], [1, 0, 0, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.float32)
    out = response_mask(ids, eos)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, expected)


def test_response_mask_several_eos_and_lengths() -> None:
    ids = torch.tensor([[5, 9, 0, 0], [5, 5, 3, 0], [5, 5, 5, 0]])
    # eos ids {3, 9}; lengths cut right padding (pad id 0 is not an EOS).
    out = response_mask(ids, [3, 9], lengths=torch.tensor([2, 4, 3]))
    expected = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 0], [1, 1, 1, 0]], dtype=torch.float32)
    torch.testing.assert_close(out, expected)
    # Length limit without EOS: all ones up to the length.
    out2 = response_mask(torch.tensor([[4, 4, 4]]), (7,), lengths=torch.tensor([3]))
    torch.testing.assert_close(out2, torch.ones(1, 3))


# ---------------------------------------------------------------- selected_logprobs


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_selected_logprobs_equal_the_full_row_functions(temperature: float) -> None:
    """At K gathered rows: the same log-probs, gradient and entropy as token_logprobs /
    reference_entropy on those rows, including a masked (-inf) vocabulary entry."""
    from remax_ray.algo.logprobs import selected_logprobs

    gen = torch.Generator().manual_seed(3)
    logits = (torch.randn(9, 700, generator=gen) * 4.0).requires_grad_(True)
    tokens = torch.randint(1, 700, (9,), generator=gen)
    with torch.no_grad():
        logits[:, 0] = float("-inf")  # never sampled, must contribute 0 to the entropy
    weights = torch.randn(9, generator=gen)
    logp, entropy = selected_logprobs(logits, tokens, temperature, with_entropy=True)
    (logp * weights).sum().backward()
    grad, logits.grad = logits.grad.clone(), None
    ref = token_logprobs(logits.unsqueeze(0), tokens.unsqueeze(0), temperature)[0]
    (ref * weights).sum().backward()
    torch.testing.assert_close(logp, ref, atol=1e-6, rtol=1e-6)  # log-probs near -25: a few ulps
    torch.testing.assert_close(grad, logits.grad, atol=1e-7, rtol=1e-6)
    ref_entropy = reference_entropy(logits.detach().unsqueeze(0), temperature)[0]
    assert torch.isfinite(entropy).all() and not entropy.requires_grad
    torch.testing.assert_close(entropy, ref_entropy, atol=1e-5, rtol=0)
    assert selected_logprobs(logits, tokens, temperature)[1] is None


def test_selected_logprobs_by_hand_bf16_and_shape_errors() -> None:
    from remax_ray.algo.logprobs import selected_logprobs

    # Row (log 9, 0) at T = 2 -> p = (3/4, 1/4); token 1 -> log(1/4); entropy of (3/4, 1/4).
    logits = torch.tensor([[math.log(9.0), 0.0]], dtype=torch.bfloat16)
    logp, entropy = selected_logprobs(logits, torch.tensor([1]), 2.0, with_entropy=True)
    assert logp.dtype == torch.float32  # reduced in fp32 whatever the logits' dtype
    torch.testing.assert_close(logp, torch.tensor([math.log(0.25)]), atol=1e-2, rtol=0)
    h = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    torch.testing.assert_close(entropy, torch.tensor([h]), atol=1e-2, rtol=0)
    with pytest.raises(ValueError, match=r"\[K, V\]"):
        selected_logprobs(torch.zeros(1, 2, 3), torch.zeros(1, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="temperature"):
        selected_logprobs(torch.zeros(1, 3), torch.zeros(1, dtype=torch.long), 0.0)
