"""ImageNet CNN-F weights from MatConvNet's ``imagenet-vgg-f.mat`` (SPEC §4).

The file holds a ``simplenn`` network: a cell array of layer structs (``name``, ``type``
``conv`` / ``relu`` / ``lrn`` / ``pool`` / ``softmax`` [/ ``dropout``], and per type
``weights = {W, b}`` or the older ``filters`` / ``biases``, ``stride``, ``pad``, LRN
``param = [N, kappa, alpha, beta]``, pool ``method`` / ``pool``) plus the input
normalisation (``averageImage``). Two layouts exist:

* newer: variables ``layers`` and ``meta`` (``meta.normalization.averageImage``), or one
  struct ``net`` holding both;
* older: variables ``layers`` and ``normalization`` (``normalization.averageImage``).

Mapping onto :class:`dseh_jax.models.ConvBackbone` (NHWC, XLA convolution):

* MatConvNet stores images ``H × W × C`` and filters ``H × W × C_in × C_out`` and its
  ``vl_nnconv`` is a correlation (no kernel flip), exactly like ``flax.linen.Conv``'s HWIO
  kernel; so conv kernels are copied as they are, with no flip and no transpose.
  Pads are ``[top, bottom, left, right]``.
* ``fc6`` is a ``6 × 6 × 256 × 4096`` convolution over the last ``6 × 6 × 256`` map; the
  backbone flattens that map in HWC order (row-major), so the Dense kernel is
  ``W.reshape(9216, 4096)`` in row-major order. ``fc7`` (``1 × 1 × 4096 × 4096``) likewise.
  ``fc8`` and ``prob`` are ignored: DSEH's head is new.
* MatConvNet's LRN is ``x / (kappa + alpha · Σ_{window of N channels} x²)^beta`` with
  ``alpha`` NOT divided by ``N``, i.e. TensorFlow's convention with
  ``depth_radius = (N - 1) / 2, bias = kappa``; compared against the spec's
  :class:`~dseh_jax.models.LRNParams`.

Every layer's name, geometry and weight shape is checked against the
:class:`~dseh_jax.models.BackboneSpec`; any difference raises a ``ValueError`` naming the
file and the layer, since silently different geometry would give wrong features.
"""
from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any, NamedTuple, Optional

import numpy as np
import scipy.io

from dseh_jax import models

# Layer types that do not change the deterministic (test-time) forward pass.
_PASS_THROUGH = ("dropout",)


class VGGFWeights(NamedTuple):
  """What :func:`load_vggf` returns.

  Attributes:
    params: the backbone's Flax parameters ``{conv1…conv5, fc6, fc7: {kernel, bias}}``,
      float32, shaped like ``ImgNet``'s ``params["backbone"]``.
    average_image: the file's ``averageImage``, float32 ``[H, W, 3]`` (or ``[3]`` when
      the file stores a mean pixel), RGB; ``None`` if the file has none.
    image_size: the file's ``imageSize`` ``(H, W)``, or ``None``.
  """
  params: dict[str, dict[str, np.ndarray]]
  average_image: Optional[np.ndarray]
  image_size: Optional[tuple[int, int]]


# --------------------------------------------------------------------------- .mat access

def _unwrap(x: Any) -> Any:
  """Strips MATLAB's 1×1 cell / struct wrappers."""
  while isinstance(x, np.ndarray) and x.dtype == object and x.size == 1:
    x = x.flat[0]
  return x


def _fields(struct: Any) -> tuple[str, ...]:
  return tuple(getattr(struct, "_fieldnames", ()))


def _field(struct: Any, name: str, where: str) -> Any:
  if name not in _fields(struct):
    raise ValueError(f"{where}: has no field {name!r}; fields: {list(_fields(struct))}")
  return _unwrap(getattr(struct, name))


def _text(x: Any) -> str:
  x = _unwrap(x)
  if isinstance(x, np.ndarray):
    return "".join(str(v) for v in x.ravel())
  return str(x)


def _numbers(x: Any, where: str) -> np.ndarray:
  x = _unwrap(x)
  try:
    return np.asarray(x, np.float64).ravel()
  except (TypeError, ValueError) as e:
    raise ValueError(f"{where}: expected numbers, got {type(x).__name__}") from e


def _pair(x: Any, where: str) -> tuple[int, int]:
  v = _numbers(x, where)
  if v.size == 1:
    v = np.repeat(v, 2)
  if v.size != 2:
    raise ValueError(f"{where}: has {v.size} values; expected 1 or 2")
  return int(v[0]), int(v[1])


def _pads(x: Any, where: str) -> tuple[int, int, int, int]:
  """MatConvNet pad ``[top, bottom, left, right]`` (a scalar means all four)."""
  v = _numbers(x, where)
  if v.size == 1:
    v = np.repeat(v, 4)
  if v.size != 4:
    raise ValueError(f"{where}: has {v.size} values; expected 1 or 4 "
                     "([top, bottom, left, right])")
  return tuple(int(p) for p in v)  # type: ignore[return-value]


def _as_4d(w: np.ndarray) -> np.ndarray:
  """MATLAB drops trailing singleton dimensions; restores ``[h, w, in, out]``."""
  w = np.asarray(w)
  return w.reshape(w.shape + (1,) * (4 - w.ndim)) if w.ndim < 4 else w


def _read_network(path: str) -> tuple[list[Any], Any]:
  """``(layer structs, normalization struct or None)`` of either layout.

  The last file read is kept (keyed by path, size and modification time): a run reads
  the weights once per code length and once for the average image, not five times."""
  try:
    stat = os.stat(path)
  except OSError:
    stat = None
  if stat is None:
    return _parse_network(path, None)
  return _parse_network(path, (stat.st_size, stat.st_mtime_ns))


@functools.lru_cache(maxsize=1)
def _parse_network(path: str, version: Optional[tuple[int, int]]) -> tuple[list[Any], Any]:
  del version                                    # part of the cache key only
  try:
    mat = scipy.io.loadmat(path, struct_as_record=False, squeeze_me=False)
  except (OSError, ValueError, NotImplementedError, TypeError, IndexError, KeyError,
          scipy.io.matlab.MatReadError) as e:
    raise ValueError(f"{path}: cannot read as a MATLAB .mat file ({e}); expected "
                     "MatConvNet's imagenet-vgg-f.mat (saved as MATLAB v5/v7)") from e
  top: Any = mat
  if "layers" not in mat and "net" in mat:
    net = _unwrap(mat["net"])
    top = {name: getattr(net, name) for name in _fields(net)}
  if "layers" not in top:
    raise ValueError(f"{path}: no 'layers' variable (nor net.layers); expected a "
                     "MatConvNet simplenn network such as imagenet-vgg-f.mat")
  layers = top["layers"]
  if not isinstance(layers, np.ndarray) or layers.dtype != object:
    raise ValueError(f"{path}: 'layers' is not a cell array of layer structs")
  layers = [_unwrap(x) for x in layers.ravel()]
  normalization = None
  if "meta" in top:
    meta = _unwrap(top["meta"])
    if "normalization" in _fields(meta):
      normalization = _unwrap(meta.normalization)
  elif "normalization" in top:
    normalization = _unwrap(top["normalization"])
  return layers, normalization


# --------------------------------------------------------------------------- geometry

def _map_sizes(spec: models.BackboneSpec, image_size: int) -> list[tuple[int, int]]:
  """Side of each conv block's output (after its pool), and of the last map."""
  side, sides = image_size, []
  for layer in spec.convs:
    side = (side + 2 * layer.padding - layer.kernel) // layer.stride + 1
    if layer.pool:
      (top, bottom), _ = layer.pool_padding
      side = (side + top + bottom - spec.pool_window) // spec.pool_stride + 1
    sides.append((side, side))
  return sides


class _LayerWalker:
  """Walks the .mat's layer list in order, checking each against what the spec expects."""

  def __init__(self, path: str, layers: list[Any]):
    self.path, self.layers, self.pos = path, layers, 0

  def where(self, i: int) -> str:
    return f"{self.path}: layer {self.name(i)!r} (#{i + 1})"

  def name(self, i: int) -> str:
    return _text(getattr(self.layers[i], "name", f"#{i + 1}"))

  def type(self, i: int) -> str:
    return _text(getattr(self.layers[i], "type", "")).lower()

  def next(self, expected_type: str, after: str) -> tuple[int, Any]:
    """The next layer (skipping dropout), which must have ``expected_type``."""
    while self.pos < len(self.layers) and self.type(self.pos) in _PASS_THROUGH:
      self.pos += 1
    if self.pos >= len(self.layers):
      raise ValueError(f"{self.path}: the network ends after {after!r}; expected a "
                       f"{expected_type!r} layer next")
    i = self.pos
    if self.type(i) != expected_type:
      raise ValueError(f"{self.where(i)} has type {self.type(i)!r}; the CNN-F spec "
                       f"expects a {expected_type!r} layer after {after!r}")
    self.pos += 1
    return i, self.layers[i]

  def peek_type(self) -> str:
    j = self.pos
    while j < len(self.layers) and self.type(j) in _PASS_THROUGH:
      j += 1
    return self.type(j) if j < len(self.layers) else ""


def _conv_weights(layer: Any, where: str) -> tuple[np.ndarray, np.ndarray]:
  if "weights" in _fields(layer):
    weights = getattr(layer, "weights")
    cells = list(weights.ravel()) if isinstance(weights, np.ndarray) else []
    if len(cells) != 2:
      raise ValueError(f"{where}: field 'weights' holds {len(cells)} arrays; expected "
                       "{W, b}")
    w, b = _unwrap(cells[0]), _unwrap(cells[1])
  elif "filters" in _fields(layer):
    w, b = _field(layer, "filters", where), _field(layer, "biases", where)
  else:
    raise ValueError(f"{where}: has neither 'weights' nor 'filters'/'biases'")
  # Copies: the parsed file is cached and must not be changed through what we return.
  return _as_4d(np.array(w, np.float32)), np.array(b, np.float32).ravel()


def _read_conv(walker: _LayerWalker, expected_name: str, kernel: tuple[int, int, int],
               features: int, stride: int, padding: int, after: str
               ) -> tuple[np.ndarray, np.ndarray, str]:
  """Reads the next conv layer; checks its name, kernel ``(h, w, in)``, stride and pad."""
  i, layer = walker.next("conv", after)
  where = walker.where(i)
  if walker.name(i) != expected_name:
    raise ValueError(f"{where}: expected the layer named {expected_name!r} here")
  w, b = _conv_weights(layer, where)
  expected = kernel + (features,)
  if w.shape != expected:
    raise ValueError(f"{where}: weights have shape {w.shape}; the CNN-F spec expects "
                     f"{expected} ([h, w, in, out])")
  if b.shape != (features,):
    raise ValueError(f"{where}: biases have {b.size} values; expected {features}")
  got_stride = _pair(_field(layer, "stride", where), f"{where} field 'stride'")
  if got_stride != (stride, stride):
    raise ValueError(f"{where}: stride {got_stride}; the CNN-F spec expects {stride}")
  got_pad = _pads(_field(layer, "pad", where), f"{where} field 'pad'")
  if got_pad != (padding,) * 4:
    raise ValueError(f"{where}: pad {got_pad} [top, bottom, left, right]; the CNN-F spec "
                     f"expects {padding} on every side")
  if "dilate" in _fields(layer):
    dilate = _pair(_field(layer, "dilate", where), f"{where} field 'dilate'")
    if dilate != (1, 1):
      raise ValueError(f"{where}: dilate {dilate}; the CNN-F spec has no dilation")
  walker.next("relu", walker.name(i))
  return w, b, walker.name(i)


def _check_lrn(walker: _LayerWalker, lrn: models.LRNParams, after: str) -> None:
  i, layer = walker.next("lrn", after)
  where = walker.where(i)
  param = _numbers(_field(layer, "param", where), f"{where} field 'param'")
  if param.size != 4:
    raise ValueError(f"{where}: param has {param.size} values; expected [N, kappa, "
                     "alpha, beta]")
  n, kappa, alpha, beta = param
  expected = (2 * lrn.depth_radius + 1, lrn.bias, lrn.alpha, lrn.beta)
  if not np.allclose(param, expected, rtol=1e-6, atol=0.0):
    raise ValueError(
        f"{where}: LRN param [N, kappa, alpha, beta] = {[n, kappa, alpha, beta]}; the "
        f"CNN-F spec uses {list(expected)} (MatConvNet's alpha is not divided by N; "
        f"N = 2 · depth_radius + 1)")


def _check_pool(walker: _LayerWalker, spec: models.BackboneSpec,
                padding: tuple[tuple[int, int], tuple[int, int]], after: str) -> None:
  i, layer = walker.next("pool", after)
  where = walker.where(i)
  method = _text(_field(layer, "method", where)) if "method" in _fields(layer) else "max"
  if method.lower() != "max":
    raise ValueError(f"{where}: pooling method {method!r}; the CNN-F spec uses 'max'")
  size = _pair(_field(layer, "pool", where), f"{where} field 'pool'")
  stride = _pair(_field(layer, "stride", where), f"{where} field 'stride'")
  pads = _pads(_field(layer, "pad", where), f"{where} field 'pad'")
  (top, bottom), (left, right) = padding
  expected = ((spec.pool_window,) * 2, (spec.pool_stride,) * 2, (top, bottom, left, right))
  if (size, stride, pads) != expected:
    raise ValueError(f"{where}: pool {size}, stride {stride}, pad {pads} [top, bottom, "
                     f"left, right]; the CNN-F spec expects pool {expected[0]}, stride "
                     f"{expected[1]}, pad {expected[2]}")


# --------------------------------------------------------------------------- loading

def load_vggf(path: str, spec: models.BackboneSpec = models.CNNF, *,
              image_size: int = 224) -> VGGFWeights:
  """Reads ``imagenet-vgg-f.mat`` into backbone parameters for ``spec`` (SPEC §4).

  Args:
    path: the MatConvNet file (either layout, see the module docstring).
    spec: the backbone it must match (:data:`~dseh_jax.models.CNNF`).
    image_size: the network's input side; fixes the ``fc6`` input map (6 × 6 at 224).

  Returns:
    :class:`VGGFWeights` with float32 ``params`` for ``ImgNet``'s ``params["backbone"]``.

  Raises:
    ValueError: naming the file and the layer when the file does not match ``spec``.
  """
  path = str(path)
  layers, normalization = _read_network(path)
  walker = _LayerWalker(path, layers)
  params: dict[str, dict[str, np.ndarray]] = {}
  in_channels, after = 3, "the input"
  for layer in spec.convs:
    w, b, after = _read_conv(walker, layer.name, (layer.kernel, layer.kernel, in_channels),
                             layer.features, layer.stride, layer.padding, after)
    params[layer.name] = {"kernel": w, "bias": b}
    if layer.lrn:
      _check_lrn(walker, spec.lrn, after)
      after = f"{layer.name}'s lrn"
    elif walker.peek_type() == "lrn":
      _, extra = walker.next("lrn", after)
      raise ValueError(f"{path}: layer {_text(extra.name)!r} is an LRN after "
                       f"{layer.name!r}, which the CNN-F spec does not have")
    if layer.pool:
      _check_pool(walker, spec, layer.pool_padding, after)
      after = f"{layer.name}'s pool"
    elif walker.peek_type() == "pool":
      _, extra = walker.next("pool", after)
      raise ValueError(f"{path}: layer {_text(extra.name)!r} is a pool after "
                       f"{layer.name!r}, which the CNN-F spec does not have")
    in_channels = layer.features
  side_h, side_w = _map_sizes(spec, image_size)[-1]
  kernel = (side_h, side_w, in_channels)
  for name, units in spec.fc_units:
    w, b, after = _read_conv(walker, name, kernel, units, 1, 0, after)
    # A conv over the whole [h, w, c] map equals a Dense on its row-major HWC flattening.
    params[name] = {"kernel": np.ascontiguousarray(w.reshape(-1, units)), "bias": b}
    kernel = (1, 1, units)
  average_image, size = _normalization(path, normalization)
  return VGGFWeights(params, average_image, size)


def load_average_image(path: str) -> Optional[np.ndarray]:
  """The ``averageImage`` of a MatConvNet file (``[H, W, 3]`` or ``[3]`` float32, RGB),
  or ``None`` when it has none; the layers are not checked (see :func:`load_vggf`)."""
  _, normalization = _read_network(str(path))
  return _normalization(str(path), normalization)[0]


def _normalization(path: str, normalization: Any
                   ) -> tuple[Optional[np.ndarray], Optional[tuple[int, int]]]:
  if normalization is None:
    return None, None
  where = f"{path}: normalization"
  average = None
  if "averageImage" in _fields(normalization):
    average = np.array(_field(normalization, "averageImage", where), np.float32)
    if average.size == 3:
      average = average.reshape(3)
    elif average.ndim != 3 or average.shape[2] != 3:
      raise ValueError(f"{where}.averageImage has shape {average.shape}; expected "
                       "[H, W, 3] or 3 values")
  size = None
  if "imageSize" in _fields(normalization):
    v = _numbers(_field(normalization, "imageSize", where), f"{where}.imageSize")
    if v.size >= 2:
      size = (int(v[0]), int(v[1]))
  return average, size


def merge_backbone(params: dict[str, Any], loaded: VGGFWeights, where: str
                   ) -> dict[str, Any]:
  """``params`` (an initialised ImgNet tree) with ``params["backbone"]`` replaced by the
  loaded weights, after checking that both trees have the same layers and shapes."""
  if "backbone" not in params:
    raise ValueError(f"{where}: the model has no 'backbone' parameters to load into")
  current = params["backbone"]
  if set(current) != set(loaded.params):
    raise ValueError(f"{where}: the file gives layers {sorted(loaded.params)}; the model "
                     f"has {sorted(current)}")
  for layer, leaves in current.items():
    for leaf, value in leaves.items():
      got = loaded.params[layer].get(leaf)
      if got is None or tuple(got.shape) != tuple(value.shape):
        raise ValueError(f"{where}: layer {layer!r} {leaf} has shape "
                         f"{None if got is None else tuple(got.shape)} in the file; the "
                         f"model expects {tuple(value.shape)}")
  backbone = {layer: {leaf: np.asarray(loaded.params[layer][leaf], np.float32)
                      for leaf in leaves} for layer, leaves in current.items()}
  return {**params, "backbone": backbone}


def scaled_spec(spec: models.BackboneSpec, conv_features: tuple[int, ...],
                fc_units: tuple[int, ...]) -> models.BackboneSpec:
  """``spec`` with other widths but the same geometry (for small test networks)."""
  if len(conv_features) != len(spec.convs) or len(fc_units) != len(spec.fc_units):
    raise ValueError(f"scaled_spec: got {len(conv_features)} conv and {len(fc_units)} fc "
                     f"widths; expected {len(spec.convs)} and {len(spec.fc_units)}")
  convs = tuple(dataclasses.replace(c, features=f) for c, f in zip(spec.convs, conv_features))
  fcs = tuple((name, u) for (name, _), u in zip(spec.fc_units, fc_units))
  return dataclasses.replace(spec, convs=convs, fc_units=fcs)
