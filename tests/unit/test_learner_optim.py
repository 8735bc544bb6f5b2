"""The learner's AdamW (``learner/optim.py``): fused on CPU, the same update as torch's loop, and
able to continue from a checkpoint written by the loop implementation."""

from __future__ import annotations

import copy

import torch

from remax_ray.config import AlgoConfig, LearnerConfig
from remax_ray.learner.learner import Learner
from remax_ray.learner.optim import adamw, fusable


def _params(seed: int) -> list[torch.nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(shape, generator=g)) for shape in [(33, 7), (7,), (5, 5, 3)]]


def _set_grads(params, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    for p in params:
        p.grad = torch.randn(p.shape, generator=g)


def test_fused_adamw_on_cpu_makes_the_loop_s_update():
    fused_params, loop_params = _params(0), _params(0)
    assert fusable(fused_params) and not fusable([torch.nn.Parameter(torch.zeros(2, dtype=torch.long),
                                                                     requires_grad=False)])
    fused = adamw(fused_params, lr=1e-2, betas=(0.9, 0.99), weight_decay=0.1)
    loop = torch.optim.AdamW(loop_params, lr=1e-2, betas=(0.9, 0.99), weight_decay=0.1, foreach=False)
    assert fused.defaults["fused"] is True
    for step in range(3):
        _set_grads(fused_params, step)
        _set_grads(loop_params, step)
        fused.step()
        loop.step()
    for a, b in zip(fused_params, loop_params):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)
    assert not all(torch.equal(a, b) for a, b in zip(fused_params, _params(0)))  # they did move


def test_a_checkpoint_of_the_loop_optimizer_continues_in_the_learner_s(tiny_model):
    """Checkpoints written before this change hold the loop AdamW's state; the learner's optimizer
    loads them and continues with the same update the loop would have made."""
    loop_params, ours_params = _params(1), _params(1)
    loop = torch.optim.AdamW(loop_params, lr=1e-2, foreach=False)
    _set_grads(loop_params, 5)
    loop.step()
    ours = adamw(ours_params, lr=1e-2, betas=(0.9, 0.999), weight_decay=0.01)
    with torch.no_grad():
        for a, b in zip(ours_params, loop_params):
            a.copy_(b)
    # A checkpoint is a copy (torch.load); loading the live dict would share the moment tensors.
    ours.load_state_dict(copy.deepcopy(loop.state_dict()))
    _set_grads(loop_params, 6)
    _set_grads(ours_params, 6)
    loop.step()
    ours.step()
    for a, b in zip(ours_params, loop_params):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)
    learner = Learner(str(tiny_model), LearnerConfig(), AlgoConfig(), seed=0)
    assert learner.optimizer.defaults["fused"] is True  # what the learner builds on CPU
