// The updates of the kernels module on validated arrays: the CPU ones over OpenMP
// (updates_cpu.cc), the CUDA ones through the core's launchers (updates_cuda.cc, built with
// SWA_OPS_WITH_CUDA). All run without the GIL: no Python API in here.
#ifndef SWA_OPS_CC_PYBIND_UPDATES_H_
#define SWA_OPS_CC_PYBIND_UPDATES_H_

#include <cstdint>
#include <stdexcept>
#include <vector>

#include "segments.h"
#include "validation.h"

namespace swa_ops {
namespace pybind {

// The (average, value) dtype pairs of the core, as in SWA_CORE_FOR_EACH_CPU_PAIR.
#define SWA_PYBIND_FOR_EACH_PAIR(F) \
  F(kFloat32, kFloat32)             \
  F(kFloat64, kFloat64)             \
  F(kFloat16, kFloat16)             \
  F(kBFloat16, kBFloat16)           \
  F(kFloat32, kFloat16)             \
  F(kFloat32, kBFloat16)            \
  F(kFloat64, kFloat16)             \
  F(kFloat64, kBFloat16)            \
  F(kFloat64, kFloat32)

template <typename T>
struct Type {
  using type = T;
};

// Calls f(Type<T>{}, Type<V>{}) with the storage types `Types<dtype>::type` of a validated
// (average, value) dtype pair (AverageTakes).
template <template <DType> class Types, typename F>
void DispatchPair(DType average, DType value, F&& f) {
#define SWA_PYBIND_PAIR_CASE(A, V)                                  \
  if (average == DType::A && value == DType::V) {                   \
    return f(Type<typename Types<DType::A>::type>{},                \
             Type<typename Types<DType::V>::type>{});               \
  }
  SWA_PYBIND_FOR_EACH_PAIR(SWA_PYBIND_PAIR_CASE)
#undef SWA_PYBIND_PAIR_CASE
  throw std::logic_error("swa_ops.kernels: dtype pair not validated");
}

// The core's segments of validated arrays whose storage types are T (averages, biased) and V
// (values).
template <typename T, typename V>
std::vector<MovingAverageSegment<T, V>> MovingAverageSegments(const ArrayList& averages,
                                                              const ArrayList& values) {
  std::vector<MovingAverageSegment<T, V>> segments(averages.size());
  for (size_t i = 0; i < segments.size(); ++i) {
    segments[i] = {static_cast<T*>(averages.arrays[i].data),
                   static_cast<const V*>(values.arrays[i].data), values.arrays[i].size};
  }
  return segments;
}

template <typename T, typename V>
std::vector<DebiasedSegment<T, V>> DebiasedSegments(const ArrayList& averages,
                                                    const ArrayList& biased,
                                                    const ArrayList& values,
                                                    const std::vector<double>& denominators) {
  std::vector<DebiasedSegment<T, V>> segments(averages.size());
  for (size_t i = 0; i < segments.size(); ++i) {
    segments[i] = {static_cast<T*>(averages.arrays[i].data),
                   static_cast<T*>(biased.arrays[i].data),
                   static_cast<const V*>(values.arrays[i].data), values.arrays[i].size,
                   denominators[i]};
  }
  return segments;
}

// One moving-average update: average <- average - (average - value) * weight, for every pair.
void MovingAverageCpu(const ArrayList& averages, const ArrayList& values, double weight);

// One debiased update: biased as above, then average <- biased / denominators[i].
void DebiasedCpu(const ArrayList& averages, const ArrayList& biased, const ArrayList& values,
                 double weight, const std::vector<double>& denominators);

// Exchanges the bytes of a[i] and b[i] for every i.
void SwapCpu(const ArrayList& a, const ArrayList& b);

// The CPU threads an update may use (OpenMP's, OMP_NUM_THREADS or every core).
int CpuThreads();

#if SWA_OPS_WITH_CUDA
// The same on the CUDA device `device`, on `stream` (a DLPack stream number: 1 legacy default,
// 2 per-thread default, else a cudaStream_t), launched without waiting for them to finish.
// Errors: std::runtime_error with CUDA's message.
void MovingAverageCuda(const ArrayList& averages, const ArrayList& values, double weight,
                       int device, StreamHandle stream);
void DebiasedCuda(const ArrayList& averages, const ArrayList& biased, const ArrayList& values,
                  double weight, const std::vector<double>& denominators, int device,
                  StreamHandle stream);
void SwapCuda(const ArrayList& a, const ArrayList& b, int device, StreamHandle stream);

// Copies `count` int64 between the host and device memory of `device`, waiting on `stream`.
void CopyInt64FromDevice(const void* source, int64_t* out, int64_t count, int device,
                         StreamHandle stream);
void CopyInt64ToDevice(const int64_t* source, void* out, int64_t count, int device,
                       StreamHandle stream);
#endif

}  // namespace pybind
}  // namespace swa_ops

#endif  // SWA_OPS_CC_PYBIND_UPDATES_H_
