"""``rollout.long_prompts``: what happens to a prompt longer than ``rollout.max_prompt_tokens``.

The policy runs once, on the driver, with the policy's own tokenizer, before any actor starts
(:func:`remax_ray.driver.preflight.preflight` builds it). Truncation happens here rather than in the
generator on purpose: the generator only sees token ids, while the trainer hands the prompt *text*
to the reward and to the logs. Cutting the text here, so that it re-encodes to at most
``max_prompt_tokens`` tokens, makes the text the reward sees exactly the text the policy encodes;
the generator's own cut (``Generator._encode``) then never fires for the trainer's prompts. It also
costs one tokenisation per prompt per run instead of one per prompt per step.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

from remax_ray.config import ConfigError
from remax_ray.data.prompts import Fit

__all__ = ["make_fit", "truncate_text"]

log = logging.getLogger(__name__)

Encode = Callable[[list[str]], list[list[int]]]
Decode = Callable[[list[int]], str]

# What a byte-level BPE decoder prints for a character whose first bytes were cut off.
_REPLACEMENT = "\ufffd"
_SHOWN_LINES = 5


def truncate_text(ids: list[int], max_tokens: int, encode: Encode, decode: Decode) -> str | None:
    """The text of the longest suffix of ``ids`` that keeps at most ``max_tokens`` tokens.

    Keeping the *end* matches what the old generator cut kept: the response continues the end of
    the prompt. Decoding a suffix and encoding it again can give a different split at the cut (a
    word cut in half merges differently, a cut multi-byte character decodes to U+FFFD), so the start
    moves right, token by token, until the text is clean and re-encodes within the limit. ``None``
    when no such suffix exists (not seen with real tokenizers; the caller drops the prompt then).
    """
    for start in range(max(0, len(ids) - max_tokens), len(ids)):
        text = decode(ids[start:])
        if text.strip() and not text.startswith(_REPLACEMENT) and len(encode([text])[0]) <= max_tokens:
            return text
    return None


def _lines(long: list[tuple[int, int]]) -> str:
    shown = ", ".join(f"{line} ({n} tokens)" for line, n in long[:_SHOWN_LINES])
    return shown + (", ..." if len(long) > _SHOWN_LINES else "")


def make_fit(encode: Encode, decode: Decode, max_tokens: int, policy: str) -> Fit:
    """The :data:`~remax_ray.data.prompts.Fit` for ``policy`` (truncate | skip | error).

    ``encode`` maps texts to token ids *without* special tokens, as the generator encodes them.
    """
    if policy not in ("truncate", "skip", "error"):
        raise ConfigError(f"rollout.long_prompts: unknown policy {policy!r}")

    def fit(numbered: list[tuple[int, str]], path: Path) -> tuple[list[tuple[int, str]], int, int]:
        kept: list[tuple[int, str]] = []  # numbered, so the caller keeps each prompt's other columns
        long: list[tuple[int, int]] = []  # (line, tokens) of every over-long prompt
        lost: list[int] = []  # lines of over-long prompts that could not be truncated
        for (line, prompt), ids in zip(numbered, encode([p for _, p in numbered]), strict=True):
            if len(ids) <= max_tokens:
                kept.append((line, prompt))
                continue
            long.append((line, len(ids)))
            if policy == "truncate":
                text = truncate_text(ids, max_tokens, encode, decode)
                if text is None:
                    lost.append(line)
                else:
                    kept.append((line, text))
        if not long:
            return kept, 0, 0
        where = f"rollout.max_prompt_tokens={max_tokens} tokens"
        at = "at rows" if path.is_dir() or path.suffix == ".parquet" else "at lines"
        if policy == "error":
            raise ConfigError(
                f"{path}: {len(long)} prompts are longer than {where} (rollout.long_prompts=error), {at} "
                f"{_lines(long)}; raise rollout.max_prompt_tokens, or set "
                "rollout.long_prompts=truncate or skip"
            )
        done = ("truncated to their last tokens" if policy == "truncate" else "skipped")
        log.warning("%s: %d prompts longer than %s %s (rollout.long_prompts=%s), %s %s",
                    path, len(long), where, done, policy, at, _lines(long))
        if lost:
            log.warning("%s: %d prompts dropped: no suffix of at most %d tokens decodes cleanly, "
                        "%s %s", path, len(lost), max_tokens, at, ", ".join(map(str, lost)))
        return kept, len(long), len(long) - len(lost) if policy == "truncate" else 0

    return fit
