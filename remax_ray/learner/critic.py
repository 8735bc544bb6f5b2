"""PPO's critic: a value model of the policy's architecture and size, with its own optimizer.

ReMax exists to remove exactly this module (the paper's ~50% memory saving), so it lives apart from
the policy code and the learner builds it only for an algorithm that declares ``needs_critic``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import torch

from remax_ray.algo import value_loss
from remax_ray.learner.batch import SequenceBatch
from remax_ray.learner.optim import adamw, clip_and_step
from remax_ray.learner.state import load_without_dropout

log = logging.getLogger(__name__)


class ValueModel(torch.nn.Module):
    """Backbone + scalar head in one module: what DDP or FSDP2 wraps when there are learner ranks."""

    def __init__(self, backbone: torch.nn.Module, head: torch.nn.Module):
        super().__init__()
        self.backbone, self.head = backbone, head

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state
        return self.head(hidden.float()).squeeze(-1)


class Critic:
    """Transformer backbone (initialised from the policy, as in the paper and DeepSpeed-Chat) plus a
    scalar head. Its weights are loaded separately from the policy's: no storage is shared. It is
    held to the policy's rules: dropout zeroed, ``trust_remote_code`` passed only when set, gradient
    checkpointing on request, fused AdamW, and a non-finite step skipped and counted."""

    def __init__(self, model_path: str, *, lr: float, betas: tuple[float, float], weight_decay: float,
                 max_grad_norm: float, device: torch.device, trust_remote_code: bool = False,
                 gradient_checkpointing: bool = False,
                 wrap: Callable[[torch.nn.Module, torch.nn.Module], torch.nn.Module] | None = None,
                 world_size: int = 1) -> None:
        """``wrap(module, model)``: the learner ranks' DDP/FSDP2 wrapper (``parallel.wrap``), which
        the critic follows like the policy; ``world_size``: how many ranks share its update."""
        from transformers import AutoModel

        self.device = device
        self.max_grad_norm = max_grad_norm
        self.skipped_updates = 0
        # AutoModel drops the LM head: a value model needs the hidden states, not the vocabulary.
        self.backbone = load_without_dropout(AutoModel, model_path, device, trust_remote_code)
        self.backbone.train()
        if gradient_checkpointing:
            self.backbone.gradient_checkpointing_enable()
        # Zero-initialised head: every value starts at 0, so the first GAE advantages are plain
        # returns instead of returns minus noise from a random projection.
        self.head = torch.nn.Linear(self.backbone.config.hidden_size, 1).to(device)
        torch.nn.init.zeros_(self.head.weight)
        torch.nn.init.zeros_(self.head.bias)
        self.value_model = ValueModel(self.backbone, self.head)
        self.module = wrap(self.value_model, self.backbone) if wrap else self.value_model
        self.world_size = world_size
        # After wrapping: FSDP2's parameters are the shards the optimizer must own.
        self.optimizer = adamw(self.parameters(), lr=lr, betas=betas, weight_decay=weight_decay)

    def parameters(self) -> list[torch.nn.Parameter]:
        return [*self.backbone.parameters(), *self.head.parameters()]

    def values(self, mb: SequenceBatch) -> torch.Tensor:
        """[m, L-1] values in the shifted frame: column t is V(state after tokens 0..t), the state in
        which token t+1 is chosen, so it lines up with that token's log-prob and mask."""
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
            values = self.module(mb.input_ids.to(self.device), mb.attention_mask.to(self.device))
        return values[:, :-1]

    def backward(self, mb: SequenceBatch, old_values: torch.Tensor, returns: torch.Tensor, clip: float,
                 agg: dict) -> float:
        """Clipped value loss of one micro-batch, pre-normalised by the mini-batch counts in ``agg``;
        gradients accumulate until :meth:`step`. Returns the loss value."""
        mask = mb.mask.to(self.device)
        loss = value_loss(self.values(mb), old_values, returns, mask, clip, **agg)
        (loss * self.world_size).backward()  # the ranks' wrappers average; each loss is its share
        return loss.item()

    def step(self) -> float:
        """Clip, apply and clear the accumulated gradients; returns the pre-clip gradient norm. A
        non-finite norm skips the step (counted in ``skipped_updates``): one NaN in the critic would
        poison every later value, hence every GAE advantage and policy step."""
        norm = clip_and_step(self.optimizer, self.parameters(), self.max_grad_norm)
        if not math.isfinite(norm):
            self.skipped_updates += 1
            log.warning("non-finite critic gradient norm (%s): critic step skipped, gradients zeroed "
                        "(%d skipped so far)", norm, self.skipped_updates)
        return norm
