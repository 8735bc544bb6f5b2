"""The real builtin:steered-rm (built once by the assets step, then cached): it prefers the response
whose tone the prompt's instruction asks for, on held-out openings, as the steered-sentiment task
scores it (prompt not blanked)."""

from __future__ import annotations

import json

import pytest

from remax_ray.assets.home import assets_home
from remax_ray.config import load_config, task_overrides
from remax_ray.data.prompts import load_splits
from remax_ray.driver.prepare import prepare_builtins_for_config
from remax_ray.reward import RewardScorer, reward_kwargs

pytestmark = pytest.mark.slow

POSITIVE = " a wonderful, moving film, and the best thing i have seen this year."
NEGATIVE = " a dull, clumsy mess, and the worst thing i have seen this year."


def test_the_steered_reward_model_follows_the_instruction() -> None:
    cfg = load_config(None, [*task_overrides("steered-sentiment"), "run.eval_prompts=40"])
    prepare_builtins_for_config(cfg, log=lambda _: None)
    metrics = json.loads((assets_home() / "steered-rm" / "rm_metrics.json").read_text())
    assert min(metrics["heldout_accuracy_by_group"].values()) >= 0.75, metrics

    held = load_splits(cfg.run.dataset, cfg.run.eval_prompts, cfg.run.seed)  # 20 openings, both tones
    scorer = RewardScorer(**reward_kwargs(cfg.reward))
    positive = scorer.score(held.eval, [POSITIVE] * len(held.eval))
    negative = scorer.score(held.eval, [NEGATIVE] * len(held.eval))
    wanted = [(p > n) == (row["instruction"] == "positive")
              for p, n, row in zip(positive, negative, held.eval_columns)]
    assert sum(wanted) >= 0.9 * len(wanted), list(zip(held.eval, positive, negative))
