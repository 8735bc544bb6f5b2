"""K learner ranks (gloo, in-process plain classes, no Ray) against one learner on the same batch.

AdamW hides a constant gradient scale (a run whose gradients are all 2x too small ends with nearly
the same parameters), so the gradients and the pre-clip gradient norm are compared before any
optimizer step, and the parameters after one.

Tolerance: both runs compute every sequence's log-probs with the same fp32 kernels on the same
micro-batch shapes where they can, but the gradient is summed in a different order (per rank, then
across ranks) and micro-batches are padded to different lengths, so results agree to float32
rounding of sums of ~10^2 terms: an absolute 1e-5 on gradients of magnitude ~1e-2. After one step
the parameters agree to 1e-6 beyond what AdamW's first step makes of those gradient differences: it
moves a weight by lr * g / (|g| + eps), whose slope lr * eps / (|g| + eps)^2 reaches lr / eps = 1e5
where |g| is near eps (1e-8). A few of the tiny model's weights have such gradients, and there a
float32 rounding difference of 1e-10 in g moves the weight by ~1e-6 (seen on an AMD EPYC machine:
g = -1.857e-8 against -1.848e-8 gave 1.15e-6)."""

from __future__ import annotations

import multiprocessing as mp
import os
import sys
from pathlib import Path

import pytest
import torch

from remax_ray.config import AlgoConfig, LearnerConfig
from remax_ray.learner.learner import Learner
from remax_ray.learner.memory import modelled_state_bytes
from remax_ray.learner.parallel import full
from remax_ray.learner.shard import shard_rollouts, split_by_tokens

from helpers import free_ports, policy_gradient, toy_rollouts

GRAD_ATOL = 1e-5
PARAM_ATOL = 1e-6
# Two steps, the first of which already carries the eps amplification above (1.5e-6 seen). A resume
# that loses AdamW's state lands far outside it: 91% of the tiny model's weights more than 1e-5 off
# the uninterrupted run, the worst by 1.7e-3 (measured by resuming from the weights alone).
RESUME_ATOL = 1e-5


def test_split_by_tokens_keeps_prompts_whole_and_balances_tokens() -> None:
    # Largest first to the lighter rank: 0 (10) -> r0, 4 (9) -> r1, 1 -> r1 (10), 2 -> r0 (tie: fewer
    # prompts), 3 -> r1: 11 tokens each.
    assert split_by_tokens([10, 1, 1, 1, 9], 2) == [[0, 2], [1, 3, 4]]
    assert split_by_tokens([5, 5, 5], 3) == [[0], [1], [2]]
    assert split_by_tokens([3], 2) == [[0], []]  # a rank may get none; it then runs empty micro-batches
    shards = split_by_tokens(list(range(1, 12)), 4)
    assert sorted(i for s in shards for i in s) == list(range(11))
    loads = [sum(range(1, 12)[i] for i in s) for s in shards]
    assert loads == [18, 17, 16, 15]  # hand-run of the rule above
    # Largest-first greedy is within 4/3 of the best split (Graham's bound); the best is >= 66 / 4.
    assert max(loads) <= 4 / 3 * 66 / 4


def _rollouts(prompts: int = 6):
    return toy_rollouts(prompts, 2, seed=3, response_len=lambda i, j: 2 + (i * 3 + j) % 5, greedy_score=0.3)


def _configs(strategy: str, world: int, estimator: str, mini: int = 0, epochs: int = 1
             ) -> tuple[LearnerConfig, AlgoConfig]:
    return (LearnerConfig(lr=1e-3, micro_batch_size=2, mini_batch_size=mini, num_workers=world, strategy=strategy),
            AlgoConfig(estimator=estimator, kl_coef=0.05, epochs=epochs))


def _record_step_gradients(learner: Learner) -> list[torch.Tensor]:
    """The flat policy gradient at each optimizer step, gathered whole (every rank calls this in step)."""
    steps: list[torch.Tensor] = []
    take_step = learner._optimizer_step

    def recording() -> float:
        params = [p for p in learner.policy.parameters() if p.requires_grad]
        steps.append(torch.cat([full(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1)
                                for p in params]).detach().clone())
        return take_step()

    learner._optimizer_step = recording
    return steps


def _rank_main(rank: int, world: int, port: int, model: str, strategy: str, estimator: str, out: str,
               prompts: int = 6, mini: int = 0, epochs: int = 1) -> None:
    torch.set_num_threads(1)
    store = torch.distributed.TCPStore("127.0.0.1", port, world, is_master=rank == 0)
    learner_cfg, algo = _configs(strategy, world, estimator, mini, epochs)
    learner = Learner(model, learner_cfg, algo, seed=0, rank=rank, world_size=world, store=store)
    shard, index = shard_rollouts(_rollouts(prompts), world)[rank]
    grad = policy_gradient(learner, shard)
    steps = _record_step_gradients(learner)
    metrics = learner.train_step(shard, index)
    params = {n: torch.as_tensor(p.full_tensor() if hasattr(p, "full_tensor") else p).detach().clone()
              for n, p in learner.policy.named_parameters()}
    if rank == 0:
        torch.save({"grad": grad, "metrics": metrics, "params": params, "steps": steps}, out)
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()
    _end_rank()


def _end_rank() -> None:
    """Ends a rank's process without tearing its objects down. Freeing DDP's reducer at the end of
    the rank's function can deadlock: its gloo group's destructor joins a worker thread that waits
    for the GIL the destructor holds (seen once in a full suite run: a rank that never exited). What the test
    reads is on disk, and every rank has passed the barrier."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _run_ranks(world: int, model: str, strategy: str, estimator: str, out: Path, prompts: int = 6,
               mini: int = 0, epochs: int = 1) -> dict:
    ctx = mp.get_context("spawn")
    port, = free_ports(1)
    procs = [ctx.Process(target=_rank_main, args=(r, world, port, model, strategy, estimator, str(out), prompts,
                                                  mini, epochs))
             for r in range(world)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=600)
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
    return torch.load(out, weights_only=False)


@pytest.fixture(scope="module")
def single(tiny_model, tmp_path_factory) -> dict[str, dict]:
    """K = 1 on the whole batch, per estimator (in this process)."""
    out = {}
    for estimator in ("remax", "ppo"):
        learner_cfg, algo = _configs("ddp", 1, estimator)
        learner = Learner(str(tiny_model), learner_cfg, algo, seed=0)
        grad = policy_gradient(learner, _rollouts())
        metrics = learner.train_step(_rollouts())
        out[estimator] = {"grad": grad, "metrics": metrics,
                          "params": {n: p.detach().clone() for n, p in learner.policy.named_parameters()}}
    return out


def _first_adamw_step(grad: torch.Tensor, grad_norm: float, cfg: LearnerConfig, eps: float = 1e-8) -> torch.Tensor:
    """How far AdamW's first step moves each weight (no weight decay), after clipping to max_grad_norm:
    its bias-corrected moments are g and g^2, so the move is lr * g / (|g| + eps)."""
    g = grad * min(1.0, cfg.max_grad_norm / (grad_norm + 1e-6)) if cfg.max_grad_norm > 0 else grad
    return cfg.lr * g / (g.abs() + eps)


def _assert_same_first_step(two: dict, one: dict) -> float:
    """The parameters after one step agree to PARAM_ATOL beyond the difference AdamW's first step
    makes of the two runs' measured gradients (module docstring)."""
    cfg, _ = _configs("ddp", 1, "remax")
    assert cfg.weight_decay == 0.0  # _first_adamw_step leaves it out
    names = list(one["params"])
    delta = torch.cat([(two["params"][n] - one["params"][n]).reshape(-1) for n in names]).abs()
    assert delta.numel() == one["grad"].numel()  # the flat gradient follows the same parameter order
    allowed = PARAM_ATOL + (_first_adamw_step(two["grad"], two["metrics"]["grad_norm"], cfg)
                            - _first_adamw_step(one["grad"], one["metrics"]["grad_norm"], cfg)).abs()
    excess = delta - allowed
    i = int(excess.argmax())
    assert excess[i] <= 0, (f"param K=2 - param K=1 = {delta[i]:.3g} at flat index {i} (gradient "
                            f"{one['grad'][i]:.3g}), allowed {allowed[i]:.3g}")
    assert delta.max() < cfg.lr / 10  # however small the gradients, no weight is a tenth of a step off
    return delta.max().item()


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
@pytest.mark.parametrize("estimator", ["remax", "ppo"])
def test_two_ranks_equal_one_learner(strategy, estimator, single, tiny_model, tmp_path) -> None:
    two = _run_ranks(2, str(tiny_model), strategy, estimator, tmp_path / "rank0.pt")
    one = single[estimator]
    diff = (two["grad"] - one["grad"]).abs().max().item()
    assert one["grad"].abs().max() > 1e-3  # a gradient worth comparing
    assert diff < GRAD_ATOL, f"max |grad K=2 - grad K=1| = {diff:.3g}"
    keys = ["grad_norm", "loss", "kl", "entropy", "reward_sample", "adv_mean", "adv_std", "score_adv_mean"]
    if estimator == "ppo":  # the critic follows the policy's strategy; PPO's whitening moments are global
        keys += ["value_loss", "critic_grad_norm", "value_mean", "clip_frac"]
    for key in keys:
        assert two["metrics"][key] == pytest.approx(one["metrics"][key], rel=1e-5, abs=1e-6), key
    worst = _assert_same_first_step(two, one)
    # The memory model (docs/memory.md) against the exact bytes rank 0 holds: AdamW's per-tensor step
    # counters and FSDP2's padding of uneven shards are the only terms it leaves out.
    n = sum(p.numel() for p in one["params"].values())
    critic = 0
    if estimator == "ppo":  # the critic: the policy's backbone and a scalar head
        critic = n + 64 + 1  # every policy parameter (its tied head is its embedding) + a 64 -> 1 head
    for k, got in ((1, one["metrics"]["learner_state_bytes"]), (2, two["metrics"]["learner_state_bytes"])):
        modelled = modelled_state_bytes(n, ranks=k, strategy=strategy, critic_params=critic)
        assert got == pytest.approx(modelled, rel=0.02), (k, got, modelled)
    print(f"{strategy} {estimator}: max grad diff {diff:.3g}, max param diff {worst:.3g}; state bytes "
          f"K=1 {one['metrics']['learner_state_bytes']:.0f} K=2 {two['metrics']['learner_state_bytes']:.0f} "
          f"(model {modelled_state_bytes(n, critic_params=critic):.0f} / "
          f"{modelled_state_bytes(n, ranks=2, strategy=strategy, critic_params=critic):.0f})")


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_ppo_mini_batches_count_the_whole_batch_on_two_ranks(strategy, tiny_model, tmp_path) -> None:
    """learner.mini_batch_size counts sequences of the whole step: 12 sequences, mini-batches of 4,
    2 epochs = 6 optimizer steps on one learner and on two ranks, each step on the same sequences
    (so the same gradient, to float rounding), hence the same parameters after them. Counted per
    rank, two ranks took 4 steps of about 6 sequences each."""
    mini, epochs = 4, 2
    two = _run_ranks(2, str(tiny_model), strategy, "ppo", tmp_path / "rank0.pt", mini=mini, epochs=epochs)
    learner_cfg, algo = _configs(strategy, 1, "ppo", mini, epochs)
    learner = Learner(str(tiny_model), learner_cfg, algo, seed=0)
    steps = _record_step_gradients(learner)
    one = {"metrics": learner.train_step(_rollouts()), "steps": steps,
           "params": {n: p.detach().clone() for n, p in learner.policy.named_parameters()}}
    assert one["metrics"]["optimizer_steps"] == 6 == len(one["steps"])
    assert two["metrics"]["optimizer_steps"] == 6 == len(two["steps"])
    for i, (g2, g1) in enumerate(zip(two["steps"], one["steps"])):
        assert g1.abs().max() > 1e-3
        diff = (g2 - g1).abs().max().item()
        # Later steps start from parameters that already differ by AdamW's amplified rounding (see
        # the module docstring), so their gradients may drift a little more than the first's.
        assert diff < GRAD_ATOL * (1 if i == 0 else 10), f"optimizer step {i}: max |grad diff| = {diff:.3g}"
    for key in ("loss", "grad_norm", "value_loss", "clip_frac", "kl", "adv_mean", "adv_std"):
        assert two["metrics"][key] == pytest.approx(one["metrics"][key], rel=1e-4, abs=1e-6), key
    worst = max((two["params"][n] - one["params"][n]).abs().max().item() for n in one["params"])
    assert worst < learner_cfg.lr / 10, worst  # 6 steps of lr 1e-3 each; a different mini-batch is ~lr off
    print(f"{strategy}: ppo mini-batches, max param diff after 6 steps {worst:.3g}")


def test_a_rank_without_prompts_runs_empty_micro_batches_in_step(tiny_model, tmp_path) -> None:
    """One prompt, two ranks (as when reward.on_invalid=skip dropped the other rank's prompts):
    rank 1 runs empty micro-batches, every collective is matched, and the update is rank 0's alone,
    i.e. one learner's on that prompt."""
    two = _run_ranks(2, str(tiny_model), "ddp", "remax", tmp_path / "rank0.pt", prompts=1)
    learner_cfg, algo = _configs("ddp", 1, "remax")
    single = Learner(str(tiny_model), learner_cfg, algo, seed=0)
    grad = policy_gradient(single, _rollouts(1))
    assert (two["grad"] - grad).abs().max().item() < GRAD_ATOL
    assert two["metrics"]["grad_norm"] == pytest.approx(single.train_step(_rollouts(1))["grad_norm"], rel=1e-5)


# ------------------------------------------------------------------ checkpoints across rank counts

def _second_batch():
    return toy_rollouts(6, 2, seed=4, response_len=lambda i, j: 3 + (i + j) % 4, greedy_score=-0.2)


def _whole_params(learner: Learner) -> dict[str, torch.Tensor]:
    return {n: torch.as_tensor(p.full_tensor() if hasattr(p, "full_tensor") else p).detach().clone()
            for n, p in learner.policy.named_parameters()}


def _resume_main(rank: int, world: int, port: int, model: str, strategy: str, phase: str, ckpt: str,
                 out: str) -> None:
    """``phase`` "first": step 1 on the first batch, then a checkpoint; "second": resume from the
    checkpoint, step 2 on the second batch. Rank 0 saves the whole parameters afterwards."""
    torch.set_num_threads(1)
    store = torch.distributed.TCPStore("127.0.0.1", port, world, is_master=rank == 0)
    learner_cfg, algo = _configs(strategy, world, "remax")
    resume = ckpt if phase == "second" else None
    learner = Learner(resume or model, learner_cfg, algo, seed=0, rank=rank, world_size=world, store=store,
                      reference_path=model, resume_from=resume)
    batch = _rollouts() if phase == "first" else _second_batch()
    learner.train_step(*shard_rollouts(batch, world)[rank])
    if phase == "first":
        learner.save(ckpt)
    params = _whole_params(learner)
    if rank == 0:
        torch.save(params, out)
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()
    _end_rank()


def _spawn(target, world: int, *args) -> None:
    ctx = mp.get_context("spawn")
    port, = free_ports(1)
    procs = [ctx.Process(target=target, args=(r, world, port, *args)) for r in range(world)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=600)
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]


def _single(model: str, *, resume: str | None = None, save: str | None = None, steps=("first", "second")):
    learner_cfg, algo = _configs("ddp", 1, "remax")
    learner = Learner(resume or model, learner_cfg, algo, seed=0, reference_path=model, resume_from=resume)
    for phase in steps:
        learner.train_step(_rollouts() if phase == "first" else _second_batch())
        if phase == "first" and save:
            learner.save(save)
    return _whole_params(learner)


def _max_diff(a: dict, b: dict) -> float:
    return max((a[n] - b[n]).abs().max().item() for n in b)


@pytest.fixture(scope="module")
def uninterrupted(tiny_model) -> dict[str, torch.Tensor]:
    """K = 1, two steps, no checkpoint in between."""
    return _single(str(tiny_model))


def test_a_two_rank_checkpoint_is_an_hf_folder_and_resumes_with_one_rank(tiny_model, uninterrupted, tmp_path):
    """K = 2 (FSDP2) step 1 -> checkpoint -> K = 1 step 2 equals K = 1 for both steps, up to the float
    rounding of a sum taken in another order (not bit-identical: see the module docstring)."""
    from transformers import AutoModelForCausalLM

    ckpt, first = tmp_path / "step-000001", tmp_path / "first.pt"
    _spawn(_resume_main, 2, str(tiny_model), "fsdp", "first", str(ckpt), str(first))
    # The HF folder holds exactly the ranks' weights after step 1, whole.
    loaded = AutoModelForCausalLM.from_pretrained(ckpt, dtype=torch.float32)
    after_first = torch.load(first)
    assert _max_diff(dict(loaded.named_parameters()), after_first) == 0.0
    # Tensors as the config says, as one learner writes them: a tied head stays tied (the gathered
    # embedding is not written a second time as lm_head.weight).
    from safetensors import safe_open

    def names(folder) -> set[str]:
        with safe_open(str(Path(folder) / "model.safetensors"), "pt") as f:
            return set(f.keys())

    assert loaded.config.tie_word_embeddings and "lm_head.weight" not in names(ckpt)
    assert names(ckpt) == names(tiny_model)
    resumed = _single(str(tiny_model), resume=str(ckpt), steps=("second",))
    diff = _max_diff(resumed, uninterrupted)
    assert diff < RESUME_ATOL, f"K=2 -> K=1 resume differs from uninterrupted K=1 by {diff:.3g}"
    print(f"K=2 -> K=1 resume: max param diff {diff:.3g}")


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_a_one_rank_checkpoint_resumes_with_two_ranks(strategy, tiny_model, uninterrupted, tmp_path):
    ckpt, out = tmp_path / "step-000001", tmp_path / "second.pt"
    _single(str(tiny_model), save=str(ckpt), steps=("first",))
    _spawn(_resume_main, 2, str(tiny_model), strategy, "second", str(ckpt), str(out))
    diff = _max_diff(torch.load(out), uninterrupted)
    assert diff < RESUME_ATOL, f"K=1 -> K=2 ({strategy}) resume differs from uninterrupted K=1 by {diff:.3g}"
    print(f"K=1 -> K=2 {strategy} resume: max param diff {diff:.3g}")


def test_two_ranks_share_reinforce_means_batch_baseline(tiny_model, tmp_path) -> None:
    """reinforce_mean's baseline is the mean of the whole batch's other samples: each rank holds half
    the prompts, and the all-reduced sum and count give it one learner's advantages and gradient (a
    per-rank baseline would differ: the two halves of these rollouts have different mean rewards)."""
    two = _run_ranks(2, str(tiny_model), "ddp", "reinforce_mean", tmp_path / "rank0.pt")
    learner_cfg, algo = _configs("ddp", 1, "reinforce_mean")
    single = Learner(str(tiny_model), learner_cfg, algo, seed=0)
    grad = policy_gradient(single, _rollouts())
    metrics = single.train_step(_rollouts())
    assert (two["grad"] - grad).abs().max().item() < GRAD_ATOL
    for key in ("grad_norm", "score_adv_mean", "score_adv_std", "adv_mean", "adv_std"):
        assert two["metrics"][key] == pytest.approx(metrics[key], rel=1e-5, abs=1e-6), key


# ------------------------------------------------------------------ an error on one rank only

def _refusing_rank_main(rank: int, world: int, port: int, model: str, out: str) -> None:
    """rollout.overlap's importance weights need the generator's log-probs of every token: rank 0's
    samples carry them, rank 1's do not. Each rank writes the error it raised."""
    torch.set_num_threads(1)
    store = torch.distributed.TCPStore("127.0.0.1", port, world, is_master=rank == 0)
    learner_cfg, algo = _configs("ddp", world, "remax")
    # A short process-group timeout: were the ranks not to agree, rank 0 would wait in a collective
    # for rank 1 and fail with gloo's timeout message instead of rank 1's reason.
    learner = Learner(model, learner_cfg, algo, seed=0, rank=rank, world_size=world, store=store,
                      importance_cap=2.0, dist_timeout_s=30)
    shard, index = shard_rollouts(_rollouts(), world)[rank]
    if rank == 0:
        for r in shard:
            for s in r.samples:
                s.logprobs = [-1.0] * len(s.token_ids)
    try:
        learner.train_step(shard, index)
        message = "no error"
    except Exception as err:  # noqa: BLE001 - the test reads what each rank raised
        message = f"{type(err).__name__}: {err}"
    Path(out.replace("RANK", str(rank))).write_text(message)
    _end_rank()


def test_a_batch_refused_on_one_rank_is_refused_on_every_rank_with_its_reason(tiny_model, tmp_path) -> None:
    ctx = mp.get_context("spawn")
    port, = free_ports(1)
    out = str(tmp_path / "rankRANK.txt")
    procs = [ctx.Process(target=_refusing_rank_main, args=(r, 2, port, str(tiny_model), out)) for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=600)
    assert [p.exitcode for p in procs] == [0, 0]
    rank0, rank1 = ((tmp_path / f"rank{r}.txt").read_text() for r in range(2))
    assert rank1.startswith("ValueError: importance correction"), rank1
    assert rank0.startswith("ValueError: learner rank 1 refused this step's batch: ValueError: importance "
                            "correction"), rank0
