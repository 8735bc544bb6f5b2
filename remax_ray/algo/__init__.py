"""Pure-torch algorithm core of remax-ray: log-probs, advantages, KL, losses, importance weights.

Imports nothing but torch and the standard library (no other remax_ray package, no ray, vllm or
transformers), so it can be unit tested, and used in any worker, on its own.

Modules: :mod:`.advantages` (the estimator registry), :mod:`.kl`, :mod:`.logprobs`, :mod:`.losses`,
:mod:`.moments` (mergeable count/mean/M2), :mod:`.offpolicy` (importance weights), :mod:`.preference`
(Bradley-Terry), :mod:`.seeds` (seeds as pure functions of what they belong to).
"""

from remax_ray.algo.advantages import (
    ESTIMATORS,
    EstimatorSpec,
    clip_scores,
    gae_advantages,
    get_estimator,
    grpo_advantages,
    masked_moments,
    masked_whiten,
    outcome_advantages,
    reinforce_advantages,
    reinforce_mean_advantages,
    remax_advantages,
    rloo_advantages,
    token_returns,
    token_rewards,
)
from remax_ray.algo.kl import KL_ESTIMATORS, KL_PLACEMENTS, kl_estimate, kl_loss
from remax_ray.algo.logprobs import response_mask, token_logprobs
from remax_ray.algo.moments import Moments, masked_moments_of, merge_all
from remax_ray.algo.losses import (
    AGG_MODES,
    aggregate,
    masked_mean,
    masked_sum,
    policy_gradient_loss,
    ppo_clip_loss,
    value_loss,
)
from remax_ray.algo.preference import bradley_terry_loss, pairwise_accuracy

__all__ = [
    "AGG_MODES",
    "ESTIMATORS",
    "KL_ESTIMATORS",
    "KL_PLACEMENTS",
    "Moments",
    "EstimatorSpec",
    "aggregate",
    "bradley_terry_loss",
    "clip_scores",
    "gae_advantages",
    "get_estimator",
    "grpo_advantages",
    "kl_estimate",
    "kl_loss",
    "masked_mean",
    "masked_moments",
    "masked_moments_of",
    "merge_all",
    "masked_whiten",
    "masked_sum",
    "outcome_advantages",
    "pairwise_accuracy",
    "policy_gradient_loss",
    "ppo_clip_loss",
    "reinforce_advantages",
    "reinforce_mean_advantages",
    "remax_advantages",
    "rloo_advantages",
    "response_mask",
    "token_logprobs",
    "token_returns",
    "token_rewards",
    "value_loss",
]
