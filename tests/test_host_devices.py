"""dseh_jax.host_devices: the XLA flag of simulated CPU devices, set before JAX starts."""
from dseh_jax.host_devices import simulate_cpu_devices


def test_simulate_cpu_devices_appends_the_flag_once_asked(monkeypatch):
  monkeypatch.setenv("XLA_FLAGS", "--xla_dump_to=dumps")
  simulate_cpu_devices(0)
  import os  # pylint: disable=import-outside-toplevel
  assert os.environ["XLA_FLAGS"] == "--xla_dump_to=dumps"
  simulate_cpu_devices(3)
  assert os.environ["XLA_FLAGS"] == ("--xla_dump_to=dumps "
                                     "--xla_force_host_platform_device_count=3")
  monkeypatch.delenv("XLA_FLAGS")
  simulate_cpu_devices(2)
  assert os.environ["XLA_FLAGS"] == "--xla_force_host_platform_device_count=2"
