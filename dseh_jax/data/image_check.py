"""A fast pass over every image of a dataset before training (``data.check_images``).

Images are decoded only when a batch first needs them, so a missing or unreadable file
would otherwise stop a run after hours (train images after the first LabNet phase,
database images after the first ImgNet phase). :func:`check_images` opens the header of
every distinct image once (no pixel decoding): ``"fail"`` raises naming the first bad
files, ``"skip"`` drops the bad items from their splits and counts them in
``data.stats["unreadable_images"]``, ``"off"`` does nothing. In-memory arrays and feature
vectors are not checked (there is nothing to open).
"""
from __future__ import annotations

import collections.abc
import dataclasses
import io
import logging
from typing import Sequence

import numpy as np
import tqdm
from PIL import Image

from dseh_jax.data.splits import RetrievalData, Split
from dseh_jax.input_pipeline import FileBytes, ImageArray

log = logging.getLogger("dseh_jax")
MODES = ("fail", "skip", "off")
SHOWN = 3                  # bad files named in the error


class UnreadableImagesError(ValueError):
  """Images of the dataset are missing or cannot be opened."""


class _Rows(collections.abc.Sequence):
  """Rows ``index`` of an encoded-image source (keeps ``describe``)."""

  def __init__(self, source: Sequence[bytes], index: np.ndarray):
    self.source, self.index = source, np.asarray(index)

  def __len__(self) -> int:
    return len(self.index)

  def __getitem__(self, i):  # type: ignore[override]
    return self.source[int(self.index[i])]

  def describe(self, i: int) -> str:
    return _describe(self.source, int(self.index[i]))


def _describe(source, i: int) -> str:
  return source.describe(i) if hasattr(source, "describe") else f"item {i}"


def _problem(source, i: int) -> str | None:
  """``None`` when the header of image ``i`` opens, else why not."""
  try:
    if isinstance(source, FileBytes):
      with Image.open(source.path(i)) as im:
        size = im.size
    else:
      with Image.open(io.BytesIO(bytes(source[i]))) as im:
        size = im.size
  except FileNotFoundError:
    return "missing"
  except Exception as e:  # pylint: disable=broad-except  # PIL raises many kinds
    return f"unreadable ({type(e).__name__})"
  return None if min(size) > 0 else "empty image"


def _subset(split: Split, keep: np.ndarray) -> Split:
  """``split`` restricted to rows ``keep``; files stay a :class:`FileBytes` (so the data
  fingerprint still reads their sizes and times, not their bytes)."""
  inputs, source = split.inputs, split.inputs.source
  if isinstance(source, FileBytes):
    kept = FileBytes(source.root, [source.relative_paths[i] for i in keep])
  else:
    kept = _Rows(source, keep)
  rows = ImageArray(kept, image_size=inputs.image_size,
                    resize_to=inputs.resize_to, mean=inputs.mean,
                    num_threads=inputs.num_threads)
  return Split(rows, split.labels[keep], split.ids[keep])


def check_images(data: RetrievalData, mode: str = "fail", *, progress: bool = True
                 ) -> RetrievalData:
  """``data`` after opening every image header (module docstring)."""
  if mode not in MODES:
    raise ValueError(f"data.check_images={mode!r}; expected one of {MODES}")
  splits = {k: s for k, s in data.splits().items() if isinstance(s.inputs, ImageArray)}
  if mode == "off" or not splits:
    return data
  verdicts: dict[str, str | None] = {}
  bad_rows: dict[str, np.ndarray] = {}
  total = sum(len(s) for s in splits.values())
  with tqdm.tqdm(total=total, desc="checking images", disable=not progress,
                 leave=False) as bar:
    for name, split in splits.items():
      source, bad = split.inputs.source, []
      for i in range(len(source)):
        where = _describe(source, i)
        if where not in verdicts:
          verdicts[where] = _problem(source, i)
        if verdicts[where]:
          bad.append(i)
        bar.update()
      bad_rows[name] = np.asarray(bad, np.int64)
  broken = {w: why for w, why in verdicts.items() if why}
  if not broken:
    return data
  named = ", ".join(f"{w} ({why})" for w, why in list(broken.items())[:SHOWN])
  more = f" and {len(broken) - SHOWN} more" if len(broken) > SHOWN else ""
  if mode == "fail":
    raise UnreadableImagesError(
        f"dataset {data.name!r}: {len(broken)} image files cannot be opened: {named}{more}; "
        "fix or remove them, or set data.check_images=skip to drop those items")
  log.warning("dataset %r: dropping %d items whose images cannot be opened: %s%s",
              data.name, sum(len(b) for b in bad_rows.values()), named, more)
  replaced = {}
  for name, bad in bad_rows.items():
    if len(bad):
      replaced[name] = _subset(splits[name], np.setdiff1d(np.arange(len(splits[name])), bad))
  stats = dict(data.stats or {})
  stats["unreadable_images"] = {name: int(len(b)) for name, b in bad_rows.items()}
  return dataclasses.replace(data, stats=stats, **replaced)
