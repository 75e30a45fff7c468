"""DSEH's alternating trainer (SPEC §5, Algorithm 1) with exact resume.

    for round r in 0..R-1:
        LabNet phase: buffers = N(0, 1) noise (r = 0) or (F_v, sign(H_v)) of ImgNet (r > 0);
                      epochs of labnet_train_step
        F_l, H_l = LabNet over all training labels; h' = (sign(H_l) + 1) / 2
        ImgNet phase: epochs of imgnet_train_step against (F_l, h')
        H_v, F_v = ImgNet over all training inputs
    B = sign(H_v); query and database codes = sign(ImgNet logits)

The trainer checkpoints at the end of every phase and after every
``checkpoint_every_epochs`` epochs once ``checkpoint_min_seconds`` have passed since the last
save (short feature-mode epochs would otherwise spend more time saving than training).
Everything a later epoch depends on is either in the checkpoint (both train
states, LabNet's buffers, the PRNG key, the metrics history) or a pure function of it (the
ImgNet targets from LabNet's parameters; the next round's buffers from ImgNet's
parameters; each epoch's sample order from ``(seed, bits, epoch number)``), so a resumed
run ends with the same codes as an uninterrupted one.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import time
from typing import Any, Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import tqdm

from dseh_jax import evaluation, faults, input_pipeline, models, optim, pretrained
from dseh_jax import run_identity
from dseh_jax import train_steps as ts
from dseh_jax.checkpointing import RunCheckpointer
from dseh_jax.data.splits import RetrievalData

log = logging.getLogger("dseh_jax")

LABNET, IMGNET = "labnet", "imgnet"
ON_COLLAPSE = ("stop", "warn")


class CollapseError(RuntimeError):
  """A phase ended with codes that carry (almost) no information; see
  ``DSEHTrainer._check_collapse``. Checkpoints up to that phase are kept."""


@dataclasses.dataclass(frozen=True)
class Phase:
  round: int
  network: str        # LABNET or IMGNET
  epochs: int
  first_epoch: int    # index of this phase's first epoch in the whole run


def make_plan(config: ml_collections.ConfigDict) -> list[Phase]:
  """The run's phases in order: LabNet then ImgNet, for every round."""
  lab, img = tuple(config.labnet.epochs_per_round), tuple(config.imgnet.epochs_per_round)
  if len(lab) != len(img) or not lab:
    raise ValueError(f"labnet.epochs_per_round {lab} and imgnet.epochs_per_round {img} "
                     "must list the same (non-zero) number of rounds")
  plan, first = [], 0
  for r, (el, ev) in enumerate(zip(lab, img)):
    for network, epochs in ((LABNET, el), (IMGNET, ev)):
      plan.append(Phase(r, network, int(epochs), first))
      first += int(epochs)
  return plan


def steps_per_epoch(num_train: int, batch_size: int, network: str) -> int:
  """Full batches per epoch (a fresh permutation each epoch covers the remainder later)."""
  if batch_size > num_train:
    raise ValueError(f"{network}.batch_size={batch_size} exceeds the {num_train} training "
                     "points")
  return num_train // batch_size


def make_schedule(net_cfg, num_train: int, network: str):
  """Step → learning rate of one network (``net_cfg`` = ``config.labnet`` or ``.imgnet``)."""
  opt = net_cfg.optimizer
  return optim.round_epoch_schedule(
      opt.lr, steps_per_epoch(num_train, net_cfg.batch_size, network),
      net_cfg.epochs_per_round, decay_every=opt.decay_every,
      decay_factor=opt.decay_factor, decay_each_round=opt.decay_each_round)


def _optimizer_for(net_cfg, num_train: int, network: str):
  opt = net_cfg.optimizer
  return optim.make_optimizer(
      name=opt.name, schedule=make_schedule(net_cfg, num_train, network),
      group_multipliers={optim.PRETRAINED: opt.lr_mult_pretrained,
                         optim.NEW: opt.lr_mult_new},
      clip=opt.clip or None, momentum=opt.momentum, weight_decay=opt.weight_decay)


def create_labnet_state(config: ml_collections.ConfigDict, num_classes: int,
                        num_bits: int, num_train: int, key: jax.Array) -> ts.TrainState:
  """LabNet (SPEC §3) with its optimiser; ``config`` is the whole run config."""
  c = config.labnet
  model = models.LabNet(num_bits=num_bits, num_classes=num_classes,
                        hidden_units=c.hidden_units, semantic_units=c.semantic_units,
                        lrn=models.LRNParams() if c.lrn else None,
                        label_activation=c.label_activation,
                        init_std=c.init_std or None)
  params = model.init(key, jnp.zeros((1, num_classes), jnp.float32))["params"]
  return ts.TrainState.create(apply_fn=model.apply, params=params,
                              tx=_optimizer_for(c, num_train, LABNET))


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
                        feature_dropout=c.feature_dropout if c.backbone == "none" else 0.0)
  params = model.init(key, jnp.zeros((1,) + tuple(input_shape), jnp.float32))["params"]
  if c.pretrained_weights:
    params = load_pretrained_backbone(params, c.pretrained_weights, input_shape,
                                      models.BACKBONES[c.backbone])
  return ts.TrainState.create(apply_fn=model.apply, params=params,
                              tx=_optimizer_for(c, num_train, IMGNET))


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


@dataclasses.dataclass
class RunResult:
  """Codes in ``{-1, +1}`` (int8) and the metrics of one bit length."""
  num_bits: int
  train_codes: np.ndarray
  query_codes: np.ndarray
  database_codes: np.ndarray
  metrics: dict[str, Any]
  history: list[dict[str, Any]]
  # SPEC Fig. 5: semantic features of the same training points from both networks,
  # {"index": [m], "labnet": [m, 512], "imgnet": [m, 512], "labels": [m, c]}.
  semantic: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)


SEMANTIC_SAMPLE = 100       # points in the PCA figure of the semantic spaces (SPEC Fig. 5)


class DSEHTrainer:
  """Trains DSEH at one code length on one dataset, checkpointing under ``workdir``."""

  def __init__(self, config: ml_collections.ConfigDict, data: RetrievalData, num_bits: int,
               workdir: str, *, progress: bool = True, fingerprint: Optional[str] = None):
    """``fingerprint``: :func:`dseh_jax.run_identity.data_fingerprint` of ``data``, when
    the caller has it (else computed here); stored in checkpoints and checked on resume."""
    self.config, self.data, self.num_bits = config, data, int(num_bits)
    self.workdir, self.progress = workdir, progress
    self.identity = run_identity.identity(json.loads(config.to_json()),
                                          fingerprint or run_identity.data_fingerprint(data))
    self.num_devices = jax.local_device_count()
    for net in (config.labnet, config.imgnet):
      if net.batch_size % self.num_devices:
        raise ValueError(f"batch size {net.batch_size} is not divisible by the "
                         f"{self.num_devices} local devices")
    if config.on_collapse not in ON_COLLAPSE:
      raise ValueError(f"on_collapse={config.on_collapse!r}; expected one of {ON_COLLAPSE}")
    self.plan = make_plan(config)
    self.total_epochs = sum(p.epochs for p in self.plan)
    self.num_train = len(data.train)
    self.key = jax.random.fold_in(jax.random.PRNGKey(config.seed), self.num_bits)
    k_lab, k_img, self.bank_key = jax.random.split(self.key, 3)
    self.labnet = create_labnet_state(config, data.num_classes, self.num_bits,
                                      self.num_train, k_lab)
    self.imgnet = create_imgnet_state(config, data.input_shape, self.num_bits,
                                      self.num_train, k_img)
    self.schedules = {net: make_schedule(getattr(config, net), self.num_train, net)
                      for net in (LABNET, IMGNET)}
    self.p_labnet_step = ts.pmap_step(ts.labnet_train_step,
                                      loss_kwargs=labnet_loss_kwargs(config))
    self.p_imgnet_step = ts.pmap_step(ts.imgnet_train_step,
                                      loss_kwargs=imgnet_loss_kwargs(config),
                                      flip=bool(config.imgnet.random_flip)
                                      and len(data.input_shape) == 3,  # images only
                                      max_shift=int(config.imgnet.random_shift)
                                      if len(data.input_shape) == 3 else 0)
    self.p_labnet_predict = ts.make_predict_fn(self.labnet.apply_fn)
    self.p_imgnet_predict = ts.make_predict_fn(self.imgnet.apply_fn)
    self.history: list[dict[str, Any]] = []
    # Encodings made at a phase's end, reused by the next phase's start and the final
    # results instead of encoding the same data twice: LABNET -> LabNet outputs on the
    # training labels; IMGNET -> (train outputs, query codes, database codes).
    self._phase_end: dict[str, Any] = {}
    self._last_report: Optional[evaluation.RetrievalReport] = None
    self.checkpointer = RunCheckpointer(f"{workdir}/checkpoints",
                                        max_to_keep=config.checkpoints_to_keep)
    self._train_labels = data.train.labels.astype(np.float32)
    self._distinct_label_sets = int(np.unique(data.train.labels, axis=0).shape[0])

  # ------------------------------------------------------------------ encoding

  def labnet_outputs(self, labnet_rep, labels: np.ndarray) -> models.LabNetOutputs:
    return ts.predict_in_batches(self.p_labnet_predict, labnet_rep.params, labels,
                                 self.config.eval.batch_size, self.num_devices)

  def imgnet_outputs(self, imgnet_rep, inputs: np.ndarray) -> models.ImgNetOutputs:
    return ts.predict_in_batches(self.p_imgnet_predict, imgnet_rep.params, inputs,
                                 self.config.eval.batch_size, self.num_devices)

  def labnet_map(self, labnet_rep) -> float:
    """``map_l``: retrieval of database labels by query labels through LabNet's codes."""
    q = self.labnet_outputs(labnet_rep, self.data.query.labels).codes
    db_labels, inverse = np.unique(self.data.database.labels, axis=0, return_inverse=True)
    db = self.labnet_outputs(labnet_rep, db_labels).codes[inverse.reshape(-1)]
    return evaluation.mean_average_precision(
        evaluation.binarize(q), evaluation.binarize(db), self.data.query.labels,
        self.data.database.labels)

  def _initial_bank(self, phase: Phase, labnet_rep, imgnet_rep) -> ts.PointBank:
    """The bank at the start of ``phase`` (SPEC §3 buffer semantics, §5)."""
    labels = self._train_labels
    if phase.network == IMGNET:
      out = self._phase_end.pop(LABNET, None)
      if out is None:
        out = self.labnet_outputs(labnet_rep, labels)
      targets = (evaluation.binarize(out.codes).astype(np.float32) + 1.0) / 2.0
      return ts.PointBank(out.semantic, targets, labels)
    if phase.round == 0:
      k_f, k_h = jax.random.split(self.bank_key)
      n, d = self.num_train, self.config.labnet.semantic_units
      return ts.PointBank(np.asarray(jax.random.normal(k_f, (n, d))),
                          np.asarray(jax.random.normal(k_h, (n, self.num_bits))), labels)
    out = self._imgnet_encoding(imgnet_rep, pop=True)[0]
    return ts.PointBank(out.semantic,
                        evaluation.binarize(out.hash_logits).astype(np.float32), labels)

  # ------------------------------------------------------------------ checkpoints

  def _checkpoint_state(self, labnet, imgnet, bank: ts.PointBank) -> dict[str, Any]:
    return {"labnet": labnet, "imgnet": imgnet,
            "bank": {"semantic": bank.semantic, "codes": bank.codes}, "key": self.key}

  def _save(self, epochs_done: int, labnet_rep, imgnet_rep, bank_rep) -> None:
    state = self._checkpoint_state(ts.unreplicate(labnet_rep), ts.unreplicate(imgnet_rep),
                                   ts.unreplicate(bank_rep))
    meta = {"epochs_done": epochs_done, "num_bits": self.num_bits,
            "config": json.loads(self.config.to_json()),
            "data_fingerprint": self.identity["data_fingerprint"], "history": self.history}
    self.checkpointer.save(epochs_done, state, meta)

  def restore(self) -> tuple[int, Any, Any, Optional[ts.PointBank]]:
    """``(epochs done, LabNet state, ImgNet state, bank or None)`` from the latest
    checkpoint under ``workdir`` (the fresh states and 0 when there is none); refuses a
    checkpoint of another training config, other data or another bit length (naming what
    differs); a damaged newest checkpoint falls back to the newest intact one
    (:meth:`RunCheckpointer.restore_latest`)."""
    found = self.checkpointer.latest_intact_meta()
    if found is None:
      return 0, self.labnet, self.imgnet, None
    step, meta = found
    where = f"{self.workdir}/checkpoints/{step}"
    stored = run_identity.identity(meta["config"], meta.get("data_fingerprint"))
    run_identity.check_same_run(stored, self.identity, where)   # fingerprint None: older
    if meta["num_bits"] != self.num_bits:
      raise run_identity.RunMismatchError(
          f"{where} holds a {meta['num_bits']}-bit run, not {self.num_bits} bits")
    n, d = self.num_train, self.config.labnet.semantic_units
    like_bank = ts.PointBank(np.zeros((n, d), np.float32),
                             np.zeros((n, self.num_bits), np.float32), self._train_labels)
    like = self._checkpoint_state(self.labnet, self.imgnet, like_bank)
    step, state, meta = self.checkpointer.restore_latest(like)
    self.history = list(meta["history"])
    bank = ts.PointBank(state["bank"]["semantic"], state["bank"]["codes"], self._train_labels)
    log.info("resuming %d-bit run after epoch %d of %d", self.num_bits,
             meta["epochs_done"], self.total_epochs)
    return int(meta["epochs_done"]), state["labnet"], state["imgnet"], bank

  # ------------------------------------------------------------------ training

  def _epoch_order(self, epoch_index: int) -> np.ndarray:
    seq = np.random.SeedSequence([self.config.seed, self.num_bits, epoch_index])
    return np.random.default_rng(seq).permutation(self.num_train)

  def _epoch_batches(self, network: str, order: np.ndarray, batch_size: int, n_steps: int):
    """The epoch's batches in order, sharded ``[devices, per_device, ...]``.

    ImgNet batches read (and, for an :class:`~dseh_jax.input_pipeline.ImageArray`, decode)
    their images in a background thread and reach the devices two steps ahead; LabNet
    batches are label rows, cheap enough to build in line.
    """
    def make_batch(s: int) -> dict[str, np.ndarray]:
      index = order[s * batch_size:(s + 1) * batch_size]
      batch = {"labels": self._train_labels[index], "index": index.astype(np.int32)}
      if network == IMGNET:
        batch["inputs"] = self.data.train.inputs[index]
      return batch

    if network == IMGNET:
      return input_pipeline.prefetch_train_batches(make_batch, n_steps, self.num_devices,
                                                   axis_name=ts.AXIS_NAME)
    return (ts.shard_batch(make_batch(s), self.num_devices) for s in range(n_steps))

  def _run_epoch(self, phase: Phase, epoch: int, state_rep, bank_rep):
    """One epoch of ``phase``; returns ``(state, bank, mean metrics)``."""
    g = phase.first_epoch + epoch
    net_cfg = self.config.labnet if phase.network == LABNET else self.config.imgnet
    step_fn = self.p_labnet_step if phase.network == LABNET else self.p_imgnet_step
    batch_size = net_cfg.batch_size
    n_steps = steps_per_epoch(self.num_train, batch_size, phase.network)
    order = self._epoch_order(g)
    keys = np.asarray(jax.random.split(jax.random.fold_in(self.key, g), n_steps))
    metrics = []
    batches = self._epoch_batches(phase.network, order, batch_size, n_steps)
    with contextlib.closing(batches):              # stops the prefetch thread on errors
      bar = tqdm.tqdm(batches, total=n_steps, disable=not self.progress, leave=False,
                      desc=f"{self.num_bits}b r{phase.round} {phase.network} e{epoch}")
      for s, batch in enumerate(bar):
        rng = np.broadcast_to(keys[s], (self.num_devices, 2))
        state_rep, bank_rep, m = step_fn(state_rep, bank_rep, batch, rng)
        metrics.append(m)
        faults.reached(f"{phase.network}_step")
    metrics = jax.device_get(metrics)            # one transfer per epoch, not per step
    mean = {k: float(np.mean([m[k][0] for m in metrics])) for k in metrics[0]}
    if not np.isfinite(mean["loss"]):
      raise FloatingPointError(
          f"{phase.network} loss became {mean['loss']} in round {phase.round}, epoch {epoch} "
          f"at {self.num_bits} bits; the checkpoints before it are kept in "
          f"{self.workdir}/checkpoints (try a lower learning rate or optimizer.clip in a "
          "new workdir)")
    schedule = self.schedules[phase.network]
    mean["lr"] = float(schedule(np.asarray(state_rep.step[0]) - 1))
    return state_rep, bank_rep, mean

  def _labnet_epoch_stats(self, labnet_rep, bank_rep, epoch: int) -> dict[str, Any]:
    codes = evaluation.binarize(np.asarray(bank_rep.codes[0]))
    stats = {"nh": evaluation.distinct_codes(codes),
             "bit_balance": evaluation.bit_balance(codes)}
    every = self.config.eval.labnet_map_every
    if every and (epoch + 1) % every == 0:
      stats["map_l"] = self.labnet_map(labnet_rep)
    return stats

  def _labnet_summary(self, phase: Phase, labnet_rep) -> dict[str, Any]:
    out = self._phase_end[LABNET] = self.labnet_outputs(labnet_rep, self._train_labels)
    codes = evaluation.binarize(out.codes)
    nh = evaluation.distinct_codes(codes)
    floor = self._nh_floor()
    return {"kind": "labnet_round", "round": phase.round, "nh": nh,
            "bit_balance": evaluation.bit_balance(codes),
            "map_l": self.labnet_map(labnet_rep),
            "dead_semantic_units": int(np.sum(np.all(out.semantic <= 0, axis=0))),
            "collapsed": nh < floor, "nh_floor": floor}

  def _nh_floor(self) -> int:
    """Fewest distinct training codes a healthy phase ends with (``collapse_nh_fraction``
    of the distinct training label sets, at least 2)."""
    return max(2, int(self.config.collapse_nh_fraction * self._distinct_label_sets))

  def _imgnet_summary(self, phase: Phase, imgnet_rep, bank_rep) -> dict[str, Any]:
    """Codes, balance and bit agreement with LabNet's targets after an ImgNet phase; the
    retrieval metrics of the query set only after the last phase (per-round retrieval
    monitoring belongs on a validation split: ``dseh_jax.selection``)."""
    self._phase_end.pop(IMGNET, None)                      # ImgNet has changed since
    out, q, db = self._imgnet_encoding(imgnet_rep)
    codes = evaluation.binarize(out.hash_logits)
    lab_codes = 2 * np.asarray(bank_rep.codes[0]) - 1      # the targets h' back in {-1, +1}
    agreement = float(np.mean(codes == lab_codes))
    nh = evaluation.distinct_codes(codes)
    low = (agreement < self.config.collapse_min_bit_agreement
           or nh < self._nh_floor())
    final = phase is self.plan[-1]
    summary = {"kind": "imgnet_round", "round": phase.round, "nh": nh,
               "bit_balance": evaluation.bit_balance(codes),
               "bit_agreement": agreement, "collapsed": low and final,
               "nh_floor": self._nh_floor()}
    if low and not final:        # judged at the end; LabNet's next nh shows the damage
      log.warning("%d bits: ImgNet's bit agreement with LabNet's codes is only %.3f (nh "
                  "%d) after round %d (SPEC §5 hazard)", self.num_bits, agreement, nh,
                  phase.round)
    if final:
      summary.update(self._retrieval_metrics(q, db))
    return summary

  def _check_collapse(self, summary: dict[str, Any]) -> None:
    """Stops the run (``config.on_collapse="stop"``) or warns (``"warn"``) when a phase
    ended collapsed: LabNet's ``nh`` below its floor after any round, or ImgNet's bit
    agreement with LabNet's codes below ``collapse_min_bit_agreement`` after the last
    round (SPEC §5 hazards)."""
    if not summary.get("collapsed"):           # .get: summaries of older checkpoints
      return
    r, k = summary["round"], self.num_bits
    if summary["kind"] == "labnet_round":
      what = (f"LabNet collapsed in round {r} at {k} bits: nh = {summary['nh']} distinct "
              f"codes for {self._distinct_label_sets} distinct training label sets (floor "
              f"{summary['nh_floor']}), {summary['dead_semantic_units']} of "
              f"{self.config.labnet.semantic_units} semantic units dead, map_l = "
              f"{summary['map_l']:.4f}")
      healthy_before = any(not h.get("collapsed") for h in self.history
                           if h["kind"] == "labnet_round" and h["round"] < r)
      fix = ("ImgNet did not fit LabNet's codes in the previous round; raise "
             "imgnet.optimizer.lr or imgnet.epochs_per_round" if healthy_before else
             "lower labnet.optimizer.lr, or use the default recipe (--choices recipe: "
             "Adam, losses as means)")
    else:
      what = (f"ImgNet's codes are degenerate after the last round ({r}) at {k} bits: bit "
              f"agreement with LabNet's codes {summary['bit_agreement']:.3f} (at least "
              f"collapse_min_bit_agreement={self.config.collapse_min_bit_agreement} "
              f"expected), nh = {summary['nh']} distinct training codes (floor "
              f"{summary.get('nh_floor', 2)})")
      fix = ("if the loss diverged, lower imgnet.optimizer.lr; if it under-fit, raise "
             "imgnet.optimizer.lr or imgnet.epochs_per_round, or standardise the inputs "
             "(data.standardize='zscore')")
    message = (f"{what}. The checkpoints are kept in {self.workdir}/checkpoints. Try: {fix}; "
               "or set on_collapse='warn' to continue anyway.")
    if self.config.on_collapse == "warn":
      log.warning("!" * 72)
      log.warning("%s", message)
      log.warning("!" * 72)
      return
    raise CollapseError(message)

  def _imgnet_encoding(self, imgnet_rep, pop: bool = False):
    """``(train outputs, query codes, database codes)`` of ImgNet as it is now; taken from
    the last phase end when that is still current (the cache is cleared whenever ImgNet
    trains again), else computed."""
    cached = self._phase_end.pop(IMGNET, None) if pop else self._phase_end.get(IMGNET)
    if cached is not None:
      return cached
    out = self.imgnet_outputs(imgnet_rep, self.data.train.inputs)
    q = self.imgnet_outputs(imgnet_rep, self.data.query.inputs).hash_logits
    db = self.imgnet_outputs(imgnet_rep, self.data.database.inputs).hash_logits
    encoding = (out, evaluation.binarize(q), evaluation.binarize(db))
    if not pop:
      self._phase_end[IMGNET] = encoding
    return encoding

  def _retrieval_metrics(self, q: np.ndarray, db: np.ndarray) -> dict[str, float]:
    """:func:`retrieval_metrics` of ImgNet's codes; the full report (curves included) is
    kept for :meth:`last_report`."""
    out, self._last_report = retrieval_metrics(self.config.eval, q, db, self.data)
    return out

  def last_report(self) -> Optional[evaluation.RetrievalReport]:
    """The full :class:`~dseh_jax.evaluation.RetrievalReport` of the latest ImgNet
    evaluation (curves and per-query APs), or ``None`` before the first one."""
    return self._last_report

  def run(self) -> RunResult:
    """Trains (or resumes) to the end of the plan and returns the codes and metrics."""
    start = time.time()
    done, labnet, imgnet, bank = self.restore()
    finished = [h for h in self.history if h["kind"].endswith("_round")]
    if finished:                   # a rerun after a collapse stop meets the same guard
      self._check_collapse(finished[-1])
    labnet_rep, imgnet_rep = ts.replicate(labnet), ts.replicate(imgnet)
    bank_rep = None if bank is None else ts.replicate(bank)
    every = max(1, int(self.config.checkpoint_every_epochs))
    min_gap, last_save = float(self.config.checkpoint_min_seconds), time.time()
    for phase in self.plan:
      if done >= phase.first_epoch + phase.epochs:
        continue
      if done == phase.first_epoch or bank_rep is None or phase.network == IMGNET:
        bank_rep = ts.replicate(self._initial_bank(phase, labnet_rep, imgnet_rep))
      for epoch in range(done - phase.first_epoch, phase.epochs):
        t0 = time.time()
        if phase.network == LABNET:
          labnet_rep, bank_rep, m = self._run_epoch(phase, epoch, labnet_rep, bank_rep)
          m.update(self._labnet_epoch_stats(labnet_rep, bank_rep, epoch))
        else:
          imgnet_rep, bank_rep, m = self._run_epoch(phase, epoch, imgnet_rep, bank_rep)
        m.update({"kind": "epoch", "network": phase.network, "round": phase.round,
                  "epoch": epoch, "seconds": round(time.time() - t0, 3)})
        self.history.append(m)
        log.info("%d bits %s", self.num_bits, _format_metrics(m))
        faults.reached("epoch_end")
        done = phase.first_epoch + epoch + 1
        last = epoch == phase.epochs - 1
        if last:
          summary = (self._labnet_summary(phase, labnet_rep) if phase.network == LABNET
                     else self._imgnet_summary(phase, imgnet_rep, bank_rep))
          self.history.append(summary)
          log.info("%d bits %s", self.num_bits, _format_metrics(summary))
          faults.reached("phase_summary")
        if last or (done % every == 0 and time.time() - last_save >= min_gap):
          self._save(done, labnet_rep, imgnet_rep, bank_rep)
          last_save = time.time()
          faults.reached("checkpoint_saved")
        if last:
          self._check_collapse(summary)
    train_out, q, db = self._imgnet_encoding(imgnet_rep)
    # The plan ends with an ImgNet phase, whose summary already scored these codes.
    final_round = [h for h in self.history if h["kind"] == "imgnet_round"][-1]
    metrics = {k: v for k, v in final_round.items()
               if k.startswith(("map", "precision_r", "recall_r", "zero_relevant"))}
    metrics["collapsed"] = any(h.get("collapsed") for h in self.history
                               if h["kind"].endswith("_round"))
    lab_rounds = [h for h in self.history if h["kind"] == "labnet_round"]
    if lab_rounds:
      metrics.update(nh=lab_rounds[-1]["nh"], map_l=lab_rounds[-1]["map_l"])
    metrics["seconds_this_process"] = round(time.time() - start, 2)
    self.checkpointer.close()
    return RunResult(self.num_bits, evaluation.binarize(train_out.hash_logits), q, db, metrics,
                     self.history, self._semantic_sample(labnet_rep, train_out))

  def _semantic_sample(self, labnet_rep, train_out: models.ImgNetOutputs
                       ) -> dict[str, np.ndarray]:
    """Both networks' semantic features on a seeded sample of training points."""
    m = min(SEMANTIC_SAMPLE, self.num_train)
    rng = np.random.default_rng([self.config.seed, self.num_bits, 5])
    index = np.sort(rng.choice(self.num_train, size=m, replace=False))
    labels = self._train_labels[index]
    return {"index": index, "labnet": self.labnet_outputs(labnet_rep, labels).semantic,
            "imgnet": np.asarray(train_out.semantic)[index], "labels": labels}


def metric_key(name: str, policy_index: int, policy: str) -> str:
  """The results key of metric ``name`` (``map``, ``map@K``) under a tie policy: the bare
  name for the first policy of ``eval.ties``, ``<name>_<policy>`` for the others."""
  return name if policy_index == 0 else f"{name}_{policy}"


def metric_columns(eval_config) -> list[tuple[str, str]]:
  """``(column label, results key)`` of the retrieval metrics of ``eval_config``, in table
  order: MAP per tie policy, MAP@top_k per tie policy, P@r≤radius, map_l."""
  ties, k = tuple(eval_config.ties), int(eval_config.top_k)
  names = [("MAP", "map")] + ([(f"MAP@{k}", f"map@{k}")] if k else [])
  columns = [(label + ("" if i == 0 else f" {p}"), metric_key(key, i, p))
             for label, key in names for i, p in enumerate(ties)]
  radius = int(eval_config.radius)
  return columns + [(f"P@r≤{radius}", f"precision_r{radius}"), ("map_l", "map_l")]


def retrieval_metrics(eval_config, q: np.ndarray, db: np.ndarray, data: RetrievalData
                      ) -> tuple[dict[str, Any], evaluation.RetrievalReport]:
  """MAP (and MAP@top_k) of query codes ``q`` against database codes ``db`` under every
  tie policy of ``eval_config``: ``map`` / ``map@K`` for the first policy,
  ``map_<policy>`` / ``map@K_<policy>`` for the others, precision / recall within
  ``eval.radius`` and ``zero_relevant_queries``; and the full report."""
  e, ties = eval_config, tuple(eval_config.ties)
  report = evaluation.evaluate_retrieval(
      q, db, data.query.labels, data.database.labels,
      top_k=int(e.top_k) if e.top_k else (), ties=ties, zero_relevant=e.zero_relevant,
      radius=int(e.radius))
  out: dict[str, Any] = {}
  for i, policy in enumerate(ties):
    out[metric_key("map", i, policy)] = report.map[policy]
    if e.top_k:                      # one cut-off: report it under the configured name
      out[metric_key(f"map@{e.top_k}", i, policy)] = next(iter(report.map_at.values()))[policy]
  out[f"precision_r{report.radius_value}"] = report.radius["precision"]
  out[f"recall_r{report.radius_value}"] = report.radius["recall"]
  out["zero_relevant_queries"] = report.zero_relevant_queries
  return out, report


def _format_metrics(m: dict[str, Any]) -> str:
  parts = []
  for k, v in m.items():
    if isinstance(v, float):
      parts.append(f"{k}={v:.4g}")
    else:
      parts.append(f"{k}={v}")
  return " ".join(parts)
