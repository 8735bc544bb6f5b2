"""The reward scorer: one batched call turns (prompt, response) pairs into floats.

Three reward sources (``reward.kind``):

* ``vader``    - VADER compound sentiment (in [-1, 1]) of the rendered text;
* ``function`` - a Python function ``fn(prompts, responses) -> list[float]``
  named as ``package.module:function`` (it sees raw prompts and responses);
* ``hf``       - a Hugging Face sequence-classification model with one output
  (a folder, or ``builtin:sentiment-rm`` prepared by ``remax-ray assets``);
  the score is ``logits[:, 0]`` of the rendered text.

The text given to ``vader`` and ``hf`` is ``template.format(prompt=...,
response=...)``.  With ``score_response_only`` the prompt is replaced by the
empty string (for ``function`` too), so the score reflects the response alone.

Whatever the source, the result is checked to be one finite float per pair,
so a broken reward fails loudly here instead of poisoning the advantages.
This module does not import ray; torch and transformers are imported only
for ``kind=hf`` and ``torch.set_num_threads`` is left to the caller.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Callable

from remax_ray.assets import resolve_reward_model_path
from remax_ray.config import REWARD_KINDS, ConfigError

if TYPE_CHECKING:
    from remax_ray.config import RewardConfig

__all__ = ["REWARD_KINDS", "RewardScorer", "load_function"]

RewardFn = Callable[[list[str], list[str]], Any]


def load_function(ref: str) -> RewardFn:
    """Import ``package.module:function`` and return the callable.

    Raises :class:`ConfigError` (a ``ValueError``) naming ``ref`` when the
    reference is malformed, the module cannot be found, the attribute is
    missing, or the attribute is not callable.
    """
    module_name, sep, attr = ref.partition(":")
    if not sep or not module_name or not attr or ":" in attr:
        raise ConfigError(
            f"reward.function: must look like 'package.module:function' (got {ref!r})"
        )
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        # Only the named module (or one of its parent packages) being absent is
        # a configuration mistake; a dependency missing *inside* the module is
        # the module's own bug and keeps its original traceback.
        missing = exc.name or ""
        if missing and (module_name == missing or module_name.startswith(missing + ".")):
            raise ConfigError(
                f"reward.function: cannot import module {module_name!r} for {ref!r} "
                f"(no module named {missing!r})"
            ) from None
        raise
    try:
        fn = getattr(module, attr)
    except AttributeError:
        raise ConfigError(
            f"reward.function: module {module_name!r} has no attribute {attr!r} (from {ref!r})"
        ) from None
    if not callable(fn):
        raise ConfigError(
            f"reward.function: {ref!r} is not callable (it is a {type(fn).__name__})"
        )
    return fn


def _check_rewards(source: str, result: Any, n: int) -> list[float]:
    """Return ``result`` as ``n`` finite python floats or raise ``ValueError`` naming ``source``."""
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
            raise ValueError(f"{source} returned a non-finite reward at index {i}: {number}")
        out.append(number)
    return out


class RewardScorer:
    """Scores (prompt, response) pairs with VADER, a Python function or an HF classifier."""

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
    ) -> None:
        if kind not in REWARD_KINDS:
            raise ConfigError(f"reward.kind: must be one of {', '.join(REWARD_KINDS)} (got {kind!r})")
        if max_length < 1 or batch_size < 1:
            raise ConfigError(
                f"reward.max_length and reward.batch_size must be >= 1 (got {max_length}, {batch_size})"
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

        self._fn: RewardFn | None = None
        self._analyzer: Any = None
        self._tokenizer: Any = None
        self._model: Any = None
        if kind == "function":
            self._fn = load_function(function)
        elif kind == "vader":
            from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

            self._analyzer = SentimentIntensityAnalyzer()
        else:
            self._load_hf()

    @classmethod
    def from_config(cls, cfg: RewardConfig, device: str = "cpu") -> RewardScorer:
        """Build a scorer from the ``reward`` section of the configuration."""
        return cls(
            cfg.kind,
            function=cfg.function,
            model_path=cfg.model_path,
            template=cfg.template,
            max_length=cfg.max_length,
            batch_size=cfg.batch_size,
            score_response_only=cfg.score_response_only,
            device=device,
        )

    # ------------------------------------------------------------------ public

    def score(self, prompts: list[str], responses: list[str]) -> list[float]:
        """One reward per pair, as python floats, in input order.

        All pairs are scored in one call (the trainer passes sampled and greedy
        responses together); ``kind=hf`` splits them into ``batch_size`` chunks.
        """
        if len(prompts) != len(responses):
            raise ValueError(
                f"score() got {len(prompts)} prompts but {len(responses)} responses"
            )
        n = len(responses)
        if n == 0:
            return []
        prompts = [""] * n if self.score_response_only else list(prompts)
        responses = list(responses)

        if self.kind == "function":
            assert self._fn is not None
            result = self._fn(prompts, responses)
            return _check_rewards(f"reward function {self.function!r}", result, n)
        texts = self.render(prompts, responses)
        if self.kind == "vader":
            raw = [self._analyzer.polarity_scores(t)["compound"] for t in texts]
            return _check_rewards("VADER", raw, n)
        return _check_rewards(f"reward model {self.model_path!r}", self._score_hf(texts), n)

    def render(self, prompts: list[str], responses: list[str]) -> list[str]:
        """The texts that ``vader`` and ``hf`` score (prompt blanked when ``score_response_only``)."""
        return [
            self.template.format(prompt="" if self.score_response_only else p, response=r)
            for p, r in zip(prompts, responses, strict=True)
        ]

    # ------------------------------------------------------------------ hf

    def _load_hf(self) -> None:
        if not self.model_path:
            raise ConfigError("reward.model_path: required when reward.kind=hf")
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        # Resolved here, in the process that loads it, so no caller needs to know the builtins.
        folder = resolve_reward_model_path(self.model_path)
        tokenizer = AutoTokenizer.from_pretrained(folder)
        model = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=1)
        # Decoder-style reward models (GPT-2, Llama) often ship without a pad
        # token; padding needs one, and the model needs its id to find each
        # sequence's last real token.
        if tokenizer.pad_token is None and tokenizer.eos_token is not None:
            tokenizer.pad_token = tokenizer.eos_token
        if getattr(model.config, "pad_token_id", None) is None:
            model.config.pad_token_id = tokenizer.pad_token_id
        model.to(self.device)
        model.eval()
        self._tokenizer = tokenizer
        self._model = model

    def _score_hf(self, texts: list[str]) -> list[float]:
        import torch

        scores: list[float] = []
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                chunk = texts[start : start + self.batch_size]
                batch = self._tokenizer(
                    chunk,
                    truncation=True,
                    max_length=self.max_length,
                    padding=True,
                    return_tensors="pt",
                ).to(self.device)
                logits = self._model(**batch).logits
                # Upcast before leaving the device: bf16 rewards lose precision
                # that the advantage (reward minus greedy reward) needs.
                scores.extend(logits[:, 0].float().cpu().tolist())
        return scores
