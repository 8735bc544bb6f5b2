"""Per-token estimators of KL(pi || ref) and the "KL in loss" penalty.

Only the log-probs of the *sampled* tokens are available (y ~ pi), so the
KL is estimated from them (Schulman's k1/k2/k3, http://joschu.net/blog/kl-approx.html):

- k1 = log pi - log ref: unbiased, but negative on many tokens (high variance).
- k2 = 0.5 * (log pi - log ref)^2: always >= 0, biased, low variance.
- k3 = ref/pi - log(ref/pi) - 1: always >= 0 and unbiased (E_pi[ref/pi] = 1).

As a *loss* term (``kl_placement=loss``) what matters is the expected gradient along the sampled
tokens, E_pi[grad k], and that is not the gradient of the quantity each estimates as a value:
- k1: E_pi[grad log pi] = 0. No pull toward the reference, only noise; config refuses it.
- k2: E_pi[(log pi - log ref) grad log pi] = grad KL(pi || ref), the reverse KL.
- k3: E_pi[(1 - ref/pi) grad log pi] = -sum ref grad log pi = grad KL(ref || pi), the forward KL.
tests/unit/test_kl_in_loss_gradient.py checks all three by exact enumeration on a softmax policy.
"""

from __future__ import annotations

import torch
from torch import Tensor

from remax_ray.algo.losses import MAX_LOG_RATIO, aggregate

KL_ESTIMATORS = ("k1", "k2", "k3")
# "reward": subtract kl_coef * kl from the token rewards (ReMax paper / verl).
# "loss": add kl_coef * kl to the loss and let autograd differentiate it.
KL_PLACEMENTS = ("reward", "loss")


def kl_estimate(logp: Tensor, ref_logp: Tensor, kind: str = "k1") -> Tensor:
    """Per-token KL(pi || ref) estimate from tokens sampled from pi.

    Args:
        logp: [N, T] log pi of the sampled tokens.
        ref_logp: [N, T] log ref of the same tokens.
        kind: one of :data:`KL_ESTIMATORS`.

    Returns:
        [N, T], same dtype as logp. Not masked.
    """
    diff = logp - ref_logp  # log(pi / ref)
    if kind == "k1":
        return diff
    if kind == "k2":
        return 0.5 * diff**2
    if kind == "k3":
        # Clamped: one degenerate token (ref assigns ~0 mass) would otherwise yield inf.
        neg = (-diff).clamp(-MAX_LOG_RATIO, MAX_LOG_RATIO)  # log(ref / pi)
        return torch.exp(neg) - neg - 1.0
    raise ValueError(f"unknown KL estimator {kind!r}; valid: {', '.join(KL_ESTIMATORS)}")


def kl_loss(
    logp: Tensor,
    ref_logp: Tensor,
    mask: Tensor,
    kind: str,
    kl_coef: float,
    agg: str,
    num_tokens: float | None = None,
    num_seqs: float | None = None,
) -> Tensor:
    """The "KL in loss" penalty: kl_coef * aggregate(kl_estimate(...)).

    Args:
        logp: [N, T] current log-probs (requires grad).
        ref_logp: [N, T] reference log-probs (detached: the reference policy
            is frozen).
        mask: [N, T] 0/1.
        kind: KL estimator, see :data:`KL_ESTIMATORS`.
        kl_coef: penalty weight.
        agg, num_tokens, num_seqs: as in :func:`remax_ray.algo.losses.aggregate`.

    Returns:
        [] scalar.
    """
    kl = kl_estimate(logp, ref_logp.detach(), kind)
    return kl_coef * aggregate(kl, mask, agg, num_tokens, num_seqs)
