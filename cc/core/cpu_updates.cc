// The CPU element loops of the core, compiled once for the nine (T, V) pairs of cpu_updates.h.
#include "cpu_updates.h"

#include "swa_math.h"

namespace swa_ops {
namespace {

// The element loops: C the compute type, T the storage type of the averages, V that of the
// values. They take __restrict__ pointers as parameters, so that the compiler vectorises them.
template <typename C, typename T, typename V>
void MovingAverageElements(T* __restrict__ average, const V* __restrict__ value, int64_t count,
                           C weight) {
  for (int64_t i = 0; i < count; ++i) {
    average[i] = static_cast<T>(math::MovingAverageStep<C>(static_cast<C>(average[i]),
                                                           static_cast<C>(value[i]), weight));
  }
}

template <typename C, typename T, typename V>
void DebiasedElements(T* __restrict__ average, T* __restrict__ biased, const V* __restrict__ value,
                      int64_t count, C weight, C denominator) {
  for (int64_t i = 0; i < count; ++i) {
    const T new_biased = static_cast<T>(
        math::MovingAverageStep<C>(static_cast<C>(biased[i]), static_cast<C>(value[i]), weight));
    biased[i] = new_biased;
    average[i] = static_cast<T>(math::Debias<C>(static_cast<C>(new_biased), denominator));
  }
}

// The range loops hint the cache to fetch each array kPrefetchBytes (of T elements) ahead, within
// the segment only, in segments of kPrefetchMinBytes or more. Streaming three arrays from memory,
// the hardware prefetchers alone leave a core well short of its bandwidth; on small segments the
// hints only cost (measured side by side, 2000 x 1000 float32 values: 8% slower with them).
constexpr int64_t kPrefetchBytes = 2048;
constexpr int64_t kPrefetchMinBytes = 64 * 1024;

// Calls elements(i, count) over [begin, end), a range of a segment of `size` elements: at once in
// a small segment, else in chunks of 1 KiB of T elements (long enough to stay a vectorised loop),
// each after prefetch(k) for every 64-byte line k of the chunk kPrefetchBytes ahead that lies in
// the segment.
template <typename T, typename Elements, typename Prefetch>
void ForEachChunk(int64_t begin, int64_t end, int64_t size, const Elements& elements,
                  const Prefetch& prefetch) {
  constexpr int64_t kLine = 64 / sizeof(T);
  constexpr int64_t kChunk = 1024 / sizeof(T);
  constexpr int64_t kAhead = kPrefetchBytes / sizeof(T);
  if (size * static_cast<int64_t>(sizeof(T)) < kPrefetchMinBytes) {
    elements(begin, end - begin);
    return;
  }
  for (int64_t i = begin; i < end; i += kChunk) {
    const int64_t count = std::min(kChunk, end - i);
    const int64_t prefetch_end = std::min(i + count + kAhead, size);
    for (int64_t k = i + kAhead; k < prefetch_end; k += kLine) prefetch(k);
    elements(i, count);
  }
}

}  // namespace

template <typename T, typename V>
void MovingAverageRange(const MovingAverageSegment<T, V>& segment, int64_t begin, int64_t end,
                        double weight) {
  using C = typename ComputeType<T>::type;
  const C w = static_cast<C>(weight);
  T* average = segment.average;
  const V* value = segment.value;
  ForEachChunk<T>(
      begin, end, segment.size,
      [&](int64_t i, int64_t count) {
        MovingAverageElements<C>(average + i, value + i, count, w);
      },
      [&](int64_t k) {
        __builtin_prefetch(average + k, /*rw=*/1);
        __builtin_prefetch(value + k, /*rw=*/0);
      });
}

template <typename T, typename V>
void DebiasedRange(const DebiasedSegment<T, V>& segment, int64_t begin, int64_t end,
                   double weight) {
  using C = typename ComputeType<T>::type;
  const C w = static_cast<C>(weight);
  T* average = segment.average;
  T* biased = segment.biased;
  const V* value = segment.value;
  const C denominator = static_cast<C>(segment.debias_denominator);
  ForEachChunk<T>(
      begin, end, segment.size,
      [&](int64_t i, int64_t count) {
        DebiasedElements<C>(average + i, biased + i, value + i, count, w, denominator);
      },
      [&](int64_t k) {
        __builtin_prefetch(average + k, /*rw=*/1);
        __builtin_prefetch(biased + k, /*rw=*/1);
        __builtin_prefetch(value + k, /*rw=*/0);
      });
}

#define SWA_CORE_INSTANTIATE_CPU_RANGES(T, V)                                                 \
  template SWA_CORE_API void MovingAverageRange<T, V>(const MovingAverageSegment<T, V>&,      \
                                                      int64_t, int64_t, double);              \
  template SWA_CORE_API void DebiasedRange<T, V>(const DebiasedSegment<T, V>&, int64_t, int64_t, \
                                                 double);
SWA_CORE_FOR_EACH_CPU_PAIR(SWA_CORE_INSTANTIATE_CPU_RANGES)
#undef SWA_CORE_INSTANTIATE_CPU_RANGES

}  // namespace swa_ops
