"""Single-label variant of the embedded default: one digit per mosaic."""
from dseh_jax.configs import digits


def get_config(choices: str = "recipe"):
  c = digits.get_config(choices)
  c.data.name = "digits_single"
  return c
