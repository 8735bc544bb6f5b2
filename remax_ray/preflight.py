"""Every check that can fail on user input runs here, on the driver, before any actor starts."""

from __future__ import annotations

from pathlib import Path

from remax_ray import assets
from remax_ray.config import Config, ConfigError
from remax_ray.data.prompts import PromptSplits, load_splits


def preflight(cfg: Config) -> tuple[str, PromptSplits]:
    """Resolve the policy's folder and load the prompt splits, or raise one clear error."""
    model_path = assets.resolve_model_path(cfg.model.path)
    if not (Path(model_path) / "config.json").exists():
        raise ConfigError(f"model.path: {model_path} is not a Hugging Face model folder (no config.json)")
    splits = load_splits(cfg.run.dataset, cfg.run.eval_prompts, cfg.run.seed)
    if cfg.reward.kind == "hf":  # a missing reward model fails here, not inside the reward actor
        assets.resolve_reward_model_path(cfg.reward.model_path)
    return model_path, splits
