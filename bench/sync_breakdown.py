"""Where the CPU weight sync's seconds go, piece by piece, for the former path and the current one,
interleaved in one run on the same weights.

Usage (after `remax-ray assets`; REMAX_RAY_HOME as for training):
    nice -n 5 .venv/bin/python bench/sync_breakdown.py [--rounds 3] [--bucket-mb 64 ...] [--profile]

A Ray actor holds the policy (SmolLM2-135M, float32) as the learner does; this process plays the
generator: it fetches each bucket from the object store and hands it to an in-process ``vllm.LLM``
(engine core and worker in their own processes, as in the generator actor) whose worker extension
(bench/_sync_probe.py) times the pieces inside the worker. Columns:
  - safetensors: the former path (safetensors blobs, bytes through collective_rpc, whole-model
    reload_weights, tied head re-packed);
  - arena, whole: raw buckets through the shared arena, still with the whole-model reload;
  - arena, scoped: vLLM's layer-wise reload scoped to the bucket's modules, head shares the new handle
    (the path before rollout/direct_reload.py, and still the path for architectures it does not know);
  - arena, direct: the current path (rollout/direct_reload.py: arena views packed straight into
    the engine's GEMM buffers).
Every bucket is loaded one after the other (the pieces do not overlap); the median over rounds of
each piece, summed over buckets, is printed. The last line is the current path pipelined the way
``Trainer.sync`` runs it (bucket k + 1 exported while bucket k loads). ``--profile`` adds one pass
of each reload under cProfile, split into oneDNN packing, tensor copies and vLLM's bookkeeping.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections import defaultdict

BENCH = os.path.dirname(os.path.abspath(__file__))
PIECES = ["export", "object store put", "object store get", "copy into arena", "rpc hop into worker",
          "deserialise / map", "reload_weights", "retie lm_head", "reset_prefix_cache"]


class Exporter:
    """The learner's side: the policy, exported either way."""

    def __init__(self, model_path: str, threads: int):
        import torch
        from transformers import AutoModelForCausalLM

        torch.set_num_threads(threads)
        self.model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)

    def safetensors_refs(self, bucket_bytes: int):
        import ray
        import torch

        from _sync_probe import safetensors_buckets

        start = time.perf_counter()
        blobs = safetensors_buckets(self.model.named_parameters(), bucket_bytes, torch.float32)
        packed = time.perf_counter()
        refs = [ray.put(b) for b in blobs]
        return packed - start, time.perf_counter() - packed, refs

    def bucket_count(self, bucket_bytes: int) -> int:
        from remax_ray.sync.cpu import WeightBuckets

        return len(WeightBuckets(self.model.named_parameters(), bucket_bytes))

    def total_bytes(self) -> int:
        return sum(p.numel() * p.element_size() for p in self.model.parameters())

    def bucket(self, k: int, bucket_bytes: int):
        from remax_ray.sync.cpu import WeightBuckets

        return WeightBuckets(self.model.named_parameters(), bucket_bytes)[k]


def _memcpy_s(nbytes: int) -> float:
    """A plain copy of the synced bytes into a buffer touched beforehand (the pipeline bench's limit)."""
    import torch

    src, dst = torch.ones(nbytes, dtype=torch.uint8), torch.zeros(nbytes, dtype=torch.uint8)
    start = time.perf_counter()
    dst.copy_(src)
    return time.perf_counter() - start


def _rpc(llm, method: str, *args) -> tuple[float, dict[str, float]]:
    start = time.perf_counter()
    inner = llm.collective_rpc(method, args=args)[0]
    return time.perf_counter() - start, inner


def _worker_pieces(t: dict[str, float], wall: float, inner: dict[str, float]) -> None:
    t["rpc hop into worker"] += wall - sum(inner.values())
    t["deserialise / map"] += inner["deserialise"]
    t["reload_weights"] += inner["reload"]
    t["retie lm_head"] += inner["retie"]


def _reset(llm, t: dict[str, float]) -> None:
    start = time.perf_counter()
    llm.reset_prefix_cache()
    t["reset_prefix_cache"] += time.perf_counter() - start


def safetensors_path(ray, exporter, llm, bucket_bytes: int) -> dict[str, float]:
    t: dict[str, float] = defaultdict(float)
    start = time.perf_counter()
    t["export"], t["object store put"], refs = ray.get(exporter.safetensors_refs.remote(bucket_bytes))
    for ref in refs:
        got = time.perf_counter()
        blob = ray.get(ref)
        t["object store get"] += time.perf_counter() - got
        _worker_pieces(t, *_rpc(llm, "probe_safetensors", blob))
        del blob
    _reset(llm, t)
    t["total"] = time.perf_counter() - start
    return t


def arena_path(ray, exporter, llm, arena, bucket_bytes: int, mode: str) -> dict[str, float]:
    """``mode``: whole (vLLM's whole-model reload), scoped (its reload over the bucket's modules) or
    direct (rollout/direct_reload.py)."""
    whole_model = mode == "whole"
    llm.collective_rpc("remax_allow_direct", args=(mode == "direct",))
    t: dict[str, float] = defaultdict(float)
    start = time.perf_counter()
    for k in range(ray.get(exporter.bucket_count.remote(bucket_bytes))):
        asked = time.perf_counter()
        ref = exporter.bucket.remote(k, bucket_bytes)
        ray.wait([ref])  # built as views, then copied into the object store by Ray
        got = time.perf_counter()
        t["object store put"] += got - asked
        bucket = ray.get(ref)
        copied = time.perf_counter()
        t["object store get"] += copied - got
        where = arena.write(bucket.arrays)
        t["copy into arena"] += time.perf_counter() - copied
        _worker_pieces(t, *_rpc(llm, "probe_arena", whole_model, where.path, where.capacity, where.generation, where.offsets,
                                bucket.names, bucket.dtypes, [list(s) for s in bucket.shapes]))
        del bucket, ref
    _reset(llm, t)
    t["total"] = time.perf_counter() - start
    return t


def profiled(ray, exporter, llm, arena, bucket_bytes: int, mode: str) -> dict[str, float]:
    whole_model = mode == "whole"
    llm.collective_rpc("remax_allow_direct", args=(mode == "direct",))
    total: dict[str, float] = defaultdict(float)
    for k in range(ray.get(exporter.bucket_count.remote(bucket_bytes))):
        bucket = ray.get(exporter.bucket.remote(k, bucket_bytes))
        where = arena.write(bucket.arrays)
        for key, value in llm.collective_rpc("probe_profile", args=(
                whole_model, where.path, where.capacity, where.generation, where.offsets, bucket.names,
                bucket.dtypes, [list(s) for s in bucket.shapes]))[0].items():
            total[key] += value
    return total


def arena_pipelined(ray, exporter, llm, arena, bucket_bytes: int, direct: bool) -> float:
    """Bucket k + 1 is exported (learner process) while bucket k loads (here and in the worker)."""
    llm.collective_rpc("remax_allow_direct", args=(direct,))
    start = time.perf_counter()
    n = ray.get(exporter.bucket_count.remote(bucket_bytes))
    ahead = exporter.bucket.remote(0, bucket_bytes)
    for k in range(n):
        ref, ahead = ahead, exporter.bucket.remote(k + 1, bucket_bytes) if k + 1 < n else None
        bucket = ray.get(ref)
        where = arena.write(bucket.arrays)
        llm.collective_rpc("remax_reload_arena", args=(where.path, where.capacity, where.generation, where.offsets,
                                                       bucket.names, bucket.dtypes, [list(s) for s in bucket.shapes]))
        del bucket, ref
    llm.reset_prefix_cache()
    return time.perf_counter() - start


def main() -> None:
    from remax_ray.assets.home import assets_home

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default=str(assets_home() / "smollm2-135m-instruct"))
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--bucket-mb", type=int, nargs="+", default=[64])
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--profile", action="store_true", help="also profile the reload inside the worker")
    args = p.parse_args()
    threads = str(args.threads)
    # As in the generator actor (remax_ray/cluster/actors.py); bench/ on the path of every process.
    os.environ.update(OMP_NUM_THREADS=threads, VLLM_CPU_NUM_OF_RESERVED_CPU="0", VLLM_CPU_KVCACHE_SPACE="1",
                      VLLM_LOGGING_LEVEL="WARNING", PYTHONPATH=os.pathsep.join([BENCH, *sys.path]))
    import ray
    from vllm import LLM

    from remax_ray.rollout.generator import llm_kwargs
    from remax_ray.sync.cpu import SharedArena

    ray.init(num_cpus=args.threads, include_dashboard=False)
    exporter = ray.remote(Exporter).options(runtime_env={"env_vars": {"OMP_NUM_THREADS": threads}}).remote(
        args.model, args.threads)
    llm = LLM(**{**llm_kwargs(args.model, max_prompt_tokens=64, max_new_tokens=24, dtype="float32", seed=0,
                              gpu_memory_utilization=0.3, enforce_eager=True),
                 "worker_extension_cls": "_sync_probe.ProbeExtension"})
    arena = SharedArena()
    for mb in args.bucket_mb:
        bucket_bytes = mb * 2**20
        runs: dict[str, list[dict[str, float]]] = {"safetensors": [], "arena, whole": [], "arena, scoped": [],
                                                   "arena, direct": []}
        pipelined: dict[bool, list[float]] = {False: [], True: []}
        copies = []
        nbytes = ray.get(exporter.total_bytes.remote())
        for _ in range(args.rounds + 1):  # the first round warms every path up and is dropped
            runs["safetensors"].append(safetensors_path(ray, exporter, llm, bucket_bytes))
            for mode in ("whole", "scoped", "direct"):
                runs[f"arena, {mode}"].append(arena_path(ray, exporter, llm, arena, bucket_bytes, mode))
            for direct in (False, True):
                pipelined[direct].append(arena_pipelined(ray, exporter, llm, arena, bucket_bytes, direct))
            copies.append(_memcpy_s(nbytes))
        n = ray.get(exporter.bucket_count.remote(bucket_bytes))
        print(f"\nbucket {mb} MiB ({n} buckets), median of {args.rounds} rounds, seconds summed over buckets")
        print(f"{'piece':22s} " + " ".join(f"{path:>13s}" for path in runs))
        for piece in [*PIECES, "total"]:
            cells = (statistics.median(r.get(piece, 0.0) for r in runs[path][1:]) for path in runs)
            print(f"{piece:22s} " + " ".join(f"{c:13.3f}" for c in cells))
        copy = statistics.median(copies[1:])
        for direct in (False, True):
            took = statistics.median(pipelined[direct][1:])
            print(f"{'pipelined, ' + ('direct' if direct else 'scoped'):22s} {took:13.3f} s = "
                  f"{took / copy:5.1f} x a memcpy of the {nbytes / 1e6:.0f} MB ({copy:.3f} s)")
        if args.profile:
            print("one more arena pass of each reload under cProfile (seconds summed over buckets):")
            for mode in ("whole", "scoped", "direct"):
                print(f"  {mode + ' reload:':15s} " + ", ".join(
                    f"{k} {v:.3f}" for k, v in profiled(ray, exporter, llm, arena, bucket_bytes, mode).items()))
    llm.collective_rpc("remax_allow_direct", args=(True,))
    arena.close()
    ray.shutdown()


if __name__ == "__main__":  # vLLM's engine subprocesses re-import this module
    main()
