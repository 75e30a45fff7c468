"""Named kill points for fault tests: a run can be made to die with SIGKILL at a chosen place.

Set ``DSEH_FAULT=point:n`` (e.g. ``imgnet_step:7``) and the process kills itself, with no
clean-up, the ``n``-th time it reaches ``point`` (counted from 1 in this process). Without
the variable :func:`reached` does nothing but a dictionary lookup. The points are listed in
:data:`POINTS`; ``tests/test_faults.py`` kills a run at each of them and checks that the
rerun ends with the same codes as an uninterrupted run.
"""
from __future__ import annotations

import collections
import os
import signal

ENV = "DSEH_FAULT"
POINTS = (
    "labnet_step",        # after a LabNet train step was dispatched
    "imgnet_step",        # after an ImgNet train step was dispatched
    "epoch_end",          # an epoch's metrics logged, before any checkpoint of it
    "phase_summary",      # a phase's summary computed, before its checkpoint
    "checkpoint_write",   # orbax has written a step, its checksum not yet
    "checkpoint_saved",   # a checkpoint and its checksum are complete
    "codes_written",      # a bit length's codes.npz written, results.json not yet
    "results_written",    # results.json updated for a bit length
)
_counts: collections.Counter = collections.Counter()


def _target() -> tuple[str, int] | None:
  spec = os.environ.get(ENV, "")
  if not spec:
    return None
  point, _, n = spec.partition(":")
  if point not in POINTS or not n.isdigit() or int(n) < 1:
    raise ValueError(f"{ENV}={spec!r}; expected POINT:N with POINT one of {POINTS} and N >= 1")
  return point, int(n)


def reached(point: str) -> None:
  """Counts ``point``; kills this process with SIGKILL when ``DSEH_FAULT`` names this visit."""
  target = _target()
  if target is None or target[0] != point:
    return
  _counts[point] += 1
  if _counts[point] == target[1]:
    os.kill(os.getpid(), signal.SIGKILL)
