// The CUDA half of the TensorFlow-free core (libswa_core): launchers for the segment updates of
// cc/core/segments.h. Plain device pointers, sizes, scalars and a stream: no TensorFlow header,
// so the TensorFlow kernels and the pybind11 module share them, and they build and are tested
// (tests/cuda/) on a machine with CUDA and no TensorFlow.
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

#include "export.h"
#include "segments.h"

namespace swa_ops {
namespace cuda {

// Each block of a launch updates one chunk of a segment at a time: at most this many
// elements. 16K elements (64 KB of float32) give W3's 64M floats 4096 blocks and a small
// variable list enough blocks to fill an H200 (measured faster than 32K and 64K there).
constexpr int64_t kChunkElements = 1 << 14;

// The segment table is passed by value as the kernel's parameter, which may take up to 32764
// bytes (CUDA 12.1 and newer, compute capability 7.0 and newer; this build needs a CUDA 13
// driver anyway). kParameterReserve leaves room for the update's scalars.
constexpr int64_t kMaxKernelParameterBytes = 32764;
constexpr int64_t kParameterReserve = 64;

// Segments per launch for one kind of segment: its table entry is the segment and the prefix
// sum of chunks that maps blocks to segments. A call with more segments is split into launches
// of this many (W2's 2000 variables of one dtype: 2 launches of SWA, 3 of debiased EMA).
template <typename Segment>
constexpr int64_t MaxSegmentsPerLaunch() {
  return (kMaxKernelParameterBytes - kParameterReserve - 2 * sizeof(int64_t)) /
         (sizeof(Segment) + sizeof(int64_t));
}

// Calls with at most this many segments launch a small table, so that a single variable's
// update does not pass 32 KB of parameters at every launch.
constexpr int64_t kSmallTableSegments = 16;

template <typename T, typename V = T>
SWA_CORE_API cudaError_t LaunchMovingAverageUpdate(const MovingAverageSegment<T, V>* segments, int64_t count,
                                      double weight, cudaStream_t stream);

template <typename T, typename V = T>
SWA_CORE_API cudaError_t LaunchDebiasedMovingAverageUpdate(const DebiasedSegment<T, V>* segments,
                                              int64_t count, double weight, cudaStream_t stream);

}  // namespace cuda
}  // namespace swa_ops

#endif  // SWA_OPS_CUDA_SWA_LAUNCHERS_H_
