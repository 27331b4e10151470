// Bandwidth-bound multi-segment kernels: 16-byte vector loads and stores where a segment is
// 16-byte aligned (a scalar path otherwise and for the tail), a grid-stride loop over
// (segment, chunk) blocks, float16/bfloat16 computed in float32 and rounded once. The element
// math is cc/swa_math.h, shared with the CPU kernels (its _rn intrinsics prevent FMA fusion, so
// float32/float64 results are bit-identical to the CPU's).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cstdint>

#include "swa_launchers.h"
#include "swa_math.h"

namespace swa_ops {
namespace cuda {
namespace {

constexpr int kThreadsPerBlock = 256;
constexpr int64_t kChunkElements = 1 << 16;
constexpr int64_t kMaxBlocks = 1 << 16;

// Storage type <-> compute type: half and bfloat16 in float32.
template <typename T>
struct Compute {
  using type = T;
  __device__ static T Load(T x) { return x; }
  __device__ static T Store(T x) { return x; }
};
template <>
struct Compute<__half> {
  using type = float;
  __device__ static float Load(__half x) { return __half2float(x); }
  __device__ static __half Store(float x) { return __float2half_rn(x); }
};
template <>
struct Compute<__nv_bfloat16> {
  using type = float;
  __device__ static float Load(__nv_bfloat16 x) { return __bfloat162float(x); }
  __device__ static __nv_bfloat16 Store(float x) { return __float2bfloat16_rn(x); }
};

// Elements per 16-byte vector access.
template <typename T>
struct alignas(16) Pack {
  static constexpr int kSize = 16 / sizeof(T);
  T v[kSize];
};

__device__ inline bool Aligned16(const void* p) {
  return (reinterpret_cast<uintptr_t>(p) & 15) == 0;
}

template <typename Segment>
struct SegmentTable {
  Segment segments[kMaxSegmentsPerLaunch];
  int64_t first_chunk[kMaxSegmentsPerLaunch + 1];  // Prefix sums of each segment's chunks.
  int count;
};

template <typename T>
struct MovingAverageElements {
  using C = typename Compute<T>::type;
  C weight;

  __device__ void operator()(const MovingAverageSegment<T>& s, int64_t begin, int64_t end) const {
    T* average = s.average + begin;
    const T* value = s.value + begin;
    const int64_t n = end - begin;
    int64_t vectorized = 0;
    if (Aligned16(average) && Aligned16(value)) {
      constexpr int k = Pack<T>::kSize;
      vectorized = n / k * k;
      auto* average_packs = reinterpret_cast<Pack<T>*>(average);
      const auto* value_packs = reinterpret_cast<const Pack<T>*>(value);
      for (int64_t p = threadIdx.x; p < n / k; p += blockDim.x) {
        Pack<T> a = average_packs[p];
        const Pack<T> v = value_packs[p];
#pragma unroll
        for (int j = 0; j < k; ++j) {
          a.v[j] = Compute<T>::Store(math::MovingAverageStep<C>(
              Compute<T>::Load(a.v[j]), Compute<T>::Load(v.v[j]), weight));
        }
        average_packs[p] = a;
      }
    }
    for (int64_t i = vectorized + threadIdx.x; i < n; i += blockDim.x) {
      average[i] = Compute<T>::Store(math::MovingAverageStep<C>(
          Compute<T>::Load(average[i]), Compute<T>::Load(value[i]), weight));
    }
  }
};

template <typename T>
struct DebiasedElements {
  using C = typename Compute<T>::type;
  C weight;

  __device__ void operator()(const DebiasedSegment<T>& s, int64_t begin, int64_t end) const {
    T* average = s.average + begin;
    T* biased = s.biased + begin;
    const T* value = s.value + begin;
    const C denominator = static_cast<C>(s.debias_denominator);
    const int64_t n = end - begin;
    int64_t vectorized = 0;
    if (Aligned16(average) && Aligned16(biased) && Aligned16(value)) {
      constexpr int k = Pack<T>::kSize;
      vectorized = n / k * k;
      auto* average_packs = reinterpret_cast<Pack<T>*>(average);
      auto* biased_packs = reinterpret_cast<Pack<T>*>(biased);
      const auto* value_packs = reinterpret_cast<const Pack<T>*>(value);
      for (int64_t p = threadIdx.x; p < n / k; p += blockDim.x) {
        Pack<T> b = biased_packs[p];
        const Pack<T> v = value_packs[p];
        Pack<T> a;
#pragma unroll
        for (int j = 0; j < k; ++j) {
          b.v[j] = Compute<T>::Store(math::MovingAverageStep<C>(
              Compute<T>::Load(b.v[j]), Compute<T>::Load(v.v[j]), weight));
          a.v[j] = Compute<T>::Store(math::Debias<C>(Compute<T>::Load(b.v[j]), denominator));
        }
        biased_packs[p] = b;
        average_packs[p] = a;
      }
    }
    for (int64_t i = vectorized + threadIdx.x; i < n; i += blockDim.x) {
      const T b = Compute<T>::Store(math::MovingAverageStep<C>(
          Compute<T>::Load(biased[i]), Compute<T>::Load(value[i]), weight));
      biased[i] = b;
      average[i] = Compute<T>::Store(math::Debias<C>(Compute<T>::Load(b), denominator));
    }
  }
};

// Each block takes chunks (grid-stride) and finds its segment in the table.
template <typename Segment, typename Elements>
__global__ void __launch_bounds__(kThreadsPerBlock)
    MultiSegmentKernel(const SegmentTable<Segment> table, const Elements elements) {
  const int64_t chunks = table.first_chunk[table.count];
  int segment = 0;
  for (int64_t chunk = blockIdx.x; chunk < chunks; chunk += gridDim.x) {
    while (chunk >= table.first_chunk[segment + 1]) ++segment;
    const Segment& s = table.segments[segment];
    const int64_t begin = (chunk - table.first_chunk[segment]) * kChunkElements;
    const int64_t end = begin + kChunkElements < s.size ? begin + kChunkElements : s.size;
    elements(s, begin, end);
  }
}

template <typename Segment, typename Elements>
cudaError_t LaunchSegments(const Segment* segments, int64_t count, const Elements& elements,
                           cudaStream_t stream) {
  SegmentTable<Segment> table;
  table.count = 0;
  table.first_chunk[0] = 0;
  for (int64_t i = 0; i <= count; ++i) {
    const bool full = table.count == kMaxSegmentsPerLaunch;
    if ((i == count || full) && table.count > 0) {
      const int64_t chunks = table.first_chunk[table.count];
      const unsigned blocks = static_cast<unsigned>(std::min(chunks, kMaxBlocks));
      MultiSegmentKernel<<<blocks, kThreadsPerBlock, 0, stream>>>(table, elements);
      const cudaError_t error = cudaGetLastError();
      if (error != cudaSuccess) return error;
      table.count = 0;
    }
    if (i == count) break;
    if (segments[i].size == 0) continue;
    const int64_t chunks = (segments[i].size + kChunkElements - 1) / kChunkElements;
    table.segments[table.count] = segments[i];
    table.first_chunk[table.count + 1] = table.first_chunk[table.count] + chunks;
    ++table.count;
  }
  return cudaSuccess;
}

}  // namespace

template <typename T>
cudaError_t LaunchMovingAverageUpdate(const MovingAverageSegment<T>* segments, int64_t count,
                                      double weight, cudaStream_t stream) {
  using C = typename Compute<T>::type;
  return LaunchSegments(segments, count, MovingAverageElements<T>{static_cast<C>(weight)}, stream);
}

template <typename T>
cudaError_t LaunchDebiasedMovingAverageUpdate(const DebiasedSegment<T>* segments, int64_t count,
                                              double weight, cudaStream_t stream) {
  using C = typename Compute<T>::type;
  return LaunchSegments(segments, count, DebiasedElements<T>{static_cast<C>(weight)}, stream);
}

#define SWA_INSTANTIATE_LAUNCHERS(T)                                                           \
  template cudaError_t LaunchMovingAverageUpdate<T>(const MovingAverageSegment<T>*, int64_t,  \
                                                    double, cudaStream_t);                    \
  template cudaError_t LaunchDebiasedMovingAverageUpdate<T>(const DebiasedSegment<T>*,         \
                                                            int64_t, double, cudaStream_t)

SWA_INSTANTIATE_LAUNCHERS(float);
SWA_INSTANTIATE_LAUNCHERS(double);
SWA_INSTANTIATE_LAUNCHERS(__half);
SWA_INSTANTIATE_LAUNCHERS(__nv_bfloat16);

}  // namespace cuda
}  // namespace swa_ops
