"""Reward scoring: turn (prompt, response) pairs into scalar rewards.

:class:`RewardScorer` is a plain class (no ray import) so that it can be unit
tested directly; the Ray actor that hosts it lives elsewhere.  Each reward kind's
scoring is an entry of :data:`remax_ray.reward.kinds.REWARD_SOURCES`.  Built-in toy
reward functions for ``reward.kind=function`` are in
:mod:`remax_ray.reward.functions`.  A reward model for ``reward.kind=hf`` is
trained from comparison pairs by :mod:`remax_ray.reward.train_rm` (``remax-ray
train-rm``; it imports torch, so it is not imported here).

May import: ``algo``, ``config``, ``data``, ``assets.hf``/``assets.home``. Never ``ray``.

Also :mod:`.scorer`, :mod:`.kinds` and :mod:`.rm_command` (the ``train-rm`` command's body).
"""

from remax_ray.reward.kinds import REWARD_SOURCES, RewardSource, load_function
from remax_ray.reward.scorer import RewardScorer, reward_kwargs

__all__ = ["REWARD_SOURCES", "RewardScorer", "RewardSource", "load_function", "reward_kwargs"]
