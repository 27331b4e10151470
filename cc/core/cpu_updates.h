// The CPU half of the TensorFlow-free core: mapping a flat element range over several segments
// back to the segments, and the range updates (compiled once, in cpu_updates.cc, into
// libswa_core). The TensorFlow kernels (cc/tf/) run them over TF's thread pool, the pybind11
// module (cc/pybind/) over OpenMP; tests/cpp/ runs them under AddressSanitizer and UBSan.
#ifndef SWA_OPS_CC_CORE_CPU_UPDATES_H_
#define SWA_OPS_CC_CORE_CPU_UPDATES_H_

#include <algorithm>
#include <cstdint>
#include <vector>

#include "Eigen/Core"
#include "export.h"
#include "segments.h"

namespace swa_ops {

// The cache hints SegmentRanges::ForEach gives for a segment some segments before it reaches
// it: the first kSegmentStartBytes of each of its arrays. Thousands of small variables lie
// scattered over the heap, a page or more apart, each start a cache (and TLB) miss that the
// hardware prefetchers cannot foresee; measured at 10,000 variables of 100 float32 in a
// tf.function, the grouped op's update took 0.45-1.0 ms with these hints, 0.83-1.7 ms without
// (the same process, alternate calls). Every segment type a front end splits gives its own.
constexpr int64_t kSegmentStartBytes = 512;
constexpr int64_t kSegmentsAhead = 4;

// The first kSegmentStartBytes of an array of `size` elements. Check the build with objdump
// after changing this: g++ 12 compiled an earlier form (a run-time read/write flag, the length
// through std::min<int64_t>(kSegmentStartBytes, ...)) to no prefetch at all.
template <int kForWrite, typename E>
void PrefetchStart(const E* data, int64_t size) {
  const char* start = reinterpret_cast<const char*>(data);
  const int64_t bytes = size * static_cast<int64_t>(sizeof(E));
  const int64_t end = bytes < kSegmentStartBytes ? bytes : kSegmentStartBytes;
  for (int64_t k = 0; k < end; k += 64) __builtin_prefetch(start + k, kForWrite);
}

template <typename T, typename V>
void PrefetchSegmentStart(const MovingAverageSegment<T, V>& segment) {
  PrefetchStart<1>(segment.average, segment.size);
  PrefetchStart<0>(segment.value, segment.size);
}

template <typename T, typename V>
void PrefetchSegmentStart(const DebiasedSegment<T, V>& segment) {
  PrefetchStart<1>(segment.average, segment.size);
  PrefetchStart<1>(segment.biased, segment.size);
  PrefetchStart<0>(segment.value, segment.size);
}

// The elements of several segments, numbered as if the segments were concatenated, so that
// work can be split by elements (bytes) instead of by segment.
template <typename Segment>
class SegmentRanges {
 public:
  SegmentRanges(const Segment* segments, int64_t count)
      : segments_(segments), count_(count), offsets_(count + 1, 0) {
    for (int64_t s = 0; s < count; ++s) offsets_[s + 1] = offsets_[s] + segments[s].size;
  }

  int64_t total() const { return offsets_.back(); }

  // Calls body(segment, segment_begin, segment_end) for the pieces of [begin, end), each after
  // PrefetchSegmentStart for the segment kSegmentsAhead after it.
  template <typename Body>
  void ForEach(int64_t begin, int64_t end, const Body& body) const {
    int64_t s = std::upper_bound(offsets_.begin(), offsets_.end(), begin) - offsets_.begin() - 1;
    for (int64_t ahead = s + 1; ahead < std::min(s + kSegmentsAhead, count_); ++ahead) {
      PrefetchSegmentStart(segments_[ahead]);
    }
    for (; begin < end; ++s) {
      if (s + kSegmentsAhead < count_) PrefetchSegmentStart(segments_[s + kSegmentsAhead]);
      const int64_t segment_end = std::min<int64_t>(end, offsets_[s + 1]);
      if (segment_end > begin) body(segments_[s], begin - offsets_[s], segment_end - offsets_[s]);
      begin = segment_end;
    }
  }

 private:
  const Segment* segments_;
  int64_t count_;
  std::vector<int64_t> offsets_;
};

// half and bfloat16 are computed in float32 and rounded once when stored.
template <typename T>
struct ComputeType {
  using type = T;
};
template <>
struct ComputeType<Eigen::half> {
  using type = float;
};
template <>
struct ComputeType<Eigen::bfloat16> {
  using type = float;
};

// The range updates, compiled once in cpu_updates.cc for the nine (T, V) pairs below: T the
// storage type of the averages, V that of the values (T or narrower). half and bfloat16 are
// computed in float32 and rounded once when stored, the others in T; each value is converted to
// the compute type exactly. `weight` is rounded to the compute type once.
//
// MovingAverageRange updates elements [begin, end) of one segment, DebiasedRange likewise; a
// front end splits an update's elements over its threads with SegmentRanges and calls these.
template <typename T, typename V>
SWA_CORE_API void MovingAverageRange(const MovingAverageSegment<T, V>& segment, int64_t begin,
                                     int64_t end, double weight);

template <typename T, typename V>
SWA_CORE_API void DebiasedRange(const DebiasedSegment<T, V>& segment, int64_t begin, int64_t end,
                                double weight);

// Expands F(T, V) for each of the nine pairs.
#define SWA_CORE_FOR_EACH_CPU_PAIR(F) \
  F(float, float)                     \
  F(double, double)                   \
  F(Eigen::half, Eigen::half)         \
  F(Eigen::bfloat16, Eigen::bfloat16) \
  F(float, Eigen::half)               \
  F(float, Eigen::bfloat16)           \
  F(double, Eigen::half)              \
  F(double, Eigen::bfloat16)          \
  F(double, float)

#define SWA_CORE_DECLARE_CPU_RANGES(T, V)                                                     \
  extern template SWA_CORE_API void MovingAverageRange<T, V>(const MovingAverageSegment<T, V>&, \
                                                             int64_t, int64_t, double);       \
  extern template SWA_CORE_API void DebiasedRange<T, V>(const DebiasedSegment<T, V>&, int64_t,  \
                                                        int64_t, double);
SWA_CORE_FOR_EACH_CPU_PAIR(SWA_CORE_DECLARE_CPU_RANGES)
#undef SWA_CORE_DECLARE_CPU_RANGES

}  // namespace swa_ops

#endif  // SWA_OPS_CC_CORE_CPU_UPDATES_H_
