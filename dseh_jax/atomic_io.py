"""Atomic file writes: a reader never sees a half-written output file.

Every writer here writes to a temporary file in the destination folder and renames it over
the destination with ``os.replace`` (atomic on POSIX within one file system); on any error
the temporary file is removed and the destination is left as it was.
"""
from __future__ import annotations

import json
import os
import tempfile
from typing import Any, BinaryIO, Callable

import numpy as np


def atomic_write(path: str, write: Callable[[BinaryIO], None]) -> None:
  """Calls ``write(f)`` on a binary temp file next to ``path``, then renames it to ``path``."""
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix="-" + os.path.basename(path))
  try:
    with os.fdopen(fd, "wb") as f:
      write(f)
      f.flush()
      os.fsync(f.fileno())           # on disk before the rename makes it visible
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def write_text(path: str, text: str) -> None:
  """Writes ``text`` (UTF-8) to ``path`` atomically."""
  atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def jsonable(obj: Any) -> Any:
  """``obj`` with numpy scalars and arrays turned into plain Python (for ``json``)."""
  if isinstance(obj, dict):
    return {str(k): jsonable(v) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return [jsonable(v) for v in obj]
  if isinstance(obj, np.ndarray):
    return obj.tolist()
  if isinstance(obj, np.generic):
    return obj.item()
  return obj


def write_json(path: str, obj: Any) -> None:
  """Writes ``obj`` as indented JSON to ``path`` atomically."""
  write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def save_figure(fig: Any, path: str, dpi: int = 100) -> None:
  """Saves a matplotlib ``Figure`` to ``path`` atomically (format from the suffix)."""
  fmt = os.path.splitext(path)[1].lstrip(".") or "png"
  atomic_write(path, lambda f: fig.savefig(f, dpi=dpi, format=fmt))
