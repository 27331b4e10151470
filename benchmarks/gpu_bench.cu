// GPU benchmark of the CUDA launchers (no TensorFlow): for one workload (segment sizes, one
// per line on stdin, float32), the GB/s of one MovingAverage update (12 bytes per element:
// read average and value, write average) next to a device-to-device cudaMemcpy of the same
// traffic (the practical ceiling), and the launches per update.
//   nvcc -std=c++17 -O3 -Icc -Icuda benchmarks/gpu_bench.cu cuda/swa_kernels.cu -o gpu_bench
//   python benchmarks/gpu_bench.py   (builds it, feeds W1/W2/W3, prints the table)
// Prints one JSON object; exits 2 without a CUDA device.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <vector>

#include "swa_launchers.h"

namespace {

void Check(cudaError_t error, const char* what) {
  if (error != cudaSuccess) {
    std::fprintf(stderr, "CUDA error in %s: %s\n", what, cudaGetErrorString(error));
    std::exit(1);
  }
}

// Median milliseconds of `repeats` timed calls of `body` (after warm-up).
template <typename Body>
float MedianMs(int repeats, const Body& body) {
  cudaEvent_t start, stop;
  Check(cudaEventCreate(&start), "event");
  Check(cudaEventCreate(&stop), "event");
  for (int i = 0; i < 3; ++i) body();
  std::vector<float> times;
  for (int i = 0; i < repeats; ++i) {
    Check(cudaEventRecord(start), "record");
    body();
    Check(cudaEventRecord(stop), "record");
    Check(cudaEventSynchronize(stop), "sync");
    float ms;
    Check(cudaEventElapsedTime(&ms, start, stop), "elapsed");
    times.push_back(ms);
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

}  // namespace

int main() {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("{\"error\": \"no CUDA device\"}\n");
    return 2;
  }
  std::vector<int64_t> sizes;
  for (int64_t size; std::cin >> size;) sizes.push_back(size);
  // One allocation per workload, segments back to back, each 16-byte aligned (as TF aligns).
  int64_t total = 0, padded_total = 0;
  for (int64_t size : sizes) {
    total += size;
    padded_total += (size + 3) / 4 * 4;
  }
  float *averages, *values, *copy_source, *copy_target;
  Check(cudaMalloc(&averages, padded_total * sizeof(float)), "malloc");
  Check(cudaMalloc(&values, padded_total * sizeof(float)), "malloc");
  Check(cudaMemset(averages, 0, padded_total * sizeof(float)), "memset");
  Check(cudaMemset(values, 0, padded_total * sizeof(float)), "memset");
  std::vector<swa_ops::MovingAverageSegment<float>> segments;
  int64_t offset = 0;
  for (int64_t size : sizes) {
    segments.push_back({averages + offset, values + offset, size});
    offset += (size + 3) / 4 * 4;
  }
  const float update_ms = MedianMs(50, [&] {
    Check(swa_ops::cuda::LaunchMovingAverageUpdate<float>(segments.data(), segments.size(),
                                                          0.25, 0), "launch");
  });
  // The same traffic as a copy: 12 bytes per element = copy 6 bytes per element (read + write).
  const size_t copy_bytes = total * 6;
  Check(cudaMalloc(&copy_source, copy_bytes), "malloc");
  Check(cudaMalloc(&copy_target, copy_bytes), "malloc");
  const float copy_ms = MedianMs(50, [&] {
    Check(cudaMemcpyAsync(copy_target, copy_source, copy_bytes, cudaMemcpyDeviceToDevice, 0),
          "memcpy");
  });
  cudaDeviceProp properties;
  Check(cudaGetDeviceProperties(&properties, 0), "properties");
  const double bytes = 12.0 * total;
  const int64_t launches = (static_cast<int64_t>(sizes.size()) +
                            swa_ops::cuda::kMaxSegmentsPerLaunch - 1) /
                           swa_ops::cuda::kMaxSegmentsPerLaunch;
  std::printf("{\"device\": \"%s\", \"variables\": %zu, \"elements\": %lld, \"update_ms\": %.4f, "
              "\"update_gbps\": %.1f, \"memcpy_ms\": %.4f, \"memcpy_gbps\": %.1f, "
              "\"fraction_of_memcpy\": %.3f, \"launches_per_update\": %lld}\n",
              properties.name, sizes.size(), static_cast<long long>(total), update_ms,
              bytes / update_ms / 1e6, copy_ms, bytes / copy_ms / 1e6, copy_ms / update_ms,
              static_cast<long long>(launches));
  return 0;
}
