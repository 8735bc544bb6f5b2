"""``python -m remax_ray.config``: print the commented default configuration (remax_ray/config/default.yaml)."""

from remax_ray.config.train import Config, to_yaml

print(to_yaml(Config()), end="")
