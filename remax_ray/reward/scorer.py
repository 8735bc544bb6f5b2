"""The reward scorer: one batched call turns (prompt, response) pairs into floats.

The reward sources (``reward.kind``: ``vader``, ``function``, ``hf``) are the entries of
:data:`remax_ray.reward.kinds.REWARD_SOURCES`; this class builds the configured one and does what
every kind shares: blanking the prompt, rendering the template, checking the result.

The text given to ``vader`` and ``hf`` is ``template.format(prompt=...,
response=...)``.  With ``score_response_only`` the prompt is replaced by the
empty string (for ``function`` too), so the score reflects the response alone.
The configuration's ``auto`` is resolved before this class sees it
(:func:`remax_ray.config.resolve_score_response_only`): only the builtin reward
model and VADER get blanked prompts unless the user says otherwise.
:func:`reward_kwargs` is the one mapping from the ``reward`` section to this class's arguments.

Whatever the source, the result is checked to be one float per pair, so a
broken reward fails loudly here instead of poisoning the advantages.  A NaN or
infinite reward is an error naming its prompt (``reward.on_invalid=error``), or
is returned as NaN and logged (``skip``) for the trainer to drop that prompt
(:func:`remax_ray.rollout.validity.drop_invalid`).
This module does not import ray; torch and transformers are imported only
for ``kind=hf`` and ``torch.set_num_threads`` is left to the caller.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

from remax_ray.assets.home import resolve_reward_model_path
from remax_ray.config import INVALID_REWARD_POLICIES, ConfigError, RewardConfig, reward_kind
from remax_ray.reward.kinds import REWARD_SOURCES, KindScorer

__all__ = ["RewardScorer", "reward_kwargs"]

log = logging.getLogger(__name__)


def reward_kwargs(reward: RewardConfig) -> dict[str, Any]:
    """The scorer's arguments, kind included, for the ``reward`` section:
    ``RewardScorer(**reward_kwargs(cfg.reward))``, as the reward actor is started.

    Resolved here, on the driver: on a remote cluster the actor may not see REMAX_RAY_HOME, so a
    kind that reads ``reward.model_path`` gets its ``builtin:`` folder; and
    ``reward.score_response_only=auto`` depends on the configured model path (``builtin:`` or
    not), not on the folder it resolves to.
    """
    model_path = reward.model_path
    if reward_kind(reward.kind).reads_model_path:
        model_path = resolve_reward_model_path(model_path)
    return dict(kind=reward.kind, function=reward.function, model_path=model_path, template=reward.template,
                max_length=reward.max_length, batch_size=reward.batch_size,
                score_response_only=reward.blanks_prompt, on_invalid=reward.on_invalid,
                trust_remote_code=reward.trust_remote_code)


def _short(text: str, limit: int = 80) -> str:
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


def _check_rewards(source: str, result: Any, prompts: list[str], responses: list[str],
                   on_invalid: str = "error") -> list[float]:
    """Return ``result`` as one python float per pair or raise ``ValueError`` naming ``source``.

    A non-finite value names its pair (index, prompt, response). With ``on_invalid="skip"`` it is
    returned as NaN instead (inf too, so that one test, ``math.isfinite``, finds every bad value) and
    logged, and the trainer drops that prompt's samples.
    """
    n = len(responses)
    # Strings and mappings are iterable but certainly not a list of rewards.
    if isinstance(result, (str, bytes, Mapping)) or not hasattr(result, "__iter__"):
        raise ValueError(
            f"{source} must return a list of {n} floats, got {type(result).__name__}"
        )
    try:
        values = list(result)
    except TypeError:  # e.g. a 0-d tensor or array: iterable type, scalar value
        raise ValueError(f"{source} must return a list of {n} floats, got a scalar") from None
    if len(values) != n:
        raise ValueError(f"{source} returned {len(values)} rewards for {n} responses")
    out: list[float] = []
    for i, value in enumerate(values):
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{source} returned a non-number at index {i}: {value!r}") from None
        if not math.isfinite(number):
            where = (f"a non-finite reward at index {i} ({number}) for prompt {_short(prompts[i])}, "
                     f"response {_short(responses[i])}")
            if on_invalid != "skip":
                raise ValueError(f"{source} returned {where}; set reward.on_invalid=skip to drop such "
                                 "prompts from their step instead")
            log.warning("%s returned %s: the prompt is dropped from this step (reward.on_invalid=skip)",
                        source, where)
            number = math.nan
        out.append(number)
    return out


class RewardScorer:
    """Scores (prompt, response) pairs with the reward of one kind of :data:`REWARD_SOURCES`."""

    def __init__(
        self,
        kind: str,
        *,
        function: str = "",
        model_path: str = "",
        template: str = "{prompt}{response}",
        max_length: int = 256,
        batch_size: int = 64,
        score_response_only: bool = False,
        device: str = "cpu",
        on_invalid: str = "error",
        trust_remote_code: bool = False,
    ) -> None:
        if kind not in REWARD_SOURCES:
            raise ConfigError(f"reward.kind: must be one of {', '.join(REWARD_SOURCES)} (got {kind!r})")
        if max_length < 1 or batch_size < 1:
            raise ConfigError(
                f"reward.max_length and reward.batch_size must be >= 1 (got {max_length}, {batch_size})"
            )
        if on_invalid not in INVALID_REWARD_POLICIES:
            raise ConfigError(
                f"reward.on_invalid: must be one of {', '.join(INVALID_REWARD_POLICIES)} (got {on_invalid!r})"
            )
        # Render once now so a bad template fails at construction, not mid-run.
        try:
            template.format(prompt="", response="")
        except (KeyError, IndexError, ValueError) as exc:
            raise ConfigError(f"reward.template: cannot format {template!r}: {exc!r}") from None

        self.kind = kind
        self.function = function
        self.model_path = model_path
        self.template = template
        self.max_length = max_length
        self.batch_size = batch_size
        self.score_response_only = score_response_only
        self.device = device
        self.on_invalid = on_invalid
        self.trust_remote_code = trust_remote_code

        # Last: a kind's build may read the settings above (its scorer renders with the template).
        self.kind_scorer: KindScorer = REWARD_SOURCES[kind].build(self)

    # ------------------------------------------------------------------ public

    def score(self, prompts: list[str], responses: list[str],
              rows: list[dict[str, Any]] | None = None) -> list[float]:
        """One reward per pair, as python floats, in input order.

        All pairs are scored in one call (the trainer passes sampled and greedy
        responses together); ``kind=hf`` splits them into ``batch_size`` chunks.
        ``rows`` (parallel to ``responses``) are the other columns of each
        response's dataset row, for a reward function that asks for them; the
        prompt itself is never among them, so ``score_response_only`` hides it.
        """
        if len(prompts) != len(responses):
            raise ValueError(
                f"score() got {len(prompts)} prompts but {len(responses)} responses"
            )
        if rows is not None and len(rows) != len(responses):
            raise ValueError(f"score() got {len(rows)} rows for {len(responses)} responses")
        n = len(responses)
        if n == 0:
            return []
        # The original prompts name a bad reward's pair even when the scored text blanks them.
        shown, responses = list(prompts), list(responses)
        prompts = [""] * n if self.score_response_only else list(prompts)

        result = self.kind_scorer(prompts, responses, rows)
        return _check_rewards(self.kind_scorer.source, result, shown, responses, self.on_invalid)

    def render(self, prompts: list[str], responses: list[str]) -> list[str]:
        """The texts that ``vader`` and ``hf`` score (prompt blanked when ``score_response_only``)."""
        return [
            self.template.format(prompt="" if self.score_response_only else p, response=r)
            for p, r in zip(prompts, responses, strict=True)
        ]
