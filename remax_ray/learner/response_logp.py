"""The learner's forward pass, with the LM head applied at the response positions only.

A causal LM's logits are ``head(backbone(x))``. The learner needs them only where the target is a
kept response token (the batch's ``mask``): in a default step (prompts of 15-30 tokens, 24 new
tokens) that is about half of the positions, and SmolLM2's 49k-row head plus its log-softmax is a
large share of the forward and, through autograd, of the backward. So the backbone runs over every
position (the prompt is context), the hidden states of the masked positions are gathered, and only
those rows go through the head and the log-softmax. The results are scattered back into the batch's
[m, L-1] shifted frame with zeros outside the mask, so every loss and estimator downstream keeps its
shapes (the losses multiply by the mask, so those zeros never reach a gradient).
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable
from contextlib import AbstractContextManager

import torch
from torch import Tensor, nn

from remax_ray.algo.logprobs import selected_logprobs
from remax_ray.learner.batch import SequenceBatch

log = logging.getLogger(__name__)
# model -> (backbone, head), or None where the split was refused; weak so a dropped model is freed.
_SPLITS: weakref.WeakKeyDictionary[nn.Module, tuple[nn.Module, nn.Module] | None] = weakref.WeakKeyDictionary()
_PROBE_LENGTH = 8


def head_split(model: nn.Module, autocast: Callable[[], AbstractContextManager]
               ) -> tuple[nn.Module, nn.Module] | None:
    """(backbone, head) when ``model(x).logits`` is ``head(backbone(x).last_hidden_state)``, else None.

    transformers' ``base_model`` and ``get_output_embeddings`` give the two parts of any causal LM
    (a tied head is the embedding matrix itself, so its gradient reaches the embedding as before).
    But some models change the logits after the head (Gemma-2's final soft-capping, Cohere's logit
    scale), which a bare head would silently drop. So the split is checked once per model, on a short
    probe sequence, against the model's own forward; unless the two agree to the bit the caller falls
    back to the full forward and gathers from its logits (exact, only slower; logged)."""
    if model in _SPLITS:
        return _SPLITS[model]
    backbone, head = getattr(model, "base_model", model), model.get_output_embeddings()
    split = None
    if backbone is not model and isinstance(head, nn.Module):
        vocab = getattr(head, "out_features", None) or model.config.vocab_size
        device = next(model.parameters()).device
        ids = (torch.arange(1, _PROBE_LENGTH + 1, device=device) % vocab).unsqueeze(0)
        with torch.no_grad(), autocast():
            full = model(input_ids=ids, use_cache=False).logits.float()
            parts = head(backbone(input_ids=ids, use_cache=False).last_hidden_state).float()
        # A plain causal LM runs the very same ops in both paths (HF slices ``hidden[:, 0:]`` before
        # its head), so they agree to the bit; any post-head change, however small on this probe's
        # logits, shows up. A false refusal only costs speed, a false acceptance would cost exactness.
        if full.shape == parts.shape and torch.equal(full, parts):
            split = (backbone, head)
        else:
            log.warning("%s: its logits are not head(backbone(x)), so the learner runs its LM head "
                        "at every position (slower, still exact)", type(model).__name__)
    _SPLITS[model] = split
    return split


class ResponseLogits(nn.Module):
    """``model``'s logits at the given (row, column) positions only: ``head(backbone(x)[rows, cols])``
    where the head can be split off (see :func:`head_split`), else the full forward gathered there.

    Backbone, gather and head run inside this one module's ``forward`` because it is what DDP and
    FSDP2 wrap: DDP prepares its gradient reducer, and FSDP2's root unshards the parameters outside
    the decoder layers (embeddings, final norm, head), only in a call of the wrapped module itself."""

    def __init__(self, model: nn.Module, autocast: Callable[[], AbstractContextManager]):
        super().__init__()
        self.model = model
        self.split = head_split(model, autocast) is not None  # probed now, on the unwrapped model

    def forward(self, input_ids: Tensor, attention_mask: Tensor, rows: Tensor, cols: Tensor) -> Tensor:
        if not self.split:  # the head cannot be separated: full logits, still gathered
            return self.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits[rows, cols]
        backbone, head = self.model.base_model, self.model.get_output_embeddings()
        hidden = backbone(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state
        return head(hidden[rows, cols])  # [K, V]: no vocabulary-sized row for a prompt position


def response_logprobs(scorer: nn.Module, mb: SequenceBatch, temperature: float, device: torch.device,
                      autocast: Callable[[], AbstractContextManager], with_entropy: bool = False
                      ) -> tuple[Tensor, Tensor | None]:
    """Log-probs of ``mb.targets`` under softmax(logits / temperature), computed at the positions of
    ``mb.mask`` only: [m, L-1] float32, 0 elsewhere, differentiable w.r.t. the model's parameters.
    With ``with_entropy`` also the entropies there ([m, L-1], 0 elsewhere, no gradient).
    ``scorer``: a :class:`ResponseLogits`, possibly wrapped by DDP or FSDP2."""
    mask = mb.mask.to(device)
    rows, cols = mask.nonzero(as_tuple=True)  # the K kept response positions, row-major
    targets = mb.targets.to(device)[rows, cols]
    # Column L-1 is only ever a target: causal attention keeps the hidden states of columns
    # 0..L-2 independent of it, so it is not fed in (one position fewer per row).
    ids, attention = mb.input_ids[:, :-1].to(device), mb.attention_mask[:, :-1].to(device)
    with autocast():
        logits = scorer(ids, attention, rows, cols)
    logp_k, entropy_k = selected_logprobs(logits, targets, temperature, with_entropy)
    logp = logp_k.new_zeros(mask.shape).index_put((rows, cols), logp_k)
    entropy = None if entropy_k is None else entropy_k.new_zeros(mask.shape).index_put((rows, cols), entropy_k)
    return logp, entropy
