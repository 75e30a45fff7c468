"""Exact Hamming top-k search of query codes against database codes (SPEC §6).

    python experiments/search.py --query codes/query.npz --database codes/database.npz \\
        --top_k 100 --out results/top100.npz [--train codes/train.npz] [--allow_overlap] \\
        [--allow_mixed_runs] [--faiss_index results/database.faissbin]

Reads two code files (``experiments/encode.py``), refuses files of different code lengths,
files of different runs (``config_hash``; a warning with ``--allow_mixed_runs`` or for older
files without one), queries that are also database (or, with ``--train``, training) items
unless ``--allow_overlap``, and writes the top-k database ids and distances of every query,
nearest first, ties in database order (``dseh_jax.evaluation.search``). ``--faiss_index``
also exports the database codes as a FAISS binary index (optional extra ``faiss-cpu``) and
checks that FAISS finds the same neighbours.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time


def parse_args(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--query", required=True, help="query code file (.npz)")
  p.add_argument("--database", required=True, help="database code file (.npz)")
  p.add_argument("--train", default="", help="training code file, to check query ∩ train")
  p.add_argument("--top_k", type=int, default=100)
  p.add_argument("--out", required=True, help="result file (.npz)")
  p.add_argument("--allow_overlap", action="store_true",
                 help="accept queries that are also database or training items (report it)")
  p.add_argument("--allow_mixed_runs", action="store_true",
                 help="accept code files of different runs (config_hash); warn instead")
  p.add_argument("--chunk_size", type=int, default=0,
                 help="queries per block (default: from a 256 MiB memory budget)")
  p.add_argument("--faiss_index", default="",
                 help="also write the database as a FAISS IndexBinaryFlat here and check it")
  p.add_argument("--faiss_pad", action="store_true",
                 help="pad codes to a multiple of 8 bits for FAISS (distances unchanged)")
  return p.parse_args(argv)


def run(args) -> int:
  """The search; raises ``ValueError`` on bad input or leakage."""
  # pylint: disable=import-outside-toplevel
  from dseh_jax.evaluation.code_files import load_code_file
  from dseh_jax.evaluation.leakage import check_protocol, overlap_report
  from dseh_jax.evaluation.search import (check_same_run, save_search_result,
                                          search_code_files)

  query, database = load_code_file(args.query), load_code_file(args.database)
  train = load_code_file(args.train) if args.train else None
  if query.num_bits != database.num_bits:
    raise ValueError(f"{args.query} holds {query.num_bits}-bit codes, {args.database} "
                     f"{database.num_bits}-bit codes; encode both at the same --bits")
  run_warnings = check_same_run(query.meta, args.query, database.meta, args.database,
                                args.allow_mixed_runs)
  if train is not None:
    run_warnings += check_same_run(query.meta, args.query, train.meta, args.train,
                                   args.allow_mixed_runs)
  for w in run_warnings:
    print(f"warning: {w}", file=sys.stderr)
  report = overlap_report(query.ids, database.ids, None if train is None else train.ids)
  print("overlaps by id:", json.dumps(report.to_dict()))
  check_protocol(report, allow_query_in_database=args.allow_overlap,
                 allow_query_in_train=args.allow_overlap,
                 where=f"search of {args.query} against {args.database}")
  meta = {"query_file": args.query, "database_file": args.database,
          "train_file": args.train, "overlaps": report.to_dict(),
          "allow_overlap": bool(args.allow_overlap),
          "allow_mixed_runs": bool(args.allow_mixed_runs), "run_warnings": run_warnings,
          "query_meta": dict(query.meta),
          "database_meta": dict(database.meta)}
  t0 = time.time()
  result = search_code_files(query, database, args.top_k, chunk_size=args.chunk_size or None,
                             meta=meta)
  seconds = time.time() - t0
  print(f"searched {len(query)} queries against {len(database)} codes of "
        f"{query.num_bits} bits: top {result.top_k} in {seconds:.2f} s")
  status = 0
  if args.faiss_index:
    from dseh_jax.evaluation import faiss_index
    index = faiss_index.export_faiss_index(database.packed, database.num_bits,
                                           args.faiss_index, pad=args.faiss_pad)
    parity = faiss_index.check_faiss_parity(index, query.packed, database.packed,
                                            query.num_bits, args.top_k, pad=args.faiss_pad)
    print(f"FAISS index -> {args.faiss_index}; parity with the exact search: "
          f"{'OK' if parity.ok else 'MISMATCH'} ({parity.distance_mismatches} distance and "
          f"{parity.id_mismatches} id mismatches over {parity.num_queries} queries)")
    result = dataclasses.replace(result, meta={**result.meta, "faiss": {
        "index": args.faiss_index, "ok": parity.ok,
        "distance_mismatches": parity.distance_mismatches,
        "id_mismatches": parity.id_mismatches}})
    status = 0 if parity.ok else 1
  save_search_result(args.out, result)
  print(f"top-{result.top_k} ids and distances -> {args.out}")
  return status


def main(argv=None) -> int:
  args = parse_args(argv)
  try:
    return run(args)
  except (ValueError, ImportError) as e:   # bad input, mixed runs, leakage, missing extra
    print(f"error: {e}", file=sys.stderr)
    return 2


if __name__ == "__main__":
  sys.exit(main())
