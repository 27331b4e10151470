// GPU benchmark of the CUDA launchers (no TensorFlow): for one workload (segment sizes, one
// per line on stdin, float32), the GB/s of each kernel's update, next to a device-to-device
// cudaMemcpy of the same traffic (the practical ceiling), and the launches per update:
// MovingAverage (SWA and EMA: read average and value, write average, 12 bytes per element) and
// DebiasedMovingAverage (debiased EMA: read biased and value, write biased and average, 16).
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

// One kernel's measurement: its name, the bytes it moves per element (read and written), the
// segments one launch takes, and its median time per update.
struct Kernel {
  const char* name;
  double bytes_per_element;
  int64_t per_launch;
  float update_ms;
};

}  // namespace

int main() {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("{\"error\": \"no CUDA device\"}\n");
    return 2;
  }
  std::vector<int64_t> sizes;
  for (int64_t size; std::cin >> size;) sizes.push_back(size);
  // One allocation per array, segments back to back, each 16-byte aligned (as TF aligns).
  int64_t total = 0, padded_total = 0;
  for (int64_t size : sizes) {
    total += size;
    padded_total += (size + 3) / 4 * 4;
  }
  float *averages, *biased, *values;
  for (float** array : {&averages, &biased, &values}) {
    Check(cudaMalloc(array, padded_total * sizeof(float)), "malloc");
    Check(cudaMemset(*array, 0, padded_total * sizeof(float)), "memset");
  }
  std::vector<swa_ops::MovingAverageSegment<float>> plain;
  std::vector<swa_ops::DebiasedSegment<float>> debiased;
  int64_t offset = 0;
  for (int64_t size : sizes) {
    plain.push_back({averages + offset, values + offset, size});
    debiased.push_back({averages + offset, biased + offset, values + offset, size, 0.5});
    offset += (size + 3) / 4 * 4;
  }
  std::vector<Kernel> kernels = {
      {"MovingAverage", 12.0,
       swa_ops::cuda::MaxSegmentsPerLaunch<swa_ops::MovingAverageSegment<float>>(),
       MedianMs(50, [&] {
         Check(swa_ops::cuda::LaunchMovingAverageUpdate<float>(plain.data(), plain.size(), 0.25,
                                                               0), "launch");
       })},
      {"DebiasedMovingAverage", 16.0,
       swa_ops::cuda::MaxSegmentsPerLaunch<swa_ops::DebiasedSegment<float>>(),
       MedianMs(50, [&] {
         Check(swa_ops::cuda::LaunchDebiasedMovingAverageUpdate<float>(
                   debiased.data(), debiased.size(), 0.25, 0), "launch");
       })}};
  cudaDeviceProp properties;
  Check(cudaGetDeviceProperties(&properties, 0), "properties");
  std::printf("{\"device\": \"%s\", \"variables\": %zu, \"elements\": %lld, \"kernels\": {",
              properties.name, sizes.size(), static_cast<long long>(total));
  for (size_t k = 0; k < kernels.size(); ++k) {
    const Kernel& kernel = kernels[k];
    // The same traffic as a copy: half the bytes read, half written.
    const size_t copy_bytes = static_cast<size_t>(kernel.bytes_per_element / 2 * total);
    float *copy_source, *copy_target;
    Check(cudaMalloc(&copy_source, copy_bytes), "malloc");
    Check(cudaMalloc(&copy_target, copy_bytes), "malloc");
    const float copy_ms = MedianMs(50, [&] {
      Check(cudaMemcpyAsync(copy_target, copy_source, copy_bytes, cudaMemcpyDeviceToDevice, 0),
            "memcpy");
    });
    Check(cudaFree(copy_source), "free");
    Check(cudaFree(copy_target), "free");
    const double bytes = kernel.bytes_per_element * total;
    const int64_t launches =
        sizes.size() <= static_cast<size_t>(swa_ops::cuda::kSmallTableSegments)
            ? 1
            : (static_cast<int64_t>(sizes.size()) + kernel.per_launch - 1) / kernel.per_launch;
    std::printf("%s\"%s\": {\"bytes_per_element\": %.0f, \"update_ms\": %.4f, "
                "\"update_gbps\": %.1f, \"memcpy_ms\": %.4f, \"memcpy_gbps\": %.1f, "
                "\"fraction_of_memcpy\": %.3f, \"launches_per_update\": %lld}",
                k ? ", " : "", kernel.name, kernel.bytes_per_element, kernel.update_ms,
                bytes / kernel.update_ms / 1e6, copy_ms, bytes / copy_ms / 1e6,
                copy_ms / kernel.update_ms, static_cast<long long>(launches));
  }
  std::printf("}}\n");
  return 0;
}
