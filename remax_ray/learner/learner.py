"""Learner: the policy, a frozen reference model, and the ReMax update (a plain class; Ray shell elsewhere)."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import torch

from remax_ray.algo import (
    entropy_from_logits,
    kl_estimate,
    kl_loss,
    masked_mean,
    outcome_advantages,
    policy_gradient_loss,
    token_logprobs,
    token_returns,
)
from remax_ray.assets import portable_tokenizer_config
from remax_ray.config import AlgoConfig, LearnerConfig
from remax_ray.learner.batch import SequenceBatch, build_batch, flatten_samples
from remax_ray.rollout.types import PromptRollout
from remax_ray.sync.collective import (
    TensorMeta,
    broadcast_from_learner,
    free_address,
    init_group,
    tensor_meta,
)
from remax_ray.sync.cpu import pack_buckets

TRAINER_STATE = "trainer_state.pt"


class Learner:
    def __init__(self, model_path: str, learner: LearnerConfig, algo: AlgoConfig, *,
                 temperature: float = 1.0, device: str = "cpu", seed: int = 0,
                 num_threads: int | None = None) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if num_threads:
            torch.set_num_threads(num_threads)
        torch.manual_seed(seed)
        self.cfg, self.algo, self.temperature = learner, algo, temperature
        self.device = torch.device(device)
        # fp32 master weights everywhere; on GPU the forward runs under bf16 autocast.
        self.policy = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32).to(self.device)
        self.reference = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32).to(self.device)
        self.reference.eval().requires_grad_(False)
        self.policy.train()
        if learner.gradient_checkpointing:
            self.policy.gradient_checkpointing_enable()
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        eos = self.policy.generation_config.eos_token_id or self.tokenizer.eos_token_id
        self.eos_ids = [eos] if isinstance(eos, int) else list(eos)
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.eos_ids[0]
        self.optimizer = torch.optim.AdamW(self.policy.parameters(), lr=learner.lr,
                                           betas=(learner.beta1, learner.beta2),
                                           weight_decay=learner.weight_decay)
        warmup = learner.warmup_steps
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: min(1.0, (s + 1) / warmup) if warmup > 0 else 1.0)
        self.steps_done = 0

    def _autocast(self):
        return torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.device.type == "cuda")

    def _logits(self, model: torch.nn.Module, mb: SequenceBatch) -> torch.Tensor:
        with self._autocast():
            out = model(input_ids=mb.input_ids.to(self.device),
                        attention_mask=mb.attention_mask.to(self.device), use_cache=False)
        return out.logits[:, :-1]

    def train_step(self, rollouts: list[PromptRollout]) -> dict[str, float]:
        """One ReMax update on a step's rollouts (scores already attached); returns metrics."""
        start = time.perf_counter()
        scores = torch.tensor([r.sample_scores for r in rollouts], dtype=torch.float32)  # [B, n]
        greedy = torch.tensor([r.greedy_score for r in rollouts], dtype=torch.float32)  # [B]
        score_adv = outcome_advantages(self.algo.estimator, scores, greedy).reshape(-1)  # [N]
        items = flatten_samples(rollouts)
        num_tokens = float(sum(len(r) for _, r, _ in items)) or 1.0
        num_seqs = float(len(items))
        totals = dict.fromkeys(("loss", "kl", "entropy", "logp_diff", "logp_diff_tokens"), 0.0)
        mbs = self.cfg.micro_batch_size
        for lo in range(0, len(items), mbs):
            mb = build_batch(items[lo : lo + mbs], score_adv[lo : lo + mbs], self.eos_ids, self.pad_id)
            self._accumulate(mb, num_tokens, num_seqs, totals)
        grad_norm = self._optimizer_step()
        metrics = {
            "loss": totals["loss"],
            "grad_norm": grad_norm,
            "kl": totals["kl"] / num_tokens,
            "entropy": totals["entropy"] / num_tokens,
            "logp_diff": totals["logp_diff"] / max(totals["logp_diff_tokens"], 1.0),
            "adv_mean": score_adv.mean().item(),
            "adv_std": score_adv.std(unbiased=False).item(),
            "reward_sample": scores.mean().item(),
            "reward_greedy": greedy.mean().item(),
            "response_tokens": num_tokens / num_seqs,
            "lr": self.scheduler.get_last_lr()[0],
            "learner_compute_s": time.perf_counter() - start,
        }
        return metrics

    def _accumulate(self, mb: SequenceBatch, num_tokens: float, num_seqs: float, totals: dict) -> None:
        """Forward/backward of one micro-batch; losses are pre-normalised by the whole batch's counts
        so the accumulated gradient equals the full-batch gradient."""
        mask = mb.mask.to(self.device)
        with torch.no_grad():
            ref_logp = token_logprobs(self._logits(self.reference, mb), mb.targets.to(self.device),
                                      self.temperature)
        logits = self._logits(self.policy, mb)
        logp = token_logprobs(logits, mb.targets.to(self.device), self.temperature)  # [m, L-1]
        kl = kl_estimate(logp.detach(), ref_logp, self.algo.kl_estimator)
        agg = dict(agg=self.algo.loss_agg, num_tokens=num_tokens, num_seqs=num_seqs)
        if self.algo.kl_placement == "reward":
            kl_coef, loss_kl = self.algo.kl_coef, None
        else:
            kl_coef = 0.0
            loss_kl = kl_loss(logp, ref_logp, mask, self.algo.kl_estimator, self.algo.kl_coef, **agg)
        returns = token_returns(mb.score_advantages.to(self.device), mask, kl, kl_coef,
                                self.algo.score_clip or None)
        loss = policy_gradient_loss(logp, returns, mask, **agg)
        if loss_kl is not None:
            loss = loss + loss_kl
        loss.backward()
        with torch.no_grad():
            totals["loss"] += loss.item()
            totals["kl"] += (kl * mask).sum().item()
            totals["entropy"] += (entropy_from_logits(logits.detach(), self.temperature) * mask).sum().item()
            if mb.has_gen_logprobs:
                totals["logp_diff"] += ((logp.detach() - mb.gen_logprobs.to(self.device)).abs() * mask).sum().item()
                totals["logp_diff_tokens"] += mask.sum().item()

    def _optimizer_step(self) -> float:
        params = [p for p in self.policy.parameters() if p.grad is not None]
        max_norm = self.cfg.max_grad_norm if self.cfg.max_grad_norm > 0 else float("inf")
        grad_norm = torch.nn.utils.clip_grad_norm_(params, max_norm).item()
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.steps_done += 1
        return grad_norm

    @torch.no_grad()
    def sequence_logprobs(self, sequences: list[list[int]]) -> list[list[float]]:
        """Log-prob (temperature 1) of tokens 1..L-1 of each sequence under the current policy."""
        out = []
        for seq in sequences:
            ids = torch.tensor([seq], device=self.device)
            logits = self.policy(input_ids=ids, use_cache=False).logits[:, :-1]
            out.append(token_logprobs(logits, ids[:, 1:], 1.0)[0].tolist())
        return out

    def export_weights(self, bucket_mb: int, dtype: str = "float32") -> Iterator[bytes]:
        """The policy's HF-named parameters as safetensors buckets (tied weights appear once)."""
        return pack_buckets(self.policy.named_parameters(), bucket_mb * 2**20, getattr(torch, dtype))

    def collective_address(self) -> tuple[str, int]:
        return free_address()

    def init_collective(self, host: str, port: int, world_size: int, backend: str) -> None:
        """Host rank 0 of the weight-sync group (blocks until every generator worker joined)."""
        self._group = init_group(host, port, 0, world_size, backend)

    def weight_meta(self) -> list[TensorMeta]:
        return tensor_meta(self.policy.named_parameters())

    def broadcast_weights(self) -> float:
        """Send every parameter over the group, in ``weight_meta`` order; returns bytes sent."""
        return float(broadcast_from_learner(self._group, self.policy.named_parameters()))

    def save(self, folder: str | os.PathLike, extra_state: dict | None = None) -> Path:
        """Write an HF folder (safetensors) plus optimizer/scheduler/RNG state, atomically."""
        folder = Path(folder)
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
        tmp.chmod(0o755)  # mkdtemp makes it owner-only; a checkpoint is meant to be shared
        self.policy.save_pretrained(tmp, safe_serialization=True)
        self.tokenizer.save_pretrained(tmp)
        portable_tokenizer_config(tmp)
        torch.save({"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                    "torch_rng": torch.get_rng_state(), "learner_steps": self.steps_done,
                    **(extra_state or {})}, tmp / TRAINER_STATE)
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
        return folder

