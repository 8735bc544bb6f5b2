"""The limits bench/pipeline.py sets next to each phase: the same work done plainly.

Each function takes the batch captured from the trainer's last step and returns the median seconds
of ``reps`` timed runs after one warm-up run (the first call of each pays one-off costs: allocator
page faults, oneDNN kernel creation, the tokenizer's caches). bench/pipeline.py runs each in a
fresh process of its own (``python bench/_pipeline_limits.py KIND SPEC.json``), after the
trainer's actors are gone: no Ray, no other engine or model in the process, and no core or memory
shared with Ray.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass
class Batch:
    """One step's work, as the trainer did it."""

    prompt_ids: list[list[int]]
    samples: list[list[list[int]]]
    """Per prompt, the token ids of each sampled response."""
    sample_seeds: list[list[int]]
    greedy: list[list[int] | None]
    prompts: list[str]
    texts: list[list[str]]
    """Per prompt, the text of every response the reward scored (samples, then greedy)."""
    advantages: list[list[float]]

    def generated_tokens(self) -> int:
        return sum(len(s) for ss in self.samples for s in ss) + sum(len(g) for g in self.greedy if g)

    def trained_tokens(self) -> int:
        return sum(len(p) + len(s) for p, ss in zip(self.prompt_ids, self.samples) for s in ss)


def timed(fn: Callable[[], object], reps: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def vllm_alone(model_path: str, batch: Batch, *, dtype: str, temperature: float, top_p: float,
               max_prompt_tokens: int, max_new_tokens: int, seed: int, reps: int) -> float:
    """``vllm.LLM`` in this process (its engine in its own subprocess, as in the actor) with the
    generator's settings, on the step's requests: each request gets exactly the number of tokens the
    trainer's engine produced for it (``min_tokens = max_tokens``, EOS ignored), so the work is the
    same even though these weights are the original ones, not the step's."""
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    from remax_ray.rollout.generator import llm_kwargs

    llm = LLM(**llm_kwargs(model_path, max_prompt_tokens=max_prompt_tokens, max_new_tokens=max_new_tokens,
                           dtype=dtype, seed=seed, gpu_memory_utilization=0.3, enforce_eager=True))
    requests, params = [], []
    for ids, samples, seeds, greedy in zip(batch.prompt_ids, batch.samples, batch.sample_seeds, batch.greedy):
        for tokens, s in zip(samples, seeds):
            n = max(len(tokens), 1)
            requests.append(TokensPrompt(prompt_token_ids=ids))
            params.append(SamplingParams(temperature=temperature, top_p=top_p, seed=s, logprobs=0,
                                         max_tokens=n, min_tokens=n, ignore_eos=True))
        if greedy is not None:
            n = max(len(greedy), 1)
            requests.append(TokensPrompt(prompt_token_ids=ids))
            params.append(SamplingParams(temperature=0.0, max_tokens=n, min_tokens=n, ignore_eos=True))

    def generate() -> None:
        # The trainer's engine starts every step with an empty prefix cache (each sync resets it:
        # the cached KV came from the old weights); repeated runs here would find their prompts cached.
        llm.reset_prefix_cache()
        llm.generate(requests, params, use_tqdm=False)

    return timed(generate, reps)  # each limit runs in a process of its own: no clean-up needed


def _response_logp(model: torch.nn.Module, ids: torch.Tensor, attn: torch.Tensor, rows: torch.Tensor,
                   cols: torch.Tensor, targets: torch.Tensor, temperature: float) -> torch.Tensor:
    """Log-probs of the response tokens only: the LM head runs on the positions that predict them."""
    hidden = model.get_decoder()(input_ids=ids, attention_mask=attn).last_hidden_state
    logits = model.get_output_embeddings()(hidden[rows, cols]).float() / temperature
    return torch.log_softmax(logits, -1).gather(-1, targets[:, None]).squeeze(-1)


def torch_step(model_path: str, batch: Batch, *, lr: float, betas: tuple[float, float], weight_decay: float,
               max_grad_norm: float, micro_batch_size: int, kl_coef: float, temperature: float,
               pad_id: int, reps: int) -> tuple[float, torch.nn.Module]:
    """One ReMax update written plainly: per micro-batch (sequences sorted by length) a reference
    forward and a policy forward/backward, the LM head only where a response token is predicted,
    KL (k1) in the reward, token-mean loss; then grad-norm clipping and fused AdamW. Returns the
    seconds and the policy (for the copy limit)."""
    from transformers import AutoModelForCausalLM

    policy = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    ref = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32).eval().requires_grad_(False)
    # fused: torch's one-kernel AdamW (the per-tensor loop is its CPU default, and slower).
    opt = torch.optim.AdamW(policy.parameters(), lr=lr, betas=betas, weight_decay=weight_decay, fused=True)
    seqs = [(p, s, a) for p, ss, aa in zip(batch.prompt_ids, batch.samples, batch.advantages)
            for s, a in zip(ss, aa) if s]
    seqs.sort(key=lambda x: len(x[0]) + len(x[1]))
    n_tokens = sum(len(s) for _, s, _ in seqs)
    micro = []
    for lo in range(0, len(seqs), micro_batch_size):
        chunk = seqs[lo : lo + micro_batch_size]
        width = max(len(p) + len(s) for p, s, _ in chunk)
        ids = torch.full((len(chunk), width), pad_id)
        attn = torch.zeros((len(chunk), width), dtype=torch.long)
        rows, cols, targets, adv = [], [], [], []
        for r, (p, s, a) in enumerate(chunk):
            ids[r, : len(p) + len(s)] = torch.tensor(p + s)
            attn[r, : len(p) + len(s)] = 1
            rows += [r] * len(s)
            cols += range(len(p) - 1, len(p) + len(s) - 1)  # column t predicts token t + 1
            targets += s
            adv += [a] * len(s)
        micro.append((ids, attn, torch.tensor(rows), torch.tensor(cols), torch.tensor(targets), torch.tensor(adv)))

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        for ids, attn, rows, cols, targets, adv in micro:
            with torch.no_grad():
                ref_logp = _response_logp(ref, ids, attn, rows, cols, targets, temperature)
            logp = _response_logp(policy, ids, attn, rows, cols, targets, temperature)
            reward = adv - kl_coef * (logp.detach() - ref_logp)
            (-(reward * logp).sum() / n_tokens).backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), max_grad_norm)
        opt.step()

    seconds = timed(step, reps)
    return seconds, policy


def reward_alone(reward: dict, batch: Batch, reps: int) -> float:
    """The RewardScorer in-process on the step's (prompt, response) pairs, in one call.
    ``reward``: the scorer's arguments (``kind`` and its keywords), as the reward actor gets them."""
    from remax_ray.reward.scorer import RewardScorer

    scorer = RewardScorer(**reward)
    prompts = [p for p, texts in zip(batch.prompts, batch.texts) for _ in texts]
    responses = [t for texts in batch.texts for t in texts]
    return timed(lambda: scorer.score(prompts, responses), reps)


def plain_copy(model: torch.nn.Module, dtype: torch.dtype, copies: int, reps: int) -> tuple[float, int]:
    """memcpy of the weights' bytes (in the generators' dtype) into a buffer allocated (and paged
    in) beforehand, once per generator: what moving the weights costs at memory bandwidth.
    Returns the seconds and the bytes of one copy."""
    params = [p.detach().to(dtype) for p in model.parameters()]
    nbytes = sum(p.numel() * p.element_size() for p in params)
    buf = torch.empty(nbytes, dtype=torch.uint8)
    buf.fill_(0)  # page in the buffer: a fresh allocation's first touch is not the copy's cost

    def copy() -> None:
        for _ in range(copies):
            off = 0
            for p in params:
                n = p.numel() * p.element_size()
                buf[off : off + n].copy_(p.reshape(-1).view(torch.uint8))
                off += n

    return timed(copy, reps), nbytes


def main() -> None:
    """One limit, in this fresh process; prints ``LIMIT {json}``."""
    import json
    import sys

    kind, spec_path = sys.argv[1:3]
    spec = json.loads(open(spec_path).read())
    batch, kw, reps = Batch(**spec["batch"]), spec[kind], spec["reps"]
    torch.set_num_threads(spec["threads"])
    if kind == "generate":
        out = {"seconds": vllm_alone(spec["model_path"], batch, reps=reps, **kw)}
    elif kind == "learn":
        kw["betas"] = tuple(kw["betas"])  # a list after JSON
        out = {"seconds": torch_step(spec["model_path"], batch, reps=reps, **kw)[0]}
    elif kind == "score":
        out = {"seconds": reward_alone(kw, batch, reps)}
    else:  # sync
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(spec["model_path"], dtype=torch.float32)
        seconds, nbytes = plain_copy(model, getattr(torch, kw["dtype"]), kw["copies"], reps)
        out = {"seconds": seconds, "bytes": nbytes}
    print("LIMIT " + json.dumps(out), flush=True)


if __name__ == "__main__":  # vLLM's engine subprocesses re-import this module
    main()
