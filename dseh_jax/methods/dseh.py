"""DSEH (SPEC §3–§5, Algorithm 1): LabNet and ImgNet trained alternately.

    for round r:  LabNet phase against its buffers (N(0, 1) draws at r = 0, ImgNet's
                  (F_v, sign(H_v)) after) → targets (F_l, h' = (sign(H_l) + 1) / 2)
                  → ImgNet phase against those targets.
"""
from __future__ import annotations

import jax
import ml_collections
import numpy as np

from dseh_jax import evaluation, networks
from dseh_jax import train_steps as ts
from dseh_jax.methods import base, dseh_diagnostics
from dseh_jax.methods.base import IMGNET, LABNET, Phase, RunContext, encode_splits
from dseh_jax.methods.dseh_diagnostics import labnet_map, labnet_outputs


def make_plan(config: ml_collections.ConfigDict) -> list[Phase]:
  """LabNet then ImgNet, for every round."""
  lab, img = tuple(config.labnet.epochs_per_round), tuple(config.imgnet.epochs_per_round)
  if len(lab) != len(img) or not lab:
    raise ValueError(f"labnet.epochs_per_round {lab} and imgnet.epochs_per_round {img} "
                     "must list the same (non-zero) number of rounds")
  return base.sequential_plan(
      (r, net, epochs, net == LABNET, net == IMGNET)
      for r, (el, ev) in enumerate(zip(lab, img)) for net, epochs in ((LABNET, el), (IMGNET, ev)))


class DSEH(base.Method):
  name = "dseh"
  networks = (LABNET, IMGNET)
  has_section = False

  def plan(self, config):
    return make_plan(config)

  def create_states(self, config, data, num_bits, keys):
    n = len(data.train)
    return {LABNET: networks.create_labnet_state(config, data.num_classes, num_bits, n, keys[0]),
            IMGNET: networks.create_imgnet_state(config, data.input_shape, num_bits, n, keys[1])}

  def train_step(self, config, data, network):
    if network == LABNET:
      kwargs = {"loss_kwargs": networks.labnet_loss_kwargs(config)}
      step = ts.labnet_train_step
    else:
      kwargs = {"loss_kwargs": networks.imgnet_loss_kwargs(config),
                **self.step_kwargs(config, data, network)}
      step = ts.imgnet_train_step
    return lambda *args, **kw: step(*args, **kwargs, **kw)

  # ------------------------------------------------------------------ hand-offs

  def start_phase(self, run: RunContext, phase: Phase, states):
    """LabNet's buffers (SPEC §3 buffer semantics) or ImgNet's targets (SPEC §4)."""
    labels = run.train_labels
    if phase.network == IMGNET:
      out = run.cache.pop(LABNET, None)
      if out is None:
        out = labnet_outputs(run, states[LABNET], labels)
      targets = (evaluation.binarize(out.codes).astype(np.float32) + 1.0) / 2.0
      return ts.LabNetTargets.grouped(out.semantic, targets, labels)
    if phase.round == 0:
      k_f, k_h = jax.random.split(run.handoff_key)
      n, d = run.num_train, run.config.labnet.semantic_units
      return ts.LabNetBuffers(np.asarray(jax.random.normal(k_f, (n, d))),
                              np.asarray(jax.random.normal(k_h, (n, run.num_bits))), labels)
    out = encode_splits(run, states[IMGNET], pop=True)[0]
    return ts.LabNetBuffers(out.semantic,
                            evaluation.binarize(out.hash_logits).astype(np.float32), labels)

  def handoff_template(self, run: RunContext, phase: Phase):
    n, d, k = run.num_train, run.config.labnet.semantic_units, run.num_bits
    cls = ts.LabNetBuffers if phase.network == LABNET else ts.LabNetTargets
    return cls(np.zeros((n, d), np.float32), np.zeros((n, k), np.float32), run.train_labels)

  # ------------------------------------------------------------------ diagnostics

  def epoch_stats(self, run, phase, states, handoff, epoch):
    if phase.network != LABNET:
      return {}
    codes = evaluation.binarize(np.asarray(handoff.codes[0]))
    stats = {"nh": evaluation.distinct_codes(codes), "bit_balance": evaluation.bit_balance(codes)}
    every = run.config.eval.labnet_map_every
    if every and (epoch + 1) % every == 0:
      stats["map_l"] = labnet_map(run, states[LABNET])
    return stats

  def end_phase(self, run, phase, states, handoff):
    if phase.network == IMGNET:
      return self._imgnet_summary(run, phase, states, handoff)
    out = run.cache[LABNET] = labnet_outputs(run, states[LABNET], run.train_labels)
    codes = evaluation.binarize(out.codes)
    nh = evaluation.distinct_codes(codes)
    return {"kind": "labnet_round", "round": phase.round, "nh": nh,
            "bit_balance": evaluation.bit_balance(codes), "map_l": labnet_map(run, states[LABNET]),
            "dead_semantic_units": int(np.sum(np.all(out.semantic <= 0, axis=0))),
            "collapsed": nh < run.nh_floor(), "nh_floor": run.nh_floor()}

  def _imgnet_summary(self, run, phase, states, handoff):
    """Codes, balance and bit agreement with LabNet's targets; degenerate codes are judged
    after the last round only (LabNet's next ``nh`` shows the damage of an earlier one)."""
    summary = super().end_phase(run, phase, states, handoff)
    codes = evaluation.binarize(encode_splits(run, states[IMGNET])[0].hash_logits)
    agreement = float(np.mean(codes == 2 * np.asarray(handoff.targets[0]) - 1))
    low = agreement < run.config.collapse_min_bit_agreement or summary["collapsed"]
    final = phase == self.plan(run.config)[-1]
    if low and not final:
      base.log.warning("%d bits: ImgNet's bit agreement with LabNet's codes is only %.3f "
                       "(nh %d) after round %d (SPEC §5 hazard)", run.num_bits, agreement,
                       summary["nh"], phase.round)
    return {**summary, "bit_agreement": agreement, "collapsed": low and final}

  def collapse_message(self, run, summary):
    return dseh_diagnostics.collapse_message(run, summary)

  def result_metrics(self, history):
    lab_rounds = [h for h in history if h["kind"] == "labnet_round"]
    return {"nh": lab_rounds[-1]["nh"], "map_l": lab_rounds[-1]["map_l"]} if lab_rounds else {}

  def figure_data(self, run, states, train_out) -> dict[str, np.ndarray]:
    """Both networks' semantic features on a seeded sample of training points (Fig. 5)."""
    m = min(SEMANTIC_SAMPLE, run.num_train)
    rng = np.random.default_rng([run.config.seed, run.num_bits, 5])
    index = np.sort(rng.choice(run.num_train, size=m, replace=False))
    labels = run.train_labels[index]
    return {"index": index, "labnet": labnet_outputs(run, states[LABNET], labels).semantic,
            "imgnet": np.asarray(train_out.semantic)[index], "labels": labels}


SEMANTIC_SAMPLE = 100       # points in the PCA figure of the semantic spaces (SPEC Fig. 5)


METHOD = DSEH()


def configure(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """DSEH's settings are the dataset configs' own (``labnet``, ``imgnet``)."""
  config.method = "dseh"
  return config
