"""How the learner's models are loaded, and its share of a checkpoint written and read back.

Kept apart from the update so ``learner.py`` stays about the algorithm.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch

from remax_ray.assets.hf import hf_kwargs, portable_tokenizer_config
from remax_ray.learner import checkpoint, dist
from remax_ray.learner.lora import save_merged
from remax_ray.learner.parallel import full

# ``learner`` below is a Learner (remax_ray.learner.learner), typed loosely: that module imports this
# one, and an import back would make a cycle.
Learner = Any


def load_policy(path: str, device: torch.device, trust_remote_code: bool = False) -> torch.nn.Module:
    """The policy (or the reference): a causal LM, loaded by :func:`load_without_dropout`."""
    from transformers import AutoModelForCausalLM

    return load_without_dropout(AutoModelForCausalLM, path, device, trust_remote_code)


def load_without_dropout(auto_class: Any, path: str, device: torch.device,
                         trust_remote_code: bool = False) -> torch.nn.Module:
    """``auto_class.from_pretrained(path)`` in fp32 with every dropout probability at 0.

    The learner's log-probs must be the sampler's (vLLM never applies dropout); a model shipped with
    dropout (attention_dropout, hidden_dropout, resid_pdrop, ...) would otherwise train on noisy
    log-probs that match no sampled token's probability, and PPO's critic (``AutoModel``: the same
    backbone without the LM head) would regress noisy values that GAE then reads. Zeroing the config
    (not calling ``eval()``) keeps ``training`` on, which gradient checkpointing needs.
    ``trust_remote_code`` is passed only when set (see ``assets.hf.hf_kwargs``)."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(path, **hf_kwargs(trust_remote_code))
    for key, value in vars(config).items():
        if isinstance(value, float) and ("dropout" in key or "pdrop" in key):
            setattr(config, key, 0.0)
    model = auto_class.from_pretrained(path, config=config, dtype=torch.float32,
                                       **hf_kwargs(trust_remote_code))
    for module in model.modules():  # dropout layers built from hard-coded probabilities
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    return model.to(device)


OPTIMIZER_DIR = "optimizer"
"""torch.distributed.checkpoint folder of the policy's AdamW state: sharded per rank, keyed by
parameter name, so a checkpoint written by K ranks loads into any number of ranks (and strategy)."""


def rng_file(rank: int) -> str:
    return f"rng-rank{rank}.pt"


def learner_state(learner: Learner) -> dict:
    """Rank 0's share of ``trainer_state.pt``: LR schedule, counters (and PPO's critic)."""
    state = {"scheduler": learner.scheduler.state_dict(), "learner_steps": learner.steps_done,
             "skipped_updates": learner.skipped_updates, "world_size": learner.world_size,
             "fresh_optimizers": [name for name, opt in _optimizers(learner) if not opt.state]}
    if learner.critic is not None:  # its weights and AdamW state are in the sharded folder
        state["critic_skipped_updates"] = learner.critic.skipped_updates
    return state


def _rng_state(device: torch.device) -> dict:
    state = {"torch_rng": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda_rng"] = torch.cuda.get_rng_state()
    return state


def _optimizers(learner: Learner) -> list[tuple[str, torch.optim.Optimizer]]:
    return [("policy", learner.optimizer)] + ([("critic", learner.critic.optimizer)] if learner.critic else [])


def _forget_fake_steps(learner: Learner, fresh: list[str]) -> None:
    """Empty again the state of the optimizers named in ``fresh`` (those that had taken no step).

    torch's ``get_optimizer_state_dict`` fills an optimizer that has no state yet by stepping it once
    with zero gradients at lr 0: AdamW's step count becomes 1 with zero moments, and the first real
    step's bias correction then moves the weights by about 0.74x a fresh AdamW's. A checkpoint taken
    before the first update would change the run that wrote it and the run that resumes it."""
    for name, opt in _optimizers(learner):
        if name in fresh:
            opt.state.clear()


def _optimizer_dict(learner: Learner) -> dict:
    """What the sharded folder holds, by parameter name: the policy's AdamW state and, for PPO, the
    critic's weights and AdamW state (the critic has no HF folder of its own)."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

    out = {"optim": get_optimizer_state_dict(learner.policy, learner.optimizer)}
    if learner.critic is not None:
        critic = learner.critic
        out["critic"] = get_model_state_dict(critic.value_model)
        out["critic_optim"] = get_optimizer_state_dict(critic.value_model, critic.optimizer)
    return out


def restore_learner_state(learner: Learner, folder: str | Path) -> None:
    """Optimizer, LR schedule, RNG and critic from a checkpoint (the policy weights were loaded
    from the same folder by the constructor), whatever number of ranks wrote it."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import set_model_state_dict, set_optimizer_state_dict

    folder = Path(folder)
    state = torch.load(folder / checkpoint.LEARNER_STATE, map_location=learner.device, weights_only=True)
    if "optimizer" in state:  # written before the optimizer moved to its own sharded folder
        _restore_single_learner_format(learner, folder, state)
    else:
        if learner.critic is not None and "critic_skipped_updates" not in state:
            raise ValueError(f"{folder}: this checkpoint has no critic state (was it trained with "
                             "another algo.estimator?)")
        optim = _optimizer_dict(learner)  # the template: this rank's shapes and shards
        dcp.load(optim, checkpoint_id=str(folder / OPTIMIZER_DIR))
        set_optimizer_state_dict(learner.policy, learner.optimizer, optim["optim"])
        if learner.critic is not None:
            critic = learner.critic
            set_model_state_dict(critic.value_model, optim["critic"])
            set_optimizer_state_dict(critic.value_model, critic.optimizer, optim["critic_optim"])
            critic.skipped_updates = state["critic_skipped_updates"]
        _forget_fake_steps(learner, state.get("fresh_optimizers", []))
    learner.scheduler.load_state_dict(state["scheduler"])
    # This rank's RNG where this rank existed when it was written; otherwise rank 0's.
    rng_path = folder / rng_file(learner.rank)
    rng = torch.load(rng_path if rng_path.exists() else folder / rng_file(0), weights_only=True) \
        if (rng_path.exists() or (folder / rng_file(0)).exists()) else state
    torch.set_rng_state(rng["torch_rng"].cpu())
    if "cuda_rng" in rng and learner.device.type == "cuda":
        torch.cuda.set_rng_state(rng["cuda_rng"].cpu())
    learner.steps_done = state["learner_steps"]
    learner.skipped_updates = state.get("skipped_updates", 0)


def _restore_single_learner_format(learner: Learner, folder: Path, state: dict) -> None:
    """A checkpoint from before learner ranks: whole optimizer state dicts (and PPO's critic: its
    backbone, head and AdamW state) inside ``trainer_state.pt``. They load into one learner only:
    FSDP2 shards and DDP replicas take their optimizer state by parameter name (``optimizer/``)."""
    if learner.world_size > 1:
        raise ValueError(
            f"{folder} was written by remax-ray before learner ranks (whole optimizer state in "
            f"{checkpoint.LEARNER_STATE}); it resumes with learner.num_workers=1 only. Resume it once with "
            "learner.num_workers=1 and save (run.save_every), then resume that checkpoint with more ranks")
    if learner.critic is not None and "critic" not in state:
        raise ValueError(f"{folder}: this checkpoint has no critic state (was it trained with "
                         "another algo.estimator?)")
    learner.optimizer.load_state_dict(state["optimizer"])
    if learner.critic is not None:
        learner.critic.backbone.load_state_dict(state["critic"]["backbone"])
        learner.critic.head.load_state_dict(state["critic"]["head"])
        learner.critic.optimizer.load_state_dict(state["critic"]["optimizer"])


def _full_policy_state(learner: Learner) -> dict[str, torch.Tensor] | None:
    """Under FSDP2, the policy's whole state dict on rank 0's CPU (None elsewhere): every rank joins
    each tensor's gather, one tensor at a time. None otherwise: one rank's (or a DDP replica's)
    weights are already whole, and ``save_pretrained`` reads them itself."""
    if learner.world_size == 1 or learner.cfg.strategy == "ddp":
        return None
    # A tied weight (lm_head = embed_tokens) is one parameter under two names (the state dict holds a
    # separate DTensor for each): gathered once and kept as one tensor, so save_pretrained sees the
    # tie and writes it once, as for one learner. Keyed by the parameter, the same on every rank.
    param_of = {name: id(p) for name, p in learner.policy.named_parameters(remove_duplicate=False)}
    out, gathered = {}, {}
    for name, t in learner.policy.state_dict().items():
        key = param_of.get(name, name)
        whole = gathered.get(key)
        if whole is None:
            whole = gathered[key] = full(t).detach().cpu()
        if learner.rank == 0:
            out[name] = whole
    return out if learner.rank == 0 else None


def save_checkpoint(learner: Learner, folder: str | Path, run_state: str = "{}", config_yaml: str = "",
                    keep: int = 0) -> Path:
    """An HF folder (safetensors, written once, by rank 0) plus the learner's and the driver's
    state, written atomically; ``latest`` then points at it and all but the newest ``keep`` step
    folders are pruned. With several ranks every rank calls this: each writes its optimizer shard
    and RNG into the staging folder, rank 0 the rest, and only rank 0 publishes, after a barrier."""
    import torch.distributed.checkpoint as dcp

    folder = Path(folder)
    if folder.exists():  # complete when it was renamed in (see checkpoint.write_atomically)
        if learner.rank == 0:
            checkpoint.set_latest(folder)
            checkpoint.prune(folder.parent, keep)
        dist.barrier()
        return folder
    tmp = checkpoint.staging_folder(folder, shared=learner.world_size > 1, create=learner.rank == 0)
    dist.barrier()  # the staging folder exists before any rank writes into it
    try:
        own_state = learner_state(learner)  # before the optimizer state dict fills fresh optimizers
        dcp.save(_optimizer_dict(learner), checkpoint_id=str(tmp / OPTIMIZER_DIR))
        _forget_fake_steps(learner, own_state["fresh_optimizers"])
        torch.save(_rng_state(learner.device), tmp / rng_file(learner.rank))
        weights = _full_policy_state(learner)
        if learner.rank == 0:
            # LoRA: PEFT's save_pretrained writes the adapter alone (and, asked for, merged/).
            learner.policy.save_pretrained(tmp, state_dict=weights, safe_serialization=True)
            if learner.lora is not None and learner.lora.save_merged:
                save_merged(learner.policy, tmp)
            learner.tokenizer.save_pretrained(tmp)
            portable_tokenizer_config(tmp)
            torch.save(own_state, tmp / checkpoint.LEARNER_STATE)
            (tmp / checkpoint.RUN_STATE).write_text(run_state)
            if config_yaml:
                (tmp / checkpoint.CONFIG).write_text(config_yaml)
        dist.barrier()  # every rank's shard is on disk
        if learner.rank == 0:
            checkpoint.publish(tmp, folder)
            checkpoint.set_latest(folder)
            checkpoint.prune(folder.parent, keep)
    except BaseException:
        if learner.rank == 0:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    dist.barrier()  # no rank returns before the checkpoint is published
    return folder
