// The GPU side of the TensorFlow kernels (built only with SWA_OPS_WITH_CUDA): the device
// argument of the GPU update functors, and the TensorFlow storage types' CUDA counterparts.
#ifndef SWA_OPS_CC_GPU_DEVICE_H_
#define SWA_OPS_CC_GPU_DEVICE_H_

#if SWA_OPS_WITH_CUDA

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "unsupported/Eigen/CXX11/Tensor"

namespace swa_ops {

// The stream an op's GPU work goes to (TensorFlow's compute stream for the op), and the first
// launch error met on it.
struct GpuDevice {
  cudaStream_t stream;
  mutable cudaError_t error = cudaSuccess;

  void Record(cudaError_t launch) const {
    if (error == cudaSuccess) error = launch;
  }
};

// Eigen::half and Eigen::bfloat16 have the layout of __half and __nv_bfloat16.
template <typename T>
struct CudaType {
  using type = T;
};
template <>
struct CudaType<Eigen::half> {
  using type = __half;
};
template <>
struct CudaType<Eigen::bfloat16> {
  using type = __nv_bfloat16;
};
static_assert(sizeof(Eigen::half) == sizeof(__half) && alignof(Eigen::half) == alignof(__half));
static_assert(sizeof(Eigen::bfloat16) == sizeof(__nv_bfloat16) &&
              alignof(Eigen::bfloat16) == alignof(__nv_bfloat16));

}  // namespace swa_ops

#endif  // SWA_OPS_WITH_CUDA
#endif  // SWA_OPS_CC_GPU_DEVICE_H_
