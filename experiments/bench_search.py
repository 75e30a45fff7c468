"""Benchmark: exact Hamming top-k over 1M and 10M packed codes against FAISS IndexBinaryFlat.

    python experiments/bench_search.py                          # 1M and 10M, 64 bits
    python experiments/bench_search.py --database 1000000 --queries 200 --out search.json

For each database size, in the same run: ``dseh_jax.evaluation.hamming_top_k`` and FAISS's
exact binary index (``faiss-cpu``, the ``[faiss]`` extra) on the same uniformly random codes
and queries (seeded), queries/s (best of ``--repeats``, after one warm-up), the memory each
needs beyond the codes (peak RSS growth while searching), and a parity check: the same
distances for every query and rank, and the same items wherever the k-th distance does not
cut a tie group (FAISS's order inside a tie group is its heap's, ours is database order).
Then ``evaluate_retrieval`` (MAP@all, both tie policies) on 2,100 queries × 1,000,000
items with its memory. Prints machine, versions and a table with ratios; writes JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_eval import peak_memory_gb, synthetic_codes  # noqa: E402  pylint: disable=wrong-import-position


def random_packed(rng: np.random.Generator, n: int, bits: int) -> np.ndarray:
  """``[n, ceil(bits / 32)]`` uint32 words of uniform random codes (unused bits zero)."""
  words = rng.integers(0, 2**32, size=(n, -(-bits // 32)), dtype=np.uint64).astype(np.uint32)
  if bits % 32:
    words[:, -1] &= np.uint32((1 << (bits % 32)) - 1)
  return words


def timed(fn, repeats: int):
  """``(best seconds, peak RSS growth GB, result)`` of ``fn()`` after one warm-up call."""
  before = peak_memory_gb()
  result = fn()
  best = np.inf
  for _ in range(repeats):
    t0 = time.perf_counter()
    result = fn()
    best = min(best, time.perf_counter() - t0)
  return best, peak_memory_gb() - before, result


def parity(ours, theirs) -> dict:
  """Distances equal everywhere; items equal outside the last tie group of each query."""
  (oi, od), (ti, td) = ours, theirs
  same_dist = bool(np.array_equal(od, td))
  same_items = True
  for i in range(od.shape[0]):
    inside = od[i] < od[i, -1]                 # strictly nearer than the k-th: no tie cut
    same_items &= set(oi[i, inside].tolist()) == set(ti[i, td[i] < td[i, -1]].tolist())
  return {"distances_equal": same_dist, "items_equal_outside_cut_ties": bool(same_items)}


def search_case(n: int, args, rng) -> dict:
  # pylint: disable=import-outside-toplevel
  from dseh_jax.evaluation import faiss_index, search
  db = random_packed(rng, n, args.bits)
  q = random_packed(rng, args.queries, args.bits)
  t_ours, m_ours, ours = timed(
      lambda: search.hamming_top_k(q, db, args.top_k, num_bits=args.bits), args.repeats)
  index = faiss_index.build_faiss_index(db, args.bits)
  q_bytes = faiss_index.faiss_bytes(q, args.bits)
  t_faiss, m_faiss, (dist, idx) = timed(lambda: index.search(q_bytes, args.top_k),
                                        args.repeats)
  return {"database": n, "queries": args.queries, "top_k": args.top_k,
          "ours_queries_per_s": args.queries / t_ours, "faiss_queries_per_s":
          args.queries / t_faiss, "speedup": t_faiss / t_ours, "ours_extra_gb": m_ours,
          "faiss_extra_gb": m_faiss, "codes_gb": db.nbytes / 2**30,
          **parity(ours, (idx.astype(np.int64), dist.astype(np.int32)))}


def evaluation_case(args, rng) -> dict:
  # pylint: disable=import-outside-toplevel
  from dseh_jax import evaluation
  q, db, ql, dl = synthetic_codes(args.eval_queries, args.eval_database, 21, args.bits,
                                  args.seed)
  qp, dp = evaluation.pack_codes(q), evaluation.pack_codes(db)
  del q, db
  before = peak_memory_gb()
  t0 = time.perf_counter()
  report = evaluation.evaluate_retrieval(qp, dp, ql, dl, num_bits=args.bits,
                                         ties=("stable", "tie_aware"), precision_at_n=())
  return {"queries": args.eval_queries, "database": args.eval_database,
          "seconds": time.perf_counter() - t0, "extra_gb": peak_memory_gb() - before,
          "map_stable": report.map["stable"], "map_tie_aware": report.map["tie_aware"]}


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--database", default="1000000,10000000", help="database sizes")
  p.add_argument("--queries", type=int, default=1000)
  p.add_argument("--bits", type=int, default=64)
  p.add_argument("--top_k", type=int, default=100)
  p.add_argument("--repeats", type=int, default=3)
  p.add_argument("--eval_queries", type=int, default=2100)
  p.add_argument("--eval_database", type=int, default=1000000,
                 help="database of the evaluate_retrieval case (0: skip it)")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--out", default="", help="JSON file for the results")
  args = p.parse_args(argv)
  import faiss  # pylint: disable=import-outside-toplevel
  import jax  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(args.seed)
  # The evaluation first: its memory is the growth of the peak RSS, a high-water mark.
  ev = evaluation_case(args, rng) if args.eval_database else None
  rows = [search_case(int(n), args, rng) for n in args.database.split(",")]
  machine = (f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores; "
             f"python {platform.python_version()}, numpy {np.__version__}, jax "
             f"{jax.__version__} ({jax.default_backend()}), faiss {faiss.__version__} "
             f"({faiss.omp_get_max_threads()} threads)")
  print(f"\nExact Hamming top-{args.top_k}, {args.bits}-bit codes, {args.queries} queries; "
        f"{machine}\n")
  print("| database | dseh_jax q/s | FAISS IndexBinaryFlat q/s | ratio | extra memory "
        "ours / FAISS (GB) | same distances | same items |")
  print("|---|---|---|---|---|---|---|")
  for r in rows:
    print(f"| {r['database']:,} | {r['ours_queries_per_s']:.0f} | "
          f"{r['faiss_queries_per_s']:.0f} | {r['speedup']:.2f}× | "
          f"{r['ours_extra_gb']:.2f} / {r['faiss_extra_gb']:.2f} | "
          f"{r['distances_equal']} | {r['items_equal_outside_cut_ties']} |")
  if ev:
    print(f"\nevaluate_retrieval, {ev['queries']:,} × {ev['database']:,}: {ev['seconds']:.1f} "
          f"s, peak memory growth {ev['extra_gb']:.2f} GB, MAP stable {ev['map_stable']:.4f}"
          f" / tie-aware {ev['map_tie_aware']:.4f}")
  if args.out:
    with open(args.out, "w", encoding="utf-8") as f:
      json.dump({"machine": machine, "search": rows, "evaluation": ev}, f, indent=1)
  return 0


if __name__ == "__main__":
  sys.exit(main())
