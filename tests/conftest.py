"""Test setup: two simulated CPU devices, set before JAX is first imported; one persistent
XLA compilation cache for the whole session; compiled programs freed after every module.

Why the shared cache: many tests (and the command lines they start as subprocesses) compile
the same tiny digits programs; with ``JAX_COMPILATION_CACHE_DIR`` set here, before any
worker or subprocess starts, each program compiles once per session and later loads from
disk. The directory is created by the process that loads this file first (pytest itself,
or the xdist controller) and removed when that process ends. Eviction is on (a size
limit), which makes JAX take a file lock around every read and write, so two xdist
workers never read a half-written entry.

Why the freeing: every XLA:CPU executable keeps three memory maps (code, read-only data,
data) while a cache holds it, and one pytest process of the whole suite used to end with
over 60,000 of them, past Linux's default ``vm.max_map_count`` of 65,530; the next
compilation then died with a segmentation fault (CI, 97% through the suite). Clearing JAX's
caches between modules keeps the count at what one module needs; the summary prints the
peak.
"""
import atexit
import gc
import os
import shutil
import tempfile

import pytest

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                           " --xla_force_host_platform_device_count=2").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  _CACHE = tempfile.mkdtemp(prefix="dseh-tests-xla-")
  atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)
  os.environ.update(JAX_COMPILATION_CACHE_DIR=_CACHE,
                    JAX_COMPILATION_CACHE_MAX_SIZE=str(8 << 30),
                    JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0.2")

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


# The longest modules first (measured, 2 cores), so that under xdist (`--dist loadfile`)
# the short ones fill the end instead of one worker finishing a long module alone.
LONGEST_FIRST = ("test_multihost", "test_faults", "test_labnet_no_collapse", "test_table1",
                 "test_trainer", "test_selection", "test_data_cli", "test_bench_gpu",
                 "test_methods_dsh_dsdh_greedy", "test_train_steps", "test_bad_inputs")


def pytest_collection_modifyitems(items):
  rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
  items.sort(key=lambda item: rank.get(item.module.__name__, len(rank)))
