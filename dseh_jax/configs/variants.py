"""The paper's ablations (SPEC §7, Table 2) as edits of a config.

* ``full``:    DSEH as configured.
* ``S``:       ImgNet without semantic supervision (ImgNet's J1 weight 0).
* ``SS``:      LabNet and ImgNet without semantic supervision (both J1 weights 0).
* ``L``:       LabNet without label reconstruction (LabNet's J4 weight 0).
* ``A``:       one round, no alternation (the first round's epochs only).
"""
from __future__ import annotations

import ml_collections

VARIANTS = ("full", "S", "SS", "L", "A")


def apply_variant(c: ml_collections.ConfigDict, name: str) -> ml_collections.ConfigDict:
  """Edits ``c`` in place into the DSEH-``name`` ablation and returns it."""
  if name not in VARIANTS:
    raise ValueError(f"unknown variant {name!r}; expected one of {VARIANTS}")
  if name in ("S", "SS"):
    c.imgnet.loss.weights.j1 = 0.0
  if name == "SS":
    c.labnet.loss.weights.j1 = 0.0
  if name == "L":
    c.labnet.loss.weights.j4 = 0.0
  if name == "A":
    c.labnet.epochs_per_round = tuple(c.labnet.epochs_per_round)[:1]
    c.imgnet.epochs_per_round = tuple(c.imgnet.epochs_per_round)[:1]
  return c
