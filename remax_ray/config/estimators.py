"""The configuration's texts that name estimators, read from the registry
(:data:`remax_ray.algo.ESTIMATORS`) each time they are shown, so that a new registry entry appears in
every help text and message without an edit here.

The registry imports torch; it is imported on the first call (a help text shown, a configuration
validated), so importing the configuration stays torch-free.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from remax_ray.algo import EstimatorSpec


def registry() -> dict[str, EstimatorSpec]:
    """The estimator registry, :data:`remax_ray.algo.ESTIMATORS`."""
    from remax_ray.algo import ESTIMATORS

    return ESTIMATORS


def estimator_names(select: Callable[[EstimatorSpec], bool] = lambda spec: True) -> str:
    """The registered names whose spec ``select`` accepts, comma-separated, in the registry's order."""
    return ", ".join(name for name, spec in registry().items() if select(spec))


def on_policy_names() -> str:
    """The estimators without PPO's clipped ratio: one optimizer step per batch, no stale samples."""
    return estimator_names(lambda spec: not spec.uses_ratio)


def ratio_names() -> str:
    """The estimators with PPO's clipped ratio against the policy that sampled the batch."""
    return estimator_names(lambda spec: spec.uses_ratio)


def estimator_help() -> str:
    """The help text of ``algo.estimator``: every registered name with its summary."""
    choices = ", ".join(f"{name} ({spec.summary})" for name, spec in registry().items())
    return f"Advantage estimator, a name of remax_ray.algo.ESTIMATORS: {choices}."
