"""Test setup: two simulated CPU devices, set before JAX is first imported; compiled
programs freed after every test module.

Why the freeing: every XLA:CPU executable keeps three memory maps (code, read-only data,
data) while a cache holds it, and one pytest process of the whole suite used to end with
over 60,000 of them, past Linux's default ``vm.max_map_count`` of 65,530; the next
compilation then died with a segmentation fault (CI, 97% through the suite). Clearing JAX's
caches between modules keeps the count at what one module needs; the summary prints the
peak.
"""
import gc
import os

import pytest

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                           " --xla_force_host_platform_device_count=2").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

PEAK_MAPS = {"count": 0, "module": ""}


def memory_maps() -> int:
  """This process's number of memory maps (0 where ``/proc`` has none)."""
  try:
    with open("/proc/self/maps", "rb") as f:
      return sum(1 for _ in f)
  except OSError:
    return 0


@pytest.fixture(autouse=True, scope="module")
def free_compiled_programs(request):
  """After each module: note the map count, then drop every compiled program."""
  yield
  count = memory_maps()
  if count > PEAK_MAPS["count"]:
    PEAK_MAPS.update(count=count, module=request.module.__name__)
  import jax  # pylint: disable=import-outside-toplevel
  jax.clear_caches()
  gc.collect()


def pytest_terminal_summary(terminalreporter):
  if PEAK_MAPS["count"]:
    terminalreporter.write_line(
        f"peak memory maps of this process: {PEAK_MAPS['count']} (after "
        f"{PEAK_MAPS['module']}; Linux's default limit is 65530)")
