// AllFinite: whether every element of every value (tensors or resource variables) is finite.
// The non-finite guard feeds it to the update ops' `apply_if` input.
#define EIGEN_USE_THREADS

#include <atomic>
#include <type_traits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "float_types.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/register_types.h"
#include "unsupported/Eigen/CXX11/Tensor"
#include "variable_access.h"

namespace swa_ops {
namespace {

using CPUDevice = Eigen::ThreadPoolDevice;
using tensorflow::Tensor;

// Scanned in double for double (a large finite double would overflow a float), else in float.
template <typename T>
bool AllFiniteIn(const CPUDevice& device, const Tensor& tensor) {
  using C = std::conditional_t<std::is_same_v<T, double>, double, float>;
  const T* data = tensor.flat<T>().data();
  std::atomic<bool> finite{true};
  device.parallelFor(tensor.NumElements(), Eigen::TensorOpCost(sizeof(T), 0, 2),
                     [&](Eigen::Index begin, Eigen::Index end) {
    if (!finite.load(std::memory_order_relaxed)) return;
    bool ok = true;
    for (Eigen::Index i = begin; i < end; ++i) {
      const C x = static_cast<C>(data[i]);  // Inf and NaN survive the conversion.
      ok &= (x - x) == C(0);                // False exactly for Inf and NaN.
    }
    if (!ok) finite.store(false, std::memory_order_relaxed);
  });
  return finite.load();
}

class AllFiniteOp : public tensorflow::OpKernel {
 public:
  using OpKernel::OpKernel;

  void Compute(tensorflow::OpKernelContext* ctx) override {
    OP_REQUIRES_OK(ctx, CheckHandleInputs(ctx));
    // Every input is checked before any is scanned, so that whether a bad input is reported
    // does not depend on the data of the inputs before it.
    std::vector<Tensor> values(num_inputs());
    for (int i = 0; i < num_inputs(); ++i) {
      values[i] = ctx->input(i);
      if (ctx->input_dtype(i) == tensorflow::DT_RESOURCE) {
        OP_REQUIRES_OK(ctx, ShareVariableTensor(ctx, i, &values[i]));
      }
      const tensorflow::DataType dtype = values[i].dtype();
      OP_REQUIRES(ctx, WithFloatType(dtype, [](auto) {}),
                  absl::InvalidArgumentError(absl::StrCat(
                      "AllFinite '", name(), "': variable ", DescribeVariableInput(ctx, i),
                      " has dtype ", tensorflow::DataTypeString(dtype),
                      "; expected a float dtype")));
    }
    const CPUDevice& device = ctx->eigen_device<CPUDevice>();
    bool all_finite = true;
    for (int i = 0; i < num_inputs() && all_finite; ++i) {
      WithFloatType(values[i].dtype(), [&](auto type) {
        all_finite = AllFiniteIn<decltype(type)>(device, values[i]);
      });
    }
    Tensor* output;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, {}, &output));
    output->scalar<bool>()() = all_finite;
  }
};

REGISTER_KERNEL_BUILDER(Name("AllFinite").Device(tensorflow::DEVICE_CPU), AllFiniteOp);

}  // namespace
}  // namespace swa_ops
