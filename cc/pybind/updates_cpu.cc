// The CPU updates: the core's range updates over OpenMP threads, split by bytes (blocks of the
// elements of all arrays taken as one range, SegmentRanges), so one huge array and thousands of
// small ones alike use every core.
#include <omp.h>

#include <algorithm>
#include <cstring>

#include "cpu_updates.h"
#include "updates.h"

namespace swa_ops {
namespace pybind {

namespace {

// An update moving fewer bytes than this runs on the calling thread: waking the OpenMP team
// costs more than it saves.
constexpr int64_t kInlineMaxBytes = 256 << 10;

// Blocks of elements per thread, taken in turn (dynamic schedule): where a thread is held up
// (a machine shared with other work), the others take its blocks.
constexpr int64_t kBlocksPerThread = 4;

template <DType D>
struct CpuType;
template <>
struct CpuType<DType::kFloat16> {
  using type = Eigen::half;
};
template <>
struct CpuType<DType::kBFloat16> {
  using type = Eigen::bfloat16;
};
template <>
struct CpuType<DType::kFloat32> {
  using type = float;
};
template <>
struct CpuType<DType::kFloat64> {
  using type = double;
};

// Runs body(segment, begin, end) over every element of `segments`: on this thread if small,
// else in one OpenMP parallel loop over kBlocksPerThread contiguous blocks of elements per
// thread, taken in turn.
template <typename Segment, typename Body>
void ParallelOverSegments(const std::vector<Segment>& segments, int64_t bytes_per_element,
                          const Body& body) {
  const SegmentRanges<Segment> ranges(segments.data(), static_cast<int64_t>(segments.size()));
  const int64_t total = ranges.total();
  if (total == 0) return;
  const int64_t threads =
      std::min<int64_t>(CpuThreads(), total * bytes_per_element / (kInlineMaxBytes / 4) + 1);
  if (threads <= 1 || total * bytes_per_element < kInlineMaxBytes) {
    ranges.ForEach(0, total, body);
    return;
  }
  const int64_t blocks = kBlocksPerThread * threads;
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
  for (int64_t block = 0; block < blocks; ++block) {
    ranges.ForEach(total * block / blocks, total * (block + 1) / blocks, body);
  }
}

// The bytes of two arrays of one size, exchanged.
struct SwapSegment {
  char* a;
  char* b;
  int64_t size;
};

void PrefetchSegmentStart(const SwapSegment& segment) {
  PrefetchStart<1>(segment.a, segment.size);
  PrefetchStart<1>(segment.b, segment.size);
}

void SwapBytes(const SwapSegment& segment, int64_t begin, int64_t end) {
  constexpr int64_t kChunk = 4096;
  alignas(64) char buffer[kChunk];
  for (int64_t i = begin; i < end; i += kChunk) {
    const int64_t count = std::min(kChunk, end - i);
    std::memcpy(buffer, segment.a + i, count);
    std::memcpy(segment.a + i, segment.b + i, count);
    std::memcpy(segment.b + i, buffer, count);
  }
}

}  // namespace

int CpuThreads() { return std::max(1, omp_get_max_threads()); }

void MovingAverageCpu(const ArrayList& averages, const ArrayList& values, double weight) {
  if (averages.size() == 0) return;
  DispatchPair<CpuType>(averages.arrays[0].dtype, values.arrays[0].dtype, [&](auto t, auto v) {
    using T = typename decltype(t)::type;
    using V = typename decltype(v)::type;
    const auto segments = MovingAverageSegments<T, V>(averages, values);
    ParallelOverSegments(segments, 2 * sizeof(T) + sizeof(V),
                         [weight](const MovingAverageSegment<T, V>& segment, int64_t begin,
                                  int64_t end) { MovingAverageRange(segment, begin, end, weight); });
  });
}

void DebiasedCpu(const ArrayList& averages, const ArrayList& biased, const ArrayList& values,
                 double weight, const std::vector<double>& denominators) {
  if (averages.size() == 0) return;
  DispatchPair<CpuType>(averages.arrays[0].dtype, values.arrays[0].dtype, [&](auto t, auto v) {
    using T = typename decltype(t)::type;
    using V = typename decltype(v)::type;
    const auto segments = DebiasedSegments<T, V>(averages, biased, values, denominators);
    ParallelOverSegments(segments, 4 * sizeof(T) + sizeof(V),
                         [weight](const DebiasedSegment<T, V>& segment, int64_t begin,
                                  int64_t end) { DebiasedRange(segment, begin, end, weight); });
  });
}

void SwapCpu(const ArrayList& a, const ArrayList& b) {
  std::vector<SwapSegment> segments(a.size());
  for (size_t i = 0; i < segments.size(); ++i) {
    segments[i] = {static_cast<char*>(a.arrays[i].data), static_cast<char*>(b.arrays[i].data),
                   a.arrays[i].bytes()};
  }
  ParallelOverSegments(segments, 4, SwapBytes);
}

}  // namespace pybind
}  // namespace swa_ops
