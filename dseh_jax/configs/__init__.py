"""Experiment configurations: one module per dataset, each with ``get_config()``.

Each config starts from the paper's values (comments say where a value is the authors'
TensorFlow ``code``'s instead) and applies one set of ``choices``
(:func:`dseh_jax.configs.base.apply_choices`): ``"recipe"``, the validated default;
``"paper"``, the paper as written; ``"code"``, every choice of the authors' code.
"""
from __future__ import annotations

import importlib

import ml_collections

from dseh_jax.configs.base import CHOICES

NAMES = ("digits", "digits_single", "nuswide21", "coco", "imagenet100", "cifar10")


def get_config(name: str, choices: str | None = None) -> ml_collections.ConfigDict:
  """The configuration called ``name`` (one of :data:`NAMES`).

  ``choices``: one of :data:`CHOICES`; ``None`` takes the config's default (``"recipe"``).
  """
  if name not in NAMES:
    raise ValueError(f"unknown config {name!r}; expected one of {NAMES}")
  module = importlib.import_module(f"dseh_jax.configs.{name}")
  if choices is None:
    return module.get_config()
  if choices not in CHOICES:
    raise ValueError(f"unknown choices {choices!r}; expected one of {CHOICES}")
  return module.get_config(choices)
