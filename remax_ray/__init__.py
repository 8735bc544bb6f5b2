"""remax-ray: ReMax RLHF (REINFORCE with a greedy baseline) on Ray, with vLLM generators."""

__version__ = "0.1.0"
