"""SDH: supervised discrete hashing (Shen, Shen, Liu & Shen, CVPR 2015; SPEC §8).

Features: uncentred anchor RBF features ``Φ = φ(X) [n, m]`` (:mod:`kernel`; ``m = 1000``
anchors, the usual SDH setting). With multi-hot labels ``Y [n, c]`` and codes
``B ∈ {-1, +1}^{n×r}``, SDH minimises

  ``O(B, W, P) = ‖Y - B W‖² + λ‖W‖² + ν‖B - Φ P‖² + νδ‖P‖²``   (Frobenius norms)

(``W [r, c]`` a linear classifier on the codes, ``P [m, r]`` the hash function; the ``νδ``
term is the ridge the paper's F-step uses, written into ``O`` so every step is an exact
block minimisation and ``O`` never increases). From random ``B`` (drawn from the key):

* F-step: ``P = (ΦᵀΦ + δI)⁻¹ Φᵀ B``;
* G-step: ``W = (BᵀB + λI)⁻¹ Bᵀ Y``;
* B-step, discrete cyclic coordinate descent (DCC): with ``Q = Y Wᵀ + ν Φ P`` the B-part
  is ``‖BW‖² - 2 tr(BᵀQ) + const``; for column ``k`` (``z = B[:, k]``, ``w = W[k]``,
  ``B'``/``W'`` the rest) it is ``2 zᵀ(B'W'w - q_k) + const``, minimised by
  ``z = sign(q_k - B'W'w)`` with ``B'W'w = B W w - z ‖w‖²``. Columns are swept in turn.

Defaults from the paper: ``λ = 1``, ``ν = 1e-5``, 5 outer iterations; 3 DCC sweeps per
B-step and ``δ = 0.01`` are our choices. Codes: ``sign(φ(x) P)``.
"""
from __future__ import annotations

from typing import Any, Optional

import jax
import numpy as np
import scipy.linalg

from dseh_jax.baselines import encoder as encoder_lib
from dseh_jax.baselines import kernel

DEFAULT_NUM_ANCHORS = 1000
DEFAULT_LAM = 1.0
DEFAULT_NU = 1e-5
DEFAULT_DELTA = 1e-2
DEFAULT_ITERATIONS = 5
DEFAULT_SWEEPS = 3


def sdh_objective(b: Any, w: Any, p: Any, phi: Any, y: Any, lam: float = DEFAULT_LAM,
                  nu: float = DEFAULT_NU, delta: float = DEFAULT_DELTA) -> float:
  """``‖Y - BW‖² + λ‖W‖² + ν‖B - ΦP‖² + νδ‖P‖²`` for ``b [n, r]``, ``w [r, c]``,
  ``p [m, r]``, ``phi [n, m]``, ``y [n, c]``."""
  b, w, p, phi, y = (np.asarray(a, np.float64) for a in (b, w, p, phi, y))
  return float(np.sum((y - b @ w) ** 2) + lam * np.sum(w ** 2)
               + nu * np.sum((b - phi @ p) ** 2) + nu * delta * np.sum(p ** 2))


def f_step(phi: np.ndarray, b: np.ndarray, delta: float = DEFAULT_DELTA) -> np.ndarray:
  """``P = (ΦᵀΦ + δI)⁻¹ Φᵀ B``, ``[m, r]``."""
  gram = phi.T @ phi
  gram[np.diag_indices_from(gram)] += delta
  return scipy.linalg.solve(gram, phi.T @ b, assume_a="pos")


def g_step(b: np.ndarray, y: np.ndarray, lam: float = DEFAULT_LAM) -> np.ndarray:
  """``W = (BᵀB + λI)⁻¹ Bᵀ Y``, ``[r, c]``."""
  gram = b.T @ b
  gram[np.diag_indices_from(gram)] += lam
  return scipy.linalg.solve(gram, b.T @ y, assume_a="pos")


def dcc_bit(b: np.ndarray, w: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
  """Updates column ``k`` of float ``b [n, r]`` in place to ``sign(q_k - B'W'w_k)``
  (``q = YWᵀ + νΦP``, ``[n, r]``); returns ``b``."""
  wk = w[k]
  rest = b @ (w @ wk) - b[:, k] * (wk @ wk)                  # B' W' w_k,  [n]
  b[:, k] = np.where(q[:, k] - rest >= 0, 1.0, -1.0)
  return b


def b_step(b: np.ndarray, w: np.ndarray, q: np.ndarray, sweeps: int = DEFAULT_SWEEPS,
           ) -> np.ndarray:
  """``sweeps`` DCC passes over the columns of ``b`` (in place); returns ``b``."""
  for _ in range(int(sweeps)):
    for k in range(b.shape[1]):
      dcc_bit(b, w, q, k)
  return b


def sdh_optimize(phi: Any, y: Any, b: Any, lam: float = DEFAULT_LAM, nu: float = DEFAULT_NU,
                 delta: float = DEFAULT_DELTA, iterations: int = DEFAULT_ITERATIONS,
                 sweeps: int = DEFAULT_SWEEPS,
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  """Alternating SDH from initial codes ``b [n, r]``.

  Starts with an F-step, then ``iterations`` rounds of G-, B- and F-steps. Returns
  ``(B [n, r], W [r, c], P [m, r], objectives [1 + 3·iterations])``: ``O`` after the first
  F-step and after every later step (``O`` needs a ``W``; the first entry uses
  ``W = g_step(B)``, which the first G-step then reproduces).
  """
  phi, y = np.asarray(phi, np.float64), np.asarray(y, np.float64)
  b = np.array(b, np.float64)
  p = f_step(phi, b, delta)
  w = g_step(b, y, lam)
  history = [sdh_objective(b, w, p, phi, y, lam, nu, delta)]
  for _ in range(int(iterations)):
    w = g_step(b, y, lam)
    history.append(sdh_objective(b, w, p, phi, y, lam, nu, delta))
    b_step(b, w, y @ w.T + nu * (phi @ p), sweeps)
    history.append(sdh_objective(b, w, p, phi, y, lam, nu, delta))
    p = f_step(phi, b, delta)
    history.append(sdh_objective(b, w, p, phi, y, lam, nu, delta))
  return b, w, p, np.asarray(history)


def fit(x_train: Any, y_train: Any, bits: int, key: encoder_lib.KeyLike, *,
        num_anchors: int = DEFAULT_NUM_ANCHORS, sigma: Optional[float] = None,
        lam: float = DEFAULT_LAM, nu: float = DEFAULT_NU, delta: float = DEFAULT_DELTA,
        iterations: int = DEFAULT_ITERATIONS, sweeps: int = DEFAULT_SWEEPS,
        ) -> kernel.KernelHashEncoder:
  """SDH encoder of ``bits`` bits from ``x_train [n, d]`` and multi-hot ``y_train [n, c]``.

  ``key`` (jax key or int seed) draws the anchors and the initial codes; ``sigma=None`` is
  the mean training-to-anchor distance.
  """
  x = encoder_lib.check_features(x_train, "x_train")
  y = kernel.check_labels(y_train, x.shape[0])
  bits = encoder_lib.check_bits(bits)
  anchor_key, init_key = jax.random.split(encoder_lib.as_key(key))
  anchors, sigma, phi = kernel.anchor_features(x, anchor_key, num_anchors, sigma)
  b0 = np.where(np.asarray(jax.random.bernoulli(init_key, 0.5, (x.shape[0], bits))),
                1.0, -1.0)
  _, _, p, _ = sdh_optimize(phi, y, b0, lam, nu, delta, iterations, sweeps)
  return kernel.KernelHashEncoder(anchors=anchors, sigma=sigma, projection=p, name="sdh")
