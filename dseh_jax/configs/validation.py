"""Checks of a whole run config, and of the config against the loaded data, before training.

A mistake found after a round has trained costs that round; :func:`validate_config` finds
every bad field at once (type, range, allowed names) and :func:`validate_against_data` the
mismatches with the data (batch sizes, feature vectors against a convolutional backbone).
Both raise :class:`ConfigError` with one line naming each field, its value and what was
expected.
"""
from __future__ import annotations

import difflib
import math
from typing import Any, Callable

import ml_collections

from dseh_jax.baseline_losses import REDUCTIONS as BASELINE_REDUCTIONS
from dseh_jax.evaluation.ranking import TIE_POLICIES, ZERO_RELEVANT_POLICIES
from dseh_jax.methods import NAMES as METHODS
from dseh_jax.methods import get_method

OPTIMIZERS = ("adam", "sgd")
BACKBONES = ("cnnf", "mini_cnnf", "none")
REDUCTIONS = ("paper", "code")
STANDARDIZE = ("none", "zscore")
CHECK_IMAGES = ("fail", "skip", "off")
ON_COLLAPSE = ("stop", "warn")
ACTIVATIONS = ("linear", "sigmoid")
MAX_BITS = 4096


class ConfigError(ValueError):
  """One or more config fields are invalid (the message names each)."""


def _is_int(v: Any) -> bool:
  return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
  return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _int_in(lo: int, hi: float = math.inf) -> tuple[Callable[[Any], bool], str]:
  top = "" if hi == math.inf else f" and at most {hi}"
  return (lambda v: _is_int(v) and lo <= v <= hi), f"an integer at least {lo}{top}"


def _num_in(lo: float, hi: float = math.inf, *, open_lo: bool = False,
            open_hi: bool = False) -> tuple[Callable[[Any], bool], str]:
  def ok(v):
    return (_is_num(v) and (v > lo if open_lo else v >= lo)
            and (v < hi if open_hi else v <= hi))
  left, right = "(" if open_lo else "[", ")" if open_hi else "]"
  return ok, f"a finite number in {left}{lo}, {hi}{right}"


def _one_of(names: tuple[str, ...]) -> tuple[Callable[[Any], bool], str]:
  return (lambda v: v in names), f"one of {names}"


def _ints(lo: int, hi: float = math.inf) -> tuple[Callable[[Any], bool], str]:
  ok_int, _ = _int_in(lo, hi)
  top = "" if hi == math.inf else f"..{hi}"
  return (lambda v: isinstance(v, (tuple, list)) and len(v) > 0 and all(map(ok_int, v)),
          f"a non-empty tuple of integers in {lo}{top or '..'}")


def _subset(names: tuple[str, ...]) -> tuple[Callable[[Any], bool], str]:
  return (lambda v: isinstance(v, (tuple, list)) and len(v) > 0 and len(set(v)) == len(v)
          and all(x in names for x in v)), f"a non-empty tuple of distinct names from {names}"


def _network_rules(net: str) -> dict[str, tuple[Callable[[Any], bool], str]]:
  rules = {
      f"{net}.semantic_units": _int_in(1),
      f"{net}.batch_size": _int_in(1),
      f"{net}.epochs_per_round": _ints(1),
      f"{net}.optimizer.name": _one_of(OPTIMIZERS),
      f"{net}.optimizer.lr": _num_in(0.0, open_lo=True),
      f"{net}.optimizer.momentum": _num_in(0.0, 1.0, open_hi=True),
      f"{net}.optimizer.clip": _num_in(0.0),
      f"{net}.optimizer.weight_decay": _num_in(0.0),
      f"{net}.optimizer.decay_every": _int_in(1),
      f"{net}.optimizer.decay_factor": _num_in(1.0),
      f"{net}.optimizer.lr_mult_pretrained": _num_in(0.0),
      f"{net}.optimizer.lr_mult_new": _num_in(0.0),
      f"{net}.loss.s": _num_in(0.0, open_lo=True),
      f"{net}.loss.reduction": _one_of(REDUCTIONS),
  }
  for term in ("j1", "j2", "j3", "j4") if net == "labnet" else ("j1", "j2"):
    rules[f"{net}.loss.weights.{term}"] = _num_in(0.0)
  return rules


RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "method": _one_of(METHODS),
    "seed": _int_in(0),
    "bits": _ints(1, MAX_BITS),
    "data.standardize": _one_of(STANDARDIZE),
    "labnet.hidden_units": _int_in(1),
    "labnet.label_activation": _one_of(ACTIVATIONS),
    "labnet.init_std": _num_in(0.0),
    "imgnet.backbone": _one_of(BACKBONES),
    "imgnet.dropout_rate": _num_in(0.0, 1.0, open_hi=True),
    "imgnet.feature_dropout": _num_in(0.0, 1.0, open_hi=True),
    "imgnet.random_shift": _int_in(0),
    "imgnet.flip_average_codes": ((lambda v: isinstance(v, bool)), "True or False"),
    "imgnet.compute_dtype": _one_of(("float32", "bfloat16")),
    "imgnet.loss.logit_scale": _num_in(0.0, open_lo=True),
    "imgnet.loss.target_factor": _num_in(0.0, 1.0, open_lo=True),
    **_network_rules("labnet"), **_network_rules("imgnet"),
    "eval.top_k": _int_in(0),
    "eval.ties": _subset(TIE_POLICIES),
    "eval.zero_relevant": _one_of(ZERO_RELEVANT_POLICIES),
    "eval.radius": _int_in(0),
    "eval.batch_size": _int_in(1),
    "eval.labnet_map_every": _int_in(0),
    "collapse_nh_fraction": _num_in(0.0, 1.0),
    "collapse_min_bit_agreement": _num_in(0.0, 1.0),
    "on_collapse": _one_of(ON_COLLAPSE),
    "checkpoint_every_epochs": _int_in(1),
    "checkpoint_min_seconds": _num_in(0.0),
    "checkpoints_to_keep": _int_in(1),
}
OPTIONAL = ("data.check_images", "method", "imgnet.flip_average_codes",   # older configs
            "imgnet.compute_dtype")                                         # lack them
RULES["data.check_images"] = _one_of(CHECK_IMAGES)


def _get(config: ml_collections.ConfigDict, dotted: str) -> Any:
  node: Any = config
  for part in dotted.split("."):
    node = node[part]
  return node


def problems(config: ml_collections.ConfigDict) -> list[str]:
  """``"field=value: expected …"`` for every invalid or missing field of ``config``."""
  found = []
  for field, (ok, expected) in RULES.items():
    try:
      value = _get(config, field)
    except (KeyError, AttributeError):
      if field not in OPTIONAL:
        found.append(f"{field} is missing: expected {expected}")
      continue
    if not ok(value):
      found.append(f"{field}={value!r}: expected {expected}")
  found += _method_problems(config) + unknown_fields(config)
  try:
    lab, img = len(config.labnet.epochs_per_round), len(config.imgnet.epochs_per_round)
    if lab != img:
      found.append(f"labnet.epochs_per_round has {lab} rounds, imgnet.epochs_per_round "
                   f"{img}: expected the same number of rounds")
  except (TypeError, AttributeError, KeyError):
    pass                                         # reported by the rules above
  return found


OPEN_SECTIONS = ("data.kwargs",)      # a loader's own keyword arguments, checked by the loader


def _reference() -> ml_collections.ConfigDict:
  """Every field a config may have: the dataset configs' fields and every method's
  section."""
  from dseh_jax import configs, methods  # pylint: disable=import-outside-toplevel
  reference = ml_collections.ConfigDict()
  for dataset in configs.NAMES:
    reference.update(configs.get_config(dataset))   # update merges the sections
  for name in METHODS:
    methods.configure(reference, name)
  return reference


def unknown_fields(config: ml_collections.ConfigDict) -> list[str]:
  """``"labnet.hiden_units: no such field; did you mean 'hidden_units'?"`` for every field
  of ``config`` that no config has (a misspelt ``--config.…`` override or config file)."""
  found = []

  def walk(node, ref, prefix):
    for key in node.keys():
      path = f"{prefix}{key}"
      if path in OPEN_SECTIONS:
        continue
      if key not in ref:
        close = difflib.get_close_matches(key, list(ref.keys()), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        found.append(f"{path}: no such field{hint} (fields there: "
                     f"{', '.join(sorted(ref.keys()))})")
      elif isinstance(node[key], ml_collections.ConfigDict) and isinstance(
          ref[key], ml_collections.ConfigDict):
        walk(node[key], ref[key], path + ".")

  walk(config, _reference(), "")
  return found


def _method_problems(config: ml_collections.ConfigDict) -> list[str]:
  """A one-network method's section ``config.<method>``: numbers at least 0, a
  ``reduction`` of the baseline losses, and the method's named choices
  (:attr:`~dseh_jax.methods.base.Method.choices`)."""
  method = config.get("method", "dseh")
  if method not in METHODS or not get_method(method).has_section:
    return []
  if method not in config:
    return [f"{method} is missing: expected the section of method {method!r} "
            f"(dseh_jax.methods.configure)"]
  found, choices = [], {"reduction": BASELINE_REDUCTIONS, **get_method(method).choices}
  for key, value in config[method].items():
    ok, expected = _one_of(choices[key]) if key in choices else _num_in(0.0)
    if not ok(value):
      found.append(f"{method}.{key}={value!r}: expected {expected}")
  return found


def validate_config(config: ml_collections.ConfigDict, where: str = "config") -> None:
  """Raises :class:`ConfigError` listing every invalid field of ``config``."""
  found = problems(config)
  if found:
    raise ConfigError(f"{where}: " + "; ".join(found))


def validate_against_data(config: ml_collections.ConfigDict, input_shape: tuple[int, ...],
                          num_train: int, dataset: str) -> None:
  """Raises :class:`ConfigError` when the config cannot train on the data: batch sizes
  above the training-set size, feature vectors with a convolutional backbone (or images
  in feature mode)."""
  found = []
  for net in ("labnet", "imgnet"):
    b = config[net].batch_size
    if b > num_train:
      found.append(f"{net}.batch_size={b} exceeds the {num_train} training points of "
                   f"{dataset!r}: expected at most {num_train}")
  backbone = config.imgnet.backbone
  if backbone != "none" and len(input_shape) == 1:
    found.append(f"imgnet.backbone={backbone!r} needs [n, H, W, C] images, but {dataset!r} "
                 f"has feature vectors of width {input_shape[0]}: set imgnet.backbone=none "
                 "(feature mode)")
  if backbone == "none" and len(input_shape) != 1:
    found.append(f"imgnet.backbone='none' (feature mode) needs [n, d] feature vectors, but "
                 f"{dataset!r} has items of shape {tuple(input_shape)}: set "
                 "imgnet.backbone to 'cnnf' or 'mini_cnnf'")
  if found:
    raise ConfigError("; ".join(found))
