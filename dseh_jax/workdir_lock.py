"""One training process per workdir: an exclusive ``flock`` on ``workdir/.lock``.

The lock is held for the life of the process and released by the kernel however the
process ends (``kill -9`` included), so a stale lock file never blocks a rerun. The file
names the holder (pid, host, start time, command line) for the error of a second process.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import time
from typing import Iterator

LOCK_NAME = ".lock"


class WorkdirBusyError(RuntimeError):
  """Another live process trains in the same workdir."""


@contextlib.contextmanager
def workdir_lock(workdir: str) -> Iterator[None]:
  """Holds the workdir's lock for the ``with`` block; raises :class:`WorkdirBusyError`
  naming the other process when it is taken."""
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, LOCK_NAME)
  fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      raise WorkdirBusyError(
          f"{workdir} is in use by another training process ({_holder(path)}); wait for "
          "it to finish or stop it, or use another --workdir") from None
    holder = {"pid": os.getpid(), "host": socket.gethostname(),
              "since": time.strftime("%Y-%m-%d %H:%M:%S"), "command": " ".join(sys.argv)}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(holder).encode(), 0)
    yield
  finally:
    os.close(fd)                                  # closing releases the flock


def _holder(path: str) -> str:
  try:
    with open(path) as f:
      h = json.load(f)
    return f"pid {h['pid']} on {h['host']} since {h['since']}: {h['command']}"
  except (OSError, ValueError, KeyError):
    return "holder unknown"
