// The update functors of the TensorFlow kernels, one per kind of update, declared for any device
// and specialised for the CPU in swa_kernels.cc and for the GPU (through the core's CUDA
// launchers) there too. A functor updates a list of segments (one per variable, see
// cc/core/segments.h) in one call, so that a grouped op can spread all of its variables' bytes
// over the device at once.
#ifndef SWA_OPS_CC_TF_SWA_FUNCTORS_H_
#define SWA_OPS_CC_TF_SWA_FUNCTORS_H_

#include <cstdint>

#include "segments.h"

namespace swa_ops {
namespace functor {

template <typename Device, typename T, typename V = T>
struct MovingAverageUpdate {
  void operator()(const Device& device, const MovingAverageSegment<T, V>* segments, int64_t count,
                  double weight);
};

template <typename Device, typename T, typename V = T>
struct DebiasedMovingAverageUpdate {
  void operator()(const Device& device, const DebiasedSegment<T, V>* segments, int64_t count,
                  double weight);
};

}  // namespace functor
}  // namespace swa_ops

#endif  // SWA_OPS_CC_TF_SWA_FUNCTORS_H_
