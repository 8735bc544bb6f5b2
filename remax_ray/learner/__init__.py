"""Learner: policy + frozen reference + the ReMax update; weight export for sync."""
