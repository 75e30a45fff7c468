"""Single-label variant of the embedded default: one digit per mosaic."""
from __future__ import annotations

from dseh_jax.configs import digits
from dseh_jax.configs.compose import compose


def get_config(arg: str | None = None):
  """``arg``: ``choices=…,method=…,variant=…`` (``dseh_jax.configs.compose``)."""
  return compose(dataset_config, arg)


def dataset_config(choices: str = "recipe"):
  c = digits.dataset_config(choices)
  c.data.name = "digits_single"
  return c
