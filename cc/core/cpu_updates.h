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

// The elements of several segments, numbered as if the segments were concatenated, so that
// work can be split by elements (bytes) instead of by segment.
template <typename Segment>
class SegmentRanges {
 public:
  SegmentRanges(const Segment* segments, int64_t count)
      : segments_(segments), offsets_(count + 1, 0) {
    for (int64_t s = 0; s < count; ++s) offsets_[s + 1] = offsets_[s] + segments[s].size;
  }

  int64_t total() const { return offsets_.back(); }

  // Calls body(segment, segment_begin, segment_end) for the pieces of [begin, end).
  template <typename Body>
  void ForEach(int64_t begin, int64_t end, const Body& body) const {
    int64_t s = std::upper_bound(offsets_.begin(), offsets_.end(), begin) - offsets_.begin() - 1;
    for (; begin < end; ++s) {
      const int64_t segment_end = std::min<int64_t>(end, offsets_[s + 1]);
      if (segment_end > begin) body(segments_[s], begin - offsets_[s], segment_end - offsets_[s]);
      begin = segment_end;
    }
  }

 private:
  const Segment* segments_;
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
