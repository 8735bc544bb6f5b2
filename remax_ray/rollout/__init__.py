"""Generation: a plain Generator class around ``vllm.LLM`` plus the worker extension for weight reload."""
