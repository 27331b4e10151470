// Standalone test of the CUDA launchers (no TensorFlow): every launcher, every (T, V) pair (T the
// variables' dtype, V the values': T itself, or a narrower float), many sizes (0, 1, 3, 4097,
// chunk boundaries, 2**26 for V = T), aligned, unaligned and mixed offsets, and multi-segment
// calls (around the small table's capacity, over several full launch tables), each compared
// bit for bit with the CPU math of cc/core/swa_math.h as cc/core/cpu_updates.h runs it (computed in C:
// float32 for float16 and bfloat16 variables, T otherwise; the value converted to C exactly;
// rounded to T once when stored).
//   nvcc -std=c++17 -O3 -Xcompiler -ffp-contract=off -Icc -Icuda tests/cuda/harness.cu
//       cuda/swa_kernels.cu -o harness
// Prints one line per failure and a closing line "N passed, N failed"; exits 1 on any failure,
// 2 without a CUDA device.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <type_traits>
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

// "float32" for (float, float), "float32/float16" for float32 variables with float16 values.
template <typename T, typename V>
std::string PairName() {
  std::string name = Host<T>::Name();
  if (!std::is_same<T, V>::value) name = name + "/" + Host<V>::Name();
  return name;
}

template <typename T, typename V>
void Expect(bool ok, const std::string& what) {
  if (ok) {
    ++passed;
  } else {
    ++failed;
    std::printf("FAILED %s %s\n", PairName<T, V>().c_str(), what.c_str());
  }
}

// A value in the compute type C of the variables, as cc/core/cpu_updates.h converts it (exactly: C is
// never narrower than V's own compute type).
template <typename C, typename V>
C ValueAs(V x) {
  return static_cast<C>(Host<V>::Load(x));
}

// Element offsets of a segment's arrays into their allocations (cudaMalloc is 256-byte aligned).
struct Offsets {
  int average, biased, value;
};

std::string Describe(const Offsets& o) {
  return "offsets " + std::to_string(o.average) + "/" + std::to_string(o.biased) + "/" +
         std::to_string(o.value);
}

template <typename T>
bool SameBits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

// One call over segments of the given sizes (segment s at offsets[s % offsets.size()]), for
// both launchers.
template <typename T, typename V>
void TestSegments(std::mt19937_64& rng, const std::vector<int64_t>& sizes,
                  const std::vector<Offsets>& offsets, const std::string& label) {
  using C = typename Host<T>::C;
  const double weight = 1.0 / 7.0;
  const size_t count = sizes.size();
  std::vector<std::vector<T>> averages, biased;
  std::vector<std::vector<V>> values;
  std::vector<DeviceArray<T>*> d_averages, d_biased;
  std::vector<DeviceArray<V>*> d_values;
  std::vector<MovingAverageSegment<T, V>> plain(count);
  std::vector<DebiasedSegment<T, V>> debiased(count);
  for (size_t s = 0; s < count; ++s) {
    const Offsets& o = offsets[s % offsets.size()];
    averages.push_back(Random<T>(rng, sizes[s]));
    biased.push_back(Random<T>(rng, sizes[s]));
    values.push_back(Random<V>(rng, sizes[s]));
    d_averages.push_back(new DeviceArray<T>(averages[s], o.average));
    d_biased.push_back(new DeviceArray<T>(biased[s], o.biased));
    d_values.push_back(new DeviceArray<V>(values[s], o.value));
  }
  for (size_t s = 0; s < count; ++s) {
    plain[s] = {d_averages[s]->data, d_values[s]->data, sizes[s]};
  }
  Check(swa_ops::cuda::LaunchMovingAverageUpdate<T, V>(plain.data(), count, weight, 0),
        "launch");
  Check(cudaDeviceSynchronize(), "moving average kernel");
  for (size_t s = 0; s < count; ++s) {
    std::vector<T> expected(sizes[s]);
    for (int64_t i = 0; i < sizes[s]; ++i) {
      expected[i] = Host<T>::Store(math::MovingAverageStep<C>(
          Host<T>::Load(averages[s][i]), ValueAs<C>(values[s][i]), static_cast<C>(weight)));
    }
    Expect<T, V>(SameBits(d_averages[s]->Read(sizes[s]), expected),
                 label + " MovingAverage segment " + std::to_string(s) + " size " +
                     std::to_string(sizes[s]));
    averages[s] = d_averages[s]->Read(sizes[s]);
  }
  for (size_t s = 0; s < count; ++s) {
    debiased[s] = {d_averages[s]->data, d_biased[s]->data, d_values[s]->data, sizes[s],
                   1.0 - 0.5 / (s + 1.0)};
  }
  Check(swa_ops::cuda::LaunchDebiasedMovingAverageUpdate<T, V>(debiased.data(), count,
                                                                weight, 0),
        "launch");
  Check(cudaDeviceSynchronize(), "debiased kernel");
  for (size_t s = 0; s < count; ++s) {
    std::vector<T> expected_biased(sizes[s]), expected_average(sizes[s]);
    const C denominator = static_cast<C>(debiased[s].debias_denominator);
    for (int64_t i = 0; i < sizes[s]; ++i) {
      expected_biased[i] = Host<T>::Store(math::MovingAverageStep<C>(
          Host<T>::Load(biased[s][i]), ValueAs<C>(values[s][i]), static_cast<C>(weight)));
      expected_average[i] =
          Host<T>::Store(math::Debias<C>(Host<T>::Load(expected_biased[i]), denominator));
    }
    const std::string what = label + " DebiasedMovingAverage segment " + std::to_string(s);
    Expect<T, V>(SameBits(d_biased[s]->Read(sizes[s]), expected_biased), what + " biased");
    Expect<T, V>(SameBits(d_averages[s]->Read(sizes[s]), expected_average), what + " average");
  }
  for (size_t s = 0; s < count; ++s) {
    delete d_averages[s];
    delete d_biased[s];
    delete d_values[s];
  }
}

// Every case for one (T, V) pair. The kernels take vector steps of K = 16 / sizeof(T) elements
// (16-byte packs of T, K * sizeof(V)-byte packs of V) only where every array of a segment is
// aligned for its pack: the offsets cover all aligned, all unaligned, and one array unaligned
// (or, at K elements, aligned for its pack only). 2**26 elements only when V = T (runtime).
template <typename T, typename V>
void TestPair(std::mt19937_64& rng) {
  constexpr int k = 16 / sizeof(T);
  constexpr int64_t chunk = swa_ops::cuda::kChunkElements;
  std::vector<int64_t> sizes = {0, 1, 3, 4097, chunk - 1, chunk, chunk + 5, 3 * chunk + 7};
  for (int64_t size : sizes) {
    // The offsets o / (o + 1) % 4 / o of the original same-type cases, then the aligned mixes.
    std::vector<Offsets> cases = {{0, 1, 0}, {1, 2, 1}, {3, 0, 3}, {0, 0, 0},
                                  {0, 0, 1}, {0, 0, k}, {k, k, 0}, {1, 0, 0}};
    for (const Offsets& o : cases) {
      TestSegments<T, V>(rng, {size}, {o},
                         "single size " + std::to_string(size) + " " + Describe(o));
    }
  }
  if (std::is_same<T, V>::value) {
    TestSegments<T, V>(rng, {1L << 26}, {{0, 0, 0}}, "single size 2**26");
  }
  std::uniform_int_distribution<int64_t> size(0, 70000);
  std::vector<int64_t> many(100);
  for (auto& s : many) s = size(rng) % 9 == 0 ? 0 : size(rng);
  // The original cycle (offsets {0, 0, 1, 2}: average o[s], biased (o[s] + 1) % 4, value o[s + 1]).
  TestSegments<T, V>(rng, many, {{0, 1, 0}, {0, 1, 1}, {1, 2, 2}, {2, 3, 0}}, "100 segments");
  TestSegments<T, V>(rng, many,
                     {{0, 0, 0}, {0, 0, k}, {0, 0, 1}, {1, 0, 0}, {0, 1, 0}, {k, k, 0}},
                     "100 segments aligned mix");
  // More segments than one launch takes: several full tables and a partial one, for both
  // kinds (the debiased table is the smaller).
  const int64_t table = swa_ops::cuda::MaxSegmentsPerLaunch<MovingAverageSegment<T, V>>();
  std::uniform_int_distribution<int64_t> small(0, 2000);
  std::vector<int64_t> several_tables(2 * table + 7);
  for (auto& s : several_tables) s = small(rng) % 5 == 0 ? small(rng) % 9 : small(rng);
  TestSegments<T, V>(rng, several_tables, {{0, 0, 0}, {1, 2, 1}, {0, 0, k}},
                     std::to_string(several_tables.size()) + " segments");
  // The small table's capacity, and one more segment than it holds.
  for (int64_t count : {swa_ops::cuda::kSmallTableSegments,
                        swa_ops::cuda::kSmallTableSegments + 1}) {
    TestSegments<T, V>(rng, std::vector<int64_t>(count, 70001), {{0, 0, 0}, {0, 1, 1}},
                       std::to_string(count) + " segments of 70001");
  }
}

}  // namespace

int main() {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("no CUDA device: nothing run\n");
    return 2;
  }
  std::mt19937_64 rng(20261125);
  TestPair<float, float>(rng);
  TestPair<double, double>(rng);
  TestPair<__half, __half>(rng);
  TestPair<__nv_bfloat16, __nv_bfloat16>(rng);
  TestPair<float, __half>(rng);
  TestPair<float, __nv_bfloat16>(rng);
  TestPair<double, __half>(rng);
  TestPair<double, __nv_bfloat16>(rng);
  TestPair<double, float>(rng);
  std::printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
