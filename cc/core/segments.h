// The unit of work of every update: one segment per variable (or array), plain pointers and a
// size. T is the storage type of the averages updated (Eigen::half, Eigen::bfloat16, float,
// double on the CPU; __half, __nv_bfloat16, float, double on the GPU), V that of the values
// averaged into them: T itself, or a narrower float (float32 averages of bfloat16 weights).
// No framework header: both front ends fill these from their own arrays.
#ifndef SWA_OPS_CC_CORE_SEGMENTS_H_
#define SWA_OPS_CC_CORE_SEGMENTS_H_

#include <cstdint>

namespace swa_ops {

// average[i] <- average[i] - (average[i] - value[i]) * weight, i < size.
template <typename T, typename V = T>
struct MovingAverageSegment {
  T* average;
  const V* value;
  int64_t size;
};

// biased[i]  <- biased[i] - (biased[i] - value[i]) * weight
// average[i] <- biased[i] / debias_denominator, i < size.
template <typename T, typename V = T>
struct DebiasedSegment {
  T* average;
  T* biased;
  const V* value;
  int64_t size;
  double debias_denominator;  // 1 - decay ** local_step, local_step already incremented.
};

}  // namespace swa_ops

#endif  // SWA_OPS_CC_CORE_SEGMENTS_H_
