"""Sections for the policy update: ``learner`` (the optimiser) and ``algo`` (estimator, KL, loss)."""

from dataclasses import dataclass

from remax_ray.config.base import _field
from remax_ray.config.estimators import estimator_help, on_policy_names, ratio_names

__all__ = ["AlgoConfig", "LearnerConfig"]

LEARNER_STRATEGIES = ("ddp", "fsdp")


@dataclass(frozen=True)
class LearnerConfig:
    """The torch learner actor (AdamW optimiser)."""

    lr: float = _field(5e-5, "AdamW learning rate (> 0).")
    weight_decay: float = _field(0.0, "AdamW weight decay (>= 0).")
    beta1: float = _field(0.9, "AdamW beta1, in [0, 1).")
    beta2: float = _field(0.999, "AdamW beta2, in [0, 1).")
    warmup_steps: int = _field(0, "Linear learning-rate warm-up over this many steps (0 = none).")
    max_grad_norm: float = _field(1.0, "Gradient-norm clipping threshold (0 disables clipping).")
    micro_batch_size: int = _field(
        8, "Sequences per forward/backward pass; gradients are accumulated over a mini-batch."
    )
    mini_batch_size: int = _field(
        0,
        lambda: (
            "Sequences per optimizer step (0 = the whole step's batch, one optimizer step per step). "
            f"Only the estimators with PPO's clipped ratio ({ratio_names()}) may split a step into "
            "several optimizer steps: the ratio corrects for the policy moving between them."),
    )
    critic_lr: float = _field(1e-4, "AdamW learning rate of PPO's value model (its own optimizer).")
    gradient_checkpointing: bool = _field(False, "Enable activation checkpointing in the policy.")
    num_cpus: float = _field(1.0, "Ray CPUs reserved for each learner actor (rank).")
    num_workers: int = _field(
        1, "Learner ranks (actors) that train the policy together as one torch process group (gloo "
           "on CPU, nccl on GPU), each in its own placement bundle. A step's prompts are split across "
           "them by prompt, balanced by tokens; the update equals the single-learner update.")
    strategy: str = _field(
        "ddp", "How learner ranks share the model (num_workers > 1): ddp (every rank holds the whole "
               "model and optimizer; gradients all-reduced) | fsdp (FSDP2: parameters, gradients and "
               "AdamW state sharded per decoder layer; the reference and PPO's critic sharded too).")
    fsdp_offload: bool = _field(
        False, "strategy=fsdp on a CUDA learner: keep the sharded parameters, gradients and optimizer "
               "state in CPU memory between uses (torch's CPUOffloadPolicy); slower, for policies that "
               "do not fit. Refused on a CPU learner.")


@dataclass(frozen=True)
class AlgoConfig:
    """The policy-gradient estimator and its loss."""

    estimator: str = _field("remax", estimator_help)
    kl_coef: float = _field(0.02, "Coefficient of the KL penalty to the reference model (0 = off).")
    kl_estimator: str = _field(
        "k1",
        "KL estimator: k1 | k2 | k3. With kl_placement=loss only k2 (whose expected gradient is that "
        "of KL(pi||ref)) and k3 (that of KL(ref||pi)) pull toward the reference; k1 is refused there.",
    )
    kl_placement: str = _field(
        "reward", "Where the KL penalty goes: reward (subtracted from the reward) | loss (added to the loss)."
    )
    loss_agg: str = _field(
        "token-mean", "Loss aggregation: token-mean | seq-mean-token-mean | seq-sum."
    )
    score_clip: float = _field(
        0.0, "Clip the reward's score of every response (sampled and greedy) to [-score_clip, "
             "score_clip] before the estimator forms its advantage, the same for every estimator "
             "(0 = no clipping). The KL penalty is not clipped.")
    clip_eps: float = _field(0.2, "PPO ratio clipping epsilon (> 0).")
    importance_cap: float = _field(
        2.0, "rollout.overlap: per-token importance weights pi/mu (learner over generator) are "
             "truncated at this value (> 0), bounding the variance of the stale-sample correction.")
    value_clip: float = _field(0.2, "PPO value-loss clipping around the rollout-time values (> 0).")
    epochs: int = _field(
        1, lambda: ("Passes over each step's batch (PPO's K; DeepSpeed-Chat's default 1). Must be 1 "
                    f"for the on-policy estimators ({on_policy_names()})."))
    whiten_advantages: bool = _field(
        True, "PPO: normalise GAE advantages to zero mean and unit variance over the batch's tokens.")
    gamma: float = _field(1.0, "Discount factor for token-level estimators, in [0, 1].")
    lam: float = _field(0.95, "GAE lambda for token-level estimators, in [0, 1].")
