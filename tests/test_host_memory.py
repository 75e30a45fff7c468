"""glibc keeps freed heap memory after ``import dseh_jax`` (``dseh_jax.host_memory``)."""
import os
import subprocess
import sys

import pytest

from dseh_jax import host_memory

# Allocates 40 MB of heap in 100 kB blocks (below malloc's mmap threshold), frees it and
# prints how many MiB the heap still holds (mallinfo2's ``arena``).
PROBE = """
import ctypes, ctypes.util
import dseh_jax
class Info(ctypes.Structure):
  _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks",
              "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.mallinfo2.restype = Info
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = (ctypes.c_void_p,)
blocks = [libc.malloc(100_000) for _ in range(400)]
for b in reversed(blocks):
  libc.free(b)
print(libc.mallinfo2().arena >> 20)
"""

_LIBC = host_memory._glibc()                  # pylint: disable=protected-access
needs_glibc = pytest.mark.skipif(_LIBC is None or not hasattr(_LIBC, "mallinfo2"),
                                 reason="glibc with mallinfo2 only")


def _heap_mib_after_free(pad: str) -> int:
  env = {**os.environ, host_memory.ENV: pad}
  out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True,
                       text=True, check=True)
  return int(out.stdout.split()[-1])


@needs_glibc
def test_import_keeps_the_freed_heap_and_zero_turns_it_off():
  assert _heap_mib_after_free("") >= 40          # 64 MiB of slack kept
  assert _heap_mib_after_free("0") < 40          # glibc's default: trimmed back


def test_pad_zero_and_bad_values(monkeypatch):
  assert host_memory.keep_heap_slack(0) is False
  monkeypatch.setenv(host_memory.ENV, "0")
  assert host_memory.keep_heap_slack() is False
  monkeypatch.setenv(host_memory.ENV, "64MB")
  with pytest.raises(ValueError, match="DSEH_MALLOC_TOP_PAD='64MB': expected a number"):
    host_memory.keep_heap_slack()
