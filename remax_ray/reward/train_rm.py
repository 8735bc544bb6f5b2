"""``remax-ray train-rm``: fit a reward model on comparison pairs (stage 2 of RLHF).

A one-output sequence classifier is put on the backbone and fit with the Bradley-Terry loss: the
chosen response of each pair should score above the rejected one. The result is an HF folder that
``RewardScorer("hf", model_path=folder)`` loads, so it plugs in as ``reward.kind=hf``.

The texts are rendered exactly as the scorer renders them (``template.format(prompt=...,
response=...)``); with the builtin pairs the prompt is empty, which is what the scorer's
``score_response_only`` gives at RL time (automatic for ``builtin:sentiment-rm``; a folder given
by path sees the prompt unless ``reward.score_response_only=true``).
"""

from __future__ import annotations

import json
import os
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from remax_ray.algo.preference import bradley_terry_loss, pairwise_accuracy
from remax_ray.assets.home import (
    BUILTIN_PREFIX,
    SENTIMENT_RM,
    STEERED_RM,
    assets_home,
    atomic_publish,
    resolve_backbone_path,
    seed_from_prebuilt,
)
from remax_ray.config.rm import STEERED_RM_RECIPE, RewardModelConfig, load_rm_config
from remax_ray.data.pairs import Pair, PairSplits, load_pair_splits

METRICS_FILE = "rm_metrics.json"
_EVAL_BATCH = 64


def render(pairs: list[Pair], template: str) -> tuple[list[str], list[str]]:
    """(chosen texts, rejected texts) as the reward model sees them."""
    chosen = [template.format(prompt=p.prompt, response=p.chosen) for p in pairs]
    rejected = [template.format(prompt=p.prompt, response=p.rejected) for p in pairs]
    return chosen, rejected


def load_backbone(path: str, seed: int) -> tuple[Any, Any]:
    """Tokenizer and a one-output classifier on ``path``; the new head is seeded."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = resolve_backbone_path(path)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=1)
    # Decoder backbones often lack a pad token; the classifier needs its id to find the last token.
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    if getattr(model.config, "pad_token_id", None) is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return tokenizer, model


def _forward(model: Any, tokenizer: Any, texts: list[str], max_length: int) -> torch.Tensor:
    batch = tokenizer(texts, truncation=True, max_length=max_length, padding=True, return_tensors="pt")
    return model(**batch).logits[:, 0].float()


def score_texts(model: Any, tokenizer: Any, texts: list[str], max_length: int) -> torch.Tensor:
    """[len(texts)] rewards in eval mode (no dropout), as the scorer computes them."""
    model.eval()
    with torch.inference_mode():
        parts = [_forward(model, tokenizer, texts[i : i + _EVAL_BATCH], max_length)
                 for i in range(0, len(texts), _EVAL_BATCH)]
    return torch.cat(parts)


def evaluate(model: Any, tokenizer: Any, pairs: list[Pair], template: str, max_length: int) -> dict[str, Any]:
    """Pairwise accuracy and BT loss on ``pairs``, the spread of the scores, and, for pairs read
    with a group column, the accuracy and number of pairs of each group (``by_group``)."""
    chosen, rejected = render(pairs, template)
    scores = score_texts(model, tokenizer, chosen + rejected, max_length)
    c, r = scores[: len(pairs)], scores[len(pairs) :]
    return {"accuracy": pairwise_accuracy(c, r), "loss": float(bradley_terry_loss(c, r)),
            "score_mean": float(scores.mean()), "score_std": float(scores.std()) if len(scores) > 1 else 0.0,
            "margin_mean": float((c - r).mean()), "by_group": group_accuracy(pairs, c, r)}


def group_accuracy(pairs: list[Pair], chosen: torch.Tensor, rejected: torch.Tensor) -> dict[str, dict[str, Any]]:
    """``{group: {"accuracy", "pairs"}}`` over the pairs' groups, sorted by name ({} without groups)."""
    out = {}
    for group in sorted({p.group for p in pairs if p.group}):
        index = torch.tensor([i for i, p in enumerate(pairs) if p.group == group])
        out[group] = {"accuracy": pairwise_accuracy(chosen[index], rejected[index]), "pairs": len(index)}
    return out


def fit(cfg: RewardModelConfig, splits: PairSplits, log=print) -> tuple[Any, Any, dict[str, Any]]:
    """Train on ``splits.train``; return the tokenizer, the model (eval mode) and its metrics."""
    tr, data = cfg.train, cfg.data
    torch.set_num_threads(tr.threads or os.cpu_count() or 1)
    start = time.perf_counter()
    tokenizer, model = load_backbone(cfg.model.path, tr.seed)
    if tr.freeze_embeddings:
        model.get_input_embeddings().weight.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=tr.lr, weight_decay=tr.weight_decay)
    steps_per_epoch = -(-len(splits.train) // tr.batch_size)
    log(f"reward model: {len(splits.train)} training pairs, {len(splits.heldout)} held out, "
        f"{tr.epochs} epoch(s) of {steps_per_epoch} steps")
    losses: list[float] = []
    for epoch in range(tr.epochs):
        order = list(range(len(splits.train)))
        random.Random(f"{tr.seed}-{epoch}").shuffle(order)
        model.train()
        for step in range(steps_per_epoch):
            batch = [splits.train[i] for i in order[step * tr.batch_size : (step + 1) * tr.batch_size]]
            chosen, rejected = render(batch, data.template)
            # One forward over both halves: same padding, half the calls.
            scores = _forward(model, tokenizer, chosen + rejected, data.max_length)
            loss = bradley_terry_loss(scores[: len(batch)], scores[len(batch) :])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
            if (step + 1) % 10 == 0 or step + 1 == steps_per_epoch:
                recent = losses[-10:]
                log(f"  epoch {epoch + 1} step {step + 1}/{steps_per_epoch}: loss "
                    f"{statistics.mean(recent):.3f} ({time.perf_counter() - start:.0f} s)")
    train_s = time.perf_counter() - start
    held = evaluate(model, tokenizer, splits.heldout, data.template, data.max_length)
    # Training pairs are scored on a sample as large as the held-out set: enough to show
    # over-fitting, at the cost of one more held-out-sized pass.
    sample = splits.train[: max(len(splits.heldout), 1)]
    train_eval = evaluate(model, tokenizer, sample, data.template, data.max_length)
    metrics = {
        "heldout_accuracy": held["accuracy"], "heldout_loss": held["loss"],
        "train_accuracy": train_eval["accuracy"], "train_loss": train_eval["loss"],
        **_by_group("heldout", held), **_by_group("train", train_eval),
        "score_mean": held["score_mean"], "score_std": held["score_std"],
        "heldout_margin_mean": held["margin_mean"],
        "train_pairs": len(splits.train), "train_accuracy_pairs": len(sample),
        "heldout_pairs": len(splits.heldout), "steps": len(losses),
        "train_s": round(train_s, 1), "wall_s": round(time.perf_counter() - start, 1),
        "backbone": cfg.model.path, "template": data.template, "max_length": data.max_length,
        **({"group_key": data.group_key} if data.group_key else {}),
    }
    groups = "".join(f", {g} {v['accuracy']:.3f}" for g, v in held["by_group"].items())
    log(f"reward model: held-out accuracy {held['accuracy']:.3f}{groups}, train accuracy "
        f"{train_eval['accuracy']:.3f} ({metrics['wall_s']:.0f} s)")
    return tokenizer, model, metrics


def _by_group(split: str, result: dict[str, Any]) -> dict[str, Any]:
    """``{split}_accuracy_by_group`` and ``{split}_pairs_by_group`` when the pairs have groups."""
    groups = result["by_group"]
    if not groups:
        return {}
    return {f"{split}_accuracy_by_group": {g: v["accuracy"] for g, v in groups.items()},
            f"{split}_pairs_by_group": {g: v["pairs"] for g, v in groups.items()}}


def check_replaceable(out: str | Path) -> None:
    """Refuse an output folder that holds anything but an earlier reward model: it is replaced whole."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / METRICS_FILE).exists())):
        raise FileExistsError(
            f"train.output_dir: {out} exists and is not a reward-model folder (no {METRICS_FILE}); "
            "it would be replaced, so choose a new folder"
        )


def save_reward_model(model: Any, tokenizer: Any, metrics: dict[str, Any], out: str | Path) -> Path:
    """Write an HF folder (safetensors, tokenizer, rm_metrics.json); a killed run leaves none."""
    check_replaceable(out)
    out = Path(out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}-"))
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    (tmp / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n")
    atomic_publish(tmp, out)
    return out


def train_reward_model(cfg: RewardModelConfig, log=print) -> dict[str, Any]:
    """Load the pairs, fit, write ``cfg.train.output_dir``; return the metrics (with ``output_dir``)."""
    check_replaceable(cfg.train.output_dir)  # before the training, not after it
    if cfg.model.path.startswith(BUILTIN_PREFIX) and cfg.model.path[len(BUILTIN_PREFIX):] in _BUILTIN_RMS:
        _BUILTIN_RMS[cfg.model.path[len(BUILTIN_PREFIX):]](log)  # a builtin starting point: built first
    splits = load_pair_splits(cfg.data.pairs, cfg.data.heldout_fraction, cfg.train.seed,
                              cfg.data.max_pairs, log, cfg.data.group_key)
    tokenizer, model, metrics = fit(cfg, splits, log)
    out = save_reward_model(model, tokenizer, metrics, cfg.train.output_dir)
    return {**metrics, "output_dir": str(out)}


def prepare_sentiment_rm(log=print) -> Path:
    """Fit the default reward model with ``train-rm``'s default recipe (about a minute on 2 cores)."""
    return _prepare_builtin_rm(SENTIMENT_RM, (), log)


def prepare_steered_rm(log=print) -> Path:
    """Fit ``builtin:steered-rm``: ``train-rm`` with :data:`STEERED_RM_RECIPE`."""
    return _prepare_builtin_rm(STEERED_RM, STEERED_RM_RECIPE, log)


def _prepare_builtin_rm(name: str, recipe: tuple[str, ...], log) -> Path:
    out = assets_home() / name
    if seed_from_prebuilt(name, "model.safetensors"):
        return out
    train_reward_model(load_rm_config(None, [*recipe, f"train.output_dir={out}"]), log)
    return out


_BUILTIN_RMS = {SENTIMENT_RM: prepare_sentiment_rm, STEERED_RM: prepare_steered_rm}
