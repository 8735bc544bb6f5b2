"""The paper's memory claim on real hardware, learner side only: peak GPU memory of one ReMax and
one PPO learner step (experience + update) on a randomly initialised Llama-shaped policy.

torch + transformers only (no Ray, no vLLM), so it runs on a machine that has neither. The learner
is remax-ray's own (fp32 master weights, bf16 autocast on CUDA, AdamW), the reference frozen, PPO's
critic of the policy's size; responses are random tokens (the memory does not depend on them).

    python bench/learner_cuda.py --size 0.5b            # on a GPU
    python bench/learner_cuda.py --size tiny --device cpu   # a smoke run anywhere

It prints one line per algorithm and ``RESULT {json}`` with the peaks, their ratio and the
modelled training state (remax_ray/learner/memory.py; activations are the difference).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

import torch

from remax_ray.config import AlgoConfig, LearnerConfig
from remax_ray.learner.learner import Learner
from remax_ray.learner.memory import modelled_state_bytes

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
from helpers import toy_rollouts  # noqa: E402

SIZES = {  # hidden, layers, heads, intermediate: Qwen2.5-0.5B- and 1.5B-like widths, Llama blocks
    "tiny": (64, 2, 1, 128),
    "0.5b": (896, 24, 14, 4864),
    "1.5b": (1536, 28, 12, 8960),
}


def build(size: str, folder: str) -> int:
    from transformers import LlamaConfig, LlamaForCausalLM

    hidden, layers, heads, inter = SIZES[size]
    cfg = LlamaConfig(vocab_size=32000, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                      num_key_value_heads=heads, intermediate_size=inter, max_position_embeddings=512,
                      tie_word_embeddings=False)
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg)
    model.save_pretrained(folder, safe_serialization=True)
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel({"<eos>": 0}, unk_token="<eos>")),
                            eos_token="<eos>", pad_token="<eos>").save_pretrained(folder)
    return sum(p.numel() for p in model.parameters())


def peak(folder: str, estimator: str, device: str, prompts: int, response: int) -> float:
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    learner = Learner(folder, LearnerConfig(micro_batch_size=4), AlgoConfig(estimator=estimator, kl_coef=0.05),
                      device=device, seed=0)
    rollouts = toy_rollouts(prompts, 2, response_len=lambda i, j: response, greedy=[1] if estimator == "remax" else None)
    metrics = learner.train_step(rollouts)
    out = float(torch.cuda.max_memory_allocated()) if device == "cuda" else metrics["learner_peak_rss_bytes"]
    del learner
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="0.5b")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--response", type=int, default=128)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        n = build(args.size, folder)
        result = {"size": args.size, "params": n, "device": args.device}
        for estimator in ("remax", "ppo"):
            result[estimator] = peak(folder, estimator, args.device, args.prompts, args.response)
            critic = n if estimator == "ppo" else 0
            result[f"{estimator}_modelled_state"] = modelled_state_bytes(n, critic_params=critic)
            print(f"{estimator:6s} peak {result[estimator] / 2**30:7.2f} GiB   modelled training state "
                  f"{result[f'{estimator}_modelled_state'] / 2**30:7.2f} GiB")
    result["remax_over_ppo"] = result["remax"] / result["ppo"]
    print(f"ReMax / PPO peak: {result['remax_over_ppo']:.2f}")
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
