"""Per-sample gradients of the sequence log-prob, log pi(y | x), for a chosen set of parameters,
count-sketched as they are made (:class:`.variance_sketch.CountSketch`).

A backward pass through all of SmolLM2-135M for each of ~2048 sequences is far too slow on a few CPU
cores, so the default measures the gradient of the last N decoder blocks and the final norm only
(``last:N``). One no-grad forward of a batch captures the hidden states entering block L-N (the
forward stops there: the rest, above all the 49k-row LM head over every position, is not needed),
then each sample runs only the trailing blocks, the norm and the head at its response positions,
with gradients. ``last:N+head`` adds the LM head's weight; SmolLM2 ties it to the input embedding,
and then only the head's share of that matrix's gradient is measured (its use as the embedding sits
below the cut). ``all`` runs every sample through the whole model (exact, slow).

The trailing path must give the model's own log-probs: :meth:`GradientProbe.check` compares it with a
plain forward of the whole model on one sequence, and the caller runs it once per measurement.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from remax_ray.algo import response_mask


@dataclass(frozen=True)
class ParamSet:
    blocks: int | None
    """The last this many decoder blocks (+ the final norm); None = every parameter of the model."""
    head: bool = False

    @property
    def label(self) -> str:
        return "all" if self.blocks is None else f"last:{self.blocks}" + ("+head" if self.head else "")


def parse_params(spec: str) -> ParamSet:
    """``all`` | ``last:N`` | ``last:N+head`` (N >= 1)."""
    if spec == "all":
        return ParamSet(None, True)
    m = re.fullmatch(r"last:(\d+)(\+head)?", spec)
    if not m or int(m.group(1)) < 1:
        raise ValueError(f"params must be 'all', 'last:N' or 'last:N+head' with N >= 1, got {spec!r}")
    return ParamSet(int(m.group(1)), bool(m.group(2)))


class _Captured(Exception):
    """Raised by the capture hook to stop the batch forward once the cut is reached."""


@dataclass
class Sequence:
    """One sampled response in the shifted frame: ``ids`` (prompt + response), the columns whose
    targets are kept response tokens (up to and including the first EOS)."""

    ids: list[int]
    cols: torch.Tensor


class GradientProbe:
    def __init__(self, model_path: str, params: ParamSet, *, temperature: float = 1.0,
                 trust_remote_code: bool = False) -> None:
        from remax_ray.learner.state import load_policy

        self.params_spec, self.temperature = params, temperature
        # load_policy zeroes every dropout (the sampler has none); eval() for good measure.
        self.model = load_policy(model_path, torch.device("cpu"), trust_remote_code).eval()
        self.model.requires_grad_(False)
        self.backbone = self.model.base_model
        self.head = self.model.get_output_embeddings()
        layers = self.backbone.layers
        if params.blocks is not None and params.blocks > len(layers):
            raise ValueError(f"params={params.label}: the model has only {len(layers)} decoder blocks")
        self.trailing = layers[len(layers) - params.blocks:] if params.blocks is not None else None
        if self.trailing is None:
            wanted = {id(p) for p in self.model.parameters()}
        else:
            wanted = {id(p) for m in [*self.trailing, self.backbone.norm] for p in m.parameters()}
            if params.head:
                wanted.add(id(self.head.weight))
        # named_parameters() lists a tied matrix once, under its first name (the embedding's).
        chosen = [(name, p) for name, p in self.model.named_parameters() if id(p) in wanted]
        for _, p in chosen:
            p.requires_grad_(True)
        self.names = [n for n, _ in chosen]
        self.tensors = [p for _, p in chosen]
        gen = self.model.generation_config
        eos = gen.eos_token_id if gen is not None and gen.eos_token_id is not None else self.model.config.eos_token_id
        self.eos_ids = [eos] if isinstance(eos, int) else list(eos)
        self.tied = self.head is not None and self.head.weight is self.backbone.get_input_embeddings().weight


    @property
    def count(self) -> int:
        return sum(p.numel() for p in self.tensors)

    def sequences(self, prompt_ids: list[list[int]], responses: list[list[int]]) -> list[Sequence]:
        out = []
        for p, r in zip(prompt_ids, responses):
            keep = response_mask(torch.tensor([r or [0]]), self.eos_ids, torch.tensor([len(r)]))[0]
            cols = torch.nonzero(keep).flatten() + (len(p) - 1)
            out.append(Sequence(list(p) + list(r), cols))
        return out

    def _capture(self, seqs: list[Sequence]) -> tuple[torch.Tensor, dict[str, Any]]:
        """The hidden states entering the first measured block for the right-padded batch, and the
        keyword arguments the model passed it. Right padding: a real position attends only to the
        positions before it, all real, so slicing one row out of them is exact."""
        width = max(len(s.ids) for s in seqs)
        ids = torch.zeros(len(seqs), width, dtype=torch.long)
        mask = torch.zeros(len(seqs), width, dtype=torch.long)
        for i, s in enumerate(seqs):
            ids[i, : len(s.ids)] = torch.tensor(s.ids)
            mask[i, : len(s.ids)] = 1
        got: dict[str, Any] = {}

        def hook(_module: nn.Module, args: tuple, kwargs: dict) -> None:
            got["hidden"] = (args[0] if args else kwargs.pop("hidden_states")).detach()
            got["kwargs"] = {k: v for k, v in kwargs.items() if k != "hidden_states"}
            raise _Captured

        handle = self.trailing[0].register_forward_pre_hook(hook, with_kwargs=True)
        try:
            with torch.no_grad():
                self.backbone(input_ids=ids, attention_mask=mask, use_cache=False)
        except _Captured:
            pass
        finally:
            handle.remove()
        return got["hidden"], got["kwargs"]

    @staticmethod
    def _row(kwargs: dict[str, Any], i: int, length: int) -> dict[str, Any]:
        """The block's keyword arguments for row ``i`` of the batch, cut to its ``length``."""
        def cut(v: Any, *dims: int) -> Any:
            if not torch.is_tensor(v):
                return v
            v = v[i : i + 1] if v.shape[0] > 1 else v  # some are shared by the batch ([1, ...])
            for d in dims:
                v = v.narrow(d, 0, min(length, v.shape[d]))
            return v

        out = dict(kwargs)
        out["attention_mask"] = cut(out.get("attention_mask"), 2, 3)  # [B, 1, Lq, Lk] or None
        if out.get("position_embeddings") is not None:  # (cos, sin), each [B|1, L, head_dim]
            out["position_embeddings"] = tuple(cut(t, 1) for t in out["position_embeddings"])
        out["position_ids"] = cut(out.get("position_ids"), 1)  # [B|1, L]
        if torch.is_tensor(out.get("cache_position")):
            out["cache_position"] = out["cache_position"][:length]
        return out

    def _head_logp(self, hidden: torch.Tensor, seq: Sequence) -> torch.Tensor:
        """Summed log-prob of the kept response tokens from the last hidden states [L, d]."""
        logits = self.head(hidden[seq.cols]).float() / self.temperature
        targets = torch.tensor(seq.ids)[seq.cols + 1]
        return torch.log_softmax(logits, dim=-1).gather(-1, targets.unsqueeze(-1)).sum()

    def _trailing_logp(self, hidden: torch.Tensor, kwargs: dict[str, Any], i: int, seq: Sequence) -> torch.Tensor:
        h = hidden[i : i + 1, : len(seq.ids)]
        row = self._row(kwargs, i, len(seq.ids))
        for layer in self.trailing:
            h = layer(h, **row)
            h = h[0] if isinstance(h, tuple) else h
        return self._head_logp(self.backbone.norm(h)[0], seq)

    def _full_logp(self, seq: Sequence) -> torch.Tensor:
        out = self.backbone(input_ids=torch.tensor([seq.ids]), use_cache=False).last_hidden_state
        return self._head_logp(out[0], seq)

    def logps(self, seqs: list[Sequence]) -> list[torch.Tensor]:
        """Each sequence's log pi(y | x), with its graph to the measured parameters."""
        if self.trailing is None:
            return [self._full_logp(s) for s in seqs]
        hidden, kwargs = self._capture(seqs)
        return [self._trailing_logp(hidden, kwargs, i, s) for i, s in enumerate(seqs)]

    def sketches(self, seqs: list[Sequence], sketch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """([len(seqs), k] sketches of the per-sample gradients, [len(seqs)] their exact squared
        norms, float64). One backward per sample, from the shared captured batch."""
        rows, norms = [], []
        if self.trailing is None:
            logps = (self._full_logp(s) for s in seqs)
        else:
            hidden, kwargs = self._capture(seqs)
            logps = (self._trailing_logp(hidden, kwargs, i, s) for i, s in enumerate(seqs))
        for logp in logps:
            grads = torch.autograd.grad(logp, self.tensors, allow_unused=True)
            grads = [torch.zeros_like(p) if g is None else g for g, p in zip(grads, self.tensors)]
            norms.append(sum(float(g.double().pow(2).sum()) for g in grads))
            rows.append(sketch(grads))
        return torch.stack(rows), torch.tensor(norms, dtype=torch.float64)

    @torch.no_grad()
    def check(self, seq: Sequence, atol: float = 1e-3) -> float:
        """|trailing-path log-prob - the whole model's own log-prob| for one sequence; raises when
        it exceeds ``atol`` (the capture or the row slicing does not fit this architecture)."""
        logits = self.model(input_ids=torch.tensor([seq.ids]), use_cache=False).logits[0].float()
        targets = torch.tensor(seq.ids)[seq.cols + 1]
        own = torch.log_softmax(logits[seq.cols] / self.temperature, -1).gather(-1, targets.unsqueeze(-1)).sum()
        ours = self.logps([seq])[0]
        gap = abs(float(ours) - float(own))
        if not gap <= atol:
            raise RuntimeError(f"the gradient probe's log-prob {float(ours):.6f} differs from the model's "
                               f"{float(own):.6f} (params={self.params_spec.label}): this architecture's "
                               "blocks do not take the captured arguments as assumed")
        return gap
