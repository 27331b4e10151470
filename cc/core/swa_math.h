// Per-element update math shared by the CPU kernels (cc/) and the CUDA kernels (cuda/).
//
// Everything here is plain float/double arithmetic with explicit rounding points, so the host
// compiler (built with -ffp-contract=off) and nvcc (using the _rn intrinsics, which are never
// fused into FMAs) round every operation the same way: CPU and GPU results are bit-identical for
// float32 and float64. float16 and bfloat16 are computed in float32 by the callers and rounded
// once when stored.
#ifndef SWA_OPS_CC_SWA_MATH_H_
#define SWA_OPS_CC_SWA_MATH_H_

#if defined(__CUDACC__)
#define SWA_HOST_DEVICE __host__ __device__
#else
#define SWA_HOST_DEVICE
#endif

namespace swa_ops {
namespace math {

SWA_HOST_DEVICE inline float Sub(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fsub_rn(a, b);
#else
  return a - b;
#endif
}
SWA_HOST_DEVICE inline double Sub(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dsub_rn(a, b);
#else
  return a - b;
#endif
}
SWA_HOST_DEVICE inline float Mul(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
SWA_HOST_DEVICE inline double Mul(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dmul_rn(a, b);
#else
  return a * b;
#endif
}
SWA_HOST_DEVICE inline float Div(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fdiv_rn(a, b);
#else
  return a / b;
#endif
}
SWA_HOST_DEVICE inline double Div(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __ddiv_rn(a, b);
#else
  return a / b;
#endif
}

// One moving-average step: average - (average - value) * weight.
// weight = 1 / (n + 1) for SWA, 1 - decay for an exponential moving average.
template <typename C>
SWA_HOST_DEVICE inline C MovingAverageStep(C average, C value, C weight) {
  return Sub(average, Mul(Sub(average, value), weight));
}

// The zero-debiased average from the biased one: biased / (1 - decay ** local_step).
template <typename C>
SWA_HOST_DEVICE inline C Debias(C biased, C debias_denominator) {
  return Div(biased, debias_denominator);
}

}  // namespace math
}  // namespace swa_ops

#endif  // SWA_OPS_CC_SWA_MATH_H_
