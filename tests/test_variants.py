"""Ablation variants edit exactly the fields the paper's Table 2 names."""
import pytest

from dseh_jax import configs
from dseh_jax.configs.variants import apply_variant


def _flat(c):
  return {k: v for k, v in _walk(c.to_dict())}


def _walk(d, prefix=""):
  for k, v in d.items():
    if isinstance(v, dict):
      yield from _walk(v, f"{prefix}{k}.")
    else:
      yield f"{prefix}{k}", v


@pytest.mark.parametrize("name,changed", [
    ("full", {}),
    ("S", {"imgnet.loss.weights.j1": 0.0}),
    ("SS", {"imgnet.loss.weights.j1": 0.0, "labnet.loss.weights.j1": 0.0}),
    ("L", {"labnet.loss.weights.j4": 0.0}),
    ("A", {"labnet.epochs_per_round": (30,), "imgnet.epochs_per_round": (100,)}),
])
def test_variant_changes_only_its_fields(name, changed):
  base = _flat(configs.get_config("nuswide21"))
  got = _flat(apply_variant(configs.get_config("nuswide21"), name))
  diff = {k: got[k] for k in got if got[k] != base[k]}
  assert {k: tuple(v) if isinstance(v, (list, tuple)) else v for k, v in diff.items()} == changed


def test_unknown_variant():
  with pytest.raises(ValueError, match="unknown variant"):
    apply_variant(configs.get_config("coco"), "X")
