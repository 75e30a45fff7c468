"""A config = a dataset's settings + a method + a variant: the ``get_config(arg)`` of every
dataset module, so that ``ml_collections.config_flags`` builds it from the command line::

    --config dseh_jax/configs/nuswide21.py:method=dpsh
    --config dseh_jax/configs/digits.py:choices=code,variant=S

``arg`` (the text after ``:``) holds ``KEY=VALUE`` pairs separated by commas:

* ``choices``: ``recipe`` (default), ``paper`` or ``code`` (:data:`~dseh_jax.configs.base.CHOICES`);
* ``method``: a module of :mod:`dseh_jax.methods` (default ``dseh``);
* ``variant``: one of the paper's ablations, ``full`` (default), ``S``, ``SS``, ``L``, ``A``
  (:mod:`dseh_jax.configs.variants`; DSEH only).

A bare ``recipe`` / ``paper`` / ``code`` is read as ``choices=…``.
"""
from __future__ import annotations

from typing import Callable

import ml_collections

from dseh_jax.configs.base import CHOICES
from dseh_jax.configs.variants import VARIANTS, apply_variant

DEFAULTS = {"choices": "recipe", "method": "dseh", "variant": "full"}


def parse_arg(arg: str | None) -> dict[str, str]:
  """``"method=dpsh,choices=code"`` → ``{"choices": "code", "method": "dpsh", "variant":
  "full"}``; raises ``ValueError`` naming the bad key or value."""
  options = dict(DEFAULTS)
  for item in filter(None, (arg or "").split(",")):
    key, sep, value = item.partition("=")
    if not sep and key in CHOICES:
      key, value = "choices", key
    elif key not in DEFAULTS or not value:
      raise ValueError(f"config argument {item!r}: expected KEY=VALUE with KEY one of "
                       f"{tuple(DEFAULTS)}, e.g. method=dpsh,choices=code")
    options[key] = value
  from dseh_jax.methods import NAMES, get_method  # pylint: disable=import-outside-toplevel
  for key, names in (("choices", CHOICES), ("method", NAMES), ("variant", VARIANTS)):
    if options[key] not in names:
      raise ValueError(f"config argument {key}={options[key]!r}: expected one of {names}")
  if options["variant"] != "full" and get_method(options["method"]).has_section:
    raise ValueError(f"config argument variant={options['variant']}: the ablations edit "
                     f"DSEH's LabNet and ImgNet losses; method={options['method']} takes "
                     "variant=full")
  return options


def compose(dataset: Callable[[str], ml_collections.ConfigDict],
            arg: str | None) -> ml_collections.ConfigDict:
  """``dataset(choices)`` edited into ``arg``'s variant and method."""
  from dseh_jax import methods  # pylint: disable=import-outside-toplevel
  options = parse_arg(arg)
  config = apply_variant(dataset(options["choices"]), options["variant"])
  return methods.configure(config, options["method"])
