"""Learner: the policy, a frozen reference model, and the update (a plain class; Ray shell elsewhere)."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from pathlib import Path

import torch

from remax_ray.algo import (
    get_estimator,
    kl_estimate,
    kl_loss,
    policy_gradient_loss,
    ppo_clip_loss,
    token_returns,
)
from remax_ray.algo.moments import masked_moments_of
from remax_ray.algo.seeds import mix_seed
from remax_ray.algo.offpolicy import truncated_importance_weights
from remax_ray.assets.hf import hf_kwargs
from remax_ray.config import AlgoConfig, LearnerConfig
from remax_ray.data.rollouts import PromptRollout
from remax_ray.learner import dist
from remax_ray.learner.batch import (
    SequenceBatch,
    build_batch,
    check_behaviour_logprobs,
    empty_batch,
    flatten_samples,
    micro_batch_rows,
)
from remax_ray.learner.critic import Critic
from remax_ray.learner.lora import AdapterOff, LoraSpec, with_lora
from remax_ray.learner.experience import (
    Experience,
    MicroExperience,
    assign_critic_advantages,
    global_stats,
    pooled_scores,
    sequence_scores,
)
from remax_ray.learner.memory import memory_stats
from remax_ray.learner.minibatch import gather_rows, mini_batch_plan, micro_runs, padding_like, sequence_keys
from remax_ray.learner.optim import adamw, clip_and_step
from remax_ray.learner.parallel import wrap
from remax_ray.learner.response_logp import ResponseLogits, response_logprobs
from remax_ray.learner.state import load_policy, restore_learner_state, save_checkpoint
from remax_ray.learner.totals import UpdateTotals

log = logging.getLogger(__name__)


class Learner:
    """Policy + frozen reference (+ PPO's critic). ``train_step`` = ``make_experience`` (no grad)
    then ``update`` (epochs x mini-batches x micro-batches with the algorithm's loss)."""

    def __init__(self, model_path: str, learner: LearnerConfig, algo: AlgoConfig, *,
                 temperature: float = 1.0, device: str = "cpu", seed: int = 0,
                 num_threads: int | None = None, reference_path: str | None = None,
                 trust_remote_code: bool = False, resume_from: str | None = None,
                 importance_cap: float = 0.0, rank: int = 0, world_size: int = 1,
                 store: dist.Store | None = None, dist_timeout_s: float = 600.0,
                 lora: LoraSpec | None = None) -> None:
        """``model_path`` is the policy's starting point (a checkpoint folder on resume);
        ``reference_path`` the KL anchor, which stays the original model (default: model_path).
        With ``lora`` the policy is ``reference_path`` plus a trainable adapter (``model_path``'s on
        resume) and the reference is the same model with the adapter off (``learner/lora.py``).
        With ``world_size`` > 1 this is rank ``rank`` of ``learner.num_workers`` ranks that join one
        process group through ``store`` and share the model by ``learner.strategy``."""
        from transformers import AutoTokenizer

        if num_threads:
            torch.set_num_threads(num_threads)
        torch.manual_seed(seed)
        self.cfg, self.algo, self.temperature, self.seed = learner, algo, temperature, seed
        self.spec = get_estimator(algo.estimator)
        self.device = torch.device(device)
        self.rank, self.world_size = rank, world_size
        if world_size > 1:
            dist.join(store, rank, world_size, self.device, dist_timeout_s, cpu_tensors=learner.fsdp_offload)
        self.reference_path = reference_path or model_path
        # > 0 with rollout.overlap: batches come from the generators' policy, one update behind.
        self.importance_cap = importance_cap
        # fp32 master weights everywhere; on GPU the forward runs under bf16 autocast.
        self.lora = lora
        if lora:
            base = load_policy(self.reference_path, self.device, trust_remote_code)
            if learner.gradient_checkpointing:  # reentrant checkpoints would lose the adapter's gradients
                base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            self.policy = with_lora(base, lora, model_path if resume_from else None)
            self.reference = None  # the policy with its adapter off
        else:
            self.policy = load_policy(model_path, self.device, trust_remote_code)
            self.reference = load_policy(self.reference_path, self.device, trust_remote_code)
            self.reference.eval().requires_grad_(False)
            if learner.gradient_checkpointing:
                self.policy.gradient_checkpointing_enable()
        self.policy.train()
        self.tokenizer = AutoTokenizer.from_pretrained(model_path, **hf_kwargs(trust_remote_code))
        eos = self.policy.generation_config.eos_token_id or self.tokenizer.eos_token_id
        self.eos_ids = [eos] if isinstance(eos, int) else list(eos)
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.eos_ids[0]
        # What the update calls: the response-position forward, wrapped for the ranks (parallel.py).
        # (LoRA: the HF model inside PEFT's wrapper, its linear layers carrying the adapter.)
        hf_policy = self.policy.get_base_model() if lora else self.policy
        self.policy_logits = ResponseLogits(hf_policy, self._autocast)
        if world_size > 1:
            self.policy_logits = self._wrap_trained(self.policy_logits, hf_policy)
        if lora:
            self.reference_logits = AdapterOff(self.policy_logits, self.policy)
        else:
            self.reference_logits = ResponseLogits(self.reference, self._autocast)
            if world_size > 1:
                self.reference_logits = wrap(self.reference_logits, self.reference, learner.strategy, self.device,
                                             trainable=False, offload=learner.fsdp_offload)
        betas = (learner.beta1, learner.beta2)
        self.optimizer = adamw([p for p in self.policy.parameters() if p.requires_grad], lr=learner.lr,
                               betas=betas, weight_decay=learner.weight_decay)  # fused where possible
        warmup = learner.warmup_steps
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: min(1.0, (s + 1) / warmup) if warmup > 0 else 1.0)
        self.critic = None
        if self.spec.needs_critic:
            # The critic stays a full model (no adapter); on a LoRA resume its weights come from
            # the checkpoint's sharded folder, loaded into the base's architecture.
            self.critic = Critic(self.reference_path if lora else model_path, lr=learner.critic_lr, betas=betas,
                                 weight_decay=learner.weight_decay, max_grad_norm=learner.max_grad_norm,
                                 device=self.device, trust_remote_code=trust_remote_code,
                                 gradient_checkpointing=learner.gradient_checkpointing,
                                 wrap=self._wrap_trained if world_size > 1 else None, world_size=world_size)
        self.steps_done = 0
        self.skipped_updates = 0
        if resume_from:
            restore_learner_state(self, resume_from)

    def _wrap_trained(self, module: torch.nn.Module, model: torch.nn.Module) -> torch.nn.Module:
        return wrap(module, model, self.cfg.strategy, self.device, trainable=True, offload=self.cfg.fsdp_offload)

    def _autocast(self):
        return torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.device.type == "cuda")

    def _score(self, model: torch.nn.Module, mb: SequenceBatch, entropy: bool = False
               ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """[m, L-1] log-probs (and entropies) of the response tokens, 0 off the mask: the LM head
        and the log-softmax run at the response positions only (see ``response_logp``)."""
        scorer = self.policy_logits if model is self.policy else self.reference_logits
        return response_logprobs(scorer, mb, self.temperature, self.device, self._autocast, entropy)

    def _logp(self, model: torch.nn.Module, mb: SequenceBatch) -> torch.Tensor:
        return self._score(model, mb)[0]

    @property
    def measures_kl(self) -> bool:
        """Whether the reference forward runs. At ``algo.kl_coef`` 0 no loss or reward reads the
        reference's log-probs, so its forward (about a quarter of a ReMax step's compute) is skipped; the
        ``kl`` metric is then reported as 0 and ``kl_measured`` as 0, rather than measured."""
        return self.algo.kl_coef > 0

    def _no_sync(self, last: bool):
        """DDP: no gradient all-reduce in this backward unless it is the mini-batch's last."""
        if last or not hasattr(self.policy_logits, "no_sync"):
            return contextlib.nullcontext()
        return self.policy_logits.no_sync()

    def _micro_batch_rows(self, items: list) -> list[list[int]]:
        # Length-sorted: the experience stage's grouping carries no meaning (each sequence's tensors
        # are its own), and PPO's mini-batches are drawn per sequence in the update (minibatch.py).
        return micro_batch_rows(items, self.cfg.micro_batch_size, sort_by_length=True)

    def train_step(self, rollouts: list[PromptRollout], prompt_index: list[int] | None = None) -> dict[str, float]:
        """One update on a step's rollouts (scores already attached); returns metrics.
        ``prompt_index``: each rollout's position in the step's whole batch, where this rank holds a
        share of it (None: ``rollouts`` is the whole batch)."""
        start = time.perf_counter()
        experience = self.make_experience(rollouts, prompt_index)
        metrics = {**experience.stats, **self.update(experience)}
        per_seq = experience.num_tokens / experience.num_seqs
        models = [m for m in (self.policy, self.reference) if m is not None] + ([self.critic.backbone, self.critic.head] if self.critic else [])
        optimizers = [self.optimizer] + ([self.critic.optimizer] if self.critic else [])
        return {**metrics, "response_tokens": per_seq, "lr": self.scheduler.get_last_lr()[0],
                "skipped_updates": float(self.skipped_updates),
                **memory_stats(models, optimizers, self.device),
                "learner_compute_s": time.perf_counter() - start}

    @torch.no_grad()
    def make_experience(self, rollouts: list[PromptRollout], prompt_index: list[int] | None = None) -> Experience:
        """Reference log-probs; for PPO also old log-probs, values, then GAE for the whole batch."""
        items = flatten_samples(rollouts)
        # Before any forward, and agreed by every rank: a batch one rank cannot train is refused on
        # all of them at once, with that rank's reason (not a collective timeout minutes later).
        dist.agree(lambda: self._check_batch(items, rollouts, prompt_index))
        pooled = pooled_scores(self.spec, rollouts, self.algo.score_clip, self.device)  # every rank calls it
        scores, stats = sequence_scores(self.spec, self.algo.estimator, rollouts, self.algo.score_clip,
                                        pooled) if rollouts else (None, {})
        stats = global_stats(stats, len(items), self.device)
        rows = self._micro_batch_rows(items) if items else []
        batches = [build_batch([items[i] for i in r], scores[r], self.eos_ids, self.pad_id) for r in rows]
        # Every rank runs the same number of micro-batches (each collective is matched on every
        # rank), so a rank with fewer (fewer tokens, or prompts dropped by reward.on_invalid=skip)
        # runs empty ones: no token on their mask, so they add nothing to a loss or a count.
        padding = dist.max_int(len(batches), self.device) - len(batches)
        batches += [empty_batch(self.pad_id, self.eos_ids) for _ in range(padding)]
        micro = []
        for i, mb in enumerate(batches):
            micro.append(MicroExperience(
                mb, ref_logp=self._logp(self.reference, mb) if self.measures_kl else None,
                old_logp=self._logp(self.policy, mb) if self.spec.uses_ratio else None,
                old_values=self.critic.values(mb) if self.critic else None,
                padding=i >= len(batches) - padding, rows=rows[i] if i < len(rows) else []))
        if self.critic:
            stats |= assign_critic_advantages(micro, self.spec, self.algo, moments=self._global_moments)
        counts = dist.sum_floats({"tokens": sum(m.batch.mask.sum().item() for m in micro),
                                  "seqs": float(len(items))}, self.device)
        keys = None
        if self.cfg.mini_batch_size and self.cfg.mini_batch_size < counts["seqs"]:
            keys = dist.all_lists(sequence_keys(rollouts, prompt_index))
        return Experience(micro, counts["tokens"] or 1.0, counts["seqs"], stats, keys)

    def _check_batch(self, items: list, rollouts: list[PromptRollout], prompt_index: list[int] | None) -> None:
        """ValueError for a batch this rank cannot train (see ``make_experience``)."""
        if self.importance_cap:  # a batch the importance weights cannot correct is refused whole
            check_behaviour_logprobs(items)
        sequence_keys(rollouts, prompt_index)  # one position per rollout

    def _global_moments(self, pairs: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[float, float]:
        """Mean and population std of the masked values of every rank's pairs together ((0, 1)
        where no value is on a mask), merged as (count, mean, M2): see ``algo.moments``."""
        moments = dist.all_moments(masked_moments_of(pairs), self.device)
        return (moments.mean, moments.std) if moments.count else (0.0, 1.0)

    def _optimizer_groups(self, exp: Experience, epoch: int) -> list[list[MicroExperience]]:
        """One epoch's optimizer steps, each a list of this rank's micro-batches. The whole batch in
        one step (in a seeded order per epoch where there are several), or PPO's mini-batches drawn
        per sequence over every rank's share (``minibatch.py``), so K ranks take one learner's steps."""
        g = torch.Generator().manual_seed(mix_seed(self.seed, self.steps_done, epoch))
        if exp.keys_by_rank is None:
            order = torch.randperm(len(exp.micro), generator=g).tolist() if self.algo.epochs > 1 \
                else range(len(exp.micro))
            return [[exp.micro[i] for i in order]]
        where = {row: (me, j) for me in exp.micro for j, row in enumerate(me.rows)}
        size, groups = self.cfg.micro_batch_size, []
        for shares in mini_batch_plan(exp.keys_by_rank, self.cfg.mini_batch_size, g):
            mine = sorted(shares[self.rank], key=lambda row: int(where[row][0].batch.attention_mask[where[row][1]].sum()))
            group = [gather_rows([where[row] for row in mine[lo : lo + size]], self.pad_id)
                     for lo in range(0, len(mine), size)]
            runs = micro_runs([len(s) for s in shares], size)
            group += [padding_like(exp.micro[0], self.pad_id, self.eos_ids) for _ in range(runs - len(group))]
            groups.append(group)
        return groups

    def update(self, exp: Experience) -> dict[str, float]:
        """``algo.epochs`` passes; each splits the batch into mini-batches (one optimizer step each)
        of micro-batches whose losses are normalised by the mini-batch's counts."""
        totals = UpdateTotals()
        norms, critic_norms = [], []
        for epoch in range(self.algo.epochs):
            for group in self._optimizer_groups(exp, epoch):
                counts = dist.sum_floats({"tokens": sum(m.batch.mask.sum().item() for m in group),
                                          "seqs": float(sum(len(m.batch) for m in group if not m.padding))},
                                         self.device)
                agg = dict(agg=self.algo.loss_agg, num_tokens=counts["tokens"] or 1.0, num_seqs=counts["seqs"])
                for j, me in enumerate(group):
                    # DDP all-reduces the gradients once per optimizer step, in the last backward.
                    with self._no_sync(last=j == len(group) - 1):
                        self._micro_update(me, agg, totals, first_epoch=epoch == 0)
                norms.append(self._optimizer_step())
                if self.critic:
                    critic_norms.append(self.critic.step())
        self.scheduler.step()
        self.steps_done += 1
        totals = totals.across_ranks(self.device)
        n_updates = float(len(norms))
        out = {"loss": totals.loss / n_updates, "grad_norm": sum(norms) / n_updates,
               "optimizer_steps": n_updates, "kl": totals.kl / exp.num_tokens,
               "kl_measured": float(self.measures_kl),
               "entropy": totals.entropy / exp.num_tokens,
               "logp_diff": totals.logp_diff / max(totals.logp_diff_tokens, 1.0),
               **totals.loss_weight_metrics(), **totals.importance_metrics()}
        if self.critic:
            out |= {"value_loss": totals.value_loss / n_updates,
                    "critic_grad_norm": sum(critic_norms) / n_updates,
                    "critic_skipped_updates": float(self.critic.skipped_updates),
                    "clip_frac": totals.clip_frac / n_updates}
        return out

    def _micro_update(self, me: MicroExperience, agg: dict, totals: UpdateTotals, first_epoch: bool) -> None:
        """Forward/backward of one micro-batch (policy, then critic); gradients accumulate."""
        mb, mask = me.batch, me.batch.mask.to(self.device)
        logp, entropy = self._score(self.policy, mb, entropy=first_epoch)  # [m, L-1] each
        kl = None  # reward term and metric; None where no reference forward ran (kl_coef 0)
        if me.ref_logp is not None:
            kl = kl_estimate(logp.detach(), me.ref_logp, self.algo.kl_estimator)
        loss = self._policy_loss(me, logp, kl, mask, agg, totals)
        if self.algo.kl_placement == "loss" and self.algo.kl_coef > 0:
            loss = loss + kl_loss(logp, me.ref_logp, mask, self.algo.kl_estimator, self.algo.kl_coef, **agg)
        # Each rank's loss is its share of the global one (normalised by global counts), so the
        # gradient wanted is the sum over ranks; DDP and FSDP2 average instead, hence the factor.
        (loss * self.world_size).backward()
        if self.critic:
            totals.value_loss += self.critic.backward(mb, me.old_values, me.returns,
                                                         self.algo.value_clip, agg)
        totals.loss += loss.item()
        if not first_epoch:
            return
        with torch.no_grad():  # diagnostics, once per sequence
            if kl is not None:
                totals.kl += (kl * mask).sum().item()
            totals.entropy += (entropy * mask).sum().item()
            if mb.has_gen_logprobs:
                totals.logp_diff += ((logp.detach() - mb.gen_logprobs.to(self.device)).abs() * mask).sum().item()
                totals.logp_diff_tokens += mask.sum().item()

    def _policy_loss(self, me: MicroExperience, logp: torch.Tensor, kl: torch.Tensor | None, mask: torch.Tensor,
                     agg: dict, totals: UpdateTotals) -> torch.Tensor:
        if self.spec.uses_ratio:  # PPO: clipped ratio against the log-probs recorded before the update
            loss, clip_frac = ppo_clip_loss(logp, me.old_logp, me.advantages, mask, self.algo.clip_eps, **agg)
            # The share of the optimizer step's tokens, whatever micro-batches (or ranks) hold them.
            totals.clip_frac += clip_frac.item() * mask.sum().item() / agg["num_tokens"]
            totals.note_loss_weights(me.advantages, mask)
            return loss
        # One optimizer step per batch: this forward's log-probs are the policy's before the step,
        # so the KL-in-reward term is computed from them here instead of in an extra no-grad pass.
        # They are the sampling policy's only without rollout.overlap; with it the samples come from
        # the generators' policy, one update behind, and the importance weights below correct for it.
        kl_coef = self.algo.kl_coef if self.algo.kl_placement == "reward" else 0.0
        returns = token_returns(me.batch.score_advantages.to(self.device), mask, kl, kl_coef)
        if self.importance_cap:  # rollout.overlap (make_experience checked every sample has mu's log-probs)
            weights, stats = truncated_importance_weights(logp, me.batch.gen_logprobs.to(self.device), mask,
                                                          self.importance_cap)
            returns = returns * weights
            tokens = mask.sum().item()
            if not tokens:  # a padding micro-batch: its (masked-off) ratios are no sample's
                return policy_gradient_loss(logp, returns, mask, **agg)
            totals.note_importance(tokens, stats)
        totals.note_loss_weights(returns, mask)
        return policy_gradient_loss(logp, returns, mask, **agg)

    def _optimizer_step(self) -> float:
        grad_norm = clip_and_step(self.optimizer, self.policy.parameters(), self.cfg.max_grad_norm)
        if not math.isfinite(grad_norm):  # skipped: it would reach the weights of every engine
            self.skipped_updates += 1
            log.warning("non-finite policy gradient norm (%s): optimizer step skipped, gradients "
                        "zeroed (%d skipped so far)", grad_norm, self.skipped_updates)
        return grad_norm

    def save(self, folder: str | os.PathLike, run_state: str = "{}", config_yaml: str = "",
             keep: int = 0) -> Path:
        """Atomic checkpoint: HF folder + optimizer/scheduler/RNG (+ critic) + the driver's state."""
        return save_checkpoint(self, folder, run_state, config_yaml, keep)
