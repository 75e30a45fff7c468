"""What a hashing method gives the generic trainer (:mod:`dseh_jax.trainer`).

A method is a plan of phases, the networks it trains (each a section of the config:
``config.labnet``, ``config.imgnet``), a pmap-able train step per network, and the
*hand-off* each phase trains against: a small pytree built at the phase's start (DSEH's
LabNet buffers or LabNet's targets, a baseline's bank of outputs, CNNH's stage-1 codes).
The trainer runs any plan (epochs, checkpoints, exact resume, logging, evaluation) without
knowing the method; :class:`Method` holds the defaults of a one-network method.
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Any, Callable, Iterable, Optional

import jax
import ml_collections
import numpy as np

from dseh_jax import evaluation, networks
from dseh_jax import train_steps as ts

LABNET, IMGNET = networks.LABNET, networks.IMGNET
log = logging.getLogger("dseh_jax")


@dataclasses.dataclass(frozen=True)
class Phase:
  """``epochs`` epochs of ``network`` in round ``round``; ``first_epoch`` counts over the
  whole run. ``evolving``: the hand-off changes during the phase (so checkpoints keep it);
  ``inputs``: the batches carry the training inputs (LabNet reads only labels)."""
  round: int
  network: str
  epochs: int
  first_epoch: int
  evolving: bool = False
  inputs: bool = True


def sequential_plan(phases: Iterable[tuple[int, str, int, bool, bool]]) -> list[Phase]:
  """Phases from ``(round, network, epochs, evolving, inputs)`` in order."""
  plan, first = [], 0
  for r, network, epochs, evolving, inputs in phases:
    plan.append(Phase(r, network, int(epochs), first, evolving, inputs))
    first += int(epochs)
  return plan


@dataclasses.dataclass
class RunContext:
  """The trainer's view given to a method: the run's config and data, the bit length,
  forward passes of each network over whole arrays, and a cache for encodings that one
  phase's end and the next phase's start share."""
  config: ml_collections.ConfigDict
  data: Any                                  # dseh_jax.data.splits.RetrievalData
  num_bits: int
  handoff_key: jax.Array                     # draws of a hand-off (DSEH's first buffers)
  predict: Callable[..., Any]     # (network, replicated state, inputs, *, final=False)
  history: list[dict[str, Any]]
  encoder: str = IMGNET                      # the network whose codes are the run's
  cache: dict[str, Any] = dataclasses.field(default_factory=dict)

  @property
  def num_train(self) -> int:
    return len(self.data.train)

  @property
  def train_labels(self) -> np.ndarray:
    return self.data.train.labels.astype(np.float32)

  def nh_floor(self) -> int:
    """Fewest distinct training codes a healthy phase ends with (``collapse_nh_fraction``
    of the distinct training label sets, at least 2)."""
    distinct = int(np.unique(self.data.train.labels, axis=0).shape[0])
    return max(2, int(self.config.collapse_nh_fraction * distinct))


class Method:
  """Defaults of a one-network method: ``imgnet`` (``config.imgnet``: backbone, optimiser,
  batch size; ``sum(epochs_per_round)`` epochs in one phase) trained against a hand-off
  built at the phase's start. Subclasses give :attr:`name`, :meth:`objective`,
  :meth:`start_phase` and :meth:`handoff_template`."""
  name = ""
  networks: tuple[str, ...] = (IMGNET,)
  encoder = IMGNET                     # whose ``sign(hash_logits)`` are the codes
  has_section = True                   # settings in ``config.<name>`` (DSEH: its networks')
  # Fields of ``config.<name>`` that take one of some strings (``{"centers": ("hadamard",
  # "random")}``); every other field is a number ≥ 0 (``configs.validation``).
  choices: dict[str, tuple[str, ...]] = {}

  def plan(self, config: ml_collections.ConfigDict) -> list[Phase]:
    epochs = sum(int(e) for e in config.imgnet.epochs_per_round)
    return sequential_plan([(0, IMGNET, epochs, self.evolving, True)])

  evolving = False                     # does the one phase's hand-off change per step?

  def create_states(self, config, data, num_bits: int, keys) -> dict[str, ts.TrainState]:
    """``keys``: three keys; network ``i`` of ``("labnet", "imgnet")`` takes ``keys[i]``."""
    return {IMGNET: networks.create_imgnet_state(config, data.input_shape, num_bits,
                                                 len(data.train), keys[1])}

  def objective(self, config: ml_collections.ConfigDict, network: str) -> Callable:
    raise NotImplementedError

  def step_kwargs(self, config, data, network: str) -> dict[str, Any]:
    """Static keyword arguments of the step (image augmentation for image inputs)."""
    images = len(data.input_shape) == 3
    return {"flip": bool(config.imgnet.random_flip) and images,
            "max_shift": int(config.imgnet.random_shift) if images else 0}

  def train_step(self, config, data, network: str) -> Callable:
    """The un-pmapped step of ``network`` with its static arguments bound."""
    step = ts.make_train_step(self.objective(config, network))
    kwargs = self.step_kwargs(config, data, network)
    return lambda *args, **kw: step(*args, **kwargs, **kw)

  def start_phase(self, run: RunContext, phase: Phase, states: dict[str, Any]) -> Any:
    raise NotImplementedError

  def handoff_template(self, run: RunContext, phase: Phase) -> Any:
    """A hand-off of the right shapes, to restore a checkpoint into."""
    raise NotImplementedError

  def epoch_stats(self, run: RunContext, phase: Phase, states, handoff, epoch: int) -> dict:
    return {}

  def end_phase(self, run: RunContext, phase: Phase, states, handoff) -> dict[str, Any]:
    """The phase's summary: ``nh`` and bit balance of the encoder's training codes;
    ``collapsed`` when ``nh`` is below :meth:`RunContext.nh_floor`."""
    codes = evaluation.binarize(encode_splits(run, states[self.encoder])[0].hash_logits)
    nh = evaluation.distinct_codes(codes)
    return {"kind": f"{phase.network}_round", "round": phase.round, "nh": nh,
            "bit_balance": evaluation.bit_balance(codes), "nh_floor": run.nh_floor(),
            "collapsed": nh < run.nh_floor()}

  def collapse_message(self, run: RunContext, summary: dict[str, Any]) -> tuple[str, str]:
    """``(what happened, what to try)`` for a collapsed summary."""
    return (f"{self.name}'s codes collapsed at {run.num_bits} bits: nh = {summary['nh']} "
            f"distinct training codes (floor {summary['nh_floor']})",
            "lower imgnet.optimizer.lr, or raise imgnet.epochs_per_round")

  def result_metrics(self, history: list[dict[str, Any]]) -> dict[str, Any]:
    """Metrics of the final results besides retrieval (DSEH: LabNet's nh and map_l)."""
    rounds = [h for h in history if h["kind"].endswith("_round")]
    return {"nh": rounds[-1]["nh"]} if rounds else {}

  def figure_data(self, run: RunContext, states, train_out) -> dict[str, np.ndarray]:
    return {}


def encode_splits(run: RunContext, encoder_rep, *, pop: bool = False):
  """``(train outputs, query codes, database codes)`` of the encoder as it is now, cached
  in ``run.cache["encoder"]`` until the encoder trains again (the trainer clears it);
  after the last phase (``run.cache["final"]``) those of the final codes."""
  cached = run.cache.pop("encoder", None) if pop else run.cache.get("encoder")
  if cached is not None:
    return cached
  network, final = run.encoder, bool(run.cache.get("final"))
  out = run.predict(network, encoder_rep, run.data.train.inputs, final=final)
  q = run.predict(network, encoder_rep, run.data.query.inputs, final=final).hash_logits
  db = run.predict(network, encoder_rep, run.data.database.inputs, final=final).hash_logits
  encoding = (out, evaluation.binarize(q), evaluation.binarize(db))
  if not pop:
    run.cache["encoder"] = encoding
  return encoding


def initial_codes(run: RunContext, width: Optional[int] = None) -> np.ndarray:
  """``N(0, 1)`` draws ``[n, width or K]`` from the run's hand-off key."""
  return np.asarray(jax.random.normal(run.handoff_key, (run.num_train,
                                                        width or run.num_bits)))


def configure_section(config: ml_collections.ConfigDict, name: str,
                      settings: dict[str, Any]) -> ml_collections.ConfigDict:
  """``config`` for method ``name``: ``config.method`` and its section ``config.<name>``."""
  config.method = name
  config[name] = ml_collections.ConfigDict(settings)
  return config
