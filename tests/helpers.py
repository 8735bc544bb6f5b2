"""What several test files need and production code does not: toy rollouts, probes into a Learner
(the policy gradient without a step, plain per-sequence log-probs), reference implementations the
production code is checked against, views of a sync bucket, and free ports and process-tree stops for
tests that start a Ray head of their own.

Imported as ``helpers`` (pytest puts ``tests/`` on ``sys.path`` for ``tests/conftest.py``); bench/
scripts add ``tests/`` to ``sys.path`` themselves.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from collections.abc import Callable
from typing import Any

import psutil
import torch

from remax_ray.algo import token_logprobs
from remax_ray.data.rollouts import Completion, PromptRollout
from remax_ray.learner.parallel import full
from remax_ray.learner.totals import UpdateTotals


def toy_rollouts(n_prompts: int = 4, n: int = 2, *, seed: int = 0,
                 response_len: Callable[[int, int], int] = lambda i, j: 2 + j + i % 3,
                 scores: Callable[[int, torch.Generator], list[float]] | None = None,
                 greedy: list[int] | None = (5, 6), greedy_score: float = 0.25,
                 eos: int | None = None, finish: str = "length") -> list[PromptRollout]:
    """Random token rollouts: prompt i has 3 + i tokens, sample j of it ``response_len(i, j)``.

    ``scores(i, g)`` gives prompt i's sample scores (default: n standard normals drawn from the same
    generator after the samples); ``eos`` puts that token mid-response wherever (i + j) % 3 == 0,
    so the masked tail after an EOS is exercised."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n_prompts):
        prompt = torch.randint(1, 300, (3 + i,), generator=g).tolist()
        samples = []
        for j in range(n):
            resp = torch.randint(1, 300, (response_len(i, j),), generator=g).tolist()
            if eos is not None and (i + j) % 3 == 0:
                resp[len(resp) // 2] = eos
            samples.append(Completion(resp, "", finish))
        row_scores = scores(i, g) if scores else torch.randn(n, generator=g).tolist()
        out.append(PromptRollout("p", prompt, samples, Completion(list(greedy), "", "length") if greedy else None,
                                 row_scores, greedy_score))
    return out


def policy_gradient(learner: Any, rollouts: list[PromptRollout]) -> torch.Tensor:
    """The flattened policy gradient of one step's loss on ``rollouts``, without stepping the
    optimizer (gradients are cleared again): what tests and benches of the estimator need."""
    exp = learner.make_experience(rollouts)
    agg = dict(agg=learner.algo.loss_agg, num_tokens=exp.num_tokens, num_seqs=exp.num_seqs)
    totals = UpdateTotals()  # the update's running sums, unused here
    for me in exp.micro:
        learner._micro_update(me, agg, totals, first_epoch=False)
    params = [p for p in learner.policy.parameters() if p.requires_grad]
    # full(): a sharded (FSDP2) gradient gathered whole; every rank must call this together.
    flat = torch.cat([full(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params])
    learner.optimizer.zero_grad(set_to_none=True)
    if learner.critic:
        learner.critic.optimizer.zero_grad(set_to_none=True)
    return flat.detach().clone()


@torch.no_grad()
def sequence_logprobs(model: torch.nn.Module, sequences: list[list[int]]) -> list[list[float]]:
    """Log-prob (temperature 1) of tokens 1..L-1 of each sequence under ``model``, one plain full
    forward each: the reference the learner's and the engines' log-probs are compared with."""
    device = next(model.parameters()).device
    out = []
    for seq in sequences:
        ids = torch.tensor([seq], device=device)
        logits = model(input_ids=ids, use_cache=False).logits[:, :-1]
        out.append(token_logprobs(logits, ids[:, 1:], 1.0)[0].tolist())
    return out


def learner_logprobs(actor: Any, sequences: list[list[int]]) -> list[list[float]]:
    """:func:`sequence_logprobs` of a learner *actor*'s policy, run inside the actor."""
    import ray
    from ray import cloudpickle  # Ray pickles with its own copy: registering with `cloudpickle` has no effect

    import helpers

    cloudpickle.register_pickle_by_value(helpers)  # the actor's workers cannot import tests/
    return ray.get(actor.__ray_call__.remote(lambda self, seqs: sequence_logprobs(self.policy, seqs), sequences))


def reference_entropy(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """[N, T] entropies (nats, float32) of softmax(logits / temperature) over [N, T, V] logits,
    written plainly (the whole log-softmax at once). A -inf logit (masked vocabulary) gives p = 0
    and log p = -inf; clamping log p to the most negative finite float makes 0 * log p exactly 0."""
    logp = torch.log_softmax(logits.float() / temperature, dim=-1)
    logp = logp.clamp_min(torch.finfo(logp.dtype).min)
    return -(logp.exp() * logp).sum(dim=-1)


def bucket_tensors(bucket: Any) -> list[tuple[str, torch.Tensor]]:
    """(name, tensor) pairs of a sync :class:`~remax_ray.sync.cpu.Bucket` (copies of its bytes)."""
    out = []
    for name, dtype, shape, array in zip(bucket.names, bucket.dtypes, bucket.shapes, bucket.arrays):
        raw = torch.frombuffer(bytearray(array.tobytes()), dtype=torch.uint8)
        out.append((name, raw.view(getattr(torch, dtype)).view(tuple(shape))))
    return out


def free_ports(n: int) -> list[int]:
    """``n`` different TCP ports free on 127.0.0.1 now."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:  # all bound at once, so the n ports differ
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def stop_process_tree(proc: subprocess.Popen) -> None:
    """Stop a test's own `ray start --block` head, and every process it started, by their process ids.
    `ray stop` would do it too, but it ends every Ray process of the user on the machine (it matches
    process names), other test sessions' included. SIGTERM makes `ray start --block` shut its node
    down; what is left of its tree is then killed."""
    try:
        tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        tree = []
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pass
    _, alive = psutil.wait_procs(tree, timeout=15)
    for p in alive:
        p.kill()
    psutil.wait_procs(alive, timeout=10)
    try:  # stragglers still in the process group that start_new_session gave the head
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def spy_on_from_pretrained(monkeypatch: Any, classes: list) -> list[tuple[str, dict]]:
    """Record the keyword arguments of every ``from_pretrained`` call on ``classes`` (transformers'
    Auto classes), as (class name, kwargs); the real loading still happens."""
    calls: list[tuple[str, dict]] = []
    for cls in classes:
        real = cls.from_pretrained.__func__

        def spy(klass, *args, _real=real, _name=cls.__name__, **kwargs):
            calls.append((_name, dict(kwargs)))
            return _real(klass, *args, **kwargs)

        monkeypatch.setattr(cls, "from_pretrained", classmethod(spy))
    return calls
