"""Synthetic ``imagenet-vgg-f.mat`` files in MatConvNet's simplenn layout, for tests.

The layer list follows MatConvNet's VGG-F definition (Chatfield et al. 2014) written out
here independently of ``dseh_jax.models``: 21 layers ``conv1 relu1 norm1 pool1 conv2 relu2
norm2 pool2 conv3 relu3 conv4 relu4 conv5 relu5 pool5 fc6 relu6 fc7 relu7 fc8 prob``.
Widths can be scaled down for fast tests; the geometry (kernels, strides, pads) is VGG-F's.

Weights are random (He-scaled normal, float32 like MATLAB ``single``). ``scipy.io.savemat``
writes the layer list as a 1×21 cell array of structs and the normalization as a nested
struct, so ``loadmat`` returns the same object arrays as for the real file.
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np
import scipy.io

# name, kernel, stride, pad [top, bottom, left, right]; then what follows the ReLU.
_CONVS = (
    ("conv1", 11, 4, (0, 0, 0, 0), True, (0, 1, 0, 1)),
    ("conv2", 5, 1, (2, 2, 2, 2), True, (0, 0, 0, 0)),
    ("conv3", 3, 1, (1, 1, 1, 1), False, None),
    ("conv4", 3, 1, (1, 1, 1, 1), False, None),
    ("conv5", 3, 1, (1, 1, 1, 1), False, (0, 0, 0, 0)),
)
LRN_PARAM = (5.0, 2.0, 1e-4, 0.75)          # [N, kappa, alpha, beta] of VGG-F's norm1/norm2
FC6_SIDE = 6                                 # pool5's output side at a 224×224 input
CNNF_CONV_FEATURES = (64, 256, 256, 256, 256)
CNNF_FC_UNITS = (4096, 4096)
SMALL_CONV_FEATURES = (8, 16, 16, 16, 12)   # VGG-F geometry, narrow: fast tests
SMALL_FC_UNITS = (24, 20)


def make_vggf_layers(rng: np.random.Generator,
                     conv_features: tuple[int, ...] = CNNF_CONV_FEATURES,
                     fc_units: tuple[int, ...] = CNNF_FC_UNITS,
                     num_classes: int = 10) -> list[dict[str, Any]]:
  """VGG-F's layers in a neutral form: dicts with ``name, type`` and per type ``W [h, w,
  in, out], b [out], stride (sy, sx), pad (t, b, l, r)`` / ``param`` / ``method, pool``."""
  layers: list[dict[str, Any]] = []

  def conv(name: str, kh: int, kw: int, cin: int, cout: int, stride: int, pad) -> None:
    std = np.sqrt(2.0 / (kh * kw * cin))
    layers.append({"name": name, "type": "conv",
                   "W": (rng.standard_normal((kh, kw, cin, cout), np.float32) * std
                         ).astype(np.float32),
                   "b": (0.1 * rng.standard_normal(cout)).astype(np.float32),
                   "stride": (stride, stride), "pad": tuple(pad)})

  cin = 3
  for (name, k, stride, pad, lrn, pool), cout in zip(_CONVS, conv_features):
    n = name[-1]
    conv(name, k, k, cin, cout, stride, pad)
    layers.append({"name": f"relu{n}", "type": "relu"})
    if lrn:
      layers.append({"name": f"norm{n}", "type": "lrn", "param": LRN_PARAM})
    if pool is not None:
      layers.append({"name": f"pool{n}", "type": "pool", "method": "max", "pool": (3, 3),
                     "stride": (2, 2), "pad": pool})
    cin = cout
  conv("fc6", FC6_SIDE, FC6_SIDE, cin, fc_units[0], 1, (0, 0, 0, 0))
  layers.append({"name": "relu6", "type": "relu"})
  conv("fc7", 1, 1, fc_units[0], fc_units[1], 1, (0, 0, 0, 0))
  layers.append({"name": "relu7", "type": "relu"})
  conv("fc8", 1, 1, fc_units[1], num_classes, 1, (0, 0, 0, 0))
  layers.append({"name": "prob", "type": "softmax"})
  return layers


def _row(values) -> np.ndarray:
  return np.asarray(values, np.float64).reshape(1, -1)


def _mat_layer(layer: dict[str, Any], layout: str) -> dict[str, Any]:
  """One layer struct as MatConvNet saves it (newer ``weights`` cell or older fields)."""
  out: dict[str, Any] = {"name": layer["name"], "type": layer["type"]}
  kind = layer["type"]
  if kind == "conv":
    if layout == "old":
      out["filters"] = layer["W"]
      out["biases"] = layer["b"].reshape(1, -1)
    else:
      weights = np.empty((1, 2), dtype=object)
      weights[0, 0], weights[0, 1] = layer["W"], layer["b"].reshape(-1, 1)
      out["weights"] = weights
      out["size"] = _row(layer["W"].shape)
      out["dilate"] = _row((1, 1))
      out["opts"] = np.empty((1, 0), dtype=object)
    out["stride"] = _row(layer["stride"])
    out["pad"] = _row(layer["pad"])
  elif kind == "lrn":
    out["param"] = _row(layer["param"])
  elif kind == "pool":
    out["method"] = layer["method"]
    out["pool"] = _row(layer["pool"])
    out["stride"] = _row(layer["stride"])
    out["pad"] = _row(layer["pad"])
  elif kind == "relu" and layout != "old":
    out["leak"] = 0.0
  if layout != "old":
    out["precious"] = False
  return out


def write_vggf_mat(path, layers: list[dict[str, Any]], *, layout: str = "new",
                   average_image: Optional[np.ndarray] = None) -> None:
  """Writes ``layers`` (from :func:`make_vggf_layers`) as a MatConvNet .mat file.

  ``layout``: ``"new"`` (variables ``layers`` + ``meta.normalization``), ``"net"`` (one
  struct ``net`` with both) or ``"old"`` (``layers`` + ``normalization``, ``filters`` /
  ``biases`` fields).
  """
  if layout not in ("new", "net", "old"):
    raise ValueError(f"layout={layout!r}; expected 'new', 'net' or 'old'")
  cell = np.empty((1, len(layers)), dtype=object)
  for i, layer in enumerate(layers):
    cell[0, i] = _mat_layer(layer, layout)
  normalization: dict[str, Any] = {"imageSize": _row((224, 224, 3)),
                                   "interpolation": "bilinear", "keepAspect": True,
                                   "border": _row((32, 32))}
  if average_image is not None:
    normalization["averageImage"] = np.asarray(average_image, np.float32)
  classes = {"name": np.array([["n0"]], dtype=object), "description": "synthetic"}
  if layout == "old":
    contents = {"layers": cell, "normalization": normalization, "classes": classes}
  else:
    meta = {"normalization": normalization, "classes": classes}
    contents = ({"layers": cell, "meta": meta} if layout == "new"
                else {"net": {"layers": cell, "meta": meta}})
  scipy.io.savemat(str(path), contents, do_compression=False)


# --------------------------------------------------------------------------- reference
# MatConvNet's simplenn forward pass in float64, written from its layer definitions
# (vl_nnconv, vl_nnrelu, vl_nnnormalize, vl_nnpool), independent of dseh_jax.

def mcn_conv(x, w, b, stride, pad):
  """``vl_nnconv``: correlation of ``x [H, W, C]`` with ``w [h, w, C, K]``, zero pad
  ``(top, bottom, left, right)``, output ``floor((H + pt + pb - h) / sy) + 1``."""
  t, bo, l, r = pad
  xp = np.pad(x, ((t, bo), (l, r), (0, 0)))
  kh, kw = w.shape[:2]
  sy, sx = stride
  ho = (xp.shape[0] - kh) // sy + 1
  wo = (xp.shape[1] - kw) // sx + 1
  y = np.zeros((ho, wo, w.shape[3]))
  for u in range(kh):
    for v in range(kw):
      patch = xp[u:u + sy * (ho - 1) + 1:sy, v:v + sx * (wo - 1) + 1:sx]
      y += patch @ w[u, v]
  return y + b


def mcn_lrn(x, n, kappa, alpha, beta):
  """``vl_nnnormalize``: ``x_k / (kappa + alpha Σ_{q ∈ G(k)} x_q²)^beta`` with
  ``G(k) = [k - floor((n-1)/2), k + ceil((n-1)/2)]`` clipped to the channels."""
  c = x.shape[-1]
  sq = x ** 2
  out = np.empty_like(x)
  lo_off, hi_off = int(np.floor((n - 1) / 2)), int(np.ceil((n - 1) / 2))
  for k in range(c):
    lo, hi = max(0, k - lo_off), min(c - 1, k + hi_off)
    out[..., k] = x[..., k] / (kappa + alpha * sq[..., lo:hi + 1].sum(-1)) ** beta
  return out


def mcn_max_pool(x, size, stride, pad):
  """``vl_nnpool`` max: padded cells never win (padding with -inf)."""
  t, bo, l, r = pad
  xp = np.pad(x, ((t, bo), (l, r), (0, 0)), constant_values=-np.inf)
  ph, pw = size
  sy, sx = stride
  ho = (xp.shape[0] - ph) // sy + 1
  wo = (xp.shape[1] - pw) // sx + 1
  y = np.full((ho, wo, x.shape[2]), -np.inf)
  for u in range(ph):
    for v in range(pw):
      y = np.maximum(y, xp[u:u + sy * (ho - 1) + 1:sy, v:v + sx * (wo - 1) + 1:sx])
  return y


def mcn_forward(layers, image, stop_after="relu7"):
  """simplenn's forward pass of ``image [H, W, 3]`` in float64 up to ``stop_after``."""
  x = image.astype(np.float64)
  for layer in layers:
    kind = layer["type"]
    if kind == "conv":
      x = mcn_conv(x, layer["W"].astype(np.float64), layer["b"].astype(np.float64),
                   layer["stride"], layer["pad"])
    elif kind == "relu":
      x = np.maximum(x, 0.0)
    elif kind == "lrn":
      x = mcn_lrn(x, *layer["param"])
    elif kind == "pool":
      x = mcn_max_pool(x, layer["pool"], layer["stride"], layer["pad"])
    if layer["name"] == stop_after:
      return x
  raise AssertionError(f"no layer {stop_after}")


def find_layer(layers: list[dict[str, Any]], name: str) -> dict[str, Any]:
  return next(layer for layer in layers if layer["name"] == name)
