"""The driver: ``step()`` reads top to bottom: generate -> score -> learn -> sync -> log."""

from __future__ import annotations

import time
from pathlib import Path

import ray

from remax_ray.algo import get_estimator
from remax_ray.cluster import Actors, connect, resolve_device, start_actors
from remax_ray.config import Config, ConfigError, dump_yaml
from remax_ray.data.prompts import batch_indices
from remax_ray.metrics import MetricsSink
from remax_ray.preflight import preflight
from remax_ray.rollout.types import PromptRollout


def resolve_transport(cfg: Config, device: str) -> str:
    """cpu (object store), or the collective backend: nccl (CUDA learner) or gloo."""
    transport = cfg.cluster.sync_transport
    if transport == "auto":
        return "nccl" if device == "cuda" else "cpu"
    if transport == "nccl" and device != "cuda":
        raise ConfigError("cluster.sync_transport=nccl needs the learner on CUDA; use cpu or gloo")
    return transport


class Trainer:
    """Drives one run. Given ``actors`` (e.g. generators and a reward actor kept alive across the runs
    of ``remax-ray repro``, with a fresh learner), it first syncs the learner's weights into the
    generators, so they serve this run's policy and not what an earlier run left behind."""

    def __init__(self, cfg: Config, actors: Actors | None = None, include_dashboard: bool | None = None):
        self.cfg = cfg
        self.spec = get_estimator(cfg.algo.estimator)
        self.model_path, self.splits = preflight(cfg)
        connect(cfg, include_dashboard)
        self.transport = resolve_transport(cfg, actors.device if actors else resolve_device(cfg))
        self.out = Path(cfg.run.output_dir)
        self.actors = actors or start_actors(cfg, self.model_path)
        dump_yaml(cfg, self.out / "config.yaml")
        self.metrics = MetricsSink(self.out, run_name=self.out.name)
        self.step_idx = 0
        self._weight_meta: list | None = None
        self._fit_start: float | None = None
        if actors is not None:
            self.sync()

    def step(self) -> dict[str, float]:
        """One step on the next batch of training prompts (greedy responses only for ReMax)."""
        run = self.cfg.run
        prompts = [self.splits.train[i] for i in
                   batch_indices(len(self.splits.train), run.prompts_per_step, self.step_idx, run.seed)]
        t0 = time.perf_counter()
        rollouts = self.generate(prompts, n=self.cfg.rollout.samples_per_prompt, step=self.step_idx,
                                 greedy=self.spec.needs_greedy)
        t1 = time.perf_counter()
        self.score(rollouts)
        t2 = time.perf_counter()
        learned = ray.get(self.actors.learner.train_step.remote(rollouts))
        t3 = time.perf_counter()
        synced = self.sync()
        t4 = time.perf_counter()
        record = {**learned, **synced, "generate_s": t1 - t0, "score_s": t2 - t1,
                  "learn_s": t3 - t2, "sync_s": t4 - t3, "step_s": t4 - t0,
                  "greedy_responses": float(sum(r.greedy is not None for r in rollouts))}
        self.log(record)
        self.step_idx += 1
        return record

    def log(self, record: dict[str, float]) -> None:
        if self._fit_start is not None:  # lets plots put reward against wall-clock time
            record = {**record, "elapsed_s": time.perf_counter() - self._fit_start}
        self.metrics.log(self.step_idx, record)

    def generate(self, prompts: list[str], *, n: int, step: int, greedy: bool = True) -> list[PromptRollout]:
        """Shard prompts across generator replicas (contiguous chunks) and return them in order."""
        gens = self.actors.generators
        size = -(-len(prompts) // len(gens))
        futures = [g.generate.remote(prompts[lo : lo + size], n=n, step=step, first_index=lo,
                                     run_seed=self.cfg.run.seed, greedy=greedy)
                   for g, lo in zip(gens, range(0, len(prompts), size))]
        return [r for shard in ray.get(futures) for r in shard]

    def score(self, rollouts: list[PromptRollout]) -> None:
        """Score every sampled (and greedy, where present) response in one batched call."""
        prompts, responses = [], []
        for r in rollouts:
            for c in [*r.samples, *([r.greedy] if r.greedy else [])]:
                prompts.append(r.prompt)
                responses.append(c.text)
        scores = ray.get(self.actors.reward.score.remote(prompts, responses))
        k = 0
        for r in rollouts:
            r.sample_scores = scores[k : k + len(r.samples)]
            k += len(r.samples)
            if r.greedy:
                r.greedy_score = scores[k]
                k += 1

    def sync(self) -> dict[str, float]:
        """Push the learner's weights into every generator before the next generate."""
        if self.transport != "cpu":
            return self._sync_collective()
        refs = ray.get(self.actors.learner.export_weight_refs.remote(self.cfg.cluster.sync_bucket_mb,
                                                                     self.actors.dtype))
        # Wrapped in a list so Ray passes the refs through instead of resolving them all at once.
        results = ray.get([g.load_weight_refs.remote(refs) for g in self.actors.generators])
        return {"sync_bytes": results[0]["sync_bytes"], "sync_buckets": float(len(refs))}

    def _sync_collective(self) -> dict[str, float]:
        learner, gens = self.actors.learner, self.actors.generators
        if self._weight_meta is None:  # first sync: form the group (every rank joins at once)
            host, port = ray.get(learner.collective_address.remote())
            world = 1 + len(gens)
            ray.get([learner.init_collective.remote(host, port, world, self.transport)]
                    + [g.init_collective.remote(host, port, 1 + i, world, self.transport)
                       for i, g in enumerate(gens)])
            self._weight_meta = ray.get(learner.weight_meta.remote())
        sent, *_ = ray.get([learner.broadcast_weights.remote()]
                           + [g.receive_collective.remote(self._weight_meta) for g in gens])
        return {"sync_bytes": sent, "sync_buckets": float(len(self._weight_meta))}

    def evaluate(self) -> float:
        """Mean reward of greedy responses to the held-out prompts."""
        rollouts = self.generate(self.splits.eval, n=0, step=-1)
        self.score(rollouts)
        return sum(r.greedy_score for r in rollouts) / len(rollouts)

    def save(self, tag: str) -> Path:
        folder = self.out / "checkpoints" / tag
        ray.get(self.actors.learner.save.remote(str(folder), {"step": self.step_idx,
                                                               "seed": self.cfg.run.seed}))
        return folder

    def shutdown(self) -> None:
        """Kill this trainer's actors (vLLM engines hold memory until their actor dies)."""
        for actor in [*self.actors.generators, self.actors.reward, self.actors.learner]:
            ray.kill(actor)

    def fit(self, progress: bool | None = None) -> dict[str, float]:
        """Evaluate, train ``run.steps`` steps (evaluating/saving every K), evaluate, save."""
        from tqdm.auto import tqdm

        run = self.cfg.run
        start = self._fit_start = time.perf_counter()
        before = self.evaluate()
        self.log({"eval_greedy_reward": before})
        bar = tqdm(total=run.steps, disable=not (run.progress if progress is None else progress),
                   desc="remax", unit="step")
        for _ in range(run.steps):
            rec = self.step()
            bar.update(1)
            bar.set_postfix(reward=f"{rec['reward_sample']:.3f}", kl=f"{rec['kl']:.4f}")
            if run.eval_every and self.step_idx % run.eval_every == 0 and self.step_idx < run.steps:
                self.log({"eval_greedy_reward": self.evaluate()})
            if run.save_every and self.step_idx % run.save_every == 0:
                self.save(f"step-{self.step_idx}")
        bar.close()
        after = self.evaluate()
        self.log({"eval_greedy_reward": after})
        final = self.save("final")
        return {"eval_before": before, "eval_after": after, "wall_s": time.perf_counter() - start,
                "checkpoint": str(final)}
