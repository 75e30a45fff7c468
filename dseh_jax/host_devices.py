"""Simulated CPU devices for the command lines; import and call before JAX starts (this
module imports nothing of JAX)."""
from __future__ import annotations

import os


def simulate_cpu_devices(count: int) -> None:
  """Adds ``--xla_force_host_platform_device_count=count`` to ``XLA_FLAGS`` (``count`` 0: no
  change). Has an effect only before JAX initialises its backends."""
  if count:
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                               f" --xla_force_host_platform_device_count={count}").strip()
