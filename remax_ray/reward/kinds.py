"""How each reward kind scores, and what the driver checks of it before any actor starts.

:data:`REWARD_SOURCES` has one :class:`RewardSource` per kind, under the names of
:data:`remax_ray.config.REWARD_KINDS` (the facts that config, assets step and driver read; config
cannot import this package, which sits above it, hence two tables with the same keys, checked by a
unit test). :class:`remax_ray.reward.scorer.RewardScorer` builds the kind's scorer from its entry and
checks what it returns; ``driver/preflight`` runs its ``preflight``. Nothing else branches on a
kind's name.

* ``vader``    - VADER compound sentiment (in [-1, 1]) of the rendered text;
* ``function`` - a Python function ``fn(prompts, responses) -> list[float]``
  named as ``package.module:function`` (it sees raw prompts and responses);
  one that also takes keyword parameters, ``fn(prompts, responses, answer)``
  or ``fn(prompts, responses, **columns)``, gets those columns of each
  response's dataset row as lists parallel to ``responses``
  (:func:`column_params` reads the signature; a two-argument function gets none);
* ``hf``       - a Hugging Face sequence-classification model with one output
  (a folder, or ``builtin:sentiment-rm`` prepared by ``remax-ray assets``);
  the score is ``logits[:, 0]`` of the rendered text. torch and transformers
  are imported only when one is built.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from typing import Any, Callable, Protocol

from remax_ray.assets.hf import check_model_folder, hf_kwargs
from remax_ray.assets.home import resolve_reward_model_path
from remax_ray.config import Config, ConfigError

__all__ = ["REWARD_SOURCES", "ColumnParams", "KindScorer", "RewardSource", "ScorerSettings",
           "column_params", "load_function"]

RewardFn = Callable[[list[str], list[str]], Any]
Rows = list[dict[str, Any]]


class ScorerSettings(Protocol):
    """What a kind's ``build`` reads of the scorer it is built for (a ``RewardScorer``)."""

    function: str
    model_path: str
    max_length: int
    batch_size: int
    device: str
    trust_remote_code: bool

    def render(self, prompts: list[str], responses: list[str]) -> list[str]: ...


class KindScorer(Protocol):
    """A built reward: called on a batch (prompts already blanked where asked), it returns the raw
    rewards, which the scorer then checks; ``source`` names the reward in those checks' errors."""

    source: str

    def __call__(self, prompts: list[str], responses: list[str], rows: Rows | None) -> Any: ...


def _nothing_to_check(cfg: Config, columns: set[str] | None) -> None:
    return None


@dataclass(frozen=True)
class RewardSource:
    """One reward kind's behaviour.

    build: loads what the kind scores with, once per scorer (in the reward actor).
    preflight: on the driver, before any actor starts, what ``build`` would fail on, as a
        :class:`ConfigError` naming the key: ``columns`` are the dataset's (None: not known yet).
    """

    build: Callable[[ScorerSettings], KindScorer]
    preflight: Callable[[Config, set[str] | None], None] = _nothing_to_check


# --------------------------------------------------------------------------------- vader


class _Vader:
    source = "VADER"

    def __init__(self, settings: ScorerSettings) -> None:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        self.analyzer = SentimentIntensityAnalyzer()
        self.render = settings.render

    def __call__(self, prompts: list[str], responses: list[str], rows: Rows | None) -> list[float]:
        return [self.analyzer.polarity_scores(t)["compound"] for t in self.render(prompts, responses)]


# ------------------------------------------------------------------------------ function


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

    def kwargs(self, rows: Rows) -> dict[str, list[Any]]:
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


class _Function:
    def __init__(self, settings: ScorerSettings) -> None:
        self.source = f"reward function {settings.function!r}"
        self.fn = load_function(settings.function)
        self.columns = column_params(self.fn)

    def __call__(self, prompts: list[str], responses: list[str], rows: Rows | None) -> Any:
        if self.columns.required and rows is None:
            raise ValueError(f"{self.source} takes the dataset columns {sorted(self.columns.required)}, "
                             "but score() was given no rows")
        columns = self.columns.kwargs(rows) if rows is not None else {}
        try:
            return self.fn(prompts, responses, **columns)
        except Exception as exc:
            # Ray would show the function's own traceback; this line says which setting ran it.
            raise RuntimeError(f"{self.source} (reward.function) raised {type(exc).__name__}: {exc} "
                               f"while scoring {len(responses)} responses") from exc


def _preflight_function(cfg: Config, columns: set[str] | None) -> None:
    """An unimportable function, or one taking a column the dataset lacks, fails before the actors."""
    ref = cfg.reward.function
    try:
        fn = load_function(ref)
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever the module raises while it is imported
        raise ConfigError(f"reward.function: importing {ref!r} failed: {type(exc).__name__}: {exc}") from exc
    missing = sorted(column_params(fn).required - columns) if columns is not None else []
    if missing:
        raise ConfigError(
            f"reward.function: {ref!r} takes the dataset column(s) {', '.join(map(repr, missing))}, "
            f"which no row of run.dataset ({cfg.run.dataset}) has (its columns: "
            f"{', '.join(sorted(columns)) or 'none besides the prompt'}); give them a default or pick "
            "a dataset that has them")


# ------------------------------------------------------------------------------------ hf


class _RewardModel:
    def __init__(self, settings: ScorerSettings) -> None:
        if not settings.model_path:
            raise ConfigError("reward.model_path: required when reward.kind=hf")
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.source = f"reward model {settings.model_path!r}"
        self.render, self.device = settings.render, settings.device
        self.max_length, self.batch_size = settings.max_length, settings.batch_size
        # Resolved here, in the process that loads it, so no caller needs to know the builtins.
        folder = resolve_reward_model_path(settings.model_path)
        extra = hf_kwargs(settings.trust_remote_code)
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
        self.tokenizer, self.model = tokenizer, model

    def __call__(self, prompts: list[str], responses: list[str], rows: Rows | None) -> list[float]:
        import torch

        texts = self.render(prompts, responses)
        scores: list[float] = []
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                chunk = texts[start : start + self.batch_size]
                batch = self.tokenizer(chunk, truncation=True, max_length=self.max_length, padding=True,
                                       return_tensors="pt").to(self.device)
                logits = self.model(**batch).logits
                # Upcast before leaving the device: bf16 rewards lose precision
                # that the advantage (reward minus greedy reward) needs.
                scores.extend(logits[:, 0].float().cpu().tolist())
        return scores


def _preflight_reward_model(cfg: Config, columns: set[str] | None) -> None:
    """A missing or unloadable reward-model folder fails before the actors."""
    folder = resolve_reward_model_path(cfg.reward.model_path)
    check_model_folder(folder, "reward.model_path", allow_pickle_weights=cfg.model.allow_pickle_weights)


REWARD_SOURCES: dict[str, RewardSource] = {
    "hf": RewardSource(_RewardModel, _preflight_reward_model),
    "vader": RewardSource(_Vader),
    "function": RewardSource(_Function, _preflight_function),
}
