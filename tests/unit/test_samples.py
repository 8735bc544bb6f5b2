"""Samples beside the curves: the evaluation's table (driver/evaluation.py), samples.jsonl and
TensorBoard's text tab (monitor/metrics.py, monitor/samples.py), their cut on resume, the terminal
view ``remax-ray samples``, and a trainer writing them at every evaluation (in-process actors)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest

from remax_ray import cli
from remax_ray.cluster.actors import Actors
from remax_ray.config import load_config
from remax_ray.data.rollouts import Completion, PromptRollout
from remax_ray.driver import trainer as trainer_module
from remax_ray.driver.evaluation import EVAL_STEP, evaluate
from remax_ray.monitor import samples, tb_events
from remax_ray.monitor.metrics import MetricsSink


def _done(text: str) -> Completion:
    return Completion([1], text, "stop")


def _rollout(prompt: str, samples_: list[str], greedy: str) -> PromptRollout:
    return PromptRollout(prompt, [1], [_done(s) for s in samples_], _done(greedy))


def test_evaluate_means_over_valid_prompts_and_fixed_seeds() -> None:
    calls = {}

    def generate(prompts, *, n, step, greedy):
        calls["generate"] = (list(prompts), n, step, greedy)
        return [_rollout(p, [f"{p}-s{j}" for j in range(n)], f"{p}-g") for p in prompts]

    def score(rollouts, columns):
        calls["columns"] = columns
        table = {"a": ([0.5, 1.5], 1.0), "b": ([math.nan, 0.0], 2.0), "c": ([2.0, 3.0], 4.0)}
        for r in rollouts:
            r.sample_scores, r.greedy_score = table[r.prompt]

    result = evaluate(generate, score, ["a", "b", "c"], [{"answer": "1"}, {}, {"answer": "3"}], n=2)
    assert calls["generate"] == (["a", "b", "c"], 2, EVAL_STEP, True)  # the same seeds at every evaluation
    assert calls["columns"] == [{"answer": "1"}, {}, {"answer": "3"}]
    # "b" has a NaN reward: left out of both means, as the trainer leaves it out of a step.
    assert (result.greedy_reward, result.sample_reward, result.valid) == (2.5, 1.75, 2)
    assert result.metrics() == {"eval_greedy_reward": 2.5, "eval_sample_reward": 1.75}
    assert result.samples(step=8, limit=2) == [
        {"step": 8, "index": 0, "prompt": "a", "greedy": "a-g", "greedy_reward": 1.0, "sample": "a-s0",
         "sample_reward": 0.5, "columns": {"answer": "1"}},
        {"step": 8, "index": 1, "prompt": "b", "greedy": "b-g", "greedy_reward": 2.0, "sample": "b-s0",
         "sample_reward": None, "columns": {}}]
    assert result.table()[2]["samples"] == ["c-s0", "c-s1"] and result.table()[2]["sample_rewards"] == [2.0, 3.0]


def test_greedy_only_evaluation_has_no_sample_reward() -> None:
    def generate(prompts, *, n, step, greedy):
        return [_rollout(p, [], "g") for p in prompts]

    def score(rollouts, columns):
        for r in rollouts:
            r.greedy_score = 0.25

    result = evaluate(generate, score, ["a"], [], n=0)
    assert result.metrics() == {"eval_greedy_reward": 0.25}
    assert result.samples(0, 4)[0]["sample"] is None and result.samples(0, 4)[0]["columns"] == {}


def _records(step: int, n: int = 2) -> list[dict]:
    return [{"step": step, "index": i, "prompt": f"What is {i} + {i}?", "greedy": f"{2 * i + step}",
             "greedy_reward": float(step == 0 or i == 0), "sample": f"maybe {i}|{step}\nok",
             "sample_reward": None if i else 0.5, "columns": {"answer": str(2 * i), "messages": [{"role": "user"}]}}
            for i in range(n)]


@pytest.mark.skipif(not tb_events.available(), reason="tensorboard is not installed")
def test_sink_writes_samples_jsonl_and_tensorboard_text(tmp_path: Path) -> None:
    from tensorboard.plugins.text import text_plugin
    from tensorboard.util import tensor_util

    sink = MetricsSink(tmp_path, use_ray=False)
    for step in (0, 2):
        sink.log_samples(step, _records(step))
        sink.log(step, {"eval_greedy_reward": 0.5})
    sink.close()
    assert samples.read(tmp_path / "samples.jsonl") == _records(0) + _records(2)
    texts = tb_events.read_texts(tmp_path / "tensorboard" / "samples")
    assert sorted(texts) == ["samples/prompt_0", "samples/prompt_1"]
    assert [step for step, _ in texts["samples/prompt_1"]] == [0, 2]
    md = texts["samples/prompt_1"][1][1]
    assert md == ("**prompt** What is 1 + 1?  \n**answer** 2\n\n| response | reward | text |\n|---|---|---|\n"
                  "| greedy | 0.000 | 4 |\n| sample | n/a | maybe 1\\|2<br>ok |")
    # What TensorBoard's text tab shows: an HTML table with the escaped pipe and the line break.
    events = [e for e in tb_events.summary_events(tmp_path / "tensorboard" / "samples")]
    value = events[1].summary.value[1]
    html = text_plugin.text_array_to_html(tensor_util.make_ndarray(value.tensor), enable_markdown=True)
    assert "<table>" in html and "maybe 1|2<br />ok" in html.replace("<br>", "<br />")
    # The scalar folder still holds one summary event per metrics record.
    assert len(tb_events.summary_events(tmp_path / "tensorboard")) == 2


def test_a_resume_cuts_samples_to_the_kept_evaluations(tmp_path: Path) -> None:
    sink = MetricsSink(tmp_path, use_ray=False)
    for step in (0, 2, 4):
        sink.log_samples(step, _records(step))
        sink.log(step, {"eval_greedy_reward": 0.5})
        sink.log(step, {"loss": 1.0, "prompts_consumed": 2.0})
    sink.close()
    # The checkpoint after step 2 had seen 4 records: the evaluations at steps 0 and 2.
    MetricsSink(tmp_path, use_ray=False).truncate(4)
    assert samples.read(tmp_path / "samples.jsonl") == _records(0) + _records(2)
    if tb_events.available():
        texts = tb_events.read_texts(tmp_path / "tensorboard" / "samples")
        assert {tag: [s for s, _ in v] for tag, v in texts.items()} == {
            "samples/prompt_0": [0, 2], "samples/prompt_1": [0, 2]}
    MetricsSink(tmp_path, use_ray=False).truncate(0)
    assert samples.read(tmp_path / "samples.jsonl") == []


def test_terminal_view_shows_each_prompt_across_steps() -> None:
    records = _records(0) + _records(2)
    assert samples.render(records, width=40) == "\n".join([
        '[0] "What is 0 + 0?"',
        '    answer: "0"',
        "    step  response  reward  text",
        '       0  greedy     1.000  "0"',
        '          sample     0.500  "maybe 0|0\\nok"',
        '       2  greedy     1.000  "2"',
        '          sample     0.500  "maybe 0|2\\nok"',
        "",
        '[1] "What is 1 + 1?"',
        '    answer: "2"',
        "    step  response  reward  text",
        '       0  greedy     1.000  "2"',
        '          sample       n/a  "maybe 1|0\\nok"',
        '       2  greedy     0.000  "4"',
        '          sample       n/a  "maybe 1|2\\nok"'])
    one = samples.render(records, step=2, width=12)
    assert "       0  greedy" not in one and '       2  greedy     1.000  "2"' in one
    assert '[0] "... 0 + 0?"' in one and '"maybe 0..."' in one  # cut to the width: a prompt's end, a response's start
    with pytest.raises(samples.SamplesError, match=r"no samples at step 5; evaluations at steps 0, 2"):
        samples.render(records, step=5)


def test_samples_command(tmp_path: Path, capsys) -> None:
    samples.append(tmp_path / "samples.jsonl", _records(0) + _records(3))
    assert cli.main(["samples", str(tmp_path), "--step", "3"]) == 0
    out = capsys.readouterr().out
    assert out.startswith('[0] "What is 0 + 0?"') and "       3  greedy" in out and "       0  greedy" not in out
    assert cli.main(["samples", str(tmp_path / "nowhere")]) == 2
    assert "no samples.jsonl in" in capsys.readouterr().err


class _Actor:
    def __init__(self, **methods):
        self.owns = lambda actor_id, me="actor": actor_id == me
        for name, fn in {"__ray_ready__": lambda: True, **methods}.items():
            setattr(self, name, SimpleNamespace(remote=fn))


def test_a_run_writes_samples_at_every_evaluation_and_rewards_see_the_rows(
        tmp_path: Path, tiny_model: Path, monkeypatch) -> None:
    monkeypatch.setattr(trainer_module, "connect", lambda cfg, include_dashboard=None: None)
    monkeypatch.setattr(trainer_module.ray, "get", lambda refs, timeout=None: refs)
    data = tmp_path / "q.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"What is {i} + {i}?", "answer": str(2 * i)}) + "\n"
                            for i in range(12)))

    served = {"version": 0}  # the sync the fake engine holds; every response reports it

    def load_weight_refs(refs, version=None, first_bucket=0, buckets_in_sync=1):
        if version is not None:
            served["version"] = version
        return {"sync_bytes": 1.0}

    def generate(prompts, *, n, step, first_index, run_seed, greedy=True):
        rollouts = [PromptRollout(p, [1, 2], [_done(f"{p.split()[2]}") for _ in range(n)],
                                  _done(f"step {step}") if greedy else None) for p in prompts]
        for r in rollouts:
            r.weight_version = served["version"]
        return rollouts

    scored = []

    def score(prompts, responses, rows=None):
        scored.append((prompts, rows))
        return [float(r["answer"] == str(2 * int(p.split()[2]))) for p, r in zip(prompts, rows)]

    learner = _Actor(train_step=lambda rollouts: {"loss": 0.5}, weight_buckets=lambda mb, dtype: 1,
                     node_id=lambda: "learner-node",
                     export_bucket=lambda k, mb, dtype: b"w", save=lambda folder, state, cfg_yaml, keep: folder)
    gen = _Actor(generate=generate, load_weight_refs=load_weight_refs, node_id=lambda: "generator-node")
    cfg = load_config(None, [f"model.path={tiny_model}", f"run.dataset={data}", f"run.output_dir={tmp_path / 'run'}",
                             "reward.kind=vader", "run.steps=2", "run.eval_every=1", "run.prompts_per_step=2",
                             "run.eval_prompts=3", "run.sample_prompts=2", "run.progress=false",
                             "learner.micro_batch_size=2", "run.check_sync=false"])  # fake log-probs
    trainer = trainer_module.Trainer(cfg, actors=Actors([gen], _Actor(score=score), learner, "cpu", "float32"))
    trainer.fit()
    trainer.metrics.close()
    # Every reward call (3 evaluations, 2 steps) got each response's own row: all rewards are 1.
    assert len(scored) == 5 and all(rows is not None for _, rows in scored)
    assert all(row["answer"] == str(2 * int(p.split()[2])) for prompts, rows in scored for p, row in zip(prompts, rows))
    records = samples.read(tmp_path / "run" / "samples.jsonl")
    assert [(r["step"], r["index"]) for r in records] == [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1)]
    held = trainer.splits.eval
    assert [r["prompt"] for r in records] == held[:2] * 3  # the same prompts at every evaluation
    assert all(r["greedy"] == "step -1" and r["greedy_reward"] == 1.0 and r["sample_reward"] == 1.0
               and r["columns"] == {"answer": str(2 * int(r["prompt"].split()[2]))} for r in records)
    evals = [r for r in trainer.metrics.read() if "eval_greedy_reward" in r]
    assert [(r["step"], r["eval_greedy_reward"], r["eval_sample_reward"]) for r in evals] == [
        (0, 1.0, 1.0), (1, 1.0, 1.0), (2, 1.0, 1.0)]
