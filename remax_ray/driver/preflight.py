"""Every check that can fail on user input runs here, on the driver, before any actor starts."""

from __future__ import annotations

import logging
from typing import Any

from remax_ray.assets import home
from remax_ray.assets.hf import check_model_folder, load_tokenizer
from remax_ray.config import Config, ConfigError, resolve_score_response_only
from remax_ray.data.long_prompts import make_fit
from remax_ray.data.prompts import PromptSplits, load_splits

log = logging.getLogger(__name__)


def preflight(cfg: Config) -> tuple[str, PromptSplits]:
    """Resolve the policy's folder and load the prompt splits, or raise one clear error."""
    model_path = home.resolve_model_path(cfg.model.path)
    check_model_folder(model_path, "model.path", allow_pickle_weights=cfg.model.allow_pickle_weights)
    if cfg.model.reference_path:
        check_model_folder(home.resolve_model_path(cfg.model.reference_path), "model.reference_path",
                           allow_pickle_weights=cfg.model.allow_pickle_weights)
    # The policy's own tokenizer: prompt lengths are counted in the tokens the generator will see.
    tokenizer = load_tokenizer(model_path, "model.path", trust_remote_code=cfg.model.trust_remote_code)
    splits = load_splits(cfg.run.dataset, cfg.run.eval_prompts, cfg.run.seed,
                         fit=_fit(tokenizer, cfg.rollout.max_prompt_tokens, cfg.rollout.long_prompts))
    log.info("prompts: %d train, %d held out; %d lines skipped, %d too long (%d truncated)",
             len(splits.train), len(splits.eval), splits.skipped, splits.too_long, splits.truncated)
    check_reward(cfg)
    return model_path, splits


def _fit(tokenizer: Any, max_tokens: int, policy: str):
    def encode(texts: list[str]) -> list[list[int]]:
        # As Generator._encode does: no BOS/EOS added, special-token text parsed as special tokens.
        return tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []

    def decode(ids: list[int]) -> str:
        # Keep special tokens and spacing, so the text encodes back to the same tokens.
        return tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)

    return make_fit(encode, decode, max_tokens, policy)


def check_reward(cfg: Config) -> None:
    """A missing reward model or an unimportable reward function fails here, not in the reward actor."""
    rw = cfg.reward
    blanked, why = resolve_score_response_only(rw)
    if blanked:  # the one start-up line that says the reward does not see the prompt
        log.info("reward: prompts blanked (%s)", why)
    if rw.kind == "hf":
        folder = home.resolve_reward_model_path(rw.model_path)
        check_model_folder(folder, "reward.model_path", allow_pickle_weights=cfg.model.allow_pickle_weights)
    elif rw.kind == "function":
        from remax_ray.reward.scorer import load_function

        try:
            load_function(rw.function)
        except ConfigError:
            raise
        except Exception as exc:  # noqa: BLE001 - whatever the module raises while it is imported
            raise ConfigError(
                f"reward.function: importing {rw.function!r} failed: {type(exc).__name__}: {exc}"
            ) from exc
