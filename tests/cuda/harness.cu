// Standalone test of the CUDA launchers (no TensorFlow): every launcher, every dtype, many sizes
// (0, 1, 3, 4097, chunk boundaries, 2**26), unaligned offsets, and multi-segment calls that fill
// several launch tables, each compared bit for bit with the CPU math of cc/swa_math.h (float16
// and bfloat16: computed in float32 and rounded once, on both sides).
//   nvcc -std=c++17 -O3 -Icc -Icuda tests/cuda/harness.cu cuda/swa_kernels.cu -o harness
// Prints one line per failure and a closing line "N passed, N failed"; exits 1 on any failure,
// 2 without a CUDA device.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "swa_launchers.h"
#include "swa_math.h"

namespace {

using swa_ops::DebiasedSegment;
using swa_ops::MovingAverageSegment;
namespace math = swa_ops::math;

int passed = 0, failed = 0;

template <typename T>
struct Host {
  using C = T;
  static C Load(T x) { return x; }
  static T Store(C x) { return x; }
  static const char* Name() { return sizeof(T) == 4 ? "float32" : "float64"; }
};
template <>
struct Host<__half> {
  using C = float;
  static float Load(__half x) { return __half2float(x); }
  static __half Store(float x) { return __float2half_rn(x); }
  static const char* Name() { return "float16"; }
};
template <>
struct Host<__nv_bfloat16> {
  using C = float;
  static float Load(__nv_bfloat16 x) { return __bfloat162float(x); }
  static __nv_bfloat16 Store(float x) { return __float2bfloat16_rn(x); }
  static const char* Name() { return "bfloat16"; }
};

void Check(cudaError_t error, const char* what) {
  if (error != cudaSuccess) {
    std::fprintf(stderr, "CUDA error in %s: %s\n", what, cudaGetErrorString(error));
    std::exit(1);
  }
}

template <typename T>
std::vector<T> Random(std::mt19937_64& rng, int64_t n) {
  std::uniform_real_distribution<double> uniform(-4.0, 4.0);
  std::vector<T> out(n);
  for (auto& x : out) x = Host<T>::Store(static_cast<typename Host<T>::C>(uniform(rng)));
  return out;
}

// A device copy of `host` starting `offset` elements into its allocation (to test alignment).
template <typename T>
struct DeviceArray {
  T* base = nullptr;
  T* data = nullptr;
  DeviceArray(const std::vector<T>& host, int offset) {
    Check(cudaMalloc(&base, (host.size() + offset + 1) * sizeof(T)), "cudaMalloc");
    data = base + offset;
    Check(cudaMemcpy(data, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice), "copy");
  }
  ~DeviceArray() { cudaFree(base); }
  std::vector<T> Read(int64_t n) const {
    std::vector<T> out(n);
    Check(cudaMemcpy(out.data(), data, n * sizeof(T), cudaMemcpyDeviceToHost), "copy back");
    return out;
  }
};

template <typename T>
void Expect(bool ok, const std::string& what) {
  if (ok) {
    ++passed;
  } else {
    ++failed;
    std::printf("FAILED %s %s\n", Host<T>::Name(), what.c_str());
  }
}

template <typename T>
bool SameBits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

// One call over segments of the given sizes and offsets, for both launchers.
template <typename T>
void TestSegments(std::mt19937_64& rng, const std::vector<int64_t>& sizes,
                  const std::vector<int>& offsets, const std::string& label) {
  using C = typename Host<T>::C;
  const double weight = 1.0 / 7.0;
  const size_t count = sizes.size();
  std::vector<std::vector<T>> averages, biased, values;
  std::vector<DeviceArray<T>*> d_averages, d_biased, d_values;
  std::vector<MovingAverageSegment<T>> plain(count);
  std::vector<DebiasedSegment<T>> debiased(count);
  for (size_t s = 0; s < count; ++s) {
    averages.push_back(Random<T>(rng, sizes[s]));
    biased.push_back(Random<T>(rng, sizes[s]));
    values.push_back(Random<T>(rng, sizes[s]));
    d_averages.push_back(new DeviceArray<T>(averages[s], offsets[s % offsets.size()]));
    d_biased.push_back(new DeviceArray<T>(biased[s], (offsets[s % offsets.size()] + 1) % 4));
    d_values.push_back(new DeviceArray<T>(values[s], offsets[(s + 1) % offsets.size()]));
  }
  for (size_t s = 0; s < count; ++s) {
    plain[s] = {d_averages[s]->data, d_values[s]->data, sizes[s]};
  }
  Check(swa_ops::cuda::LaunchMovingAverageUpdate<T>(plain.data(), count, weight, 0), "launch");
  Check(cudaDeviceSynchronize(), "moving average kernel");
  for (size_t s = 0; s < count; ++s) {
    std::vector<T> expected(sizes[s]);
    for (int64_t i = 0; i < sizes[s]; ++i) {
      expected[i] = Host<T>::Store(math::MovingAverageStep<C>(
          Host<T>::Load(averages[s][i]), Host<T>::Load(values[s][i]), static_cast<C>(weight)));
    }
    Expect<T>(SameBits(d_averages[s]->Read(sizes[s]), expected),
              label + " MovingAverage segment " + std::to_string(s) + " size " +
                  std::to_string(sizes[s]));
    averages[s] = d_averages[s]->Read(sizes[s]);
  }
  for (size_t s = 0; s < count; ++s) {
    debiased[s] = {d_averages[s]->data, d_biased[s]->data, d_values[s]->data, sizes[s],
                   1.0 - 0.5 / (s + 1.0)};
  }
  Check(swa_ops::cuda::LaunchDebiasedMovingAverageUpdate<T>(debiased.data(), count, weight, 0),
        "launch");
  Check(cudaDeviceSynchronize(), "debiased kernel");
  for (size_t s = 0; s < count; ++s) {
    std::vector<T> expected_biased(sizes[s]), expected_average(sizes[s]);
    const C denominator = static_cast<C>(debiased[s].debias_denominator);
    for (int64_t i = 0; i < sizes[s]; ++i) {
      expected_biased[i] = Host<T>::Store(math::MovingAverageStep<C>(
          Host<T>::Load(biased[s][i]), Host<T>::Load(values[s][i]), static_cast<C>(weight)));
      expected_average[i] =
          Host<T>::Store(math::Debias<C>(Host<T>::Load(expected_biased[i]), denominator));
    }
    const std::string what = label + " DebiasedMovingAverage segment " + std::to_string(s);
    Expect<T>(SameBits(d_biased[s]->Read(sizes[s]), expected_biased), what + " biased");
    Expect<T>(SameBits(d_averages[s]->Read(sizes[s]), expected_average), what + " average");
  }
  for (size_t s = 0; s < count; ++s) {
    delete d_averages[s];
    delete d_biased[s];
    delete d_values[s];
  }
}

template <typename T>
void TestDtype(std::mt19937_64& rng) {
  for (int64_t size : {0L, 1L, 3L, 4097L, (1L << 16) - 1, (1L << 16) + 5, 3L * (1 << 16) + 7}) {
    for (int offset : {0, 1, 3}) {
      TestSegments<T>(rng, {size}, {offset},
                      "single size " + std::to_string(size) + " offset " + std::to_string(offset));
    }
  }
  TestSegments<T>(rng, {1L << 26}, {0}, "single size 2**26");
  std::uniform_int_distribution<int64_t> size(0, 70000);
  std::vector<int64_t> sizes(100);
  for (auto& s : sizes) s = size(rng) % 9 == 0 ? 0 : size(rng);
  TestSegments<T>(rng, sizes, {0, 0, 1, 2}, "100 segments");
}

}  // namespace

int main() {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("no CUDA device: nothing run\n");
    return 2;
  }
  std::mt19937_64 rng(20261125);
  TestDtype<float>(rng);
  TestDtype<double>(rng);
  TestDtype<__half>(rng);
  TestDtype<__nv_bfloat16>(rng);
  std::printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
