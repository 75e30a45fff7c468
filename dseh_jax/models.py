"""LabNet and ImgNet as Flax linen modules (SPEC §3, §4).

Both networks end in the same two layers: a *semantic layer* (fc + ReLU) that lives in the
common semantic space and a *hash layer* (fc, K units) that lives in the common Hamming
space. :class:`SemanticHashHead` is that shared pair.

Parameter trees name the pretrained and the from-scratch parts so that an optax mask can
tell them apart: ImgNet's ``params['backbone']`` holds the CNN-F layers (initialised from
ImageNet weights in the paper), ``params['head']`` the new semantic and hash layers. See
:func:`dseh_jax.optim.param_group_labels`.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, NamedTuple, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from dseh_jax import pooling

Array = jax.Array


# --------------------------------------------------------------------------- pieces

@dataclasses.dataclass(frozen=True)
class LRNParams:
  """Local response normalisation ``x / (bias + alpha * sum_{|d|<=r} x_{c+d}^2) ** beta``."""
  depth_radius: int = 2
  bias: float = 2.0
  alpha: float = 1e-4
  beta: float = 0.75


def local_response_norm(x: Array, p: LRNParams) -> Array:
  """LRN across the last (channel) axis, TensorFlow's convention. ``x``: ``[..., C]``.

  ``d ** -beta`` as ``exp(-beta · log d)`` (``d >= bias > 0``): the same values to float
  precision, and on CPU 2–4× faster forward and backward than ``power``."""
  window = (1,) * (x.ndim - 1) + (2 * p.depth_radius + 1,)
  padding = ((0, 0),) * (x.ndim - 1) + ((p.depth_radius, p.depth_radius),)
  sq_sum = jax.lax.reduce_window(jnp.square(x), 0.0, jax.lax.add, window,
                                 (1,) * x.ndim, padding)
  return x * jnp.exp(-p.beta * jnp.log(p.bias + p.alpha * sq_sum))


def example_dropout(x: Array, rate: float, keys: Optional[Array]) -> Array:
  """Inverted dropout with one PRNG key per example.

  Args:
    x: ``[B, D]`` activations.
    rate: drop probability.
    keys: ``[B, 2]`` uint32 keys, or ``None`` for the deterministic (test-time) pass.

  Because each example's mask depends only on its own key (derived from the step key and
  the example's index in the training set), the result does not depend on how a global
  batch is sharded across devices.
  """
  if keys is None or rate == 0.0:
    return x
  keep = jax.vmap(lambda k: keep_mask(k, 1.0 - rate, x.shape[1:]))(keys)
  return jnp.where(keep, x / (1.0 - rate), 0.0)


def keep_mask(key: Array, keep: float, shape: tuple[int, ...]) -> Array:
  """A ``shape`` bool mask, each element True with probability ``keep``, from one key.

  When ``keep = m / 2^w`` with ``w ≤ 8`` (½, ¼, ¾, ⅛ … and every multiple of 1/256), the
  mask is exact and cheap: each element reads its own ``w``-bit field of the key's random
  32-bit words (field ``f`` of word ``i`` is bits ``w·f … w·f + w − 1`` and belongs to
  element ``i · 32/w + f``) and is kept iff the field is below ``m``. Dropout ½ draws one
  word per 32 elements instead of one per element (the feature step's mask 1.1 → 0.2 ms on
  CPU). Other values draw ``jax.random.bernoulli`` (32 bits per element).
  """
  width = dyadic_width(keep)
  if width is None:
    return jax.random.bernoulli(key, keep, shape)
  per_word, size = 32 // width, math.prod(shape)
  words = jax.random.bits(key, (-(-size // per_word),), jnp.uint32)
  shifts = jnp.arange(per_word, dtype=jnp.uint32) * width
  fields = (words[:, None] >> shifts) & jnp.uint32((1 << width) - 1)
  below = jnp.uint32(round(keep * (1 << width)))
  return (fields.reshape(-1)[:size] < below).reshape(shape)


def dyadic_width(keep: float) -> Optional[int]:
  """The smallest ``w`` in 1, 2, 4, 8 with ``keep · 2^w`` a whole number in ``(0, 2^w)``, or
  None (:func:`keep_mask`)."""
  for width in (1, 2, 4, 8):
    scaled = keep * (1 << width)
    if scaled == int(scaled) and 0 < scaled < (1 << width):
      return width
  return None


def _dense_init(std: Optional[float]) -> Callable:
  return nn.initializers.lecun_normal() if std is None else nn.initializers.normal(std)


class SemanticHashHead(nn.Module):
  """Semantic layer (fc + ReLU, SPEC §3/§4) followed by the hash layer (fc, K units).

  Returns ``(semantic [B, semantic_units], hash_logits [B, num_bits])``. With
  ``hash_from_pre_relu`` the hash layer reads the semantic layer before its ReLU (the
  authors' ImgNet code); otherwise after it (the paper's figure).
  """
  semantic_units: int
  num_bits: int
  hash_from_pre_relu: bool = False
  init_std: Optional[float] = None
  dtype: Any = jnp.float32               # computation dtype; parameters stay float32

  @nn.compact
  def __call__(self, x: Array) -> tuple[Array, Array]:
    pre = nn.Dense(self.semantic_units, kernel_init=_dense_init(self.init_std),
                   dtype=self.dtype, name="semantic")(x)
    semantic = nn.relu(pre)
    hash_in = pre if self.hash_from_pre_relu else semantic
    logits = nn.Dense(self.num_bits, kernel_init=_dense_init(self.init_std),
                      dtype=self.dtype, name="hash")(hash_in)
    return semantic, logits


# --------------------------------------------------------------------------- LabNet

class LabNetOutputs(NamedTuple):
  semantic: Array      # [B, semantic_units]  f^l
  codes: Array         # [B, K] in (-1, 1)     h^l = tanh(hash logits)
  label_pred: Array    # [B, c]                ŷ^l


class LabNet(nn.Module):
  """Label network, SPEC §3: ``y → fc hidden + ReLU [+LRN] → semantic → hash(tanh) → ŷ``.

  Paper: ``hidden_units=4096``, no LRN, linear label head. Authors' code:
  ``hidden_units=2048``, LRN after the first ReLU, sigmoid label head, N(0, 0.01²) weights.
  """
  num_bits: int
  num_classes: int
  hidden_units: int = 4096
  semantic_units: int = 512
  lrn: Optional[LRNParams] = None
  label_activation: str = "linear"   # "linear" (paper) or "sigmoid" (code)
  init_std: Optional[float] = None    # None: LeCun normal; code: 0.01

  @nn.compact
  def __call__(self, labels: Array) -> LabNetOutputs:
    """``labels``: ``[B, c]`` multi-hot."""
    x = nn.Dense(self.hidden_units, kernel_init=_dense_init(self.init_std),
                 name="hidden")(labels)
    x = nn.relu(x)
    if self.lrn is not None:
      x = local_response_norm(x, self.lrn)
    semantic, logits = SemanticHashHead(self.semantic_units, self.num_bits,
                                        init_std=self.init_std, name="head")(x)
    codes = jnp.tanh(logits)
    label_pred = nn.Dense(self.num_classes, kernel_init=_dense_init(self.init_std),
                          name="label")(codes)
    if self.label_activation == "sigmoid":
      label_pred = nn.sigmoid(label_pred)
    elif self.label_activation != "linear":
      raise ValueError(f"LabNet.label_activation={self.label_activation!r}; "
                       "expected 'linear' or 'sigmoid'")
    return LabNetOutputs(semantic, codes, label_pred)


# --------------------------------------------------------------------------- backbones

@dataclasses.dataclass(frozen=True)
class ConvLayer:
  """One conv block: conv + ReLU [+ LRN] [+ 3×3/2 max-pool]."""
  name: str
  features: int
  kernel: int
  stride: int = 1
  padding: int = 0
  lrn: bool = False
  pool: bool = False
  pool_padding: tuple[tuple[int, int], tuple[int, int]] = ((0, 0), (0, 0))


@dataclasses.dataclass(frozen=True)
class BackboneSpec:
  """A CNN-F-shaped network: conv blocks, then fully connected layers with dropout."""
  convs: tuple[ConvLayer, ...]
  fc_units: tuple[tuple[str, int], ...]
  lrn: LRNParams = LRNParams()
  pool_window: int = 3
  pool_stride: int = 2


# CNN-F ("VGG-F", Chatfield et al. 2014), SPEC §4, 224×224×3 input. Pool1 pads one row and
# column at the bottom/right as MatConvNet's VGG-F does, so that conv5's pool gives 6×6.
CNNF = BackboneSpec(
    convs=(
        ConvLayer("conv1", 64, 11, stride=4, lrn=True, pool=True,
                  pool_padding=((0, 1), (0, 1))),
        ConvLayer("conv2", 256, 5, padding=2, lrn=True, pool=True),
        ConvLayer("conv3", 256, 3, padding=1),
        ConvLayer("conv4", 256, 3, padding=1),
        ConvLayer("conv5", 256, 3, padding=1, pool=True),
    ),
    fc_units=(("fc6", 4096), ("fc7", 4096)),
)

# The same shape scaled down for 16×16 mosaics of the embedded default dataset (trained from
# scratch: no pretrained weights exist for it).
MINI_CNNF = BackboneSpec(
    convs=(
        ConvLayer("conv1", 32, 3, padding=1, lrn=True, pool=True,
                  pool_padding=((0, 1), (0, 1))),
        ConvLayer("conv2", 64, 3, padding=1, lrn=True, pool=True,
                  pool_padding=((0, 1), (0, 1))),
        ConvLayer("conv3", 64, 3, padding=1),
    ),
    fc_units=(("fc6", 512), ("fc7", 512)),
)

BACKBONES = {"cnnf": CNNF, "mini_cnnf": MINI_CNNF}


class ConvBackbone(nn.Module):
  """conv1…fc7 of a :class:`BackboneSpec`; NHWC input, ``[B, fc_units[-1]]`` output."""
  spec: BackboneSpec
  dropout_rate: float = 0.5
  dtype: Any = jnp.float32               # computation dtype; parameters stay float32

  @nn.compact
  def __call__(self, images: Array, dropout_keys: Optional[Array] = None) -> Array:
    x = images.astype(self.dtype)
    s = self.spec
    for layer in s.convs:
      x = nn.Conv(layer.features, (layer.kernel, layer.kernel),
                  strides=(layer.stride, layer.stride),
                  padding=[(layer.padding, layer.padding)] * 2, dtype=self.dtype,
                  name=layer.name)(x)
      x = nn.relu(x)
      if layer.lrn:                      # its sums and powers in float32
        x = local_response_norm(x.astype(jnp.float32), s.lrn).astype(self.dtype)
      if layer.pool:
        x = pooling.max_pool(x, s.pool_window, s.pool_stride, layer.pool_padding)
    x = x.reshape((x.shape[0], -1))
    for i, (name, units) in enumerate(s.fc_units):
      x = nn.relu(nn.Dense(units, dtype=self.dtype, name=name)(x))
      keys = None if dropout_keys is None else jax.vmap(jax.random.fold_in, (0, None))(
          dropout_keys, i)
      x = example_dropout(x, self.dropout_rate, keys)
    return x


# --------------------------------------------------------------------------- ImgNet

FEATURE_DROPOUT_STREAM = 7      # folded into the per-example dropout keys (backbone: 0, 1)


class ImgNetOutputs(NamedTuple):
  semantic: Array      # [B, semantic_units]  f^v
  hash_logits: Array   # [B, K]               z^v; the code is sign(z^v)


class ImgNet(nn.Module):
  """Image network, SPEC §4: backbone (pretrained) → semantic layer → hash layer (new).

  With ``backbone=None`` this is the feature-mode ImgNet (paper §4.1): the same head on
  precomputed feature vectors of any width, ``x [B, d] → semantic → hash``.
  """
  num_bits: int
  backbone: Optional[BackboneSpec] = CNNF
  semantic_units: int = 512
  hash_from_pre_relu: bool = False
  dropout_rate: float = 0.5
  feature_dropout: float = 0.0        # feature mode only: dropout on the input features
  # Computation dtype of the layers (``jnp.bfloat16``: mixed precision); the parameters
  # and the outputs (hence the losses) stay float32.
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, inputs: Array, dropout_keys: Optional[Array] = None) -> ImgNetOutputs:
    """``inputs``: ``[B, H, W, C]`` images or ``[B, d]`` features; ``dropout_keys``:
    ``[B, 2]`` per-example keys in training, ``None`` at test time."""
    if self.backbone is not None:
      x = ConvBackbone(self.backbone, self.dropout_rate, self.dtype,
                       name="backbone")(inputs, dropout_keys)
    else:
      # Feature mode reads fc7 features, which the image-mode network drops out in
      # training (SPEC §4); ``feature_dropout`` applies that dropout here.
      keys = None if dropout_keys is None else jax.vmap(jax.random.fold_in, (0, None))(
          dropout_keys, FEATURE_DROPOUT_STREAM)
      x = example_dropout(inputs, self.feature_dropout, keys)
    semantic, logits = SemanticHashHead(self.semantic_units, self.num_bits,
                                        self.hash_from_pre_relu, dtype=self.dtype,
                                        name="head")(x.astype(self.dtype))
    return ImgNetOutputs(semantic.astype(jnp.float32), logits.astype(jnp.float32))
