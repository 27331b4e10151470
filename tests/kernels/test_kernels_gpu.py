"""swa_ops.kernels on CUDA arrays (CuPy or PyTorch, through __dlpack__): the same bits as the
CPU path (the core's math rounds identically on both), one device per call, streams, and bad
input refused with nothing written. Marked gpu: skipped without a CUDA build, a GPU, or CuPy
and PyTorch; runs without TensorFlow (`pytest tests/kernels -m gpu`)."""
import numpy as np
import pytest

from swa_ops import kernels

import kernels_oracle as oracle
from kernels_oracle import PAIRS, bits

pytestmark = pytest.mark.gpu


def cupy_backend():
  try:
    import cupy
    if cupy.cuda.runtime.getDeviceCount() < 1:
      return None
  except Exception:  # Not installed, no driver, no device.
    return None
  return cupy


def torch_backend():
  try:
    import torch
    if not torch.cuda.is_available():
      return None
  except Exception:
    return None
  return torch


class Cupy:
  name = "cupy"

  def __init__(self, module):
    self.xp = module

  def to_device(self, array):
    if array.dtype.name == "bfloat16":
      pytest.skip("CuPy has no bfloat16")
    return self.xp.asarray(array)

  def to_host(self, array):
    return self.xp.asnumpy(array)

  def stream(self):
    return self.xp.cuda.Stream(non_blocking=True)

  def use(self, stream):
    return stream

  def synchronize(self):
    self.xp.cuda.runtime.deviceSynchronize()


class Torch:
  name = "torch"

  def __init__(self, module):
    self.torch = module

  def to_device(self, array):
    torch = self.torch
    if array.dtype.name == "bfloat16":
      as_int = torch.from_numpy(array.view(np.int16).copy())
      return as_int.view(torch.bfloat16).cuda()
    return torch.from_numpy(array.copy()).cuda()

  def to_host(self, tensor):
    torch = self.torch
    tensor = tensor.cpu()
    if tensor.dtype == torch.bfloat16:
      return tensor.view(torch.int16).numpy().view(oracle.dtype("bfloat16"))
    return tensor.numpy()

  def stream(self):
    return self.torch.cuda.Stream()

  def use(self, stream):
    return self.torch.cuda.stream(stream)

  def synchronize(self):
    self.torch.cuda.synchronize()


def backends():
  found = []
  if kernels.WITH_CUDA:
    if cupy_backend() is not None:
      found.append(pytest.param(Cupy(cupy_backend()), id="cupy"))
    if torch_backend() is not None:
      found.append(pytest.param(Torch(torch_backend()), id="torch"))
  return found or [pytest.param(None, marks=pytest.mark.skip(
      reason="needs swa_ops.kernels built with CUDA, a GPU, and CuPy or PyTorch"))]


@pytest.fixture(params=backends())
def backend(request):
  return request.param


SHAPES = [(), (0,), (3, 5), (1000,), (257, 129), (1 << 20,)]


def host_inputs(seed, pair):
  rng = np.random.default_rng(seed)
  return (oracle.random_arrays(rng, SHAPES, pair[0]),
          oracle.random_arrays(rng, SHAPES, pair[1], -3.0, 3.0))


def assert_same_bits(backend, device_arrays, host_arrays):
  for device_array, host_array in zip(device_arrays, host_arrays):
    np.testing.assert_array_equal(bits(backend.to_host(device_array)), bits(host_array))


@pytest.mark.parametrize("pair", PAIRS, ids="-".join)
def test_updates_match_the_cpu_bit_for_bit(backend, pair):
  averages, values = host_inputs(1, pair)
  biased, _ = host_inputs(2, pair)
  debiased = [np.zeros_like(a) for a in averages]
  steps = np.arange(len(SHAPES), dtype=np.int64)
  d_averages, d_values = [backend.to_device(a) for a in averages], [backend.to_device(v) for v in values]
  d_biased, d_debiased = [backend.to_device(b) for b in biased], [backend.to_device(a) for a in debiased]
  d_steps = backend.to_device(steps)
  for step in range(3):
    kernels.swa_assign(d_averages, d_values, step)
    kernels.swa_assign(averages, values, step)
    kernels.ema_assign(d_averages, d_values, 0.9)
    kernels.ema_assign(averages, values, 0.9)
    kernels.debiased_ema(d_debiased, d_biased, d_steps, d_values, 0.99)
    kernels.debiased_ema(debiased, biased, steps, values, 0.99)
  backend.synchronize()
  assert_same_bits(backend, d_averages, averages)
  assert_same_bits(backend, d_biased, biased)
  assert_same_bits(backend, d_debiased, debiased)
  np.testing.assert_array_equal(backend.to_host(d_steps), steps)


def test_many_arrays_take_several_launches(backend):
  rng = np.random.default_rng(3)
  averages = [rng.random(n).astype(np.float32) for n in rng.integers(0, 3000, 2500)]
  values = [rng.random(a.size).astype(np.float32) for a in averages]
  d_averages, d_values = [backend.to_device(a) for a in averages], [backend.to_device(v) for v in values]
  kernels.swa_assign(d_averages, d_values, 4)
  kernels.swa_assign(averages, values, 4)
  backend.synchronize()
  assert_same_bits(backend, d_averages, averages)


@pytest.mark.parametrize("name", oracle.FLOAT_NAMES)
def test_swap_is_bit_exact(backend, name):
  rng = np.random.default_rng(4)
  a = oracle.random_arrays(rng, SHAPES, name)
  b = oracle.random_arrays(rng, SHAPES, name)
  d_a, d_b = [backend.to_device(x) for x in a], [backend.to_device(x) for x in b]
  kernels.swap(d_a, d_b)
  backend.synchronize()
  assert_same_bits(backend, d_a, b)
  assert_same_bits(backend, d_b, a)


def test_on_a_stream(backend):
  average, value = np.zeros(1 << 20, np.float32), np.full(1 << 20, 2.0, np.float32)
  stream = backend.stream()
  with backend.use(stream):
    d_average, d_value = backend.to_device(average), backend.to_device(value)
    kernels.ema_assign([d_average], [d_value], 0.5, stream=stream)
  backend.synchronize()
  np.testing.assert_array_equal(backend.to_host(d_average), 1.0)


def test_mixed_devices_are_refused(backend):
  d_average = backend.to_device(np.zeros(4, np.float32))
  with pytest.raises(ValueError, match=r"values\[0\] is on cpu but averages\[0\] is on cuda:0: "
                                       r"arrays on mixed devices"):
    kernels.swa_assign([d_average], [np.ones(4, np.float32)], 0)
  host_average = np.zeros(4, np.float32)
  with pytest.raises(ValueError, match=r"mixed devices"):
    kernels.swa_assign([host_average], [backend.to_device(np.ones(4, np.float32))], 0)
  assert not host_average.any()
  np.testing.assert_array_equal(backend.to_host(d_average), 0)


def test_bad_input_writes_nothing(backend):
  averages = [backend.to_device(np.zeros(4, np.float32)) for _ in range(3)]
  values = [backend.to_device(np.ones(4, np.float32)) for _ in range(2)] + [
      backend.to_device(np.ones(5, np.float32))]
  with pytest.raises(ValueError, match=r"values\[2\] has shape \(5,\) but averages\[2\]"):
    kernels.swa_assign(averages, values, 0)
  with pytest.raises(ValueError, match=r"averages\[1\] is also its value values\[1\]"):
    kernels.swa_assign(averages, [values[0], averages[1], values[1]], 0)
  steps = backend.to_device(np.array([0, -1, 0], np.int64))
  with pytest.raises(ValueError, match=r"local_steps\[1\] is -1"):
    kernels.debiased_ema(averages, [backend.to_device(np.zeros(4, np.float32)) for _ in range(3)],
                         steps, values[:2] + [backend.to_device(np.ones(4, np.float32))], 0.9)
  backend.synchronize()
  for average in averages:
    np.testing.assert_array_equal(backend.to_host(average), 0)
  np.testing.assert_array_equal(backend.to_host(steps), [0, -1, 0])
