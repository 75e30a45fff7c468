"""Hashing methods on the shared backbone, trainer, steps and evaluation.

``config.method`` names a module of this package whose ``METHOD`` (a
:class:`~dseh_jax.methods.base.Method`) gives the networks, losses, phase plan and hand-offs;
``configure(config)`` of the module turns a dataset config into one for the method. This
registry is the only place that lists the names.
"""
from __future__ import annotations

import importlib
import types

from dseh_jax.methods.base import Method

NAMES = ("dseh", "dpsh", "dhn", "hashnet", "cnnh", "dsh", "dsdh", "greedyhash", "csq",
         "dpn", "orthohash")
LABELS = {"dseh": "DSEH", "dpsh": "DPSH", "dhn": "DHN", "hashnet": "HashNet", "cnnh": "CNNH",
          "dsh": "DSH", "dsdh": "DSDH", "greedyhash": "GreedyHash", "csq": "CSQ",
          "dpn": "DPN", "orthohash": "OrthoHash"}


def _module(name: str) -> types.ModuleType:
  if name not in NAMES:
    raise ValueError(f"method={name!r}; expected one of {NAMES}")
  return importlib.import_module(f"dseh_jax.methods.{name}")


def get_method(name: str) -> Method:
  """The method called ``name`` (one of :data:`NAMES`)."""
  return _module(name).METHOD


def configure(config, name: str):
  """``config`` (a dataset's) edited for method ``name``: ``config.method`` and the
  method's own section (e.g. ``config.dpsh``)."""
  return _module(name).configure(config)
