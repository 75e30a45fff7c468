"""The training-curve figure is written, atomically, from a history."""
from dseh_jax.plots import plot_history


def _history():
  h = []
  for r in range(2):
    for e in range(3):
      h.append({"kind": "epoch", "network": "labnet", "round": r, "epoch": e,
                "loss": 1.0 / (e + 1), "nh": 10 + e, "map_l": 0.5 + 0.1 * e})
    h.append({"kind": "labnet_round", "round": r, "nh": 12, "map_l": 0.7})
    for e in range(4):
      h.append({"kind": "epoch", "network": "imgnet", "round": r, "epoch": e,
                "loss": 2.0 / (e + 1), "bit_agreement": 0.6 + 0.05 * e})
    h.append({"kind": "imgnet_round", "round": r, "map": 0.4 + 0.1 * r})
  return h


def test_plot_history_writes_a_png(tmp_path):
  path = tmp_path / "sub" / "history.png"
  plot_history(_history(), str(path), title="t")
  data = path.read_bytes()
  assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
  assert [p.name for p in path.parent.iterdir()] == ["history.png"]
