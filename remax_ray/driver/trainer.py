"""The driver: ``step()`` reads top to bottom: generate -> score -> learn -> sync -> log."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import ray

from remax_ray.algo import get_estimator
from remax_ray.cluster.actors import Actors, connect, overlap_for, resolve_device, start_actors, start_learner
from remax_ray.config import Config, ConfigError, check_for_device, dump_yaml, to_yaml
from remax_ray.data.prompts import batch_indices
from remax_ray.data.rollouts import PromptRollout
from remax_ray.driver import actor_calls
from remax_ray.driver.evaluation import evaluate
from remax_ray.driver.preflight import preflight
from remax_ray.driver.recovery import RECOVERABLE, Recovery, StaleWeights
from remax_ray.driver.resume import initial_state
from remax_ray.driver.run_state import RunState, rollouts_from_json, rollouts_to_json
from remax_ray.driver.weight_sync import weight_sync
from remax_ray.learner import checkpoint
from remax_ray.models import SYNC_NOISE, architectures_of, describe_path
from remax_ray.monitor.metrics import MetricsSink
from remax_ray.rollout.validity import drop_invalid

log = logging.getLogger(__name__)
T = TypeVar("T")


class RunFailed(RuntimeError):
    """The run stopped early; the message names the checkpoint to resume from."""


class SyncMismatch(RuntimeError):
    """After a weight sync the engines do not serve the learner's weights (``run.check_sync``)."""


def resolve_transport(cfg: Config, device: str) -> str:
    """cpu (buckets through shared memory or the object store: ``weight_sync.CpuSync``), or the
    collective backend: nccl (CUDA learner) or gloo."""
    transport = cfg.cluster.sync_transport
    if transport == "auto":
        return "nccl" if device == "cuda" else "cpu"
    if transport in ("shm", "objects"):
        return "cpu"
    if transport == "nccl" and device != "cuda":
        raise ConfigError("cluster.sync_transport=nccl needs the learner on CUDA; use cpu or gloo")
    return transport


class Trainer:
    """Drives one run, fresh or resumed (``resume``: ``latest``, a run folder or a checkpoint).

    Given ``actors`` (e.g. generators and a reward actor kept alive across the runs of
    ``remax-ray repro``, with a fresh learner), it first syncs the learner's weights into the
    generators, so they serve this run's policy and not what an earlier run left behind."""

    def __init__(self, cfg: Config, actors: Actors | None = None, include_dashboard: bool | None = None, *,
                 resume: str | None = None, overwrite: bool = False):
        self.cfg = cfg
        self.spec = get_estimator(cfg.algo.estimator)
        self.model_path, self.splits = preflight(cfg)
        self.out = Path(cfg.run.output_dir)
        self.resumed_from = checkpoint.resolve(resume, self.out) if resume else None
        connect(cfg, include_dashboard)
        device = actors.device if actors else resolve_device(cfg)
        check_for_device(cfg, device)
        self.overlap, why = overlap_for(cfg, device)
        log.info(why)
        self.state = initial_state(cfg, self.model_path, self.splits, self.resumed_from, overwrite,
                                   overlap=self.overlap)
        self.transport = resolve_transport(cfg, device)
        self.architectures = architectures_of(self.model_path)
        log.info(describe_path(self.architectures, lora_rank=cfg.model.lora_rank))
        self._sync_checked = False
        self.actors = actors or start_actors(cfg, self.model_path, reference_path=self.state.reference_path,
                                             resume_from=self.resumed_from)
        dump_yaml(cfg, self.out / "config.yaml")
        self.metrics = MetricsSink(self.out, run_name=self.out.name)
        # Every response carries the sync version its engine had loaded (weights.version).
        self.weights = weight_sync(cfg, self.actors, self.transport)
        self.recovery = Recovery(cfg, self.actors, self.state.counters, resync=self.sync,
                                 forget_peers=self.weights.forget_peers, step=lambda: self.state.step)
        # overlap: the next step's rollouts (sampled one policy behind) and their lag, kept until
        # that step's update is applied; every checkpoint carries them, the one saved on a failure
        # too, so a resumed overlapped run trains on exactly what the original would have.
        self._pending = (rollouts_from_json(self.state.pending), self.state.pending_lag) if self.state.pending else None
        self._fit_start: float | None = None
        self._start_state: str | None = None  # RunState at step 0 (see _fit)
        self._phase = "start"
        if actors is not None or self.resumed_from:  # generators start from the original model
            self.sync()

    @property
    def step_idx(self) -> int:
        return self.state.step

    def step(self) -> dict[str, float]:
        """One step on the next batch of training prompts (greedy responses only for ReMax). With
        ``rollout.overlap`` the batch was sampled during the previous update, one policy behind, and
        the next one is sampled during this update."""
        k = self.state.step
        prompts = self._prompts(k)
        t0 = time.perf_counter()
        self._phase = "generate"
        rollouts, lag = self._pending or (self._generate_step(k), 0.0)
        t1 = time.perf_counter()
        self._phase = "score"
        self.recovery.attempt("score", lambda: self.score(rollouts, self._columns(k)))
        generated = sum(len(c.token_ids) for r in rollouts for c in [*r.samples, *([r.greedy] if r.greedy else [])])
        rollouts, dropped = drop_invalid(rollouts)  # non-finite scores get here only with on_invalid=skip
        t2 = time.perf_counter()
        self._phase = "learn"
        update = self.actors.learner.train_step.remote(rollouts) if rollouts else None
        ahead = self._generate_ahead(k + 1)  # overlap: the next batch, sampled while the learner works
        learned = ray.get(update) if update else {}
        t3 = time.perf_counter()
        # With overlap this step's batch was generated during the last update: no generate_s (a
        # tokens/s over the time left to wait would overstate throughput), the wait goes below.
        record = {**learned, **({} if lag else {"generate_s": t1 - t0}), "score_s": t2 - t1, "learn_s": t3 - t2,
                  "policy_lag": lag,
                  "greedy_responses": float(sum(r.greedy is not None for r in rollouts)),
                  # Throughput inputs: the sink derives tokens/s of generation and of learning.
                  "generated_tokens": float(generated), "sequences": float(sum(len(r.samples) for r in rollouts))}
        # The update is applied: count the step before anything else can fail, so that the
        # checkpoint a failure saves is labelled k + 1 and a resume does not train step k twice.
        self._count(prompts, dropped, updated=bool(rollouts))
        self._pending = None
        # Sampled during this step's update, so one update behind when trained on; none was made
        # when every prompt's reward was invalid, and the batch is then the current policy's.
        self._pending = self._after_update(record, "generate ahead", lambda: self._collect(
            ahead, k + 1, lag=1.0 if rollouts else 0.0))
        t4 = time.perf_counter()
        if ahead is not None:  # the next batch, generated during the update: what was left to wait
            record["generate_wait_s"] = t4 - t3
        record |= self._after_update(record, "sync", lambda: self.recovery.attempt("sync", self.sync))
        t5 = time.perf_counter()
        record = self._finish(record | {"sync_s": t5 - t4, "step_s": t5 - t0})
        self._check_sync(record, rollouts, lag)
        return record

    def _check_sync(self, record: dict[str, float], rollouts: list[PromptRollout], lag: float) -> None:
        """The first step sampled after a sync (not one behind, as with overlap): the learner's
        log-probs of the sampled tokens must be the engine's, to the engine's numerical noise. Above
        it the engine does not serve the learner's weights: a layout the sync does not know."""
        if self._sync_checked or lag or not rollouts or min(r.weight_version for r in rollouts) < 1:
            return
        self._sync_checked = True
        limit, diff = SYNC_NOISE.get(self.actors.dtype, SYNC_NOISE["float32"]), record.get("logp_diff", 0.0)
        if diff <= limit:
            return
        what = (f"step {self.state.step - 1}: the engines' log-probs of their own samples differ from the "
                f"learner's by {diff:.3g} per token (mean |logp_diff|), above the {self.actors.dtype} "
                f"engine's noise ({limit:g}): after the weight sync they do not serve the learner's weights. "
                f"Model architecture {', '.join(self.architectures) or '?'} ({self.cfg.model.path}): "
                f"{describe_path(self.architectures).split(': ', 1)[1]}.")
        if not self.cfg.run.check_sync:
            log.warning("%s Going on (run.check_sync=false): the run trains off-policy.", what)
            return
        raise SyncMismatch(f"{what} The run stops rather than train off-policy; run.check_sync=false "
                           "accepts it.")

    def _after_update(self, record: dict[str, float], phase: str, call: Callable[[], T]) -> T:
        """A phase after the update is applied: if it fails, the step is still recorded (flagged
        ``<phase>_failed``), so a resume neither repeats nor loses it."""
        self._phase = phase
        try:
            return call()
        except Exception:
            self._finish(record | {f"{phase.replace(' ', '_')}_failed": 1.0})
            raise

    def _prompts(self, k: int) -> list[str]:
        run = self.cfg.run
        return [self.splits.train[i] for i in batch_indices(len(self.splits.train), run.prompts_per_step, k, run.seed)]

    def _columns(self, k: int) -> list[dict]:
        """The other dataset columns of step k's prompts, in the order of ``_prompts(k)``."""
        run = self.cfg.run
        return self.splits.columns("train", batch_indices(len(self.splits.train), run.prompts_per_step, k, run.seed))

    def _generate_step(self, k: int) -> list[PromptRollout]:
        return self.generate(self._prompts(k), n=self.cfg.rollout.samples_per_prompt, step=k,
                             greedy=self.spec.needs_greedy)

    def _generate_ahead(self, k: int) -> tuple[int, list] | None:
        """rollout.overlap: start step k's generation now (futures), with the engines' current
        weights (the sync whose number comes along), which are one update behind the learner's by
        the time step k trains on them."""
        if not self.overlap or k >= self.cfg.run.steps:
            return None
        return self.weights.version, self._generate_async(
            self._prompts(k), n=self.cfg.rollout.samples_per_prompt, step=k, greedy=self.spec.needs_greedy)

    def _collect(self, ahead: tuple[int, list] | None, k: int, lag: float = 1.0
                 ) -> tuple[list[PromptRollout], float] | None:
        if ahead is None:
            return None
        version, futures = ahead
        try:
            return self._fresh(ray.get(futures), version, k), lag
        except RECOVERABLE as err:
            # Regenerated after the recovery's sync, so with the current weights: no lag this time.
            return self.recovery.attempt("generate", lambda: self._generate_step(k), failed=err), 0.0

    @staticmethod
    def _fresh(shards: list[list[PromptRollout]], version: int, step: int) -> list[PromptRollout]:
        """The shards' rollouts in order, or StaleWeights if a generator answered from weights other
        than sync ``version``'s: Ray restarted it (from model.path) since that sync."""
        served = sorted({r.weight_version for shard in shards for r in shard} - {version})
        if served:
            raise StaleWeights(f"step {step}: a generator served weights of sync {served} instead of "
                               f"{version} (restarted since); re-syncing and sampling again")
        return [r for shard in shards for r in shard]

    def _count(self, prompts: list[str], dropped: int, updated: bool) -> None:
        counters = self.state.counters
        counters["skipped_samples"] += dropped
        counters["steps_without_update"] += 0 if updated else 1
        if not updated:
            log.warning("step %d: every prompt's reward was invalid; no update", self.state.step)
        self.state.step += 1
        self.state.prompts_consumed += len(prompts)

    def _finish(self, record: dict[str, float]) -> dict[str, float]:
        record |= {**self.state.counters, "prompts_consumed": float(self.state.prompts_consumed)}
        self.metrics.log(self.state.step - 1, self._timed(record))
        self._phase = "between steps"
        return record

    def _timed(self, record: dict[str, float]) -> dict[str, float]:
        if self._fit_start is not None:  # lets plots put reward against wall-clock time
            record = {**record, "elapsed_s": time.perf_counter() - self._fit_start}
        return record

    def log(self, record: dict[str, float]) -> None:
        self.metrics.log(self.state.step, self._timed(record))

    def generate(self, prompts: list[str], *, n: int, step: int, greedy: bool = True) -> list[PromptRollout]:
        """Shard prompts across generator replicas (contiguous shares) and return them in order, all
        sampled with the last sync's weights: a batch from a generator restarted since (serving
        model.path) is sampled again, whole, after a re-sync (same seeds, so the same responses)."""
        def once() -> list[PromptRollout]:
            version = self.weights.version
            return self._fresh(ray.get(self._generate_async(prompts, n=n, step=step, greedy=greedy)), version, step)

        return self.recovery.attempt("generate", once)

    def _generate_async(self, prompts: list[str], *, n: int, step: int, greedy: bool) -> list:
        return actor_calls.generate_async(self.actors.generators, prompts, n=n, step=step,
                                          seed=self.cfg.run.seed, greedy=greedy)

    def score(self, rollouts: list[PromptRollout], columns: list[dict] | None = None) -> None:
        """Score every sampled (and greedy, where present) response in one batched call; ``columns``
        are each prompt's other dataset columns, for a reward function that takes them."""
        actor_calls.score(self.actors.reward, rollouts, columns)

    def sync(self) -> dict[str, float]:
        """Push the learner's weights into every generator before the next generate (``weight_sync``)."""
        return self.weights.push()

    def evaluate(self) -> dict[str, float]:
        """Mean reward of greedy (and ``run.eval_samples`` sampled) responses to the held-out
        prompts; the first ``run.sample_prompts`` of them go to samples.jsonl and TensorBoard."""
        run, splits = self.cfg.run, self.splits
        self._phase = "evaluate"
        result = self.recovery.attempt("evaluate", lambda: evaluate(
            self.generate, self.score, splits.eval, splits.columns("eval", list(range(len(splits.eval)))),
            n=run.eval_samples))
        if run.sample_prompts:
            self.metrics.log_samples(self.state.step, result.samples(self.state.step, run.sample_prompts))
        return result.metrics()

    def save(self) -> Path:
        """An atomic checkpoint of the learner and of this driver's state after ``state.step`` steps."""
        self.state.metrics_lines = self.metrics.count()
        self.state.pending = rollouts_to_json(self._pending[0]) if self._pending else None
        self.state.pending_lag = self._pending[1] if self._pending else 1.0
        self.state.capture_rng()
        folder = checkpoint.step_folder(self.out, self.state.step)
        return Path(ray.get(self.actors.learner.save.remote(str(folder), self.state.to_json(),
                                                            to_yaml(self.cfg), self.cfg.run.keep_checkpoints)))

    def shutdown(self) -> None:
        """Kill this trainer's actors (vLLM engines hold memory until their actor dies)."""
        self.metrics.close()
        self.actors.kill()

    def fit(self, progress: bool | None = None) -> dict[str, float]:
        """Evaluate, train up to ``run.steps`` steps (evaluating/saving every K), evaluate, save.
        Any failure first saves what it consistently can, then raises RunFailed naming it."""
        try:
            return self._fit(progress)
        except Exception as err:
            raise RunFailed(self._failure_message(err)) from err

    def _fit(self, progress: bool | None) -> dict[str, float]:
        from tqdm.auto import tqdm

        run = self.cfg.run
        start = self._fit_start = time.perf_counter()
        if self.state.eval_before is None:
            before = self.evaluate()
            self.state.eval_before = before["eval_greedy_reward"]
            data = self.splits  # what preflight skipped or cut, once per run, next to the first eval
            self.log({**before, "dataset_lines_skipped": float(data.skipped),
                      "prompts_too_long": float(data.too_long), "prompts_truncated": float(data.truncated)})
        if self.state.step == 0:  # where a learner restart returns to while no checkpoint exists
            self.state.metrics_lines = self.metrics.count()
            self.state.capture_rng()
            self._start_state = self.state.to_json()
        bar = tqdm(total=run.steps, initial=self.state.step, unit="step", desc=self.cfg.algo.estimator,
                   disable=not (run.progress if progress is None else progress))
        while True:
            # A learner rank may die in a step, a checkpoint or the final save: each restarts the
            # ranks from the newest checkpoint and carries on from there.
            try:
                if self.state.step >= run.steps:
                    after = self.evaluate()
                    self.log(after)
                    final = self.save()
                    break
                rec = self.step()
                bar.update(1)
                bar.set_postfix(reward=f"{rec.get('reward_sample', float('nan')):.3f}",
                                kl=f"{rec.get('kl', 0.0):.4f}")
                if run.eval_every and self.state.step % run.eval_every == 0 and self.state.step < run.steps:
                    self.log(self.evaluate())
                if run.save_every and self.state.step % run.save_every == 0 and self.state.step < run.steps:
                    self.save()
            except Exception as err:
                if not self._restart_learner(err):
                    raise
                bar.n = self.state.step
        bar.close()
        return {"eval_before": self.state.eval_before, "eval_after": after["eval_greedy_reward"],
                "wall_s": time.perf_counter() - start, "checkpoint": str(final)}

    def _restart_learner(self, err: Exception) -> bool:
        """After a learner rank died: tear the ranks down, start them from the newest complete
        checkpoint, restore the driver's state of that checkpoint (metrics cut back, as a resume does)
        and re-sync the generators; the steps since are repeated with the same prompts and seeds.
        A restart that meets another death (a rank killed while it starts or syncs) is the next
        restart. Before the run's first checkpoint the ranks start from ``model.path`` and the run from its
        start (after the first evaluation). False (the run stops) for any other error, or past the limit."""
        while True:
            folder = checkpoint.latest(checkpoint.root(self.out))
            restarts = self.state.counters.get("learner_restarts", 0.0)
            if not self.recovery.learner_died(err) or restarts >= self.cfg.run.max_learner_restarts or \
                    (folder is None and self._start_state is None):
                return False
            log.warning("step %d: a learner rank died (%s: %s); restart %d of %d from %s, repeating the steps "
                        "after it", self.state.step, type(err).__name__, str(err).splitlines()[0] if str(err) else "",
                        restarts + 1, self.cfg.run.max_learner_restarts,
                        folder.name if folder else "the start (no checkpoint yet)")
            self.state.counters["learner_restarts"] = restarts + 1
            try:
                self._start_learner_from(folder, restarts + 1)
                return True
            except Exception as again:
                if not self.recovery.learner_died(again):
                    raise
                err = again

    def _start_learner_from(self, folder: Path | None, restarts: float) -> None:
        self._phase = "learner restart"
        self.actors.learner.kill()
        self.actors.learner = start_learner(self.cfg, self.model_path, self.actors.device, wait=False,
                                            reference_path=self.state.reference_path, resume_from=folder,
                                            where=self.actors.placement)
        ray.get(self.actors.learner.__ray_ready__.remote())  # a rank dying now is owned by the new group
        state = RunState.from_file(folder / checkpoint.RUN_STATE) if folder else RunState.from_json(self._start_state)
        state.counters["learner_restarts"] = restarts  # the checkpoint's counters predate the restart
        self.metrics.truncate(state.metrics_lines)
        if folder:
            checkpoint.discard_after(folder)
        state.restore_rng()
        self.state, self.recovery.counters = state, state.counters
        self._pending = (rollouts_from_json(state.pending), state.pending_lag) if state.pending else None
        self.weights.forget_peers()
        self.recovery.attempt("sync", self.sync)

    def _failure_message(self, err: Exception) -> str:
        what = f"the run stopped at step {self.state.step} during {self._phase}: {type(err).__name__}: {err}"
        saved = None
        if self._phase != "learn" and not self.recovery.learner_died(err):  # the learner's state is a whole step
            try:
                saved = self.save()
            except Exception as save_err:  # noqa: BLE001 - report the first failure, not this one
                log.warning("could not save after the failure: %s", save_err)
        saved = saved or checkpoint.latest(checkpoint.root(self.out))
        if saved is None:
            return f"{what}\nno checkpoint was written; start the run again"
        return f"{what}\nresume with: remax-ray train --resume {saved} (same config and overrides)"
