"""Sections for running the loop: ``run`` (steps, data, outputs) and ``cluster`` (Ray, weight sync)."""

from dataclasses import dataclass

from remax_ray.config.base import _field

__all__ = ["LEARNER_DEVICES", "PLACEMENT_MODES", "PLACEMENT_STRATEGIES", "SYNC_TRANSPORTS", "ClusterConfig",
           "RunConfig"]

SYNC_TRANSPORTS = ("auto", "cpu", "shm", "objects", "nccl", "gloo")
PLACEMENT_MODES = ("disaggregated", "colocated")
PLACEMENT_STRATEGIES = ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD")
LEARNER_DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class RunConfig:
    """The training loop, evaluation and checkpoints."""

    steps: int = _field(24, "Number of training steps.")
    prompts_per_step: int = _field(16, "Prompts sampled per training step.")
    seed: int = _field(0, "Random seed for prompt sampling, generation and the learner.")
    dataset: str = _field(
        "builtin:movie-reviews",
        "Prompt dataset: 'builtin:<asset>' (movie-reviews, steered-reviews, arithmetic), a .jsonl file "
        "(one JSON object per line), a .parquet file, or a folder written by the datasets library's "
        "save_to_disk (a DatasetDict's train split trains and its test/validation split is held "
        "out). Columns other than the prompt reach a reward function that asks for them.",
    )
    prompt_key: str = _field("prompt", "The column holding each row's prompt text (when run.messages_key is empty).")
    messages_key: str = _field(
        "",
        "Chat format: the column holding each row's messages (a list of {role, content}), rendered "
        "with the policy tokenizer's own chat template and its generation prompt; empty = plain text "
        "prompts from run.prompt_key.",
    )
    eval_every: int = _field(8, "Evaluate every this many steps (0 = only before and after training).")
    eval_prompts: int = _field(32, "Number of held-out prompts used for evaluation.")
    eval_samples: int = _field(
        1, "Sampled responses per held-out prompt at each evaluation, besides the greedy one "
           "(eval_sample_reward is their mean reward; 0 = greedy only).")
    sample_prompts: int = _field(
        4, "The first this many held-out prompts: each evaluation writes their prompt, greedy and "
           "sampled response and rewards to samples.jsonl and TensorBoard's text tab (0 = none).")
    save_every: int = _field(0, "Save a checkpoint every this many steps (0 = only at the end).")
    output_dir: str = _field("runs/default", "Directory for metrics, the resolved config and checkpoints.")
    keep_checkpoints: int = _field(3, "Keep the newest this many step checkpoints (0 = keep all).")
    step_retries: int = _field(
        2, "Times a step is retried after a generator or the reward actor died (each retry waits for "
           "the actor's restart and re-syncs the current weights first).")
    max_learner_restarts: int = _field(
        2, "Times the learner is started again after a learner rank died (OOM, a lost node): the "
           "ranks are torn down, started from the newest complete checkpoint, the generators re-synced, "
           "and the steps since that checkpoint repeated with the same prompts and seeds (before the "
           "first checkpoint: from model.path and the run's first step; run.save_every bounds the "
           "steps repeated); 0 stops the run for --resume.")
    progress: bool = _field(True, "Show a progress bar.")
    check_sync: bool = _field(
        True, "Stop the run when, at the first step sampled after a weight sync, the learner's "
              "log-probs of the sampled tokens differ from the engine's (logp_diff) by more than the "
              "engine's numerical noise for its dtype: the engine does not serve the learner's weights "
              "(an architecture whose layout the sync does not know) and the run would train off-policy. "
              "false accepts it.")


@dataclass(frozen=True)
class ClusterConfig:
    """The Ray cluster and weight synchronisation."""

    address: str = _field(
        "", "Ray address to connect to (empty: the RAY_ADDRESS environment variable, else a local Ray)."
    )
    num_cpus: int = _field(0, "CPUs for a local Ray instance (0 = all); ignored when connecting to a cluster.")
    sync_transport: str = _field(
        "auto",
        "Learner-to-generator weight transport: auto | cpu | shm | objects | nccl | gloo. cpu: raw "
        "tensor buckets (whole decoder layers), streamed: shm when the learner and every generator "
        "share a node, else objects. shm: the learner writes each bucket into shared memory the vLLM "
        "workers map (one copy). objects: through the Ray object store into a shared-memory arena "
        "the generator keeps. nccl/gloo: broadcast over a stateless process group (nccl needs a "
        "CUDA learner). auto picks nccl when the learner is on CUDA, else cpu.",
    )
    sync_bucket_mb: int = _field(64, "Weights are sent in buckets of about this many MiB.")
    sync_timeout_s: float = _field(
        120.0, "A weight sync (object store or collective broadcast) that takes longer fails the step "
               "instead of hanging, e.g. when a peer of the broadcast died.")
    max_actor_restarts: int = _field(
        3, "Ray restarts a dead generator or reward actor this many times (the learner is never "
           "restarted: its state is the run's; resume from a checkpoint instead).")
    restart_timeout_s: float = _field(600.0, "How long a retried step waits for a restarted actor.")
    device: str = _field("auto", "Learner device: auto | cpu | cuda.")
    placement: str = _field(
        "disaggregated",
        "disaggregated: each generator and the learner in a placement-group bundle of its own (a whole "
        "GPU each); colocated: the learner shares generator 0's bundle and GPU (fractional GPUs).")
    placement_strategy: str = _field(
        "PACK", "Ray placement-group strategy: PACK | SPREAD | STRICT_PACK | STRICT_SPREAD (SPREAD puts "
                "disaggregated actors on different nodes where it can).")
    colocated_gpu_share: float = _field(
        0.5, "colocated: the learner's fraction of the shared GPU; generator 0 gets the rest.")
    placement_timeout_s: float = _field(
        120.0, "How long to wait for the cluster to place the run's bundles before failing with the reason.")
    autoscale_timeout_s: float = _field(
        1800.0, "placement_timeout_s on a cluster whose autoscaler can add nodes (KubeRay worker groups, "
                "`ray up` node types): the run's placement group asks it for nodes, which must boot and "
                "pull the image before the bundles are placed.")
    threads_per_actor: int = _field(
        0,
        "torch/OpenMP threads for each actor (0 = all cores of its node: generation, scoring and "
        "learning take turns, so each phase may use the whole machine).",
    )
