"""Prompt datasets (jsonl files with a "prompt" field, or the built-in movie-review openings) and
comparison pairs for reward-model training (jsonl with "prompt", "chosen", "rejected", or built-in
movie-snippet pairs)."""
