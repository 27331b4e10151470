// AllFinite: whether every element of every value (tensors, resource variables, or the members of
// a variable group) is finite.
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
#include "variable_group.h"

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
    // The variables: those of the resource inputs, or the members of a group, the only input.
    std::vector<VarPtr> inputs_vars(num_inputs());
    std::shared_ptr<const VariableGroup::Members> members;
    absl::Span<const VarPtr> vars = inputs_vars;
    if (IsGroupInput(ctx, 0)) {
      OP_REQUIRES(ctx, num_inputs() == 1,
                  absl::InvalidArgumentError(absl::StrCat(
                      "AllFinite '", name(), "': a variable group must be the only input")));
      tensorflow::core::RefCountPtr<VariableGroup> group;
      OP_REQUIRES_OK(ctx, GroupInput(ctx, 0, &group));
      OP_REQUIRES_OK(ctx, group->GetMembers(ctx, [](int) { return "value"; }, &members));
      vars = members->vars;
    } else {
      for (int i = 0; i < num_inputs(); ++i) {
        if (ctx->input_dtype(i) != tensorflow::DT_RESOURCE) continue;
        OP_REQUIRES_OK(ctx, FindVariable(ctx, i, "value", &inputs_vars[i]));
      }
    }
    // Every input is checked before any is scanned, so that whether a bad input is reported
    // does not depend on the data of the inputs before it.
    const int count = static_cast<int>(vars.size());
    std::vector<Tensor> values(count);
    for (int i = 0; i < count; ++i) {
      if (vars[i] == nullptr) {
        values[i] = ctx->input(i);
      } else {
        OP_REQUIRES_OK(ctx, ShareVariableTensor(ctx, i, vars[i].get(), &values[i]));
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
    for (int i = 0; i < count && all_finite; ++i) {
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
