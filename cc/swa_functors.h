// The update functors, one per kind of update, declared for any device and specialised for the
// CPU in swa_kernels.cc (and for the GPU in cuda/). No TensorFlow header here: the element type T
// is the storage type of the variables updated (Eigen::half, Eigen::bfloat16, float, double on
// the TensorFlow side), V that of the values averaged into them: T itself, or a narrower float
// (an `average_dtype` wider than the variable's, e.g. float32 averages of bfloat16 weights).
//
// A functor updates a list of segments (one per variable) in one call, so that a grouped op
// can spread all of its variables' bytes over the device at once.
#ifndef SWA_OPS_CC_SWA_FUNCTORS_H_
#define SWA_OPS_CC_SWA_FUNCTORS_H_

#include <cstdint>

namespace swa_ops {

template <typename T, typename V = T>
struct MovingAverageSegment {
  T* average;
  const V* value;
  int64_t size;
};

template <typename T, typename V = T>
struct DebiasedSegment {
  T* average;
  T* biased;
  const V* value;
  int64_t size;
  double debias_denominator;  // 1 - decay ** local_step, local_step already incremented.
};

namespace functor {

// For each segment: average[i] <- average[i] - (average[i] - value[i]) * weight, i < size.
template <typename Device, typename T, typename V = T>
struct MovingAverageUpdate {
  void operator()(const Device& device, const MovingAverageSegment<T, V>* segments, int64_t count,
                  double weight);
};

// For each segment: biased[i]  <- biased[i] - (biased[i] - value[i]) * weight
//                   average[i] <- biased[i] / debias_denominator, i < size.
template <typename Device, typename T, typename V = T>
struct DebiasedMovingAverageUpdate {
  void operator()(const Device& device, const DebiasedSegment<T, V>* segments, int64_t count,
                  double weight);
};

}  // namespace functor
}  // namespace swa_ops

#endif  // SWA_OPS_CC_SWA_FUNCTORS_H_
