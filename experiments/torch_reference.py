"""PyTorch equivalents of DSEH's three training steps, for ``experiments/bench_train.py``.

The same computation as ``dseh_jax`` with the recipe's settings: the same layers (LabNet
``c → hidden → 512 → K → c``; ImgNet's CNN-F built from a ``dseh_jax.models.BackboneSpec``
or feature mode, then the semantic and hash layers), the same losses (``Θ = ½ a·b``, every
term a mean: ``reduction="code"``), LabNet's bank rows written before its loss, inverted
dropout and Adam with a ``pretrained`` (the backbone) and a ``new`` parameter group.
Random draws (flips, dropout masks) come from torch unless passed in, as the equivalence
tests do. Only what one training step needs: no data pipeline, no evaluation.
"""
import dataclasses
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

Tensor = torch.Tensor


def dropout(x: Tensor, rate: float, keep: Optional[Tensor] = None) -> Tensor:
  """Inverted dropout; ``keep``: a boolean mask shaped like ``x`` (torch draws one if None)."""
  if rate == 0.0:
    return x
  if keep is None:
    return F.dropout(x, rate, training=True)
  return torch.where(keep, x / (1.0 - rate), 0.0)


class Head(nn.Module):
  """Semantic layer (fc + ReLU) then the hash layer (fc, K units)."""

  def __init__(self, in_features: int, num_bits: int, semantic_units: int = 512,
               hash_from_pre_relu: bool = False):
    super().__init__()
    self.semantic = nn.Linear(in_features, semantic_units)
    self.hash = nn.Linear(semantic_units, num_bits)
    self.hash_from_pre_relu = hash_from_pre_relu

  def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
    pre = self.semantic(x)
    semantic = F.relu(pre)
    return semantic, self.hash(pre if self.hash_from_pre_relu else semantic)


class LabNet(nn.Module):
  """``y → fc + ReLU → head → tanh → fc c`` (the recipe: no LRN, linear label head)."""

  def __init__(self, num_classes: int, num_bits: int, hidden_units: int = 4096,
               semantic_units: int = 512):
    super().__init__()
    self.hidden = nn.Linear(num_classes, hidden_units)
    self.head = Head(hidden_units, num_bits, semantic_units)
    self.label = nn.Linear(num_bits, num_classes)

  def forward(self, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    semantic, logits = self.head(F.relu(self.hidden(labels)))
    codes = torch.tanh(logits)
    return semantic, codes, self.label(codes)


class Backbone(nn.Module):
  """conv1…fc7 of a ``BackboneSpec`` (conv + ReLU [+ LRN] [+ max-pool]; fc + ReLU + dropout).

  NCHW input. The last feature map is flattened in (h, w, c) order, Flax's, so that fc6's
  weights copy over unchanged.
  """

  def __init__(self, spec: Any, image_size: int, dropout_rate: float = 0.5):
    super().__init__()
    self.spec, self.dropout_rate = spec, dropout_rate
    channels = 3
    for layer in spec.convs:
      self.add_module(layer.name, nn.Conv2d(channels, layer.features, layer.kernel,
                                            layer.stride, layer.padding))
      channels = layer.features
    size = 2 * spec.lrn.depth_radius + 1          # torch divides alpha by the window size
    self.lrn = nn.LocalResponseNorm(size, alpha=spec.lrn.alpha * size, beta=spec.lrn.beta,
                                    k=spec.lrn.bias)
    with torch.no_grad():
      units = self.features(torch.zeros(1, 3, image_size, image_size)).shape[1]
    for name, out in spec.fc_units:
      self.add_module(name, nn.Linear(units, out))
      units = out

  def features(self, x: Tensor) -> Tensor:
    for layer in self.spec.convs:
      x = F.relu(getattr(self, layer.name)(x))
      if layer.lrn:
        x = self.lrn(x)
      if layer.pool:
        (top, bottom), (left, right) = layer.pool_padding
        if top or bottom or left or right:
          x = F.pad(x, (left, right, top, bottom), value=float("-inf"))
        x = F.max_pool2d(x, self.spec.pool_window, self.spec.pool_stride)
    return x.permute(0, 2, 3, 1).flatten(1)

  def forward(self, x: Tensor, keep: Optional[Sequence[Tensor]] = None) -> Tensor:
    x = self.features(x)
    for i, (name, _) in enumerate(self.spec.fc_units):
      x = dropout(F.relu(getattr(self, name)(x)), self.dropout_rate * self.training,
                  None if keep is None else keep[i])
    return x


class ImgNet(nn.Module):
  """Backbone (pretrained group) → head (new group); ``spec=None``: feature mode on
  ``[B, in_features]`` inputs with ``feature_dropout`` on them."""

  def __init__(self, num_bits: int, *, spec: Any = None, image_size: int = 224,
               in_features: int = 4096, semantic_units: int = 512,
               hash_from_pre_relu: bool = False, dropout_rate: float = 0.5,
               feature_dropout: float = 0.0):
    super().__init__()
    self.feature_dropout = feature_dropout
    self.backbone = None if spec is None else Backbone(spec, image_size, dropout_rate)
    width = in_features if spec is None else spec.fc_units[-1][1]
    self.head = Head(width, num_bits, semantic_units, hash_from_pre_relu)

  def forward(self, inputs: Tensor, keep: Optional[Sequence[Tensor]] = None
              ) -> tuple[Tensor, Tensor]:
    """``keep``: dropout masks, ``[fc6, fc7]`` or ``[inputs]`` in feature mode; no dropout
    in ``eval()`` mode."""
    if self.backbone is not None:
      x = self.backbone(inputs, keep)
    else:
      x = dropout(inputs, self.feature_dropout * self.training,
                  None if keep is None else keep[0])
    return self.head(x)


# --------------------------------------------------------------------------- losses

@dataclasses.dataclass
class Bank:
  """Per-training-point tensors: ``semantic [n, 512]``, ``codes [n, K]``, ``labels [n, c]``."""
  semantic: Tensor
  codes: Tensor
  labels: Tensor


def similarity(labels_a: Tensor, labels_b: Tensor) -> Tensor:
  """``S_ij = 1`` when the label vectors share a label."""
  return (labels_a @ labels_b.T > 0).float()


def pairwise(a: Tensor, b: Tensor, sim: Tensor, s: float, half: bool) -> Tensor:
  """Mean over pairs of ``softplus(Θ) − s·S·Θ`` with ``Θ = c·a·b`` (``c = ½`` if half)."""
  theta = a @ b.T
  if half:
    theta = 0.5 * theta
  return (F.softplus(theta) - s * sim * theta).mean()


def _weighted(terms: Mapping[str, Tensor], weights: Mapping[str, float]) -> Tensor:
  return sum(weights.get(name, 1.0) * value for name, value in terms.items())


def _check(reduction: str) -> None:
  if reduction != "code":
    raise ValueError(f"reduction={reduction!r}: the torch reference has the means ('code')")


def labnet_loss(semantic, codes, label_pred, labels, bank: Bank, *, weights, s, half,
                reduction):
  """``J1 + J2 + J3 + J4`` (weighted) against the bank; returns ``(total, terms)``."""
  _check(reduction)
  sim = similarity(labels, bank.labels)
  terms = {"j1": pairwise(semantic, bank.semantic, sim, s, half),
           "j2": pairwise(codes, bank.codes, sim, s, half),
           "j3": 0.01 * (codes.abs() - 1.0).abs().mean(),
           "j4": 0.5 * (labels - label_pred).square().mean()}
  return _weighted(terms, weights), terms


def imgnet_loss(semantic, logits, labels, targets, bank: Bank, *, weights, s, half,
                logit_scale, target_factor, reduction):
  """``J1 + η·J2`` against LabNet's fixed features and {0, 1} codes."""
  _check(reduction)
  x = logit_scale * logits
  terms = {"j1": pairwise(semantic, bank.semantic, similarity(labels, bank.labels), s, half),
           "j2": (F.softplus(x) - target_factor * targets * x).mean()}
  return _weighted(terms, weights), terms


# --------------------------------------------------------------------------- steps

def make_adam(model: nn.Module, lr: float, mult_pretrained: float = 1.0,
              mult_new: float = 1.0, eps: float = 1e-8) -> torch.optim.Adam:
  """Adam with the backbone's parameters at ``lr·mult_pretrained``, the rest at
  ``lr·mult_new`` (empty groups left out)."""
  pretrained, new = [], []
  for name, p in model.named_parameters():
    (pretrained if name.startswith("backbone.") else new).append(p)
  groups = [{"params": ps, "lr": lr * m}
            for ps, m in ((pretrained, mult_pretrained), (new, mult_new)) if ps]
  return torch.optim.Adam(groups, lr=lr, eps=eps)


def _update(opt: torch.optim.Optimizer, loss: Tensor) -> None:
  opt.zero_grad(set_to_none=True)
  loss.backward()
  opt.step()


def labnet_step(model: LabNet, opt, bank: Bank, labels: Tensor, index: Tensor,
                loss_kwargs: Mapping[str, Any]) -> dict[str, Tensor]:
  """One LabNet step: write the batch's outputs into the bank, then descend the loss."""
  semantic, codes, label_pred = model(labels)
  with torch.no_grad():
    bank.semantic[index] = semantic
    bank.codes[index] = codes
  loss, terms = labnet_loss(semantic, codes, label_pred, labels, bank, **loss_kwargs)
  _update(opt, loss)
  return {name: x.detach() for name, x in {"loss": loss, **terms}.items()}


def imgnet_step(model: ImgNet, opt, bank: Bank, inputs: Tensor, labels: Tensor,
                index: Tensor, loss_kwargs: Mapping[str, Any], *, flip: bool = False,
                flips: Optional[Tensor] = None,
                keep: Optional[Sequence[Tensor]] = None) -> dict[str, Tensor]:
  """One ImgNet step against the bank's fixed targets; ``flip``: flip each NCHW image with
  probability ½ (``flips``: the ``[B]`` boolean choice, drawn here if None)."""
  if flip:
    if flips is None:
      flips = torch.rand(inputs.shape[0], device=inputs.device) < 0.5
    inputs = torch.where(flips[:, None, None, None], inputs.flip(3), inputs)
  targets = bank.codes[index]
  semantic, logits = model(inputs, keep)
  loss, terms = imgnet_loss(semantic, logits, labels, targets, bank, **loss_kwargs)
  _update(opt, loss)
  agreement = ((logits.detach() >= 0) == (targets > 0.5)).float().mean()
  return {name: x.detach() for name, x in {"loss": loss, **terms}.items()} | {
      "bit_agreement": agreement}


def load_flax_params(model: nn.Module, params: Mapping[str, Any]) -> None:
  """Copies a Flax parameter tree into ``model`` (names match; kernels transposed)."""
  flat: dict[str, np.ndarray] = {}

  def walk(tree, prefix):
    for key, value in tree.items():
      if isinstance(value, Mapping):
        walk(value, f"{prefix}{key}.")
      else:
        flat[prefix + key] = np.asarray(value)

  walk(params, "")
  with torch.no_grad():
    for name, p in model.named_parameters():
      module, kind = name.rsplit(".", 1)
      if kind == "bias":
        value = flat.pop(f"{module}.bias")
      else:
        kernel = flat.pop(f"{module}.kernel")
        value = kernel.transpose(3, 2, 0, 1) if kernel.ndim == 4 else kernel.T
      p.copy_(torch.from_numpy(np.array(value)))
  if flat:
    raise ValueError(f"Flax parameters without a torch counterpart: {sorted(flat)}")
