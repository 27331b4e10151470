// The CUDA updates: segment tables of device pointers handed to the core's launchers
// (cuda/swa_launchers.h), one launch per call (more only past ~1000 arrays), on the caller's
// stream and device. Compiled only with SWA_OPS_WITH_CUDA.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <string>

#include "swa_launchers.h"
#include "updates.h"

namespace swa_ops {
namespace pybind {

namespace {

template <DType D>
struct CudaType;
template <>
struct CudaType<DType::kFloat16> {
  using type = __half;
};
template <>
struct CudaType<DType::kBFloat16> {
  using type = __nv_bfloat16;
};
template <>
struct CudaType<DType::kFloat32> {
  using type = float;
};
template <>
struct CudaType<DType::kFloat64> {
  using type = double;
};

void Check(cudaError_t error, const char* what) {
  if (error != cudaSuccess) {
    throw std::runtime_error(std::string("swa_ops.kernels: ") + what + ": " +
                             cudaGetErrorString(error));
  }
}

// DLPack's stream numbers are CUDA's handles (1 cudaStreamLegacy, 2 cudaStreamPerThread, else
// the stream itself).
cudaStream_t ToCudaStream(StreamHandle stream) { return reinterpret_cast<cudaStream_t>(stream); }

// Makes `device` current for its lifetime, then restores the caller's.
class DeviceScope {
 public:
  explicit DeviceScope(int device) {
    Check(cudaGetDevice(&previous_), "cudaGetDevice");
    if (previous_ != device) Check(cudaSetDevice(device), "cudaSetDevice");
  }
  ~DeviceScope() { cudaSetDevice(previous_); }
  DeviceScope(const DeviceScope&) = delete;
  DeviceScope& operator=(const DeviceScope&) = delete;

 private:
  int previous_ = 0;
};

}  // namespace

void MovingAverageCuda(const ArrayList& averages, const ArrayList& values, double weight,
                       int device, StreamHandle stream) {
  if (averages.size() == 0) return;
  DeviceScope scope(device);
  DispatchPair<CudaType>(averages.arrays[0].dtype, values.arrays[0].dtype, [&](auto t, auto v) {
    using T = typename decltype(t)::type;
    using V = typename decltype(v)::type;
    const auto segments = MovingAverageSegments<T, V>(averages, values);
    Check(cuda::LaunchMovingAverageUpdate<T, V>(segments.data(),
                                                static_cast<int64_t>(segments.size()), weight,
                                                ToCudaStream(stream)),
          "moving-average launch");
  });
}

void DebiasedCuda(const ArrayList& averages, const ArrayList& biased, const ArrayList& values,
                  double weight, const std::vector<double>& denominators, int device,
                  StreamHandle stream) {
  if (averages.size() == 0) return;
  DeviceScope scope(device);
  DispatchPair<CudaType>(averages.arrays[0].dtype, values.arrays[0].dtype, [&](auto t, auto v) {
    using T = typename decltype(t)::type;
    using V = typename decltype(v)::type;
    const auto segments = DebiasedSegments<T, V>(averages, biased, values, denominators);
    Check(cuda::LaunchDebiasedMovingAverageUpdate<T, V>(
              segments.data(), static_cast<int64_t>(segments.size()), weight,
              ToCudaStream(stream)),
          "debiased moving-average launch");
  });
}

// Three device-to-device copies per pair through one scratch buffer as large as the largest
// pair (the core has no swap kernel): a -> scratch, b -> a, scratch -> b, in stream order.
void SwapCuda(const ArrayList& a, const ArrayList& b, int device, StreamHandle stream) {
  int64_t largest = 0;
  for (const ArrayView& array : a.arrays) largest = std::max(largest, array.bytes());
  if (largest == 0) return;
  DeviceScope scope(device);
  const cudaStream_t cuda_stream = ToCudaStream(stream);
  void* scratch = nullptr;
  Check(cudaMallocAsync(&scratch, largest, cuda_stream), "cudaMallocAsync");
  cudaError_t error = cudaSuccess;
  for (size_t i = 0; i < a.size() && error == cudaSuccess; ++i) {
    const size_t bytes = static_cast<size_t>(a.arrays[i].bytes());
    if (bytes == 0) continue;
    void* first = a.arrays[i].data;
    void* second = b.arrays[i].data;
    error = cudaMemcpyAsync(scratch, first, bytes, cudaMemcpyDeviceToDevice, cuda_stream);
    if (error == cudaSuccess) {
      error = cudaMemcpyAsync(first, second, bytes, cudaMemcpyDeviceToDevice, cuda_stream);
    }
    if (error == cudaSuccess) {
      error = cudaMemcpyAsync(second, scratch, bytes, cudaMemcpyDeviceToDevice, cuda_stream);
    }
  }
  const cudaError_t freed = cudaFreeAsync(scratch, cuda_stream);
  Check(error, "swap copy");
  Check(freed, "cudaFreeAsync");
}

void CopyInt64FromDevice(const void* source, int64_t* out, int64_t count, int device,
                         StreamHandle stream) {
  if (count == 0) return;
  DeviceScope scope(device);
  Check(cudaMemcpyAsync(out, source, count * sizeof(int64_t), cudaMemcpyDeviceToHost,
                        ToCudaStream(stream)),
        "copying local_steps to the host");
  Check(cudaStreamSynchronize(ToCudaStream(stream)), "copying local_steps to the host");
}

void CopyInt64ToDevice(const int64_t* source, void* out, int64_t count, int device,
                       StreamHandle stream) {
  if (count == 0) return;
  DeviceScope scope(device);
  Check(cudaMemcpyAsync(out, source, count * sizeof(int64_t), cudaMemcpyHostToDevice,
                        ToCudaStream(stream)),
        "copying local_steps to the device");
  // The host copy is the caller's: wait until it has been read.
  Check(cudaStreamSynchronize(ToCudaStream(stream)), "copying local_steps to the device");
}

}  // namespace pybind
}  // namespace swa_ops
