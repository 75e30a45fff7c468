"""Several processes (hosts) on JAX's multi-controller runtime.

One process per host runs the same program; ``jax.pmap`` and its collectives span every
device of every process. What this project splits and what it keeps the same:

* every process draws the same global sample order (from the seed) and feeds its local
  devices only its rows of each global batch (:func:`process_rows`); the step all-gathers
  the batch's rows, so the per-training-point banks stay identical on every device;
* gradients and metrics are averaged over all global devices (``lax.pmean``);
* encoding splits the items into one block per process and all-gathers the outputs
  (:func:`dseh_jax.prediction.predict_in_batches`), so every process holds all codes;
* checkpoints: every process calls orbax's save (orbax writes the arrays once and syncs);
  the checksum manifest, ``run.json``, ``results.json``, codes, figures and the log file
  are written by process 0 (:func:`is_primary`); decisions taken from a clock are process
  0's (:func:`agree`).

The runtime starts from :func:`initialize`, or from the environment
(:func:`initialize_from_environment`: ``DSEH_COORDINATOR``, ``DSEH_NUM_PROCESSES``,
``DSEH_PROCESS_ID``, as ``experiments/launch_local.py`` sets them), before JAX starts its
backends. Without it everything is one process.
"""
from __future__ import annotations

import os
from typing import Optional

import jax
import numpy as np

ENV_COORDINATOR = "DSEH_COORDINATOR"
ENV_NUM_PROCESSES = "DSEH_NUM_PROCESSES"
ENV_PROCESS_ID = "DSEH_PROCESS_ID"


def initialize(coordinator_address: str, num_processes: int, process_id: int) -> None:
  """Joins the distributed runtime as ``process_id`` of ``num_processes`` (CPU devices
  use the gloo collectives; other backends are not affected by that setting)."""
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(coordinator_address=coordinator_address,
                             num_processes=int(num_processes), process_id=int(process_id))


def initialize_from_environment(environ: Optional[dict] = None) -> bool:
  """:func:`initialize` from ``DSEH_COORDINATOR`` / ``DSEH_NUM_PROCESSES`` /
  ``DSEH_PROCESS_ID`` when they are set (returns True); otherwise nothing (False)."""
  env = os.environ if environ is None else environ
  if not env.get(ENV_COORDINATOR):
    return False
  try:
    count, index = int(env[ENV_NUM_PROCESSES]), int(env[ENV_PROCESS_ID])
  except (KeyError, ValueError):
    raise ValueError(f"{ENV_COORDINATOR} is set, so {ENV_NUM_PROCESSES} and "
                     f"{ENV_PROCESS_ID} must be integers; got "
                     f"{env.get(ENV_NUM_PROCESSES)!r} and {env.get(ENV_PROCESS_ID)!r}") from None
  if not 0 <= index < count:
    raise ValueError(f"{ENV_PROCESS_ID}={index}: expected 0..{count - 1}")
  initialize(env[ENV_COORDINATOR], count, index)
  return True


def process_index() -> int:
  """This process's index (0 … processes - 1)."""
  return jax.process_index()


def is_primary() -> bool:
  """True in process 0 (the one that writes results, figures and the log file)."""
  return jax.process_index() == 0


def process_rows(rows: np.ndarray) -> np.ndarray:
  """This process's share of a global batch ``[B, ...]``: the ``B / processes`` rows at
  ``process_index`` (the global device order is process 0's devices, then process 1's…)."""
  count = jax.process_count()
  if count == 1:
    return rows
  if len(rows) % count:
    raise ValueError(f"a global batch of {len(rows)} rows cannot be split over {count} "
                     "processes; choose a batch size divisible by the global device count")
  share = len(rows) // count
  return rows[jax.process_index() * share:(jax.process_index() + 1) * share]


def agree(flag: bool) -> bool:
  """Process 0's ``flag`` on every process (for decisions taken from a clock)."""
  if jax.process_count() == 1:
    return bool(flag)
  from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
  return bool(multihost_utils.broadcast_one_to_all(np.array(bool(flag))))


def barrier(name: str) -> None:
  """Waits until every process reaches ``name`` (nothing with one process)."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
    multihost_utils.sync_global_devices(name)
