// The CPU update code without TensorFlow, built under AddressSanitizer and UBSan: the element
// loops (cc/core/cpu_updates.h, cc/core/swa_math.h) and the split of a flat element range over many
// segments (SegmentRanges), driven by several std::threads over random pieces, as TF's thread
// pool drives them. Checks that every element is updated exactly once, bit-identical to a
// plain per-element loop. Prints "N passed, N failed"; exits 1 on failure.
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "cpu_updates.h"
#include "swa_math.h"

namespace {

int passed = 0, failed = 0;

void Expect(bool ok, const std::string& what) {
  if (ok) {
    ++passed;
  } else {
    ++failed;
    std::printf("FAILED %s\n", what.c_str());
  }
}

// Splits [0, total) into random pieces and runs them on `threads` threads.
template <typename Body>
void RunInPieces(std::mt19937_64& rng, int64_t total, int threads, const Body& body) {
  std::vector<int64_t> cuts = {0, total};
  std::uniform_int_distribution<int64_t> cut(0, total);
  for (int i = 0; i < 7 && total > 0; ++i) cuts.push_back(cut(rng));
  std::sort(cuts.begin(), cuts.end());
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      for (size_t p = t; p + 1 < cuts.size(); p += threads) body(cuts[p], cuts[p + 1]);
    });
  }
  for (auto& worker : workers) worker.join();
}

// T the storage type of the updated variables, V that of the values (T or narrower).
template <typename T, typename V = T>
void TestCase(std::mt19937_64& rng, const std::vector<int64_t>& sizes, int threads) {
  std::normal_distribution<double> normal;
  const size_t count = sizes.size();
  std::vector<std::vector<T>> average(count), biased(count);
  std::vector<std::vector<V>> value(count);
  std::vector<swa_ops::MovingAverageSegment<T, V>> plain(count);
  std::vector<swa_ops::DebiasedSegment<T, V>> debiased(count);
  for (size_t s = 0; s < count; ++s) {
    for (auto* v : {&average[s], &biased[s]}) {
      v->resize(sizes[s]);
      for (auto& x : *v) x = static_cast<T>(normal(rng));
    }
    value[s].resize(sizes[s]);
    for (auto& x : value[s]) x = static_cast<V>(normal(rng));
  }
  auto expected_average = average;  // Debiased overwrites it entirely.
  auto expected_biased = biased;
  const T weight = static_cast<T>(1.0 / 3.0);
  for (size_t s = 0; s < count; ++s) {
    const double denominator = 1.0 - 0.5 / (s + 1.0);
    for (int64_t i = 0; i < sizes[s]; ++i) {
      expected_biased[s][i] =
          swa_ops::math::MovingAverageStep<T>(expected_biased[s][i], static_cast<T>(value[s][i]),
                                              weight);
      expected_average[s][i] =
          swa_ops::math::Debias<T>(expected_biased[s][i], static_cast<T>(denominator));
    }
    plain[s] = {average[s].data(), value[s].data(), sizes[s]};
    debiased[s] = {average[s].data(), biased[s].data(), value[s].data(), sizes[s], denominator};
  }
  // MovingAverage into copies of `average`, counting visits.
  auto moving = average;
  std::vector<std::vector<int>> visits(count);
  for (size_t s = 0; s < count; ++s) {
    plain[s].average = moving[s].data();
    visits[s].assign(sizes[s], 0);
  }
  const swa_ops::SegmentRanges<swa_ops::MovingAverageSegment<T, V>> ranges(plain.data(), count);
  RunInPieces(rng, ranges.total(), threads, [&](int64_t begin, int64_t end) {
    ranges.ForEach(begin, end, [&](const swa_ops::MovingAverageSegment<T, V>& segment, int64_t b,
                                   int64_t e) {
      swa_ops::MovingAverageRange<T>(segment, b, e, weight);
      const size_t s = &segment - plain.data();
      for (int64_t i = b; i < e; ++i) ++visits[s][i];
    });
  });
  std::string label = std::string(sizeof(T) == 4 ? "float32" : "float64") +
                      (sizeof(V) == sizeof(T) ? "" : " from float32 values") + " segments " +
                      std::to_string(count) + " threads " + std::to_string(threads);
  for (size_t s = 0; s < count; ++s) {
    bool once = true;
    for (int v : visits[s]) once &= v == 1;
    Expect(once, label + " every element visited once, segment " + std::to_string(s));
    bool same = true;
    for (int64_t i = 0; i < sizes[s]; ++i) {
      T want = swa_ops::math::MovingAverageStep<T>(average[s][i], static_cast<T>(value[s][i]),
                                                    weight);
      same &= std::memcmp(&want, &moving[s][i], sizeof(T)) == 0;
    }
    Expect(same, label + " MovingAverageRange, segment " + std::to_string(s));
  }
  // Debiased, in place.
  const swa_ops::SegmentRanges<swa_ops::DebiasedSegment<T, V>> debiased_ranges(debiased.data(),
                                                                             count);
  RunInPieces(rng, debiased_ranges.total(), threads, [&](int64_t begin, int64_t end) {
    debiased_ranges.ForEach(begin, end, [&](const swa_ops::DebiasedSegment<T, V>& segment, int64_t b,
                                            int64_t e) {
      swa_ops::DebiasedRange<T>(segment, b, e, weight);
    });
  });
  for (size_t s = 0; s < count; ++s) {
    const bool same = sizes[s] == 0 ||
        std::memcmp(biased[s].data(), expected_biased[s].data(), sizes[s] * sizeof(T)) == 0 &&
        std::memcmp(average[s].data(), expected_average[s].data(), sizes[s] * sizeof(T)) == 0;
    Expect(same, label + " DebiasedRange, segment " + std::to_string(s));
  }
}

}  // namespace

int main() {
  std::mt19937_64 rng(7);
  std::uniform_int_distribution<int64_t> size(0, 3000);
  for (int trial = 0; trial < 20; ++trial) {
    std::vector<int64_t> sizes(1 + trial * 7);
    for (auto& s : sizes) s = size(rng) % 5 == 0 ? 0 : size(rng);
    TestCase<float>(rng, sizes, 1 + trial % 4);
    TestCase<double>(rng, sizes, 1 + trial % 3);
    TestCase<double, float>(rng, sizes, 1 + trial % 2);
  }
  TestCase<float>(rng, {}, 2);
  TestCase<float>(rng, {0, 0, 0}, 2);
  TestCase<double>(rng, {1 << 20}, 2);
  // Around the size from which the loops prefetch (64 KiB of T) and off the 1 KiB chunks.
  TestCase<float>(rng, {16383, 16384, 16385, 70001}, 3);
  TestCase<double, float>(rng, {8191, 8192, 9001}, 2);
  std::printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
