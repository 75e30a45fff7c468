"""The two networks of DSEH with their optimisers, built from a run config (SPEC §3–§5).

``config.labnet`` and ``config.imgnet`` each describe one network: its layers, batch size,
epochs per round and optimiser (:mod:`dseh_jax.optim`; the 10× rate of the new layers over
the pretrained ones through optax masks). The one-network baselines reuse ``config.imgnet``.
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax

from dseh_jax import input_pipeline, models, optim, pretrained
from dseh_jax import train_steps as ts
from dseh_jax.data.splits import RetrievalData

log = logging.getLogger("dseh_jax")

LABNET, IMGNET = "labnet", "imgnet"


def steps_per_epoch(num_train: int, batch_size: int, network: str) -> int:
  """Full batches per epoch (a fresh permutation each epoch covers the remainder later)."""
  if batch_size > num_train:
    raise ValueError(f"{network}.batch_size={batch_size} exceeds the {num_train} training "
                     "points")
  return num_train // batch_size


def method_lr_scale(config: ml_collections.ConfigDict) -> float:
  """The method's multiplier of the recipe's learning rates: ``config.<method>.lr_scale``
  (1 where the method's section has none), for a method whose loss wants another step size
  than the recipe's: under the recipes' Adam a weight on the loss would not change it."""
  section = config.get(config.get("method", "dseh"))
  if not isinstance(section, ml_collections.ConfigDict):
    return 1.0
  return float(section.get("lr_scale", 1.0))


def make_schedule(net_cfg, num_train: int, network: str, scale: float = 1.0):
  """Step → learning rate of one network (``net_cfg`` = ``config.labnet`` or ``.imgnet``),
  the recipe's rates times ``scale`` (:func:`method_lr_scale`)."""
  opt = net_cfg.optimizer
  return optim.round_epoch_schedule(
      opt.lr * scale, steps_per_epoch(num_train, net_cfg.batch_size, network),
      net_cfg.epochs_per_round, decay_every=opt.decay_every,
      decay_factor=opt.decay_factor, decay_each_round=opt.decay_each_round)


def optimizer_for(net_cfg, num_train: int, network: str, scale: float = 1.0):
  opt = net_cfg.optimizer
  return optim.make_optimizer(
      name=opt.name, schedule=make_schedule(net_cfg, num_train, network, scale),
      group_multipliers={optim.PRETRAINED: opt.lr_mult_pretrained,
                         optim.NEW: opt.lr_mult_new},
      clip=opt.clip or None, momentum=opt.momentum, weight_decay=opt.weight_decay)


def init_params(model, key: jax.Array, input_shape: tuple[int, ...]) -> Any:
  """``model.init`` on zeros of ``input_shape`` as one compiled program.

  The same numbers as calling ``model.init`` directly (checked leaf by leaf in
  tests/test_networks.py), but eager ``init`` compiles each initialiser and each layer of
  the forward pass on its own: 4.9 s against 1.9 s for the digits' mini CNN-F on CPU,
  and the one program is what a persistent compilation cache can keep."""
  return jax.jit(model.init)(key, jnp.zeros(input_shape, jnp.float32))["params"]


def new_state(apply_fn, params, tx: optax.GradientTransformation) -> ts.TrainState:
  """``TrainState.create`` with the optimiser state built by one compiled ``tx.init``."""
  return ts.TrainState(step=0, apply_fn=apply_fn, params=params, tx=tx,
                       opt_state=jax.jit(tx.init)(params))


def create_labnet_state(config: ml_collections.ConfigDict, num_classes: int,
                        num_bits: int, num_train: int, key: jax.Array) -> ts.TrainState:
  """LabNet (SPEC §3) with its optimiser; ``config`` is the whole run config."""
  c = config.labnet
  model = models.LabNet(num_bits=num_bits, num_classes=num_classes,
                        hidden_units=c.hidden_units, semantic_units=c.semantic_units,
                        lrn=models.LRNParams() if c.lrn else None,
                        label_activation=c.label_activation,
                        init_std=c.init_std or None)
  params = init_params(model, key, (1, num_classes))
  tx = optimizer_for(c, num_train, LABNET, method_lr_scale(config))
  return new_state(model.apply, params, tx)


def create_imgnet_state(config: ml_collections.ConfigDict, input_shape: tuple[int, ...],
                        num_bits: int, num_train: int, key: jax.Array) -> ts.TrainState:
  """ImgNet (SPEC §4) with its masked optimiser; ``backbone="none"`` is feature mode."""
  c = config.imgnet
  if c.backbone != "none" and c.backbone not in models.BACKBONES:
    raise ValueError(f"imgnet.backbone={c.backbone!r}; expected 'none' or one of "
                     f"{sorted(models.BACKBONES)}")
  if c.backbone != "none" and len(input_shape) == 1:
    raise ValueError(f"imgnet.backbone={c.backbone!r} needs [n, H, W, C] images; the data "
                     f"has feature vectors of width {input_shape[0]}: set "
                     "imgnet.backbone=none (feature mode)")
  if c.backbone == "none" and len(input_shape) != 1:
    raise ValueError(f"imgnet.backbone='none' (feature mode) needs [n, d] inputs; the data "
                     f"has items of shape {input_shape}")
  if c.pretrained_weights and c.backbone != "cnnf":
    raise ValueError(f"imgnet.pretrained_weights={c.pretrained_weights!r} is set, but "
                     f"imgnet.backbone={c.backbone!r}: only 'cnnf' has ImageNet weights "
                     "(imagenet-vgg-f.mat); leave pretrained_weights empty for this backbone")
  if c.pretrained_weights and (len(input_shape) != 3 or input_shape[0] != input_shape[1]):
    raise ValueError(f"imgnet.pretrained_weights={c.pretrained_weights!r} needs square "
                     f"[H, W, 3] image inputs; the data has items of shape "
                     f"{tuple(input_shape)}")
  model = models.ImgNet(num_bits=num_bits,
                        backbone=None if c.backbone == "none" else models.BACKBONES[c.backbone],
                        semantic_units=c.semantic_units,
                        hash_from_pre_relu=c.hash_from_pre_relu,
                        dropout_rate=c.dropout_rate,
                        feature_dropout=c.feature_dropout if c.backbone == "none" else 0.0,
                        dtype=jnp.dtype(c.get("compute_dtype", "float32")))
  params = init_params(model, key, (1,) + tuple(input_shape))
  if c.pretrained_weights:
    params = load_pretrained_backbone(params, c.pretrained_weights, input_shape,
                                      models.BACKBONES[c.backbone])
  tx = optimizer_for(c, num_train, IMGNET, method_lr_scale(config))
  return new_state(model.apply, params, tx)


def load_pretrained_backbone(params: dict[str, Any], path: str,
                             input_shape: tuple[int, ...],
                             spec: models.BackboneSpec = models.CNNF) -> dict[str, Any]:
  """ImgNet ``params`` with the CNN-F layers read from ``imagenet-vgg-f.mat`` (SPEC §4).

  The file's average image is not applied here: build the image inputs with it
  (``ImageArray(..., mean=pretrained.load_vggf(path).average_image)``).
  """
  loaded = pretrained.load_vggf(path, spec, image_size=int(input_shape[0]))
  log.info("ImgNet backbone: CNN-F weights from %s", path)
  return pretrained.merge_backbone(params, loaded, f"imgnet.pretrained_weights={path!r}")


def use_weights_mean(config: ml_collections.ConfigDict, data: RetrievalData) -> RetrievalData:
  """``data`` with the average image of ``imgnet.pretrained_weights`` subtracted from its
  lazy image inputs when ``data.mean`` is ``"vgg_f"`` (SPEC §4: the VGG-F mean comes from
  the weights file when there is one, else the published RGB mean); else ``data``."""
  path = config.imgnet.pretrained_weights
  if not path or config.data.get("mean", "vgg_f") != "vgg_f":
    return data
  if not isinstance(data.train.inputs, input_pipeline.ImageArray):
    return data                                # features or in-memory arrays: as given
  average = pretrained.load_average_image(path)
  if average is None:
    log.info("%s has no averageImage; keeping the published VGG-F mean", path)
    return data
  log.info("subtracting the average image of %s from the images", path)
  return dataclasses.replace(data, **{
      name: dataclasses.replace(split, inputs=split.inputs.with_mean(average))
      for name, split in data.splits().items()})


def labnet_loss_kwargs(config) -> dict[str, Any]:
  c = config.labnet.loss
  return dict(weights=dict(c.weights), s=c.s, half=c.half, reduction=c.reduction)


def imgnet_loss_kwargs(config) -> dict[str, Any]:
  c = config.imgnet.loss
  return dict(weights=dict(c.weights), s=c.s, half=c.half, logit_scale=c.logit_scale,
              target_factor=c.target_factor, reduction=c.reduction)
