// Dispatch from a float DataType to its C++ storage type, shared by the kernels.
#ifndef SWA_OPS_CC_FLOAT_TYPES_H_
#define SWA_OPS_CC_FLOAT_TYPES_H_

#include "tensorflow/core/framework/types.h"
#include "unsupported/Eigen/CXX11/Tensor"

namespace swa_ops {

// Calls f(T()) for the float type T of `dtype` (float16, bfloat16, float32, float64);
// false for any other dtype.
template <typename F>
bool WithFloatType(tensorflow::DataType dtype, const F& f) {
  switch (dtype) {
    case tensorflow::DT_HALF: f(Eigen::half()); return true;
    case tensorflow::DT_BFLOAT16: f(Eigen::bfloat16()); return true;
    case tensorflow::DT_FLOAT: f(float()); return true;
    case tensorflow::DT_DOUBLE: f(double()); return true;
    default: return false;
  }
}

}  // namespace swa_ops

#endif  // SWA_OPS_CC_FLOAT_TYPES_H_
