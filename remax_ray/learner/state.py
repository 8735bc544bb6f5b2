"""How the learner's models are loaded, and its share of a checkpoint written and read back.

Kept apart from the update so ``learner.py`` stays about the algorithm.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from remax_ray.assets.hf import hf_kwargs, portable_tokenizer_config
from remax_ray.learner import checkpoint

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


def learner_state(learner: Learner) -> dict:
    state = {"optimizer": learner.optimizer.state_dict(), "scheduler": learner.scheduler.state_dict(),
             "torch_rng": torch.get_rng_state(), "learner_steps": learner.steps_done,
             "skipped_updates": learner.skipped_updates}
    if learner.device.type == "cuda":
        state["cuda_rng"] = torch.cuda.get_rng_state()
    if learner.critic is not None:
        state["critic"] = {"backbone": learner.critic.backbone.state_dict(),
                           "head": learner.critic.head.state_dict(),
                           "optimizer": learner.critic.optimizer.state_dict(),
                           "skipped_updates": learner.critic.skipped_updates}
    return state


def restore_learner_state(learner: Learner, folder: str | Path) -> None:
    """Optimizer, LR schedule, RNG and critic from a checkpoint (the policy weights were loaded
    from the same folder by the constructor)."""
    state = torch.load(Path(folder) / checkpoint.LEARNER_STATE, map_location=learner.device,
                       weights_only=True)
    learner.optimizer.load_state_dict(state["optimizer"])
    learner.scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["torch_rng"].cpu())
    if "cuda_rng" in state and learner.device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda_rng"].cpu())
    learner.steps_done = state["learner_steps"]
    learner.skipped_updates = state.get("skipped_updates", 0)
    if learner.critic is not None:
        if "critic" not in state:
            raise ValueError(f"{folder}: this checkpoint has no critic state (was it trained with "
                             "another algo.estimator?)")
        learner.critic.backbone.load_state_dict(state["critic"]["backbone"])
        learner.critic.head.load_state_dict(state["critic"]["head"])
        learner.critic.optimizer.load_state_dict(state["critic"]["optimizer"])
        learner.critic.skipped_updates = state["critic"].get("skipped_updates", 0)


def save_checkpoint(learner: Learner, folder: str | Path, run_state: str = "{}", config_yaml: str = "",
                    keep: int = 0) -> Path:
    """An HF folder (safetensors) plus the learner's and the driver's state, written atomically;
    ``latest`` then points at it and all but the newest ``keep`` step folders are pruned."""
    folder = Path(folder)

    def write(tmp: Path) -> None:
        learner.policy.save_pretrained(tmp, safe_serialization=True)
        learner.tokenizer.save_pretrained(tmp)
        portable_tokenizer_config(tmp)
        torch.save(learner_state(learner), tmp / checkpoint.LEARNER_STATE)
        (tmp / checkpoint.RUN_STATE).write_text(run_state)
        if config_yaml:
            (tmp / checkpoint.CONFIG).write_text(config_yaml)

    checkpoint.write_atomically(folder, write)
    checkpoint.set_latest(folder)
    checkpoint.prune(folder.parent, keep)
    return folder
