"""Every consumer of the estimator registry (``remax_ray.algo.ESTIMATORS``) knows every entry.

Each test enumerates the registry, so a new entry is checked by all of them with no edit here: the
configuration (a valid choice, named in its help texts), the learner (its advantages, outcome or
token-level, through the entry's own function), the repro harness (an arm with enough samples per
prompt) and the variance measurement (measured, or refused for the reason its flags give).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from remax_ray.algo import ESTIMATORS, outcome_advantages, token_rewards
from remax_ray.config import describe_fields, load_config
from remax_ray.learner.experience import sequence_scores
from remax_ray.repro.arms import ARM_ORDER
from remax_ray.repro.claims import CLAIMS
from remax_ray.repro.conditions import TRAINED_ALGO
from remax_ray.repro.plan import DEFAULT_ALGOS, REPRO_DEFAULTS, parse_algos, plan_runs
from remax_ray.repro.variance_stats import MEASURED_ESTIMATORS, SAMPLES_PER_DRAW, estimator_weights

from helpers import toy_rollouts

NAMES = list(ESTIMATORS)


def test_the_estimator_help_names_every_entry_with_its_summary():
    text = describe_fields()["algo.estimator"]
    for name, spec in ESTIMATORS.items():
        assert f"{name} ({spec.summary})" in text


def test_the_on_policy_and_ratio_help_texts_name_their_estimators():
    fields = describe_fields()
    for name, spec in ESTIMATORS.items():
        for key in ("algo.epochs", "rollout.overlap"):  # the on-policy ones only
            assert (f"{name}," in fields[key] or f"{name})" in fields[key]) != spec.uses_ratio, (key, name)
        assert (f"({name}" in fields["learner.mini_batch_size"]
                or f", {name}" in fields["learner.mini_batch_size"]) == spec.uses_ratio, name


@pytest.mark.parametrize("name", NAMES)
def test_every_estimator_is_a_valid_choice_at_its_min_samples(name):
    n = ESTIMATORS[name].min_samples
    cfg = load_config(overrides=[f"algo.estimator={name}", f"rollout.samples_per_prompt={n}",
                                 "run.prompts_per_step=8"])
    assert cfg.algo.estimator == name


@pytest.mark.parametrize("name", NAMES)
def test_the_learner_forms_every_estimators_advantages_through_its_entry(name):
    spec = ESTIMATORS[name]
    n = max(spec.min_samples, 2)
    rollouts = toy_rollouts(3, n)
    scores, stats = sequence_scores(spec, name, rollouts)
    assert scores.shape == (3 * n,) and torch.isfinite(scores).all()
    if not spec.needs_critic:
        return
    # A critic estimator: the scores go on as token rewards into the entry's token-level function.
    with pytest.raises(ValueError, match="token-level"):
        outcome_advantages(name, scores.view(3, n))
    mask = torch.tensor([[1, 1, 1] if i % 2 else [1, 1, 0] for i in range(3 * n)], dtype=torch.float32)
    rewards = token_rewards(scores, mask)
    advantages, returns = spec.fn(rewards, torch.zeros_like(mask), mask, 1.0, 1.0)
    assert advantages.shape == returns.shape == mask.shape
    # gamma = lam = 1 and zero values: every token's advantage is the score at its sequence's end.
    torch.testing.assert_close(advantages, scores.unsqueeze(1) * mask)


def test_the_repro_plans_every_estimator_with_its_min_samples(tmp_path: Path):
    assert parse_algos(",".join(NAMES)) == NAMES
    base = load_config(None, [*REPRO_DEFAULTS, "run.prompts_per_step=4", "learner.micro_batch_size=4"])
    assert base.rollout.samples_per_prompt == 1
    runs = plan_runs({"t": base}, NAMES, [0], tmp_path)  # validates every run's configuration
    for run in runs:
        assert run.cfg.algo.estimator == run.algo
        assert run.cfg.rollout.samples_per_prompt == ESTIMATORS[run.algo].min_samples


def test_the_names_the_repro_uses_are_registered():
    used = {*DEFAULT_ALGOS, TRAINED_ALGO, *ARM_ORDER, *(claim.other for claim in CLAIMS)}
    assert used <= set(ESTIMATORS)


@pytest.mark.parametrize("name", [n for n in NAMES if not ESTIMATORS[n].needs_critic])
def test_the_linear_in_scores_flag_is_true_exactly_when_the_advantages_are(name):
    spec = ESTIMATORS[name]
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(2, 4, spec.min_samples + 1, generator=g, dtype=torch.float64)
    ga, gb = torch.randn(2, 4, generator=g, dtype=torch.float64)
    linear = torch.allclose(spec.fn(a + 3 * b, ga + 3 * gb), spec.fn(a, ga) + 3 * spec.fn(b, gb))
    assert linear == spec.linear_in_scores


@pytest.mark.parametrize("name", NAMES)
def test_the_variance_stage_measures_or_refuses_every_estimator(name):
    spec = ESTIMATORS[name]
    sampled = torch.tensor([[1.0, 3.0], [2.0, 0.0], [6.0, 5.0]], dtype=torch.float64)
    greedy = torch.tensor([0.5, 2.0, 4.0], dtype=torch.float64)
    if not spec.linear_in_scores or spec.needs_critic:
        assert name not in MEASURED_ESTIMATORS
        with pytest.raises(ValueError, match="not measured"):
            estimator_weights(name, sampled, greedy)
        return
    assert name in MEASURED_ESTIMATORS and spec.min_samples <= SAMPLES_PER_DRAW
    w = estimator_weights(name, sampled, greedy)
    m = spec.min_samples
    # The first min_samples samples carry the estimator's own advantages, averaged over them and the
    # three prompts; the draw's other samples are not the estimator's.
    torch.testing.assert_close(w[:, :m], spec.fn(sampled[:, :m], greedy) / (3 * m))
    assert not w[:, m:].any()


def test_importing_the_configuration_does_not_import_torch():
    # The help texts read the registry (which imports torch) only when they are shown.
    code = "import sys, remax_ray.config; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
