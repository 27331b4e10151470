// The update functors, one per kind of update, declared for any device and specialised for the
// CPU in swa_kernels.cc (and for the GPU in cuda/). No TensorFlow header here: the element type T
// is the storage type (Eigen::half, Eigen::bfloat16, float, double on the TensorFlow side).
#ifndef SWA_OPS_CC_SWA_FUNCTORS_H_
#define SWA_OPS_CC_SWA_FUNCTORS_H_

#include <cstdint>

namespace swa_ops {
namespace functor {

// average[i] <- average[i] - (average[i] - value[i]) * weight, for i < size.
template <typename Device, typename T>
struct MovingAverageUpdate {
  void operator()(const Device& device, T* average, const T* value, int64_t size, double weight);
};

// biased[i]  <- biased[i] - (biased[i] - value[i]) * weight
// average[i] <- biased[i] / debias_denominator, for i < size.
template <typename Device, typename T>
struct DebiasedMovingAverageUpdate {
  void operator()(const Device& device, T* average, T* biased, const T* value, int64_t size,
                  double weight, double debias_denominator);
};

}  // namespace functor
}  // namespace swa_ops

#endif  // SWA_OPS_CC_SWA_FUNCTORS_H_
