"""Experiment configurations: one module per dataset, each with ``get_config(arg)``.

Each config starts from the paper's values (comments say where a value is the authors'
TensorFlow ``code``'s instead) and applies one set of ``choices``
(:func:`dseh_jax.configs.base.apply_choices`): ``"recipe"``, the validated default;
``"paper"``, the paper as written; ``"code"``, every choice of the authors' code. ``arg``
also names the method and the ablation (:mod:`dseh_jax.configs.compose`), so a config file
is one ``ml_collections.config_flags`` argument: ``--config dseh_jax/configs/coco.py:method=dpsh``.
"""
from __future__ import annotations

import importlib
import os

import ml_collections

from dseh_jax.configs.base import CHOICES

__all__ = ["CHOICES", "NAMES", "config_file", "get_config", "import_module"]

NAMES = ("digits", "digits_single", "nuswide21", "coco", "imagenet100", "cifar10")


def get_config(name: str, arg: str | None = None) -> ml_collections.ConfigDict:
  """The configuration called ``name`` (one of :data:`NAMES`) for ``arg``: e.g. ``"code"``
  or ``"method=dpsh,choices=code"`` (``None``: the recipe's DSEH)."""
  return import_module(name).get_config(arg)


def import_module(name: str):
  """The module of config ``name`` (its ``get_config(arg)`` and ``dataset_config(choices)``)."""
  if name not in NAMES:
    raise ValueError(f"unknown config {name!r}; expected one of {NAMES}")
  return importlib.import_module(f"dseh_jax.configs.{name}")


def config_file(spec: str) -> str:
  """``"digits:method=dpsh"`` → ``"<package>/configs/digits.py:method=dpsh"``: the short
  names of :data:`NAMES` as config_flags paths; any other ``spec`` is returned as it is."""
  name, sep, arg = spec.partition(":")
  if name not in NAMES:
    return spec
  return os.path.join(os.path.dirname(os.path.abspath(__file__)), f"{name}.py") + sep + arg
