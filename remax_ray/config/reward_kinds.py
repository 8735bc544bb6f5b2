"""The reward kinds (``reward.kind``) as the configuration and the driver know them: one entry each.

A kind's scoring (how it loads, scores and is checked before a run) is its entry of
:data:`remax_ray.reward.kinds.REWARD_SOURCES`, under the same name: reward sits above config in the
layers, so the facts that config, the assets step and the driver read live here, in plain data and
functions of the ``reward`` section, and a unit test checks that the two tables name the same kinds.
Nothing else branches on a kind's name: ``reward.kind``'s choices and help, its validation,
``reward.score_response_only=auto``, the builtin asset it needs (``driver/prepare``) and the model
path resolved for the reward actor (``reward.scorer.reward_kwargs``) are all read from here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Protocol

from remax_ray.config.base import ConfigError

__all__ = ["REWARD_KINDS", "RESPONSE_ONLY_REWARD_MODELS", "RewardKind", "kind_help", "reward_kind"]

# The builtin reward models fit on pairs with an empty prompt; builtin:steered-rm is not one of
# them: its pairs' prompt holds the instruction that decides which continuation wins.
RESPONSE_ONLY_REWARD_MODELS = ("builtin:sentiment-rm",)
_FUNCTION_REF = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")


class RewardSection(Protocol):
    """The keys of the ``reward`` section that the entries read (a
    :class:`remax_ray.config.generation.RewardConfig`, which imports this module)."""

    kind: str
    function: str
    model_path: str


def _reads_the_prompt(reward: RewardSection) -> str | None:
    return None


def _no_keys(reward: RewardSection) -> None:
    return None


@dataclass(frozen=True)
class RewardKind:
    """What the configuration and the driver need to know about one reward kind.

    summary: the kind in a few words, for the help of ``reward.kind``.
    describe: the configured reward in words, for the start-up line and the auto decision's reason
        ("vader", "reward function 'pkg.mod:fn'").
    response_only: under ``reward.score_response_only=auto``, why this reward scores the response
        alone (so its prompt is blanked), or None where it reads the prompt, as reward models in
        RLHF do; the default.
    check: the configuration's checks of the keys this kind reads, raising :class:`ConfigError`
        naming the key (run by ``validate``, before anything is loaded).
    reads_model_path: the kind loads ``reward.model_path``, so a ``builtin:`` one is an asset the
        assets step prepares and the driver resolves to its folder for the reward actor.
    """

    summary: str
    describe: Callable[[RewardSection], str]
    response_only: Callable[[RewardSection], str | None] = _reads_the_prompt
    check: Callable[[RewardSection], None] = _no_keys
    reads_model_path: bool = False


def _check_function(reward: RewardSection) -> None:
    if not reward.function:
        raise ConfigError("reward.function: required when reward.kind=function "
                          "(form 'package.module:function')")
    if not _FUNCTION_REF.match(reward.function):
        raise ConfigError(f"reward.function: must look like 'package.module:function' (got {reward.function!r})")


def _check_model_path(reward: RewardSection) -> None:
    if not reward.model_path.strip():
        raise ConfigError("reward.model_path: required when reward.kind=hf "
                          "(a Hugging Face sequence-classification folder)")


def _model_response_only(reward: RewardSection) -> str | None:
    path = reward.model_path.strip()
    return f"{path} scores the continuation alone" if path in RESPONSE_ONLY_REWARD_MODELS else None


# In the order reward.kind's help lists them: the default first.
REWARD_KINDS: dict[str, RewardKind] = {
    "hf": RewardKind("a sequence-classification reward model; the default is the learned sentiment "
                     "reward model",
                     describe=lambda reward: f"reward model {reward.model_path.strip()!r}",
                     response_only=_model_response_only, check=_check_model_path, reads_model_path=True),
    "vader": RewardKind("VADER sentiment of the response", describe=lambda reward: "vader",
                        response_only=lambda reward: "vader, a lexicon on one text, scores the response alone"),
    "function": RewardKind("a Python function", describe=lambda reward: f"reward function {reward.function!r}",
                           check=_check_function),
}


def reward_kind(name: str) -> RewardKind:
    """The entry of ``name``, or a :class:`ConfigError` listing the kinds."""
    if name not in REWARD_KINDS:
        raise ConfigError(f"reward.kind: must be one of {', '.join(REWARD_KINDS)} (got {name!r})")
    return REWARD_KINDS[name]


def kind_help() -> str:
    """The help text of ``reward.kind``: every kind with its summary."""
    return "Reward source: " + " | ".join(f"{name} ({kind.summary})" for name, kind in REWARD_KINDS.items()) + "."
