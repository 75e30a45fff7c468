"""Image input pipeline: lazy decoding, mean subtraction and prefetching (SPEC §4, §6).

ImgNet reads ``224×224×3`` images with the VGG-F mean subtracted (SPEC §4). The datasets of
SPEC §6 hold up to ~200k JPEGs, far too many to keep decoded in memory, so a split's
``inputs`` is an :class:`ImageArray`: an array-like ``[n, 224, 224, 3]`` float32 view that
decodes the requested rows on demand in a thread pool (Pillow releases the GIL while it
decodes and resizes).

Batches reach the devices through two stages of look-ahead:

* :func:`background_iterator`: a host thread builds batch ``t + 1`` (decoding included) while
  the devices run step ``t``;
* :func:`device_prefetch`: each host batch ``[devices, per_device, ...]`` is put on the
  devices, sharded like ``jax.pmap`` expects, ``depth`` batches ahead of use.

:func:`prefetch_train_batches` chains both for training; :func:`prefetch_eval_batches`
walks a whole split in order for encoding, padding the last batch with copies of row 0 and
reporting how many rows of each batch are real, so no row is dropped or counted twice.
"""
from __future__ import annotations

import collections
import collections.abc
import concurrent.futures
import io
import os
import queue
import threading
from typing import Any, Callable, Iterable, Iterator, NamedTuple, Optional, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from PIL import Image

# RGB mean pixel of the ILSVRC-2012 training images, the data VGG-F / CNN-F was trained on
# (Chatfield et al. 2014). These are the channel means of Caffe's ILSVRC-2012 mean image
# (``data/ilsvrc12/ilsvrc_2012_mean``, BGR 104.00, 116.66, 122.67), the only published
# per-channel numbers for that training set. ``imagenet-vgg-f.mat`` itself ships a full
# per-pixel ``averageImage``; it is not redistributable here, so its channel mean could not
# be checked against these numbers: when the .mat is at hand, pass the average image that
# :func:`dseh_jax.pretrained.load_vggf` returns as ``mean`` instead.
VGG_F_RGB_MEAN = np.array([122.67, 116.66, 104.00], np.float32)

DEFAULT_NUM_THREADS = min(8, os.cpu_count() or 1)


# --------------------------------------------------------------------------- sources

class FileBytes(collections.abc.Sequence):
  """The encoded bytes of image files ``root/relative_paths[i]``, read on access.

  Args:
    root: folder the paths are relative to.
    relative_paths: ``[n]`` file paths (str), e.g. the lines of a dataset's list file.
  """

  def __init__(self, root: str, relative_paths: Sequence[str]):
    self.root = str(root)
    self.relative_paths = [str(p) for p in relative_paths]

  def __len__(self) -> int:
    return len(self.relative_paths)

  def path(self, i: int) -> str:
    return os.path.join(self.root, self.relative_paths[i])

  def describe(self, i: int) -> str:
    """How error messages name item ``i``: its file path."""
    return self.path(i)

  def __getitem__(self, i):  # type: ignore[override]
    if not isinstance(i, (int, np.integer)):
      raise TypeError(f"FileBytes takes one integer index; got {type(i).__name__}")
    path = self.path(int(i))
    try:
      with open(path, "rb") as f:
        return f.read()
    except FileNotFoundError as e:
      raise ValueError(f"{path}: image file not found (item {int(i)} of the list under "
                       f"{self.root}); expected an existing file") from e
    except OSError as e:
      raise ValueError(f"{path}: cannot read image file ({e})") from e


def _describe(source: Any, i: int) -> str:
  describe = getattr(source, "describe", None)
  return describe(i) if callable(describe) else f"item {i}"


# --------------------------------------------------------------------------- decoding

def decode_image(data: bytes, *, image_size: int = 224, resize_to: int = 0,
                 name: str = "image") -> np.ndarray:
  """Decodes one encoded image to ``[image_size, image_size, 3]`` uint8 RGB (SPEC §4).

  Any mode Pillow reads is converted to RGB (grey is repeated over the channels, an alpha
  channel is dropped, CMYK is converted). The image is resized with bilinear
  interpolation to ``image_size × image_size``; with ``resize_to > 0`` it is resized to
  ``resize_to × resize_to`` first and the central ``image_size × image_size`` crop is kept.
  EXIF orientation is ignored, as in the Caffe and MatConvNet pipelines.

  Raises:
    ValueError: naming ``name`` when the bytes are not a readable image.
  """
  if resize_to and resize_to < image_size:
    raise ValueError(f"{name}: resize_to={resize_to} is smaller than image_size="
                     f"{image_size}; expected 0 (no crop) or at least image_size")
  try:
    with Image.open(io.BytesIO(data)) as img:
      img.load()
      rgb = img.convert("RGB")
  except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
    raise ValueError(f"{name}: cannot decode as an image ({type(e).__name__}: {e})") from e
  side = resize_to or image_size
  if rgb.size != (side, side):
    rgb = rgb.resize((side, side), Image.BILINEAR)
  out = np.asarray(rgb, dtype=np.uint8)
  if resize_to:
    top = (resize_to - image_size) // 2
    out = out[top:top + image_size, top:top + image_size]
  return out


def resize_mean(mean: Optional[np.ndarray], image_size: int) -> np.ndarray:
  """The mean to subtract, as float32 ``[1, 1, 3]`` or ``[image_size, image_size, 3]``.

  ``mean``: ``None`` (:data:`VGG_F_RGB_MEAN`), an RGB mean ``[3]``, or an average image
  ``[H, W, 3]`` (e.g. VGG-F's ``averageImage``), resized bilinearly per channel when its
  size differs from ``image_size``.
  """
  m = VGG_F_RGB_MEAN if mean is None else np.asarray(mean, np.float32)
  if m.shape == (3,):
    return m.reshape(1, 1, 3)
  if m.ndim != 3 or m.shape[2] != 3:
    raise ValueError(f"mean has shape {m.shape}; expected [3] (RGB) or [H, W, 3] "
                     "(an average image)")
  if m.shape[:2] != (image_size, image_size):
    m = np.stack([np.asarray(Image.fromarray(np.ascontiguousarray(m[..., c]), mode="F")
                             .resize((image_size, image_size), Image.BILINEAR))
                  for c in range(3)], axis=-1)
  return np.ascontiguousarray(m, np.float32)


class ImageArray:
  """A lazy ``[n, image_size, image_size, 3]`` float32 array of decoded images (SPEC §4).

  Indexing with an int, a slice, an int array or a list decodes just those rows (in a
  thread pool) and returns float32 NHWC with ``mean`` subtracted; ``np.asarray`` decodes
  every row. Used as ``Split.inputs`` for image datasets.

  Args:
    source: sequence of encoded images (``len`` and ``source[i] -> bytes``), e.g.
      :class:`FileBytes`; an optional ``source.describe(i)`` names items in errors.
    image_size: output side (224 for CNN-F).
    resize_to: 0 to resize straight to ``image_size``; else resize to this square, then
      centre-crop ``image_size``.
    mean: ``None`` (:data:`VGG_F_RGB_MEAN`), ``[3]`` or ``[H, W, 3]``; see
      :func:`resize_mean`.
    num_threads: decoding threads; 1 decodes in the calling thread.
  """

  dtype = np.dtype(np.float32)
  ndim = 4

  def __init__(self, source: Sequence[bytes], *, image_size: int = 224, resize_to: int = 0,
               mean: Optional[np.ndarray] = None, num_threads: int = DEFAULT_NUM_THREADS):
    if image_size <= 0:
      raise ValueError(f"ImageArray: image_size={image_size}; expected a positive side")
    if resize_to and resize_to < image_size:
      raise ValueError(f"ImageArray: resize_to={resize_to} is smaller than image_size="
                       f"{image_size}; expected 0 or at least image_size")
    self.source = source
    self.image_size = int(image_size)
    self.resize_to = int(resize_to)
    self.mean = resize_mean(mean, self.image_size)
    self.num_threads = max(1, int(num_threads))
    self._pool: Optional[concurrent.futures.ThreadPoolExecutor] = None
    self._pool_lock = threading.Lock()

  @property
  def shape(self) -> tuple[int, int, int, int]:
    return (len(self.source), self.image_size, self.image_size, 3)

  def __len__(self) -> int:
    return len(self.source)

  def __repr__(self) -> str:
    return (f"ImageArray(n={len(self)}, image_size={self.image_size}, "
            f"resize_to={self.resize_to}, num_threads={self.num_threads})")

  def with_mean(self, mean: Optional[np.ndarray]) -> "ImageArray":
    """The same images with another mean subtracted (e.g. the .mat's average image)."""
    return ImageArray(self.source, image_size=self.image_size, resize_to=self.resize_to,
                      mean=mean, num_threads=self.num_threads)

  def decode_uint8(self, i: int) -> np.ndarray:
    """Row ``i`` as decoded ``[s, s, 3]`` uint8, before the mean is subtracted."""
    return decode_image(self.source[i], image_size=self.image_size,
                        resize_to=self.resize_to, name=_describe(self.source, i))

  def _rows(self, key) -> tuple[np.ndarray, bool]:
    """``(row numbers [k], is_scalar)`` for an index; raises IndexError when out of range."""
    n = len(self)
    if isinstance(key, (int, np.integer)):
      i = int(key)
      if not -n <= i < n:
        raise IndexError(f"index {i} is out of range for an ImageArray of {n} images")
      return np.array([i % n]), True
    if isinstance(key, slice):
      return np.arange(n)[key], False
    rows = np.asarray(key)
    if rows.dtype == bool:
      if rows.shape != (n,):
        raise IndexError(f"boolean index has shape {rows.shape}; expected ({n},)")
      return np.flatnonzero(rows), False
    if rows.ndim != 1 or not (rows.size == 0 or np.issubdtype(rows.dtype, np.integer)):
      raise IndexError(f"ImageArray takes an int, a slice or a 1-d int/bool array; got "
                       f"{type(key).__name__} of shape {rows.shape} and dtype {rows.dtype}")
    rows = rows.astype(np.int64)
    bad = (rows < -n) | (rows >= n)
    if np.any(bad):
      raise IndexError(f"index {int(rows[bad][0])} is out of range for an ImageArray of "
                       f"{n} images")
    return rows % n if n else rows, False

  def _pool_or_none(self) -> Optional[concurrent.futures.ThreadPoolExecutor]:
    if self.num_threads == 1:
      return None
    with self._pool_lock:
      if self._pool is None:
        self._pool = concurrent.futures.ThreadPoolExecutor(
            self.num_threads, thread_name_prefix="decode")
      return self._pool

  def __getitem__(self, key) -> np.ndarray:
    rows, scalar = self._rows(key)
    s = self.image_size
    out = np.empty((rows.size, s, s, 3), np.float32)

    def fill(j: int) -> None:
      np.subtract(self.decode_uint8(int(rows[j])), self.mean, out=out[j], dtype=np.float32)

    pool = self._pool_or_none()
    if pool is None or rows.size <= 1:
      for j in range(rows.size):
        fill(j)
    else:
      # list() re-raises the first worker error (a ValueError naming the item).
      list(pool.map(fill, range(rows.size)))
    return out[0] if scalar else out

  def __array__(self, dtype=None, copy=None) -> np.ndarray:
    del copy  # a fresh array is decoded every time
    out = self[np.arange(len(self))]
    return out if dtype is None else out.astype(dtype)

  def __getstate__(self) -> dict[str, Any]:
    state = dict(self.__dict__)
    state["_pool"], state["_pool_lock"] = None, None
    return state

  def __setstate__(self, state: dict[str, Any]) -> None:
    self.__dict__.update(state)
    self._pool_lock = threading.Lock()


# --------------------------------------------------------------------------- iterators

def split_across_devices(batch: dict[str, np.ndarray], num_devices: int
                         ) -> dict[str, np.ndarray]:
  """Reshapes every ``[B, ...]`` field to ``[num_devices, B / num_devices, ...]``."""
  out = {}
  for name, x in batch.items():
    if x.shape[0] % num_devices:
      raise ValueError(f"batch field {name!r} has {x.shape[0]} rows, which {num_devices} "
                       f"devices cannot share equally; choose a global batch size divisible "
                       f"by {num_devices}")
    out[name] = x.reshape((num_devices, x.shape[0] // num_devices) + x.shape[1:])
  return out


_END = object()


class _Raised(NamedTuple):
  error: BaseException


def background_iterator(produce: Callable[[int], Any], num_items: int,
                        depth: int = 2) -> Iterator[Any]:
  """Yields ``produce(0), …, produce(num_items - 1)``, computed in a background thread.

  At most ``depth`` finished items wait in the queue, so item ``t + 1`` is built while the
  consumer works on item ``t``. An error in ``produce`` is re-raised in the consumer;
  closing the generator early stops the thread.
  """
  if depth < 1:
    raise ValueError(f"background_iterator: depth={depth}; expected at least 1")
  items: queue.Queue = queue.Queue(maxsize=depth)
  stop = threading.Event()

  def put(item) -> bool:
    while not stop.is_set():
      try:
        items.put(item, timeout=0.1)
        return True
      except queue.Full:
        continue
    return False

  def work() -> None:
    try:
      for t in range(num_items):
        if stop.is_set() or not put(produce(t)):
          return
    except BaseException as e:  # pylint: disable=broad-except
      put(_Raised(e))
      return
    put(_END)

  thread = threading.Thread(target=work, name="batch-producer", daemon=True)
  thread.start()
  try:
    while True:
      item = items.get()
      if item is _END:
        return
      if isinstance(item, _Raised):
        raise item.error
      yield item
  finally:
    stop.set()
    thread.join()


def device_sharding(num_devices: int, axis_name: str = "batch") -> NamedSharding:
  """The sharding ``jax.pmap`` gives a ``[num_devices, ...]`` array over local devices."""
  devices = jax.local_devices()
  if num_devices > len(devices):
    raise ValueError(f"num_devices={num_devices}, but only {len(devices)} local devices exist")
  return NamedSharding(Mesh(np.array(devices[:num_devices]), (axis_name,)),
                       PartitionSpec(axis_name))


def device_prefetch(batches: Iterable[Any], num_devices: int, depth: int = 2,
                    axis_name: str = "batch") -> Iterator[Any]:
  """Puts each ``[num_devices, ...]``-leaved pytree on the devices ``depth`` items ahead.

  The transfers are asynchronous, so batch ``t + 1`` is copied while step ``t`` runs.
  Non-array leaves (e.g. Python ints) pass through unchanged.
  """
  sharding = device_sharding(num_devices, axis_name)

  def put(tree):
    return jax.tree_util.tree_map(
        lambda x: jax.device_put(x, sharding) if isinstance(x, np.ndarray) else x, tree)

  ahead: collections.deque = collections.deque()
  iterator = iter(batches)
  try:
    for tree in iterator:
      ahead.append(put(tree))
      if len(ahead) > depth:
        yield ahead.popleft()
    while ahead:
      yield ahead.popleft()
  finally:
    close = getattr(iterator, "close", None)
    if callable(close):
      close()


def prefetch_train_batches(make_batch: Callable[[int], dict[str, np.ndarray]],
                           num_steps: int, num_devices: int, *, depth: int = 2,
                           axis_name: str = "batch", device_axis: bool = True
                           ) -> Iterator[dict[str, jax.Array]]:
  """Training batches ``make_batch(t)`` (``[B, ...]`` host arrays, t = 0…num_steps-1) as
  device arrays ``[num_devices, B / num_devices, ...]``, built in a background thread and
  put on the devices ``depth`` steps ahead. Same batches, same order as calling
  ``make_batch`` in a loop. ``device_axis=False`` (one device only): ``[B, ...]`` arrays."""
  if device_axis:
    produce = lambda t: split_across_devices(make_batch(t), num_devices)
  elif num_devices != 1:
    raise ValueError(f"device_axis=False needs one device, not {num_devices}")
  else:
    produce = make_batch
  return device_prefetch(background_iterator(produce, num_steps, depth), num_devices, depth,
                         axis_name)


class EvalBatch(NamedTuple):
  """A padded evaluation batch: ``inputs [B, ...]`` whose first ``num_real`` rows are real."""
  inputs: Any
  num_real: int

  @property
  def mask(self) -> np.ndarray:
    """``[B]`` bool, True for real rows."""
    return np.arange(self.inputs.shape[0]) < self.num_real


def padded_eval_batches(inputs: Any, batch_size: int) -> Iterator[EvalBatch]:
  """Every row of ``inputs`` ``[n, ...]`` in order, in batches of exactly ``batch_size``;
  the last batch is padded with copies of row 0 (``num_real`` tells the real rows)."""
  if batch_size < 1:
    raise ValueError(f"batch_size={batch_size}; expected at least 1")
  for t in range(-(-inputs.shape[0] // batch_size)):
    yield _padded_batch(inputs, t, batch_size)


def _padded_batch(inputs: Any, t: int, batch_size: int) -> EvalBatch:
  """Rows ``t·batch_size …`` of ``inputs``, padded to ``batch_size`` with copies of row 0."""
  x = np.asarray(inputs[t * batch_size:(t + 1) * batch_size])
  real = x.shape[0]
  if real < batch_size:
    x = np.concatenate([x, np.repeat(x[:1], batch_size - real, axis=0)])
  return EvalBatch(x, real)


def prefetch_eval_batches(inputs: Any, batch_size: int, num_devices: int, *,
                          depth: int = 2, axis_name: str = "batch") -> Iterator[EvalBatch]:
  """:func:`padded_eval_batches` with ``inputs`` as device arrays
  ``[num_devices, batch_size / num_devices, ...]``, decoded in a background thread and put
  on the devices ``depth`` batches ahead."""
  if batch_size % num_devices:
    raise ValueError(f"batch_size={batch_size} is not divisible by {num_devices} devices")
  num_batches = -(-inputs.shape[0] // batch_size)

  def produce(t: int) -> EvalBatch:
    x, real = _padded_batch(inputs, t, batch_size)
    return EvalBatch(x.reshape((num_devices, batch_size // num_devices) + x.shape[1:]), real)

  return device_prefetch(background_iterator(produce, num_batches, depth), num_devices,
                         depth, axis_name)
