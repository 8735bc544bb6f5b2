"""What the paper (Li et al., "ReMax", arXiv 2310.10505) and the authors' code (github.com/liziniu/ReMax,
commit 536ba49) report and use, quoted with their source, and our settings beside them.

Only what was read in those sources is stated; what could not be confirmed says so.
"""

from __future__ import annotations

from typing import Any

PAPER = "Li et al., ReMax, arXiv 2310.10505"
CODE = "github.com/liziniu/ReMax @ 536ba49"
# Short names for the sources, defined once in the report.
SOURCES = {
    "abstract": f"{PAPER}, abstract (final version; v1-v3 where marked)",
    "README": f"{CODE}, README.md",
    "scripts": f"{CODE}, step3_rlhf_finetuning/training_scripts/opt/run_opt_1.3b.sh and llama2/run_llama2_7b.sh",
    "trainer": f"{CODE}, step3_rlhf_finetuning/remax_trainer.py",
    "step 1": f"{CODE}, step1_supervised_finetuning/",
}

# (what, the paper's figure, source, short form for the table beside our ratio). Our measured
# ratios stand beside these; we set no pass/fail threshold of our own.
MEMORY_FIGURES = [
    ("GPU memory saved vs PPO, 7B model", "about 46%", "abstract", "46% (7B)"),
    ("memory saved vs PPO", "about 50% 'in principle'", "abstract v1-v3; README", "~50%"),
]
SPEED_FIGURES = [
    ("wall-clock speed-up vs PPO, GPT-2 (137M)", "2.2x", "abstract v1", "2.2x (GPT-2)"),
    ("per-iteration speed-up vs PPO", "PPO 'about twice as slow'", "abstract v3", "~2x per iteration"),
    ("per-iteration speed-up vs PPO, 7B", "1.6x: not confirmed (given by third-party summaries of the "
     "paper, not found in the text read here)", "-", "1.6x (7B, not confirmed)"),
    ("total training time, Llama-2-7B, A100-80GB, offload", "PPO 22.0 h vs ReMax 10.2 h on 1 GPU; "
     "6.0 h vs 2.8 h on 4 GPUs", "README", "2.2x, 2.1x (7B, total time)"),
]


def _get(cfg: dict[str, Any], dotted: str) -> Any:
    node: Any = cfg
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def departures(cfg: dict[str, Any], device: str) -> list[tuple[str, str, str, str]]:
    """(setting, ours, the paper / the authors' code, source) for every known difference."""
    g = lambda key: _get(cfg, key)  # noqa: E731
    return [
        ("policy", f"{g('model.path')}", "Llama-2-7B and OPT-1.3B (scripts); GPT-2 137M (abstract v1); "
         "Mistral-7B (abstract)", "scripts; abstract"),
        ("SFT stage before RL", "none of ours (model.path as it is; the builtin SmolLM2-135M-Instruct was "
         "instruction-tuned by its makers)", "yes: step 1 fine-tunes the policy on the task's data",
         "step 1"),
        ("reward", f"{g('reward.kind')}: {g('reward.model_path') or g('reward.function')}",
         "a reward model trained in step 2 on the preference data (OPT-350m / Llama-2-7B)", "scripts"),
        ("hardware", device, "A100-80GB (README), A800-80GB (abstract)", "README; abstract"),
        ("precision", f"model.dtype={g('model.dtype')}", "bf16 (--actor_bf16)", "scripts"),
        ("sampling", f"temperature {g('rollout.temperature')}, top_p {g('rollout.top_p')}",
         "temperature 1.0, top_p 0.9", "trainer"),
        ("samples per prompt", f"{g('rollout.samples_per_prompt')} sampled (+1 greedy for ReMax; rloo 2)",
         "1 sampled + 1 greedy", "trainer"),
        ("response length", f"max_new_tokens {g('rollout.max_new_tokens')}, prompt <= "
         f"{g('rollout.max_prompt_tokens')} tokens", "max_answer_seq_len 256, max_prompt_seq_len 256", "scripts"),
        ("learning rate", f"{g('learner.lr')} for every arm, warm-up {g('learner.warmup_steps')} steps, "
         f"then constant; weight decay {g('learner.weight_decay')}",
         "actor 1e-6, cosine schedule, weight decay 0.1", "scripts"),
        ("KL penalty beta", f"{g('algo.kl_coef')} ({g('algo.kl_estimator')} estimate, in the "
         f"{g('algo.kl_placement')})", "kl_ctl 0.05, per-token log-ratio in the reward", "scripts; trainer"),
        ("discount gamma", f"{g('algo.gamma')} (GAE, PPO only); ReMax/REINFORCE returns undiscounted",
         "0.99 on ReMax's returns", "scripts; trainer"),
        ("advantage / reward clipping", f"score_clip {g('algo.score_clip')} (0 = none) on each score",
         "r(sample) - r(greedy) clamped to [-5, 5]", "trainer"),
        ("steps and batch", f"{g('run.steps')} steps x {g('run.prompts_per_step')} prompts",
         "1 epoch over the RL share (data_split 2,4,4) of Dahoas/rm-static (scripts; the README's timings: "
         "45k full-hh-rlhf samples); batch 4 per GPU (OPT), 1 (Llama-2); step count not confirmed",
         "scripts; README"),
        ("the paper's own hyper-parameter table", "-", "not confirmed (the paper's appendix was not "
         "available here; the values above are the authors' scripts)", "-"),
    ]
