// The CPU side of the update functors without TensorFlow: mapping a flat element range over
// several segments back to the segments, and the element loops. swa_kernels.cc runs them over
// TF's thread pool; tests/cpp/ runs them under AddressSanitizer and UBSan.
#ifndef SWA_OPS_CC_CPU_UPDATES_H_
#define SWA_OPS_CC_CPU_UPDATES_H_

#include <algorithm>
#include <cstdint>
#include <vector>

#include "swa_functors.h"
#include "swa_math.h"

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

// The element loops: C the compute type (float for half and bfloat16), T the storage type of the
// variables updated, V that of the values (T or narrower: converted to C exactly).
template <typename C, typename T, typename V>
void MovingAverageRange(const MovingAverageSegment<T, V>& segment, int64_t begin, int64_t end,
                        C weight) {
  T* __restrict__ average = segment.average;
  const V* __restrict__ value = segment.value;
  for (int64_t i = begin; i < end; ++i) {
    average[i] = static_cast<T>(math::MovingAverageStep<C>(static_cast<C>(average[i]),
                                                           static_cast<C>(value[i]), weight));
  }
}

template <typename C, typename T, typename V>
void DebiasedRange(const DebiasedSegment<T, V>& segment, int64_t begin, int64_t end, C weight) {
  T* __restrict__ average = segment.average;
  T* __restrict__ biased = segment.biased;
  const V* __restrict__ value = segment.value;
  const C denominator = static_cast<C>(segment.debias_denominator);
  for (int64_t i = begin; i < end; ++i) {
    const T new_biased = static_cast<T>(
        math::MovingAverageStep<C>(static_cast<C>(biased[i]), static_cast<C>(value[i]), weight));
    biased[i] = new_biased;
    average[i] = static_cast<T>(math::Debias<C>(static_cast<C>(new_biased), denominator));
  }
}

}  // namespace swa_ops

#endif  // SWA_OPS_CC_CPU_UPDATES_H_
