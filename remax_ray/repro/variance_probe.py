"""Per-sample gradients of the sequence log-prob, log pi(y | x), for a chosen set of parameters,
count-sketched as they are made (:class:`.variance_sketch.CountSketch`).

A backward pass through all of SmolLM2-135M for each of ~2048 sequences is far too slow on a few CPU
cores, so the default measures the gradient of the last N decoder blocks and the final norm only
(``last:N``); ``last:N+head`` adds the LM head's weight (SmolLM2 ties it to the input embedding,
and then only the head's share of that matrix's gradient is measured: its use as the embedding sits
below the cut); ``all`` backpropagates each sample through the whole model (exact, slow).

The work is shared wherever the math allows, for the responses to one prompt:

- below the cut nothing needs a gradient: the prompt runs once through the lower blocks (its KV
  cache kept), then all responses together, and a hook takes the hidden states entering the first
  measured block and stops the forward there;
- each sample then runs the measured blocks and the final norm with autograd, alone (its gradient
  must stay its own), on the keyword arguments the model gives a block for an unpadded sequence;
- the LM head and log-softmax (49k rows: most of the work above the cut) are not per-sample work
  when the head is not measured: one batched pass gives every response position's gradient with
  respect to the normed hidden state, and each sample's backward starts from its rows of it.

The trailing path must give the model's own log-probs: :meth:`GradientProbe.check` compares it with a
plain forward of the whole model, and the caller runs it once per measurement.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from remax_ray.algo import response_mask

HEAD_ROWS = 512
"""Response positions per batched LM-head pass: bounds its [rows, vocab] temporaries (~100 MB each
for SmolLM2) while keeping the matrix products large."""


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
    """Raised by a capture hook to stop a forward once it has what it came for."""


@dataclass
class Sequence:
    """One sampled response: ``ids`` (prompt + response) and ``cols``, the positions whose next token
    is a kept response token (up to and including the first EOS)."""

    ids: list[int]
    cols: torch.Tensor

    @property
    def targets(self) -> torch.Tensor:
        return torch.tensor(self.ids)[self.cols + 1]


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
        if params.blocks is not None and params.head and getattr(self.head, "bias", None) is not None:
            raise ValueError(f"params={params.label}: an LM head with a bias is not supported")
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
        self.tied = self.head.weight is self.backbone.get_input_embeddings().weight
        self._block_kwargs: dict[int, dict[str, Any]] = {}

    @property
    def count(self) -> int:
        return sum(p.numel() for p in self.tensors)

    def sequences(self, prompt: list[int], responses: list[list[int]]) -> list[Sequence]:
        out = []
        for r in responses:
            keep = response_mask(torch.tensor([r or [0]]), self.eos_ids, torch.tensor([len(r)]))[0][: len(r)]
            out.append(Sequence(list(prompt) + list(r), torch.nonzero(keep).flatten() + (len(prompt) - 1)))
        return out

    # -- below the cut: no gradient -------------------------------------------------------------

    def _hook_first(self, layer: nn.Module, got: dict[str, Any]) -> Any:
        def hook(_module: nn.Module, args: tuple, kwargs: dict) -> None:
            got["hidden"] = (args[0] if args else kwargs["hidden_states"]).detach()
            got["kwargs"] = {k: v for k, v in kwargs.items() if k != "hidden_states"}
            raise _Captured

        return layer.register_forward_pre_hook(hook, with_kwargs=True)

    def _run_to_cut(self, layer: nn.Module, **inputs: Any) -> dict[str, Any]:
        got: dict[str, Any] = {}
        handle = self._hook_first(layer, got)
        try:
            with torch.no_grad():
                self.backbone(**inputs)
        except _Captured:
            pass
        finally:
            handle.remove()
        return got

    def _hidden_at_cut(self, prompt: list[int], responses: list[list[int]]) -> list[torch.Tensor]:
        """[L_i, d] hidden states entering the first measured block, for each prompt + response.

        The prompt's KV cache (of the blocks below the cut, the only ones the stopped forward fills)
        is repeated for the responses, which run right-padded: a real position attends only to the
        prompt and the response positions before it, so the padding never reaches it."""
        from transformers import DynamicCache

        cache = DynamicCache(config=self.model.config)
        first = self.trailing[0]
        prompt_h = self._run_to_cut(first, input_ids=torch.tensor([prompt]), past_key_values=cache,
                                    use_cache=True)["hidden"][0]
        width = max(1, max(len(r) for r in responses))
        ids = torch.zeros(len(responses), width, dtype=torch.long)
        mask = torch.zeros(len(responses), len(prompt) + width, dtype=torch.long)
        mask[:, : len(prompt)] = 1
        for i, r in enumerate(responses):
            ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
            mask[i, len(prompt) : len(prompt) + len(r)] = 1
        shared = copy.deepcopy(cache)
        shared.batch_repeat_interleave(len(responses))
        resp_h = self._run_to_cut(first, input_ids=ids, attention_mask=mask, past_key_values=shared,
                                  use_cache=True)["hidden"]
        return [torch.cat([prompt_h, resp_h[i, : len(r)]]) for i, r in enumerate(responses)]

    def _kwargs(self, length: int) -> dict[str, Any]:
        """The keyword arguments the model gives its blocks for one unpadded sequence of ``length``
        tokens (causal mask, rotary embeddings, positions), from a forward stopped at block 0."""
        if length not in self._block_kwargs:
            got = self._run_to_cut(self.backbone.layers[0], input_ids=torch.zeros(1, length, dtype=torch.long),
                                   use_cache=False)
            self._block_kwargs[length] = got["kwargs"]
        return self._block_kwargs[length]

    # -- above the cut: per-sample autograd ----------------------------------------------------

    def _normed(self, hidden: torch.Tensor, seq: Sequence) -> torch.Tensor:
        """The final norm's output at ``seq``'s response positions, through the measured blocks."""
        h = hidden.unsqueeze(0)
        kwargs = self._kwargs(hidden.shape[0])
        for layer in self.trailing:
            h = layer(h, **kwargs)
            h = h[0] if isinstance(h, tuple) else h
        return self.backbone.norm(h)[0, seq.cols]

    def _head(self, z: torch.Tensor, targets: torch.Tensor, with_grad: bool
              ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Per-row log-probs of ``targets`` from normed hidden rows ``z`` [R, d]; with ``with_grad``
        also d logp / d z [R, d] and d logp / d logits [R, V] (for the head weight's gradient)."""
        z = z.detach().requires_grad_(with_grad)
        with torch.set_grad_enabled(with_grad):
            logits = self.head(z).float() / self.temperature
            lsm = torch.log_softmax(logits, dim=-1)
            logp = lsm.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
            if not with_grad:
                return logp, None, None
            (dz,) = torch.autograd.grad(logp.sum(), z)
        # d logp_t / d logits_t = (onehot(y_t) - softmax_t) / T, kept only for a measured head.
        dlogits = None
        if self.params_spec.head:
            dlogits = -lsm.detach().exp()
            dlogits[torch.arange(len(targets)), targets] += 1.0
            dlogits /= self.temperature
        return logp.detach(), dz, dlogits

    def _full_logp(self, seq: Sequence) -> torch.Tensor:
        out = self.backbone(input_ids=torch.tensor([seq.ids]), use_cache=False).last_hidden_state[0, seq.cols]
        logits = self.head(out).float() / self.temperature
        return torch.log_softmax(logits, -1).gather(-1, seq.targets.unsqueeze(-1)).sum()

    def gradients(self, prompt: list[int], responses: list[list[int]]):
        """Yield (log pi(y | x), [grad per measured tensor]) for each response to ``prompt``."""
        seqs = self.sequences(prompt, responses)
        if self.trailing is None:
            for seq in seqs:
                logp = self._full_logp(seq)
                grads = torch.autograd.grad(logp, self.tensors, allow_unused=True)
                yield logp.detach(), self._dense(grads)
            return
        hidden = self._hidden_at_cut(prompt, responses)
        per_pass = max(1, HEAD_ROWS // max(1, max(len(r) for r in responses)))
        for lo in range(0, len(seqs), per_pass):
            chunk = list(range(lo, min(len(seqs), lo + per_pass)))
            normed = [self._normed(hidden[i], seqs[i]) for i in chunk]
            z = torch.cat(normed)
            logp, dz, dlogits = self._head(z, torch.cat([seqs[i].targets for i in chunk]), with_grad=True)
            start = 0
            for i, zi in zip(chunk, normed):
                rows = slice(start, start + zi.shape[0])
                start = rows.stop
                if zi.shape[0] == 0:  # an empty response: no token, no gradient
                    yield torch.zeros(()), [torch.zeros_like(p) for p in self.tensors]
                    continue
                grads = list(torch.autograd.grad(zi, self.tensors, grad_outputs=dz[rows], allow_unused=True))
                if dlogits is not None:  # the head's share: sum_t dlogits_t outer z_t
                    k = next(j for j, p in enumerate(self.tensors) if p is self.head.weight)
                    grads[k] = dlogits[rows].T @ zi.detach()
                yield logp[rows].sum(), self._dense(grads)

    def _dense(self, grads: Any) -> list[torch.Tensor]:
        return [torch.zeros_like(p) if g is None else g for g, p in zip(grads, self.tensors)]

    def sketches(self, prompt: list[int], responses: list[list[int]], sketch: Any
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """For each response to ``prompt``: its gradient's [k] sketch, exact squared norm (float64)
        and log pi(y | x), stacked: ([n, k], [n], [n])."""
        rows, norms, logps = [], [], []
        for logp, grads in self.gradients(prompt, responses):
            flat = torch.cat([g.reshape(-1) for g in grads])
            norms.append(float(torch.dot(flat, flat)))
            rows.append(sketch.flat(flat))
            logps.append(float(logp))
        return torch.stack(rows), torch.tensor(norms, dtype=torch.float64), torch.tensor(logps, dtype=torch.float64)

    @torch.no_grad()
    def own_logp(self, seq: Sequence) -> float:
        """log pi(y | x) from a plain forward of the whole model (its own logits)."""
        logits = self.model(input_ids=torch.tensor([seq.ids]), use_cache=False).logits[0].float()
        lsm = torch.log_softmax(logits[seq.cols] / self.temperature, -1)
        return float(lsm.gather(-1, seq.targets.unsqueeze(-1)).sum())

    def check(self, prompt: list[int], responses: list[list[int]], atol: float = 1e-3) -> float:
        """The largest |probe log-prob - the whole model's own| over ``responses``; raises above
        ``atol`` (the capture, the cache or the block arguments do not fit this architecture)."""
        seqs = self.sequences(prompt, responses)
        gaps = [abs(float(lp) - self.own_logp(s)) for (lp, _), s in zip(self.gradients(prompt, responses), seqs)]
        if not max(gaps) <= atol:
            raise RuntimeError(f"the gradient probe's log-probs differ from the model's own by up to "
                               f"{max(gaps):.3g} (params={self.params_spec.label}): this architecture's "
                               "blocks do not take the captured arguments as assumed")
        return max(gaps)
