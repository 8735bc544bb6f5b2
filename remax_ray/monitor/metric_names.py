"""Every metric a run reports, by name and meaning, and the pure mappings from a metrics record to
dashboard gauges, Prometheus counters and TensorBoard tags (no Ray here, so they are unit-tested).

- Gauges: each numeric record key ``K`` is set as the Ray gauge ``remax_K`` (tag ``run``); Ray's
  Prometheus endpoint prefixes its namespace, so Prometheus and Grafana see ``ray_remax_K``.
- Counters: ``remax_<what>_total`` (Prometheus ``ray_remax_<what>_total``, type counter; measured on
  Ray 2.60: a Counter named ``x`` is exported as ``ray_x_total``, one already named ``x_total`` keeps
  that name). They count steps, tokens and skipped samples for ``rate()`` and ``increase()``.
- TensorBoard: the scalar ``<group>/K``, so TensorBoard's sections follow the groups below.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

GROUPS = ("rewards", "training", "seconds", "throughput", "sync", "memory", "progress", "data")

# key -> (group, meaning). README and deploy/grafana/remax.json read their names from here.
GAUGES: dict[str, tuple[str, str]] = {
    "reward_sample": ("rewards", "mean reward of the step's sampled responses"),
    "reward_greedy": ("rewards", "mean reward of the greedy responses (ReMax's baseline; ReMax only)"),
    "adv_mean": ("rewards", "mean over response tokens of the weight the loss multiplies each log-prob "
                            "(PPO: each ratio) by, after the KL-in-reward term, algo.score_clip, "
                            "whitening and the importance weights"),
    "adv_std": ("rewards", "standard deviation over response tokens of that weight"),
    "score_adv_mean": ("rewards", "mean over sampled responses of the estimator's per-response term "
                                  "(its advantage of the clipped scores; PPO: the clipped score)"),
    "score_adv_std": ("rewards", "standard deviation over sampled responses of that term"),
    "value_mean": ("rewards", "PPO: the critic's mean value over response tokens"),
    "eval_greedy_reward": ("rewards", "mean reward of greedy responses to the held-out prompts "
                                      "(before training, every run.eval_every steps, at the end)"),
    "eval_sample_reward": ("rewards", "mean reward of run.eval_samples sampled responses per held-out prompt "
                                      "(at each evaluation; absent with run.eval_samples=0)"),
    "loss": ("training", "policy loss, averaged over the step's optimizer steps"),
    "grad_norm": ("training", "policy gradient norm before clipping"),
    "kl": ("training", "mean per-token KL estimate between the policy and the reference model"),
    "kl_measured": ("training", "1 when the reference model ran; 0 at algo.kl_coef=0, where kl reads 0 "
                                "unmeasured"),
    "entropy": ("training", "mean per-token entropy of the policy on the sampled responses"),
    "logp_diff": ("training", "mean |log-prob of vLLM - log-prob of the learner| per sampled token: "
                              "near 0 while weight sync works"),
    "lr": ("training", "learning rate after the step"),
    "optimizer_steps": ("training", "optimizer steps in the step (epochs x mini-batches)"),
    "skipped_updates": ("training", "updates skipped for a non-finite gradient norm (cumulative)"),
    "value_loss": ("training", "PPO: critic loss"),
    "policy_lag": ("training", "updates between the policy that sampled the step's responses and the "
                               "learner's (0; 1 with rollout.overlap)"),
    "is_ratio_mean": ("training", "rollout.overlap: mean per-token importance ratio learner/generator"),
    "is_ratio_max": ("training", "rollout.overlap: largest per-token importance ratio"),
    "is_clip_frac": ("training", "rollout.overlap: share of tokens whose ratio was cut at algo.importance_cap"),
    "critic_grad_norm": ("training", "PPO: critic gradient norm before clipping"),
    "critic_skipped_updates": ("training", "PPO: critic steps skipped for a non-finite gradient norm "
                                           "(cumulative)"),
    "clip_frac": ("training", "PPO: share of tokens whose ratio was clipped"),
    "generate_s": ("seconds", "seconds generating this step's batch (every generator, sampled and "
                              "greedy); absent where rollout.overlap generated it during the last update"),
    "generate_wait_s": ("seconds", "rollout.overlap: seconds waited, after the update, for the next batch "
                                   "the generators sampled during it"),
    "score_s": ("seconds", "seconds scoring the responses with the reward"),
    "learn_s": ("seconds", "seconds in the learner's train_step, as the driver waits for it"),
    "sync_s": ("seconds", "seconds pushing the new weights into every generator"),
    "step_s": ("seconds", "seconds of the whole step"),
    "learner_compute_s": ("seconds", "seconds the learner computed (learn_s less Ray's overhead)"),
    "elapsed_s": ("seconds", "seconds since training started (this process)"),
    "generated_tokens": ("throughput", "tokens vLLM generated in the step (sampled and greedy)"),
    "sequences": ("throughput", "sampled responses the learner trained on"),
    "response_tokens": ("throughput", "mean tokens per trained response"),
    "greedy_responses": ("throughput", "greedy responses generated (0 for estimators without one)"),
    "generate_tokens_per_s": ("throughput", "generated_tokens / generate_s"),
    "learn_tokens_per_s": ("throughput", "response_tokens x sequences / learn_s"),
    "sync_bytes": ("sync", "bytes of weights sent to each generator"),
    "sync_buckets": ("sync", "buckets of one sync (whole decoder layers each)"),
    "sync_failed": ("sync", "1 when the step's update was applied but its sync failed"),
    "generate_ahead_failed": ("sync", "rollout.overlap: 1 when the step's update was applied but sampling "
                                      "the next batch failed"),
    "learner_state_bytes": ("memory", "bytes of parameters, gradients and optimizer state"),
    "learner_peak_rss_bytes": ("memory", "peak resident memory of the learner's process"),
    "learner_cuda_peak_bytes": ("memory", "GPU only: the learner's peak CUDA allocation"),
    "prompts_consumed": ("progress", "training prompts used so far (cumulative)"),
    "actor_retries": ("progress", "phases retried after a generator or reward actor died (cumulative)"),
    "learner_restarts": ("progress", "times the learner was started again from the newest checkpoint after a "
                                     "rank died (cumulative)"),
    "generator_resyncs": ("progress", "re-syncs because a generator answered from weights other than the "
                                      "last sync's (restarted between calls); its batch is sampled again "
                                      "(cumulative)"),
    "skipped_samples": ("progress", "sampled responses dropped for a non-finite reward (cumulative)"),
    "skipped_prompts": ("progress", "prompts skipped by the trainer (cumulative)"),
    "steps_without_update": ("progress", "steps where every reward was invalid (cumulative)"),
    "dataset_lines_skipped": ("data", "prompt-file lines skipped as unusable (logged once)"),
    "prompts_too_long": ("data", "prompts dropped for exceeding rollout.max_prompt_tokens (once)"),
    "prompts_truncated": ("data", "prompts cut to rollout.max_prompt_tokens (once)"),
}

PPO_ONLY = frozenset({"value_mean", "value_loss", "critic_grad_norm", "critic_skipped_updates", "clip_frac"})
OVERLAP_ONLY = frozenset({"is_ratio_mean", "is_ratio_max", "is_clip_frac", "generate_wait_s"})
GPU_ONLY = frozenset({"learner_cuda_peak_bytes"})
FAILURE_ONLY = frozenset({"sync_failed", "generate_ahead_failed"})
# Logged beside evaluations, not in step records.
EVAL_KEYS = frozenset({"eval_greedy_reward", "eval_sample_reward", "dataset_lines_skipped", "prompts_too_long",
                       "prompts_truncated"})

# Cumulative keys of a step record whose growth each counter adds.
_CUMULATIVE = {"remax_skipped_samples_total": "skipped_samples",
               "remax_actor_retries_total": "actor_retries",
               "remax_learner_restarts_total": "learner_restarts",
               "remax_generator_resyncs_total": "generator_resyncs",
               "remax_steps_without_update_total": "steps_without_update",
               "remax_prompts_total": "prompts_consumed"}
# Ray Counter name (as passed to ray.util.metrics.Counter; also the Prometheus name after "ray_").
COUNTERS: dict[str, str] = {
    "remax_steps_total": "training steps completed",
    "remax_generated_tokens_total": "tokens generated by vLLM (sampled and greedy)",
    "remax_learned_tokens_total": "response tokens the learner trained on",
    "remax_skipped_samples_total": "sampled responses dropped for a non-finite reward",
    "remax_actor_retries_total": "phases retried after an actor died",
    "remax_learner_restarts_total": "learner restarts from the newest checkpoint after a rank died",
    "remax_generator_resyncs_total": "re-syncs of a generator found serving stale weights",
    "remax_steps_without_update_total": "steps with no valid reward, hence no update",
    "remax_prompts_total": "training prompts consumed",
}


def gauge_name(key: str) -> str:
    """The Ray gauge for record key ``key`` (Prometheus names allow [a-zA-Z0-9_:] only)."""
    return "remax_" + "".join(c if c.isalnum() else "_" for c in key)


def prometheus_name(ray_name: str) -> str:
    """What Prometheus shows for a Ray metric: Ray's namespace ``ray_`` in front."""
    return "ray_" + ray_name


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def gauge_values(record: dict[str, Any]) -> dict[str, float]:
    """{gauge name: value} for the record's finite numbers (a gauge cannot hold NaN usefully)."""
    return {gauge_name(k): float(v) for k, v in record.items()
            if k != "step" and is_number(v) and math.isfinite(v)}


def tensorboard_tag(key: str) -> str:
    return f"{GAUGES[key][0] if key in GAUGES else 'other'}/{key}"


def with_throughput(record: dict[str, Any]) -> dict[str, Any]:
    """The record plus tokens per second of generation and of learning, where it has the inputs."""
    out = dict(record)
    if is_number(record.get("generated_tokens")) and record.get("generate_s", 0) > 0:
        out["generate_tokens_per_s"] = record["generated_tokens"] / record["generate_s"]
    if all(is_number(record.get(k)) for k in ("response_tokens", "sequences")) and record.get("learn_s", 0) > 0:
        out["learn_tokens_per_s"] = record["response_tokens"] * record["sequences"] / record["learn_s"]
    return out


def is_step_record(record: dict[str, Any]) -> bool:
    """Step records carry the run's cumulative counters; evaluation records do not."""
    return "prompts_consumed" in record


@dataclass
class CounterTracker:
    """Turns step records into counter increments, so that over a crash and a resume each step is
    counted once: the sum of every process's increments equals the run's totals in metrics.jsonl.

    - Cumulative keys add their growth since the previous step record, never their value: the first
      record after a resume would otherwise count everything before the checkpoint again. ``last``
      starts from the last step record that metrics.jsonl kept.
    - Steps at or below ``counted_through`` were counted by an earlier process before it died (the
      resume cut their records and runs them again): they only move ``last`` forward.
    """

    counted_through: int = -1
    last: dict[str, float] = field(default_factory=dict)

    @classmethod
    def resuming(cls, records: list[dict[str, Any]], counted_through: int = -1) -> CounterTracker:
        steps = [r for r in records if is_step_record(r)]
        last = {k: float(steps[-1][k]) for k in _CUMULATIVE.values() if k in steps[-1]} if steps else {}
        return cls(max([counted_through, *(r["step"] for r in steps)]), last)

    def increments(self, step: int, record: dict[str, Any]) -> dict[str, float]:
        if not is_step_record(record):
            return {}
        grown = {name: float(record[key]) - self.last.get(key, 0.0)
                 for name, key in _CUMULATIVE.items() if is_number(record.get(key))}
        self.last |= {key: float(record[key]) for key in _CUMULATIVE.values() if is_number(record.get(key))}
        if step <= self.counted_through:
            return {}
        self.counted_through = step
        out = {"remax_steps_total": 1.0, **grown,
               "remax_generated_tokens_total": float(record.get("generated_tokens", 0.0)),
               "remax_learned_tokens_total": float(record.get("response_tokens", 0.0))
               * float(record.get("sequences", 0.0))}
        return {k: v for k, v in out.items() if v > 0}  # Ray's Counter.inc refuses 0
