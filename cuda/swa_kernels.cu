// Bandwidth-bound multi-segment kernels: vector loads and stores where a segment's arrays are
// aligned for them (a scalar path otherwise and for the tail), a grid-stride loop over
// (segment, chunk) blocks, float16/bfloat16 computed in float32 and rounded once. The element
// math is cc/core/swa_math.h, shared with the CPU kernels (its _rn intrinsics prevent FMA fusion, so
// results are bit-identical to the CPU's).
//
// T is the storage type of the variables updated, V that of the values (T, or a narrower float:
// see swa_launchers.h). Both are computed in C, the compute type of T (float for __half and
// __nv_bfloat16, T otherwise); a value is converted to C exactly (C is never narrower than V).
// A vector step handles K = 16 / sizeof(T) elements: 16-byte packs of T and packs of K V's
// (K * sizeof(V) bytes, aligned to that size).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "swa_launchers.h"
#include "swa_math.h"

namespace swa_ops {
namespace cuda {
namespace {

constexpr int kThreadsPerBlock = 256;
constexpr int64_t kMaxBlocks = 1 << 16;

// Storage type <-> its compute type: half and bfloat16 in float32.
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

// A value of storage type V in the compute type C of the variables it is averaged into: exact,
// as C is at least as wide as V's own compute type (half -> float -> double, float -> double).
template <typename C, typename V>
__device__ inline C LoadAs(V x) {
  static_assert(sizeof(C) >= sizeof(typename Compute<V>::type), "value narrowed");
  return static_cast<C>(Compute<V>::Load(x));
}

// K elements of X, read or written by one access of K * sizeof(X) bytes.
template <typename X, int K>
struct alignas(K * sizeof(X)) Pack {
  X v[K];
};

// How the element loop accesses one array of a segment piece: loaded (kLoad), stored (kStore)
// or both. An array only stored is never read: a step's op assigns each of its elements.
template <typename X, bool kLoad, bool kStore>
struct Array {
  X* data;

  template <int K>
  __device__ bool Aligned() const {
    return (reinterpret_cast<uintptr_t>(data) % (K * sizeof(X))) == 0;
  }
};
template <typename X>
__device__ inline Array<X, true, true> LoadStore(X* data) { return {data}; }
template <typename X>
__device__ inline Array<X, false, true> StoreOnly(X* data) { return {data}; }
template <typename X>
__device__ inline Array<const X, true, false> LoadOnly(const X* data) { return {data}; }

// One array's pack p (elements p * K .. p * K + K - 1) during a step. The packs are addressed
// as Pack pointers (not as element pointers cast at an offset), which is what lets nvcc emit one
// vector access per pack.
template <int K, typename X, bool kLoad, bool kStore>
struct Lane {
  using Element = std::remove_const_t<X>;
  X* data;
  Pack<Element, K> pack;

  __device__ void Store(int64_t p) const {
    if constexpr (kStore) reinterpret_cast<Pack<Element, K>*>(data)[p] = pack;
  }
};

template <int K, typename X, bool kLoad, bool kStore>
__device__ __forceinline__ Lane<K, X, kLoad, kStore> Load(Array<X, kLoad, kStore> array,
                                                          int64_t p) {
  using Element = std::remove_const_t<X>;
  Lane<K, X, kLoad, kStore> lane;
  lane.data = array.data;
  if constexpr (kLoad) lane.pack = reinterpret_cast<const Pack<Element, K>*>(array.data)[p];
  return lane;
}

// Pack p of every array: every load, then op on each element (references into the packs, in
// the order of the arrays), then every store.
template <int K, typename Op, typename... Lanes>
__device__ __forceinline__ void ApplyLanes(const Op& op, int64_t p, Lanes... lanes) {
#pragma unroll
  for (int j = 0; j < K; ++j) op(lanes.pack.v[j]...);
  (lanes.Store(p), ...);
}

template <int K, typename Op, typename... Arrays>
__device__ __forceinline__ void Step(const Op& op, int64_t p, Arrays... arrays) {
  ApplyLanes<K>(op, p, Load<K>(arrays, p)...);
}

// Packs p and q of one array, loaded together.
template <int K, typename X, bool kLoad, bool kStore>
struct LanePair {
  Lane<K, X, kLoad, kStore> first, second;
};

template <int K, typename X, bool kLoad, bool kStore>
__device__ __forceinline__ LanePair<K, X, kLoad, kStore> LoadPair(Array<X, kLoad, kStore> array,
                                                                  int64_t p, int64_t q) {
  return {Load<K>(array, p), Load<K>(array, q)};
}

// Packs p and q of every array: both packs' loads before any store, so that a thread keeps
// twice the bytes in flight.
template <int K, typename Op, typename... Pairs>
__device__ __forceinline__ void ApplyPairs(const Op& op, int64_t p, int64_t q, Pairs... pairs) {
#pragma unroll
  for (int j = 0; j < K; ++j) op(pairs.first.pack.v[j]...);
#pragma unroll
  for (int j = 0; j < K; ++j) op(pairs.second.pack.v[j]...);
  (pairs.first.Store(p), ...);
  (pairs.second.Store(q), ...);
}

template <int K, typename Op, typename... Arrays>
__device__ __forceinline__ void StepPair(const Op& op, int64_t p, int64_t q, Arrays... arrays) {
  ApplyPairs<K>(op, p, q, LoadPair<K>(arrays, p, q)...);
}

// The element loop of a segment piece of n elements, shared by the update kinds: the block's
// threads take K-element steps (vector accesses), two at a time, where every array is aligned
// for its pack, then single elements for the rest (or for all of them when an array is
// unaligned). Two packs per step: on an H200, W1's debiased update went from 83% to 86% of a
// device-to-device copy, the SWA update from 92% to 94%; W3's from 91% to 90% and 96% to 95%.
template <int K, typename Op, typename... Arrays>
__device__ __forceinline__ void ForEachElement(int64_t n, const Op& op, Arrays... arrays) {
  int64_t vectorized = 0;
  if ((arrays.template Aligned<K>() && ...)) {
    vectorized = n / K * K;
    const int64_t packs = n / K;
    int64_t p = threadIdx.x;
    for (; p + blockDim.x < packs; p += 2 * blockDim.x) {
      StepPair<K>(op, p, p + blockDim.x, arrays...);
    }
    if (p < packs) Step<K>(op, p, arrays...);
  }
  for (int64_t i = vectorized + threadIdx.x; i < n; i += blockDim.x) Step<1>(op, i, arrays...);
}

// A launch's segments and the prefix sums of their chunks (first_chunk[count] chunks in all).
// kCapacity is one of the table sizes LaunchSegments picks from.
template <typename Segment, int64_t kCapacity>
struct SegmentTable {
  Segment segments[kCapacity];
  int64_t first_chunk[kCapacity + 1];
  int64_t count;
};

template <typename T, typename V>
struct MovingAverageElements {
  using C = typename Compute<T>::type;
  static constexpr int kPack = 16 / sizeof(T);
  C weight;

  __device__ void operator()(const MovingAverageSegment<T, V>& s, int64_t begin,
                             int64_t end) const {
    const C w = weight;
    ForEachElement<kPack>(
        end - begin,
        [w](T& average, const V& value) {
          average = Compute<T>::Store(
              math::MovingAverageStep<C>(Compute<T>::Load(average), LoadAs<C>(value), w));
        },
        LoadStore(s.average + begin), LoadOnly(s.value + begin));
  }
};

template <typename T, typename V>
struct DebiasedElements {
  using C = typename Compute<T>::type;
  static constexpr int kPack = 16 / sizeof(T);
  C weight;

  __device__ void operator()(const DebiasedSegment<T, V>& s, int64_t begin, int64_t end) const {
    const C w = weight;
    const C denominator = static_cast<C>(s.debias_denominator);
    ForEachElement<kPack>(
        end - begin,
        [w, denominator](T& biased, T& average, const V& value) {
          biased = Compute<T>::Store(
              math::MovingAverageStep<C>(Compute<T>::Load(biased), LoadAs<C>(value), w));
          average = Compute<T>::Store(math::Debias<C>(Compute<T>::Load(biased), denominator));
        },
        LoadStore(s.biased + begin), StoreOnly(s.average + begin), LoadOnly(s.value + begin));
  }
};

// Index of the segment holding `chunk`: the last s in [first, count) with first_chunk[s] <=
// chunk (binary search; the table is in the parameter space, read uniformly by the block).
template <typename Table>
__device__ __forceinline__ int64_t SegmentOf(const Table& table, int64_t chunk, int64_t first) {
  int64_t last = table.count - 1;
  while (first < last) {
    const int64_t middle = (first + last + 1) / 2;
    if (table.first_chunk[middle] <= chunk) {
      first = middle;
    } else {
      last = middle - 1;
    }
  }
  return first;
}

// Each block takes chunks (grid-stride) and finds their segments in the table. The table is a
// __grid_constant__ parameter: indexed in place, never copied to each thread's local memory.
template <typename Table, typename Elements>
__global__ void __launch_bounds__(kThreadsPerBlock)
    MultiSegmentKernel(const __grid_constant__ Table table, const Elements elements) {
  const int64_t chunks = table.first_chunk[table.count];
  int64_t segment = 0;
  for (int64_t chunk = blockIdx.x; chunk < chunks; chunk += gridDim.x) {
    segment = SegmentOf(table, chunk, segment);
    const auto& s = table.segments[segment];
    const int64_t begin = (chunk - table.first_chunk[segment]) * kChunkElements;
    const int64_t end = begin + kChunkElements < s.size ? begin + kChunkElements : s.size;
    elements(s, begin, end);
  }
}

// Fills tables of the given capacity with the non-empty segments, launching each when full
// and the last one at the end.
template <int64_t kCapacity, typename Segment, typename Elements>
cudaError_t LaunchTables(const Segment* segments, int64_t count, const Elements& elements,
                         cudaStream_t stream) {
  using Table = SegmentTable<Segment, kCapacity>;
  static_assert(sizeof(Table) + sizeof(Elements) <= kMaxKernelParameterBytes,
                "the segment table exceeds the kernel parameter space");
  Table table;
  table.count = 0;
  table.first_chunk[0] = 0;
  for (int64_t i = 0; i <= count; ++i) {
    const bool full = table.count == kCapacity;
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

// The smallest table that holds the call's segments: a launch's cost grows with the bytes of
// its parameters (on an H200, a 32 KB table took about 10 us longer than a 1 KB one).
template <typename Segment, typename Elements>
cudaError_t LaunchSegments(const Segment* segments, int64_t count, const Elements& elements,
                           cudaStream_t stream) {
  constexpr int64_t kLargest = MaxSegmentsPerLaunch<Segment>();
  static_assert(kLargest >= 16 * kSmallTableSegments,
                "the largest table must hold more segments than the 16 * small one");
  if (count <= kSmallTableSegments) {
    return LaunchTables<kSmallTableSegments>(segments, count, elements, stream);
  }
  if (count <= 4 * kSmallTableSegments) {
    return LaunchTables<4 * kSmallTableSegments>(segments, count, elements, stream);
  }
  if (count <= 16 * kSmallTableSegments) {
    return LaunchTables<16 * kSmallTableSegments>(segments, count, elements, stream);
  }
  return LaunchTables<kLargest>(segments, count, elements, stream);
}

}  // namespace

template <typename T, typename V>
cudaError_t LaunchMovingAverageUpdate(const MovingAverageSegment<T, V>* segments, int64_t count,
                                      double weight, cudaStream_t stream) {
  using C = typename Compute<T>::type;
  return LaunchSegments(segments, count, MovingAverageElements<T, V>{static_cast<C>(weight)},
                        stream);
}

template <typename T, typename V>
cudaError_t LaunchDebiasedMovingAverageUpdate(const DebiasedSegment<T, V>* segments,
                                              int64_t count, double weight,
                                              cudaStream_t stream) {
  using C = typename Compute<T>::type;
  return LaunchSegments(segments, count, DebiasedElements<T, V>{static_cast<C>(weight)}, stream);
}

#define SWA_INSTANTIATE_LAUNCHERS(T, V)                                                    \
  template SWA_CORE_API cudaError_t LaunchMovingAverageUpdate<T, V>(                       \
      const MovingAverageSegment<T, V>*, int64_t, double, cudaStream_t);                   \
  template SWA_CORE_API cudaError_t LaunchDebiasedMovingAverageUpdate<T, V>(               \
      const DebiasedSegment<T, V>*, int64_t, double, cudaStream_t)

SWA_INSTANTIATE_LAUNCHERS(float, float);
SWA_INSTANTIATE_LAUNCHERS(double, double);
SWA_INSTANTIATE_LAUNCHERS(__half, __half);
SWA_INSTANTIATE_LAUNCHERS(__nv_bfloat16, __nv_bfloat16);
SWA_INSTANTIATE_LAUNCHERS(float, __half);
SWA_INSTANTIATE_LAUNCHERS(float, __nv_bfloat16);
SWA_INSTANTIATE_LAUNCHERS(double, __half);
SWA_INSTANTIATE_LAUNCHERS(double, __nv_bfloat16);
SWA_INSTANTIATE_LAUNCHERS(double, float);

#undef SWA_INSTANTIATE_LAUNCHERS

}  // namespace cuda
}  // namespace swa_ops
