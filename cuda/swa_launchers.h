// CUDA launchers for the update functors of cc/swa_functors.h. Plain device pointers, sizes,
// scalars and a stream: no TensorFlow header, so they build and are tested (tests/cuda/) on a
// machine with CUDA and no TensorFlow.
//
// T is the storage type of the variables updated (average, biased), V that of the values
// averaged into them: (T, T) for T in float, double, __half, __nv_bfloat16 (layout-compatible
// with Eigen::half and Eigen::bfloat16 on the TensorFlow side), and narrower values: (float,
// __half), (float, __nv_bfloat16), (double, __half), (double, __nv_bfloat16), (double, float).
// These nine pairs are instantiated in swa_kernels.cu. Like the CPU kernels, the math is in
// float32 for __half and __nv_bfloat16 variables and in T otherwise, each value converted to
// that type exactly.
//
// The segments array lives in host memory and holds device pointers; all segments of one call
// are updated by one kernel launch in the style of a multi-tensor apply (a table of segments
// and a map from blocks to (segment, chunk)), split into several launches only when the table
// is full. No host synchronisation.
#ifndef SWA_OPS_CUDA_SWA_LAUNCHERS_H_
#define SWA_OPS_CUDA_SWA_LAUNCHERS_H_

#include <cuda_runtime.h>

#include <cstdint>

#include "swa_functors.h"

namespace swa_ops {
namespace cuda {

// Segments per launch: the table is a kernel parameter and must fit the 4 KB parameter space.
constexpr int kMaxSegmentsPerLaunch = 32;

template <typename T, typename V = T>
cudaError_t LaunchMovingAverageUpdate(const MovingAverageSegment<T, V>* segments, int64_t count,
                                      double weight, cudaStream_t stream);

template <typename T, typename V = T>
cudaError_t LaunchDebiasedMovingAverageUpdate(const DebiasedSegment<T, V>* segments,
                                              int64_t count, double weight, cudaStream_t stream);

}  // namespace cuda
}  // namespace swa_ops

#endif  // SWA_OPS_CUDA_SWA_LAUNCHERS_H_
