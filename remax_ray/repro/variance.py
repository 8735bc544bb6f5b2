"""``measure_variance``: the paper's variance condition and each estimator's gradient variance, at
FIXED policy parameters, on paired draws (issue 16).

Draws: for each draw d = 0..D-1 every one of the P held-out prompts gets two sampled responses, from
the project's own generator actors (vLLM, seeds keyed by (seed, step=d, prompt, sample) as in
training, the configured temperature) and the reward actor; the greedy response (deterministic) is
generated and scored once, with draw 0. Every measured estimator (``MEASURED_ESTIMATORS``: the
registered ones linear in the scores, without a critic) uses these same draws, the first
``min_samples`` of them (ReMax, REINFORCE and REINFORCE with a batch-mean baseline the first sample,
RLOO both), so their variances are compared on paired samples.

Gradients: every estimator's batch gradient is a linear combination of the per-sample gradients
h = grad log pi(y | x), so each h is computed once, on the driver (plain torch, fp32, no dropout,
:mod:`.variance_probe`), count-sketched (:mod:`.variance_sketch`) and folded into each (sigma,
estimator)'s [D, k] batch gradients; the statistics are :mod:`.variance_stats`. By default only the
last two decoder blocks and the final norm are measured (``params="last:2"``: 7.1M of SmolLM2's
135M parameters), not the full gradient; the result says which parameters and how many. Two blocks
rather than one because the second costs ~4 % more (interleaved on SmolLM2, 1 thread: 290 against
280 ms per sample; the LM head's pass and the forward below the cut dominate).

The result is one JSON file per condition, written atomically; a condition whose file exists is not
measured again (the harness grows over several sittings). :func:`render_variance_markdown` tabulates
a list of results.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from remax_ray.config import Config
from remax_ray.data.rollouts import PromptRollout
from remax_ray.repro.variance_probe import GradientProbe, parse_params
from remax_ray.repro.variance_report import render_variance_markdown
from remax_ray.repro.variance_sketch import CountSketch
from remax_ray.repro.variance_stats import (
    MEASURED_ESTIMATORS,
    SAMPLES_PER_DRAW,
    bootstrap_reward_stats,
    prompt_offset,
    reward_stats,
    shifted_weights,
    variance_table,
)

log = logging.getLogger(__name__)

FORMAT = "remax-ray variance v1"

__all__ = ["measure_variance", "render_variance_markdown"]


def measure_variance(cfg: Config, *, policy_path: str, policy_label: str, task_label: str,
                     out_json: str | os.PathLike, prompts: int = 32, draws: int = 32,
                     sigmas: tuple[float, ...] = (0, 1, 3), params: str = "last:2",
                     sketch_dim: int = 65536, seed: int = 0, bootstrap: int = 2000,
                     threads: int | None = None) -> dict[str, Any]:
    """Measure one condition (a task's config, a policy) and write ``out_json``; return its record.

    ``cfg`` gives the task (dataset, reward, rollout settings); its ``model.path`` is replaced by
    ``policy_path`` (a model folder, ``builtin:`` name or checkpoint folder). Starts its own generator
    and reward actors (joining or starting Ray as training does) and kills them after the draws.
    When ``out_json`` exists, it is read back instead and nothing runs.

    ``threads``: torch threads for the gradient probe (None: leave torch's setting). On a shared
    2-core machine, 1 was ~10x faster for the probe's small per-sample matrix products (32 against
    3 GFLOP/s at load 8: two threads wait on each other) and as fast for the large ones.
    """
    out = Path(out_json)
    if out.exists():
        log.info("variance: %s exists, skipped", out)
        return json.loads(out.read_text())
    spec = parse_params(params)
    if prompts < 2 or draws < 2:
        raise ValueError(f"need at least 2 prompts and 2 draws, got {prompts} and {draws}")
    if sketch_dim < 1 or bootstrap < 1:
        raise ValueError(f"sketch_dim and bootstrap must be >= 1, got {sketch_dim} and {bootstrap}")
    sigmas = tuple(float(s) for s in sigmas)
    start = time.perf_counter()
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, path=policy_path),
                              run=dataclasses.replace(cfg.run, eval_prompts=prompts))
    from remax_ray.driver.preflight import preflight

    model_path, splits = preflight(cfg)
    if len(splits.eval) < prompts:
        raise ValueError(f"{cfg.run.dataset}: {len(splits.eval)} held-out prompts, fewer than prompts={prompts}")
    texts = splits.eval[:prompts]
    rollouts, wall = draw_rollouts(cfg, model_path, texts, splits.columns("eval", list(range(prompts))),
                                   draws, seed)

    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        record = _measure(cfg, model_path, texts, rollouts, wall, spec=spec, policy_path=policy_path,
                          policy_label=policy_label, task_label=task_label, sigmas=sigmas,
                          sketch_dim=sketch_dim, seed=seed, bootstrap=bootstrap)
    finally:
        torch.set_num_threads(before)
    record["wall_s"]["total"] = time.perf_counter() - start
    record["threads"] = threads or before
    write_atomic(out, record)
    return record


def _measure(cfg: Config, model_path: str, texts: list[str], rollouts: list[list[PromptRollout]],
             wall: dict[str, float], *, spec: Any, policy_path: str, policy_label: str, task_label: str,
             sigmas: tuple[float, ...], sketch_dim: int, seed: int, bootstrap: int) -> dict[str, Any]:
    """The gradient probe and the statistics on the scored draws: the record, without writing it."""
    draws, prompts = len(rollouts), len(texts)
    t = time.perf_counter()
    probe = GradientProbe(model_path, spec, temperature=cfg.rollout.temperature,
                          trust_remote_code=cfg.model.trust_remote_code)
    sketch = CountSketch([p.numel() for p in probe.tensors], sketch_dim, seed)
    sampled = torch.tensor([r.sample_scores for batch in rollouts for r in batch],
                           dtype=torch.float64).view(draws, prompts, SAMPLES_PER_DRAW)
    greedy = torch.tensor([r.greedy_score for r in rollouts[0]], dtype=torch.float64)
    offsets = torch.tensor([prompt_offset(x) for x in texts], dtype=torch.float64)
    # [D, P, 2] weights of every (sigma, estimator), each draw's from that draw's rewards.
    weights = {(s, name): torch.stack([shifted_weights(name, sampled[d], greedy, offsets, s) for d in range(draws)])
               for s in sigmas for name in MEASURED_ESTIMATORS}
    # float32 storage (100 MB at the defaults); the statistics take their Gram matrices in float64.
    grads = {key: torch.zeros(draws, sketch_dim) for key in weights}
    first = rollouts[0][0]
    check_gap = probe.check(first.prompt_ids, [c.token_ids for c in first.samples])
    sketched_sq, exact_sq = 0.0, 0.0
    for x in range(prompts):
        # Prompt by prompt: its 2D responses share one pass of the prompt below the cut.
        sk, norms, _ = probe.sketches(rollouts[0][x].prompt_ids,
                                      [c.token_ids for batch in rollouts for c in batch[x].samples], sketch)
        sk = sk.double().view(draws, SAMPLES_PER_DRAW, sketch_dim)
        sketched_sq += float((sk * sk).sum())
        exact_sq += float(norms.sum())
        for key, g in grads.items():
            g += torch.einsum("dj,djk->dk", weights[key][:, x], sk).float()
        log.info("variance: prompt %d/%d: %d per-sample gradients (%.0f s)", x + 1, prompts,
                 draws * SAMPLES_PER_DRAW, time.perf_counter() - t)
    wall["probe"] = time.perf_counter() - t

    return {
        "format": FORMAT, "task": task_label, "dataset": cfg.run.dataset,
        "reward": {"kind": cfg.reward.kind, "model_path": cfg.reward.model_path, "function": cfg.reward.function},
        "policy": {"label": policy_label, "path": policy_path, "resolved": model_path},
        "prompts": prompts, "draws": draws, "samples_per_draw": SAMPLES_PER_DRAW, "sigmas": list(sigmas),
        "estimators": list(MEASURED_ESTIMATORS), "greedy": "generated and scored once, with draw 0 (deterministic)",
        "temperature": cfg.rollout.temperature,
        "max_new_tokens": cfg.rollout.max_new_tokens,
        "params": {"spec": spec.label, "count": probe.count, "model_total": sum(p.numel() for p in probe.model.parameters()),
                   "tied_head": probe.tied, "names": probe.names, "note": params_note(spec.label, probe.tied)},
        "sketch": {"dim": sketch_dim, "seed": seed, "relative_error_bound": math.sqrt(2 / sketch_dim),
                   "norm_ratio": sketched_sq / exact_sq if exact_sq > 0 else math.nan},
        "seeds": {"sampling": seed, "sketch": seed, "bootstrap": seed, "bootstrap_resamples": bootstrap},
        "probe_check_gap": check_gap,
        "reward_stats": [reward_block(sampled, greedy, offsets, s, bootstrap, seed) for s in sigmas],
        "gradient_variance": [{"sigma": s, "estimators": variance_table(
            {name: grads[(s, name)] for name in MEASURED_ESTIMATORS}, bootstrap, seed)} for s in sigmas],
        "wall_s": dict(wall),
    }


def params_note(label: str, tied: bool) -> str:
    if label == "all":
        return "every parameter of the policy: the full gradient"
    note = (f"{label}: only these blocks' parameters and the final norm (a part of the gradient, not the "
            "full gradient)")
    if label.endswith("+head"):
        note += ("; the LM head is included" + (", but it is tied to the input embedding and only the "
                                                  "head's share of that matrix's gradient is measured" if tied else ""))
    else:
        note += "; the LM head" + (" (tied to the input embedding)" if tied else "") + " is excluded"
    return note


def reward_block(sampled: torch.Tensor, greedy: torch.Tensor, offsets: torch.Tensor, sigma: float,
                 bootstrap: int, seed: int) -> dict[str, Any]:
    """Reward statistics at offset ``sigma`` over every sampled reward ([D, P, 2] -> [P, 2D])."""
    per_prompt = sampled.permute(1, 0, 2).reshape(sampled.shape[1], -1) + sigma * offsets.unsqueeze(1)
    shifted_greedy = greedy + sigma * offsets
    point = reward_stats(per_prompt, shifted_greedy)
    ci = bootstrap_reward_stats(per_prompt, shifted_greedy, bootstrap, seed)
    return {"sigma": sigma, "samples_per_prompt": per_prompt.shape[1],
            "stats": {k: {"value": v, "ci": ci[k]} for k, v in point.items()}}


def draw_rollouts(cfg: Config, model_path: str, prompts: list[str], columns: list[dict], draws: int,
                  seed: int) -> tuple[list[list[PromptRollout]], dict[str, float]]:
    """``draws`` batches of two scored samples per prompt (draw 0 also with the scored greedy
    response), from fresh generator and reward actors, killed before returning.

    The actors are the ones ``remax-ray eval`` starts (``start_generators``/``start_reward``, outside
    any placement group): ``start_actors`` would also load a learner (policy + reference) that the
    measurement never uses; the gradient probe runs on the driver."""
    import ray

    from remax_ray.cluster.actors import connect, resolve_device, start_generators, start_reward
    from remax_ray.driver import actor_calls

    connect(cfg)
    wall = {"actors_start": 0.0, "generate": 0.0, "score": 0.0}
    t = time.perf_counter()
    generators = start_generators(cfg, model_path, resolve_device(cfg))
    reward = start_reward(cfg)
    out = []
    try:
        ray.get([g.__ray_ready__.remote() for g in generators] + [reward.__ray_ready__.remote()])
        wall["actors_start"] = time.perf_counter() - t
        for d in range(draws):
            t = time.perf_counter()
            batch = actor_calls.generate(generators, prompts, n=SAMPLES_PER_DRAW, step=d, seed=seed,
                                         greedy=d == 0)
            wall["generate"] += time.perf_counter() - t
            t = time.perf_counter()
            actor_calls.score(reward, batch, columns)
            wall["score"] += time.perf_counter() - t
            bad = sum(not math.isfinite(s) for r in batch for s in [*r.sample_scores, *([r.greedy_score] if d == 0 else [])])
            if bad:
                raise ValueError(f"draw {d}: {bad} non-finite rewards; the paired measurement needs every one")
            out.append(batch)
            log.info("variance: draw %d/%d generated and scored", d + 1, draws)
    finally:
        for actor in [*generators, reward]:
            ray.kill(actor, no_restart=True)
    return out, wall


def write_atomic(path: Path, record: dict[str, Any]) -> None:
    """Write JSON to a temporary file beside ``path``, then rename: a reader (or a later sitting
    that skips existing files) never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(record, f, indent=1, allow_nan=True)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
