"""swa_ops.kernels on a CUDA GPU against PyTorch's and CuPy's ways of doing the same update, and a
device-to-device copy of the same bytes, side by side in one run.

Usage (a machine with a CUDA GPU, PyTorch with CUDA, swa_ops.kernels built with CUDA; CuPy
optional; no TensorFlow needed):
  python benchmarks/kernels_gpu_bench.py [--quick] [--workloads W1,W2,W3] [--json PATH]

Workloads: as benchmarks/kernels_bench.py (float32: W1 the ResNet-50 shapes, W2 2000 x 1000,
W3 one array of 64M values), each array a torch CUDA tensor.

Paths (ms per call, the median over interleaved rounds; each round times a batch of calls
between CUDA events on the current stream, and its wall time, which includes the host's
per-call work, with one synchronize at the end of the batch):
  kernels swa       swa_ops.kernels.swa_assign(averages, values, step) on the torch tensors
                    (through __dlpack__): one launch.
  foreach_lerp      torch._foreach_lerp_(averages, values, 1 / (step + 1)): the same update.
  kernels ema       swa_ops.kernels.ema_assign(averages, values, 0.999).
  swa_utils ema     torch._foreach_mul_(averages, 0.999); torch._foreach_add_(averages, values,
                    alpha=0.001): the multi-tensor EMA of torch.optim.swa_utils
                    (get_ema_multi_avg_fn's mul/add form).
  cupy per array    a CuPy ElementwiseKernel `a = a - (a - v) * w`, launched once per array
                    (skipped without CuPy).
  d2d copy          one cudaMemcpy of 6 bytes per value (reads 6, writes 6: the 12 bytes per
                    value the update moves), its "floor".
"""
import argparse
import json
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "python"))

import torch  # noqa: E402

from swa_ops import kernels  # noqa: E402

try:
  import cupy  # noqa: E402
except ImportError:
  cupy = None

SETTINGS = {"full": dict(repeats=15, target_ms=200.0), "quick": dict(repeats=5, target_ms=50.0)}
EMA_DECAY = 0.999


def resnet50_shapes():
  with open(os.path.join(HERE, "workloads", "resnet50_trainable_shapes.json")) as f:
    return [tuple(shape) for shape in json.load(f)["shapes"]]


WORKLOADS = {
    "W1": ("ResNet-50 trainable variables", resnet50_shapes),
    "W2": ("2000 variables x 1000 floats", lambda: [(1000,)] * 2000),
    "W3": ("1 variable x 64M floats", lambda: [(64 * 2**20,)]),
}


def timed_batch(fn, calls):
  """(GPU ms per call between events, wall ms per call until the batch has finished)."""
  start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
  torch.cuda.synchronize()
  t0 = time.perf_counter()
  start.record()
  for _ in range(calls):
    fn()
  end.record()
  end.synchronize()
  wall_ms = (time.perf_counter() - t0) * 1e3 / calls
  return start.elapsed_time(end) / calls, wall_ms


def calls_for(fn, target_ms):
  fn()
  torch.cuda.synchronize()
  _, wall_ms = timed_batch(fn, 3)
  return max(1, int(target_ms / max(wall_ms, 1e-3)))


def make_paths(shapes):
  generator = torch.Generator(device="cuda").manual_seed(0)

  def tensors():
    return [torch.rand(s, device="cuda", generator=generator) for s in shapes]

  values = tensors()
  state = {"step": 0}
  lists = {key: tensors() for key in ("kernels swa", "foreach_lerp", "kernels ema",
                                      "swa_utils ema", "cupy per array")}
  stream = torch.cuda.current_stream()

  def kernels_swa():
    kernels.swa_assign(lists["kernels swa"], values, state["step"], stream=stream)
    state["step"] += 1

  def foreach_lerp():
    torch._foreach_lerp_(lists["foreach_lerp"], values, 1.0 / (state["step"] + 1))
    state["step"] += 1

  def kernels_ema():
    kernels.ema_assign(lists["kernels ema"], values, EMA_DECAY, stream=stream)

  def swa_utils_ema():
    torch._foreach_mul_(lists["swa_utils ema"], EMA_DECAY)
    torch._foreach_add_(lists["swa_utils ema"], values, alpha=1 - EMA_DECAY)

  paths = {"kernels swa": kernels_swa, "foreach_lerp": foreach_lerp, "kernels ema": kernels_ema,
           "swa_utils ema": swa_utils_ema}

  if cupy is not None:
    update = cupy.ElementwiseKernel("T v, T w", "T a", "a = a - (a - v) * w", "swa_update")
    cupy_averages = [cupy.from_dlpack(t) for t in lists["cupy per array"]]
    cupy_values = [cupy.from_dlpack(t) for t in values]

    def cupy_per_array():
      weight = cupy.float32(1.0 / (state["step"] + 1))
      with cupy.cuda.ExternalStream(stream.cuda_stream):
        for a, v in zip(cupy_averages, cupy_values):
          update(v, weight, a)
      state["step"] += 1

    paths["cupy per array"] = cupy_per_array

  num_values = sum(t.numel() for t in values)
  source = torch.empty(num_values * 6, dtype=torch.uint8, device="cuda")
  target = torch.empty_like(source)
  paths["d2d copy"] = lambda: target.copy_(source)
  return paths, num_values


def run_workload(name, settings):
  description, shapes_of = WORKLOADS[name]
  shapes = shapes_of()
  paths, num_values = make_paths(shapes)
  calls = {key: calls_for(fn, settings["target_ms"]) for key, fn in paths.items()}
  gpu, wall = {key: [] for key in paths}, {key: [] for key in paths}
  for _ in range(settings["repeats"]):
    for key, fn in paths.items():
      gpu_ms, wall_ms = timed_batch(fn, calls[key])
      gpu[key].append(gpu_ms)
      wall[key].append(wall_ms)
  copy_ms = statistics.median(gpu["d2d copy"])
  return {
      "description": description, "arrays": len(shapes), "values": num_values,
      "paths": {key: {"gpu_median_ms": statistics.median(gpu[key]),
                      "wall_median_ms": statistics.median(wall[key]),
                      "gpu_min_ms": min(gpu[key]), "calls_per_repeat": calls[key],
                      "x_copy": statistics.median(gpu[key]) / copy_ms}
                for key in paths},
  }


def format_table(results):
  lines = []
  for name, result in results.items():
    lines += ["", "%s: %s (%d arrays, %d values)" % (name, result["description"],
                                                    result["arrays"], result["values"]),
              "| path | GPU ms | wall ms | x d2d copy |", "|---|---|---|---|"]
    for key, r in result["paths"].items():
      lines.append("| %s | %.4f | %.4f | %.2f |" % (key, r["gpu_median_ms"], r["wall_median_ms"],
                                                    r["x_copy"]))
  return "\n".join(lines)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--quick", action="store_true")
  parser.add_argument("--workloads", default="W1,W2,W3")
  parser.add_argument("--json")
  args = parser.parse_args(argv)
  if not torch.cuda.is_available() or not kernels.WITH_CUDA:
    sys.exit("needs a CUDA GPU, PyTorch with CUDA and swa_ops.kernels built with CUDA")
  mode = "quick" if args.quick else "full"
  machine = {"gpu": torch.cuda.get_device_name(), "torch_version": torch.__version__,
             "cupy_version": getattr(cupy, "__version__", None),
             "cuda_runtime": torch.version.cuda}
  print("swa_ops.kernels GPU benchmark (%s): %s, torch %s, cupy %s" % (
      mode, machine["gpu"], machine["torch_version"], machine["cupy_version"]))
  results = {name: run_workload(name, SETTINGS[mode]) for name in args.workloads.split(",")}
  print(format_table(results))
  if args.json:
    with open(args.json, "w") as f:
      json.dump({"mode": mode, "machine": machine, "workloads": results}, f, indent=2)


if __name__ == "__main__":
  main()
