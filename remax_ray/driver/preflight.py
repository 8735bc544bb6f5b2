"""Every check that can fail on user input runs here, on the driver, before any actor starts."""

from __future__ import annotations

import logging
from typing import Any

from remax_ray.assets import home
from remax_ray.assets.hf import check_model_folder, load_tokenizer
from remax_ray.config import Config, ConfigError, resolve_score_response_only
from remax_ray.data.long_prompts import make_fit
from remax_ray.data.prompts import PromptKeys, PromptSplits, load_splits
from remax_ray.reward.kinds import REWARD_SOURCES

log = logging.getLogger(__name__)


def preflight(cfg: Config) -> tuple[str, PromptSplits]:
    """Resolve the policy's folder and load the prompt splits, or raise one clear error."""
    model_path = home.resolve_model_path(cfg.model.path)
    check_model_folder(model_path, "model.path", allow_pickle_weights=cfg.model.allow_pickle_weights)
    if cfg.model.reference_path:
        check_model_folder(home.resolve_model_path(cfg.model.reference_path), "model.reference_path",
                           allow_pickle_weights=cfg.model.allow_pickle_weights)
    if cfg.model.lora_rank:
        check_lora(cfg, model_path)
    # The policy's own tokenizer: prompt lengths are counted in the tokens the generator will see.
    tokenizer = load_tokenizer(model_path, "model.path", trust_remote_code=cfg.model.trust_remote_code)
    # Chat rows are rendered first, so the long-prompt policy counts the templated text's tokens.
    splits = load_splits(cfg.run.dataset, cfg.run.eval_prompts, cfg.run.seed,
                         fit=_fit(tokenizer, cfg.rollout.max_prompt_tokens, cfg.rollout.long_prompts),
                         keys=prompt_keys(cfg, tokenizer))
    log.info("prompts: %d train, %d held out; %d lines skipped, %d too long (%d truncated)",
             len(splits.train), len(splits.eval), splits.skipped, splits.too_long, splits.truncated)
    check_reward(cfg, splits.column_names())
    return model_path, splits


def prompt_keys(cfg: Config, tokenizer: Any) -> PromptKeys:
    """Where rows keep their prompt; in chat format, the policy tokenizer's own template renders the
    messages with its generation prompt (the assistant turn's opening), as the model was tuned."""
    run = cfg.run
    if not run.messages_key:
        return PromptKeys(run.prompt_key)
    if not getattr(tokenizer, "chat_template", None):
        raise ConfigError(
            f"run.messages_key={run.messages_key!r}: the tokenizer of model.path ({cfg.model.path}) has no "
            "chat template, so chat messages cannot be rendered; give plain-text prompts (run.prompt_key) "
            "or use a model whose tokenizer ships a chat template")

    def render(messages: list[dict]) -> str:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    return PromptKeys(run.prompt_key, run.messages_key, render)


def _fit(tokenizer: Any, max_tokens: int, policy: str):
    def encode(texts: list[str]) -> list[list[int]]:
        # As Generator._encode does: no BOS/EOS added, special-token text parsed as special tokens.
        return tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []

    def decode(ids: list[int]) -> str:
        # Keep special tokens and spacing, so the text encodes back to the same tokens.
        return tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)

    return make_fit(encode, decode, max_tokens, policy)


def check_reward(cfg: Config, columns: set[str] | None = None) -> None:
    """The reward kind's own check (:data:`remax_ray.reward.kinds.REWARD_SOURCES`): a missing reward
    model or an unimportable reward function fails here, not in the reward actor; so does a function
    that takes a dataset column (``columns``) the dataset does not have."""
    rw = cfg.reward
    blanked, why = resolve_score_response_only(rw)
    if blanked:  # the one start-up line that says the reward does not see the prompt
        log.info("reward: prompts blanked (%s)", why)
    REWARD_SOURCES[rw.kind].preflight(cfg, columns)


def check_lora(cfg: Config, model_path: str) -> None:
    """A LoRA run's model: PEFT is installed, the target modules exist in the model (built on the
    meta device: no weights read), and vLLM serves LoRA for its architecture."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from remax_ray.assets.hf import hf_kwargs
    from remax_ray.learner.lora import LoraSpec, target_modules

    try:
        import peft  # noqa: F401
    except ImportError:
        raise ConfigError("model.lora.rank > 0 needs PEFT: pip install peft (scripts/setup.sh installs the "
                          "pinned version)") from None
    config = AutoConfig.from_pretrained(model_path, **hf_kwargs(cfg.model.trust_remote_code))
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, **hf_kwargs(cfg.model.trust_remote_code))
    try:
        targets = target_modules(model, LoraSpec.of(cfg.model))
    except ValueError as err:
        raise ConfigError(f"model.path {model_path}: {err}") from None
    names = {name.rpartition(".")[2] for name, _ in model.named_modules()}
    missing = sorted(set(targets) - names)
    if missing:
        raise ConfigError(f"model.lora.target_modules: {missing} are not modules of {model_path} "
                          f"({type(model).__name__}); all-linear would take {target_modules(model, LoraSpec(1))}")
    architectures = list(getattr(config, "architectures", None) or [type(model).__name__])
    try:
        from vllm.model_executor.models import ModelRegistry
        from vllm.model_executor.models.interfaces import supports_lora
    except ImportError:  # a driver without vLLM (the generators' nodes have it): they will say
        return
    classes = [c for c in (ModelRegistry._try_load_model_cls(a) for a in architectures) if c is not None]
    if classes and not supports_lora(classes[0]):
        raise ConfigError(f"model.lora.rank={cfg.model.lora_rank}: vLLM does not serve LoRA adapters for "
                          f"{architectures[0]} (model.path {model_path}); train it with full fine-tuning "
                          "(model.lora.rank=0)")
    log.info("LoRA rank %d on %s: adapters on %s; each sync sends the adapter alone",
             cfg.model.lora_rank, architectures[0], ", ".join(targets))
