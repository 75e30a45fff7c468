"""One experiment in a workdir: a method at every code length of a config, with its results.

:func:`train_and_evaluate` checks everything first (:func:`prepare`), locks the workdir,
claims it for one run identity (``run.json``: training config + data fingerprint;
:mod:`dseh_jax.run_identity`), trains each missing bit length with
:class:`dseh_jax.trainer.Trainer` (resuming an interrupted one), re-evaluates finished
lengths whose ``eval`` settings changed, and merges every length's entry into
``results.json`` next to its ``codes.npz``, history and figures.
"""
from __future__ import annotations

import contextlib
import glob
import json
import logging
import os
import platform
import time
from typing import Any

import jax
import ml_collections
import numpy as np

from dseh_jax import distributed, evaluation, faults, methods, plots, run_identity
from dseh_jax import workdir_lock
from dseh_jax.atomic_io import atomic_write, jsonable, write_json
from dseh_jax.checkpointing import RunCheckpointer
from dseh_jax.configs import validation
from dseh_jax.data import image_check
from dseh_jax.data.splits import RetrievalData
from dseh_jax.evaluation import curves_plot, leakage
from dseh_jax.networks import use_weights_mean
from dseh_jax.run_metrics import retrieval_metrics
from dseh_jax.trainer import RunResult, Trainer

log = logging.getLogger("dseh_jax")


def save_codes(path: str, result: RunResult, data: RetrievalData) -> None:
  """Writes the codes and ids of every split to ``path`` (.npz), atomically."""
  atomic_write(path, lambda f: np.savez(
      f, train_codes=result.train_codes, query_codes=result.query_codes,
      database_codes=result.database_codes, train_ids=data.train.ids,
      query_ids=data.query.ids, database_ids=data.database.ids))


def versions() -> dict[str, str]:
  import flax, optax, orbax.checkpoint  # pylint: disable=import-outside-toplevel,multiple-imports
  return {"python": platform.python_version(), "jax": jax.__version__,
          "jaxlib": jax.lib.__version__ if hasattr(jax.lib, "__version__") else "",
          "flax": flax.__version__, "optax": optax.__version__,
          "orbax-checkpoint": orbax.checkpoint.__version__, "numpy": np.__version__,
          "devices": f"{jax.local_device_count()} x {jax.devices()[0].platform}",
          "processes": jax.process_count(), "global_devices": jax.device_count()}


def write_figures(bit_dir: str, report: evaluation.RetrievalReport,
                  semantic: dict[str, np.ndarray], dataset: str, num_bits: int,
                  method: str = "DSEH") -> None:
  """Writes ``curves.json`` (the full report), the PR and P@N curves (SPEC Figs. 3–4, with
  JSON/CSV next to each PNG) and, when ``semantic`` is given, ``semantic.npz`` and the PCA
  of both semantic spaces (Fig. 5) into ``bit_dir``."""
  write_json(f"{bit_dir}/curves.json", report.to_dict())
  curves_plot.plot_pr_curves({method: report}, f"{bit_dir}/pr_curve.png",
                             curves_plot.nice_title(dataset, num_bits, "precision-recall"))
  if report.precision_at_n:
    curves_plot.plot_precision_at_n(
        {method: report}, f"{bit_dir}/precision_at_n.png",
        curves_plot.nice_title(dataset, num_bits, "precision@N"), policy=report.ties[0])
  if semantic:
    atomic_write(f"{bit_dir}/semantic.npz", lambda f: np.savez(
        f, index=semantic["index"], labnet_features=semantic["labnet"],
        imgnet_features=semantic["imgnet"], labels=semantic["labels"]))
    curves_plot.plot_semantic_pca(semantic["labnet"], semantic["imgnet"],
                                  f"{bit_dir}/semantic_pca.png", labels=semantic["labels"],
                                  title=curves_plot.nice_title(dataset, num_bits,
                                                               "semantic features (PCA)"))


def check_leakage(config: ml_collections.ConfigDict, data: RetrievalData) -> dict[str, Any]:
  """The overlap of the query split with the database and train splits, by id; raises
  unless ``config.eval`` allows the overlap found (SPEC §6)."""
  report = leakage.overlap_report(data.query.ids, data.database.ids, data.train.ids)
  leakage.check_protocol(report,
                         allow_query_in_database=bool(config.eval.allow_query_in_database),
                         allow_query_in_train=bool(config.eval.allow_query_in_train),
                         where=f"dataset {data.name!r}")
  return report.to_dict()


def prepare(config: ml_collections.ConfigDict, data: RetrievalData, *,
            check_images: bool = True, progress: bool = True) -> RetrievalData:
  """Checks everything that can be checked before training and returns the data to train
  on: every config field (:mod:`dseh_jax.configs.validation`), every image header
  (``data.check_images``; :mod:`dseh_jax.data.image_check`) and the config against the
  data. Raises ``ConfigError`` / ``UnreadableImagesError`` with one line per problem."""
  validation.validate_config(config)
  if check_images:
    data = image_check.check_images(data, config.data.get("check_images", "fail"),
                                    progress=progress)
  validation.validate_against_data(config, data.input_shape, len(data.train), data.name)
  return data


def _claim_workdir(workdir: str, identity: dict[str, Any]) -> None:
  """Writes ``workdir/run.json`` (the run identity) on the first run; later runs must
  match it (:func:`dseh_jax.run_identity.check_same_run`)."""
  path = os.path.join(workdir, RUN_FILE)
  if os.path.exists(path):
    with open(path) as f:
      stored = json.load(f)
    run_identity.check_same_run(stored, identity, path)
    return
  results_path = os.path.join(workdir, "results.json")
  if os.path.exists(results_path):               # a workdir of an older version
    with open(results_path) as f:
      old = json.load(f)
    run_identity.check_same_run(
        {"training_config": run_identity.training_view(old.get("config", {}))}, identity,
        results_path)
  for ckpt_dir in sorted(glob.glob(os.path.join(workdir, "bits*", "checkpoints"))):
    checkpointer = RunCheckpointer(ckpt_dir)          # run.json lost, or an older version
    found = checkpointer.latest_intact_meta()
    checkpointer.close()
    if found is not None:
      step, meta = found
      run_identity.check_same_run(
          run_identity.identity(meta["config"], meta.get("data_fingerprint")), identity,
          f"{ckpt_dir}/{step}")
  distributed.barrier(f"claim {path}")          # every process has read what was there
  if distributed.is_primary():
    write_json(path, identity)


def _load_results(workdir: str) -> dict[str, Any]:
  path = os.path.join(workdir, "results.json")
  if not os.path.exists(path):
    return {}
  with open(path) as f:
    return json.load(f)


def _reevaluate(config, data: RetrievalData, bit_dir: str, entry: dict[str, Any]
                ) -> dict[str, Any]:
  """``entry`` with its retrieval metrics recomputed from ``bit_dir/codes.npz`` under the
  current ``config.eval`` (evaluation fields may change between runs of one workdir)."""
  with np.load(f"{bit_dir}/codes.npz") as codes:
    q, db = codes["query_codes"], codes["database_codes"]
  metrics, report = retrieval_metrics(config.eval, q, db, data)
  if distributed.is_primary():
    write_json(f"{bit_dir}/curves.json", report.to_dict())
  kept = {k: v for k, v in entry.items() if k == "map_l"
          or not k.startswith(("map", "precision_r", "recall_r", "zero_relevant"))}
  return {**kept, **metrics}


RUN_FILE = "run.json"


def train_and_evaluate(config: ml_collections.ConfigDict, data: RetrievalData, workdir: str,
                       *, progress: bool = True, check_images: bool = True
                       ) -> dict[str, Any]:
  """Trains ``config.method`` at every length in ``config.bits``; writes ``workdir/results.json``.

  Everything checkable is checked first (:func:`prepare`; ``check_images=False`` when the
  caller already did). The workdir is locked for the run and holds one run identity
  (``run.json``: training config + data fingerprint); a different one is refused, naming
  the fields or the data that differ. Each length has its own folder ``workdir/bits{K}``
  with checkpoints, ``codes.npz`` and ``history.json``; a finished length is not trained
  again (re-evaluated when ``config.eval`` changed), an interrupted one resumes, and the
  entries of lengths not asked for this time stay in ``results.json``.
  """
  data = prepare(config, data, check_images=check_images, progress=progress)
  overlaps = check_leakage(config, data)
  data = use_weights_mean(config, data)
  primary = distributed.is_primary()
  with workdir_lock.workdir_lock(workdir) if primary else contextlib.nullcontext():
    fingerprint = run_identity.data_fingerprint(data)
    config_json = json.loads(config.to_json())
    _claim_workdir(workdir, run_identity.identity(config_json, fingerprint))
    results = {"config": config_json, "seed": config.seed, "data_fingerprint": fingerprint,
               "dataset": {"name": data.name, "train": len(data.train),
                           "query": len(data.query), "database": len(data.database),
                           "classes": data.num_classes, "overlaps": overlaps,
                           "loader_stats": jsonable(getattr(data, "stats", {}) or {})},
               "versions": versions(), "bits": _load_results(workdir).get("bits", {})}
    for num_bits in config.bits:
      _train_one_length(config, data, workdir, num_bits, results, fingerprint, progress)
  return results


def _train_one_length(config, data: RetrievalData, workdir: str, num_bits: int,
                      results: dict[str, Any], fingerprint: str, progress: bool) -> None:
  """Trains, re-evaluates or skips one bit length; merges its entry into ``results``."""
  results_path = os.path.join(workdir, "results.json")
  bit_dir = os.path.join(workdir, f"bits{num_bits}")
  entry = results["bits"].get(str(num_bits))
  if entry is not None and os.path.exists(f"{bit_dir}/codes.npz"):
    if entry.get("eval") == run_identity.evaluation_view(results["config"]):
      log.info("%d bits: already done, skipping", num_bits)
      return
    log.info("%d bits: already trained; re-evaluating under the new eval settings", num_bits)
    entry = _reevaluate(config, data, bit_dir, entry)
  else:
    t0 = time.time()
    trainer = Trainer(config, data, num_bits, bit_dir, progress=progress,
                      fingerprint=fingerprint)
    label = methods.LABELS[config.get("method", "dseh")]
    result = trainer.run()
    if distributed.is_primary():                 # the other processes hold the same codes
      save_codes(f"{bit_dir}/codes.npz", result, data)
      faults.reached("codes_written")
      write_json(f"{bit_dir}/history.json", result.history)
      plots.plot_history(result.history, f"{bit_dir}/history.png",
                         title=f"{label} on {data.name}, {num_bits} bits")
      report = trainer.last_report() or retrieval_metrics(   # None after a resume past
          config.eval, result.query_codes, result.database_codes, data)[1]  # the last eval
      write_figures(bit_dir, report, result.semantic, data.name, num_bits, label)
    entry = {**result.metrics, "wall_seconds": round(time.time() - t0, 2)}
    if result.metrics.get("zero_relevant_queries"):
      log.warning("%d bits: %d queries have no relevant database item (eval.zero_relevant"
                  "=%s)", num_bits, result.metrics["zero_relevant_queries"],
                  config.eval.zero_relevant)
  entry["eval"] = run_identity.evaluation_view(results["config"])
  results["bits"][str(num_bits)] = entry
  results["wall_seconds_total"] = round(
      sum(r.get("wall_seconds", 0.0) for r in results["bits"].values()), 2)
  if distributed.is_primary():
    write_json(results_path, results)
    faults.reached("results_written")
  distributed.barrier(f"results {results_path} {num_bits}")
