"""GPU benchmark of the CUDA kernels through the TF-free launchers (benchmarks/gpu_bench.cu):
GB/s of each kernel's update (MovingAverage: SWA and EMA; DebiasedMovingAverage: debiased EMA)
on W1 (ResNet-50 shapes), W2 (2000 x 1000) and W3 (64M) float32, next to a device-to-device
cudaMemcpy of the same bytes, and launches per update.

Usage: python benchmarks/gpu_bench.py [--json PATH]   (needs nvcc and a CUDA GPU)
"""
import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def workloads():
  with open(os.path.join(ROOT, "benchmarks", "workloads", "resnet50_trainable_shapes.json")) as f:
    shapes = json.load(f)["shapes"]
  return {"W1": [math.prod(shape) for shape in shapes], "W2": [1000] * 2000, "W3": [64 << 20]}


def build(directory):
  nvcc = shutil.which("nvcc") or "/usr/local/cuda/bin/nvcc"
  binary = os.path.join(directory, "gpu_bench")
  subprocess.run([nvcc, "-std=c++17", "-O3", "-arch=native", "-I" + os.path.join(ROOT, "cc", "core"),
                  "-I" + os.path.join(ROOT, "cuda"),
                  os.path.join(ROOT, "benchmarks", "gpu_bench.cu"),
                  os.path.join(ROOT, "cuda", "swa_kernels.cu"), "-o", binary], check=True)
  return binary


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--json", default=os.path.join(ROOT, "benchmarks", "results", "gpu.json"))
  args = parser.parse_args()
  with tempfile.TemporaryDirectory() as directory:
    binary = build(directory)
    results = {}
    for name, sizes in workloads().items():
      run = subprocess.run([binary], input="\n".join(map(str, sizes)), capture_output=True,
                           text=True)
      if run.returncode == 2:
        print("no CUDA device: nothing measured")
        return 2
      run.check_returncode()
      results[name] = json.loads(run.stdout)
  print("| workload | variables | kernel | update ms | update GB/s | memcpy GB/s | of memcpy |"
        " launches |")
  print("|---|---:|---|---:|---:|---:|---:|---:|")
  for name, r in results.items():
    for kernel, k in r["kernels"].items():
      print("| %s | %d | %s | %.3f | %.0f | %.0f | %.1f%% | %d |" % (
          name, r["variables"], kernel, k["update_ms"], k["update_gbps"], k["memcpy_gbps"],
          100 * k["fraction_of_memcpy"], k["launches_per_update"]))
  os.makedirs(os.path.dirname(args.json), exist_ok=True)
  with open(args.json, "w") as f:
    json.dump(results, f, indent=2)
  return 0


if __name__ == "__main__":
  sys.exit(main())
