"""The reward scorer: one batched call turns (prompt, response) pairs into floats.

Three reward sources (``reward.kind``):

* ``vader``    - VADER compound sentiment (in [-1, 1]) of the rendered text;
* ``function`` - a Python function ``fn(prompts, responses) -> list[float]``
  named as ``package.module:function`` (it sees raw prompts and responses);
  one that also takes keyword parameters, ``fn(prompts, responses, answer)``
  or ``fn(prompts, responses, **columns)``, gets those columns of each
  response's dataset row as lists parallel to ``responses``
  (:func:`column_params` reads the signature; a two-argument function gets none);
* ``hf``       - a Hugging Face sequence-classification model with one output
  (a folder, or ``builtin:sentiment-rm`` prepared by ``remax-ray assets``);
  the score is ``logits[:, 0]`` of the rendered text.

The text given to ``vader`` and ``hf`` is ``template.format(prompt=...,
response=...)``.  With ``score_response_only`` the prompt is replaced by the
empty string (for ``function`` too), so the score reflects the response alone.
The configuration's ``auto`` is resolved before this class sees it
(:func:`remax_ray.config.resolve_score_response_only`): only the builtin reward
model and VADER get blanked prompts unless the user says otherwise.

Whatever the source, the result is checked to be one float per pair, so a
broken reward fails loudly here instead of poisoning the advantages.  A NaN or
infinite reward is an error naming its prompt (``reward.on_invalid=error``), or
is returned as NaN and logged (``skip``) for the trainer to drop that prompt
(:func:`remax_ray.rollout.validity.drop_invalid`).
This module does not import ray; torch and transformers are imported only
for ``kind=hf`` and ``torch.set_num_threads`` is left to the caller.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from remax_ray.assets.hf import hf_kwargs
from remax_ray.assets.home import resolve_reward_model_path
from remax_ray.config import INVALID_REWARD_POLICIES, REWARD_KINDS, ConfigError

if TYPE_CHECKING:
    from remax_ray.config import RewardConfig

__all__ = ["REWARD_KINDS", "ColumnParams", "RewardScorer", "column_params", "load_function"]

RewardFn = Callable[[list[str], list[str]], Any]

log = logging.getLogger(__name__)


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


@dataclass(frozen=True)
class ColumnParams:
    """Which dataset columns a reward function asks for, read from its signature."""

    named: tuple[str, ...] = ()
    """Keyword parameters after the first two (prompts, responses): each gets the column of its name."""
    required: frozenset[str] = frozenset()
    """Of those, the ones without a default: the dataset must have them."""
    every: bool = False
    """``**columns``: every column of the rows."""
    reserved: frozenset[str] = frozenset()
    """The names of the first two parameters; a column of such a name cannot be passed."""

    def kwargs(self, rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
        """``{column: [value of each row]}`` for the columns asked for (None where a row lacks one)."""
        names = list(self.named)
        if self.every:
            names += sorted({k for row in rows for k in row} - set(names) - self.reserved)
        return {name: [row.get(name) for row in rows] for name in names}


def column_params(fn: Callable[..., Any]) -> ColumnParams:
    """The columns ``fn(prompts, responses, ...)`` takes: none for a two-argument function (or one
    whose signature cannot be read), its further keyword parameters by name, all with ``**``."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):  # some builtins and C callables have no readable signature
        return ColumnParams()
    kinds = inspect.Parameter
    positional = [p for p in params if p.kind in (kinds.POSITIONAL_ONLY, kinds.POSITIONAL_OR_KEYWORD)]
    first_two = frozenset(p.name for p in positional[:2])
    named = [p for p in params if p.kind in (kinds.POSITIONAL_OR_KEYWORD, kinds.KEYWORD_ONLY)
             and p.name not in first_two]
    return ColumnParams(tuple(p.name for p in named),
                        frozenset(p.name for p in named if p.default is kinds.empty),
                        any(p.kind is kinds.VAR_KEYWORD for p in params), first_two)


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
        on_invalid: str = "error",
        trust_remote_code: bool = False,
    ) -> None:
        if kind not in REWARD_KINDS:
            raise ConfigError(f"reward.kind: must be one of {', '.join(REWARD_KINDS)} (got {kind!r})")
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

        self._fn: RewardFn | None = None
        self._columns = ColumnParams()
        self._analyzer: Any = None
        self._tokenizer: Any = None
        self._model: Any = None
        if kind == "function":
            self._fn = load_function(function)
            self._columns = column_params(self._fn)
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
            score_response_only=cfg.blanks_prompt,
            device=device,
            on_invalid=cfg.on_invalid,
            trust_remote_code=cfg.trust_remote_code,
        )

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

        def check(source: str, result: Any) -> list[float]:
            return _check_rewards(source, result, shown, responses, self.on_invalid)

        if self.kind == "function":
            assert self._fn is not None
            source = f"reward function {self.function!r}"
            if self._columns.required and rows is None:
                raise ValueError(f"{source} takes the dataset columns {sorted(self._columns.required)}, "
                                 "but score() was given no rows")
            columns = self._columns.kwargs(rows) if rows is not None else {}
            try:
                result = self._fn(prompts, responses, **columns)
            except Exception as exc:
                # Ray would show the function's own traceback; this line says which setting ran it.
                raise RuntimeError(f"{source} (reward.function) raised {type(exc).__name__}: {exc} "
                                   f"while scoring {n} responses") from exc
            return check(source, result)
        texts = self.render(prompts, responses)
        if self.kind == "vader":
            raw = [self._analyzer.polarity_scores(t)["compound"] for t in texts]
            return check("VADER", raw)
        return check(f"reward model {self.model_path!r}", self._score_hf(texts))

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
        extra = hf_kwargs(self.trust_remote_code)
        tokenizer = AutoTokenizer.from_pretrained(folder, **extra)
        model = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=1, **extra)
        # Decoder-style reward models (GPT-2, Llama) often ship without a pad
        # token; padding needs one, and the model needs its id to find each
        # sequence's last real token.
        if tokenizer.pad_token is None and tokenizer.eos_token is not None:
            tokenizer.pad_token = tokenizer.eos_token
        if tokenizer.pad_token is None:
            raise ConfigError(
                f"reward.model_path: the tokenizer of {folder} has neither a pad nor an eos token, so "
                "batches cannot be padded; add one (tokenizer.add_special_tokens({'pad_token': ...}))"
            )
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
