"""Prompt datasets: jsonl files with a "prompt" field, or the built-in movie-review openings."""
