"""Experiment configurations: one module per dataset, each with ``get_config()``.

Every value follows the paper unless its comment says ``code`` (the authors' TensorFlow
release); :func:`dseh_jax.configs.base.use_code_choices` switches every listed code choice
on at once.
"""
from __future__ import annotations

import importlib

import ml_collections

NAMES = ("digits", "digits_single", "nuswide21", "coco", "imagenet100", "cifar10")


CHOICES = ("paper", "code")


def get_config(name: str, choices: str | None = None) -> ml_collections.ConfigDict:
  """The configuration called ``name`` (one of :data:`NAMES`).

  ``choices="code"`` switches every place where the authors' code differs from the paper;
  ``None`` takes the config's own default (the paper, except for the embedded digits).
  """
  if name not in NAMES:
    raise ValueError(f"unknown config {name!r}; expected one of {NAMES}")
  module = importlib.import_module(f"dseh_jax.configs.{name}")
  if choices is None:
    return module.get_config()
  if choices not in CHOICES:
    raise ValueError(f"unknown choices {choices!r}; expected one of {CHOICES}")
  return module.get_config(choices)
