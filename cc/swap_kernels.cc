// SwapVariablesN: exchanges the values of N pairs of resource variables in one op, bit-exactly
// and without copies (the variables trade buffers), all pairs checked before any is swapped.
#define EIGEN_USE_THREADS

#include <numeric>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/register_types.h"
#include "unsupported/Eigen/CXX11/Tensor"
#include "variable_access.h"

namespace swa_ops {

using CPUDevice = Eigen::ThreadPoolDevice;
using tensorflow::OpKernelContext;

template <typename Device, typename T>
class SwapVariablesOp : public tensorflow::OpKernel {
 public:
  explicit SwapVariablesOp(tensorflow::OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("N", &num_pairs_));
  }

  void Compute(OpKernelContext* ctx) override {
    const int n = num_pairs_;
    const std::string prefix = absl::StrCat(type_string(), " '", name(), "': ");
    absl::flat_hash_set<std::string> seen;
    for (int index = 0; index < 2 * n; ++index) {
      OP_REQUIRES_OK(ctx, CheckVariableInput(ctx, index, tensorflow::DataTypeToEnum<T>::value,
                                             index < n ? "first" : "second"));
      const tensorflow::ResourceHandle& handle = tensorflow::HandleFromInput(ctx, index);
      OP_REQUIRES(ctx, seen.insert(absl::StrCat(handle.device(), "|", handle.container(), "|",
                                                handle.name())).second,
                  absl::InvalidArgumentError(absl::StrCat(
                      prefix, "variable ", DescribeVariableInput(ctx, index),
                      " appears twice: each variable may be swapped once per op")));
    }
    std::vector<int> inputs(2 * n);
    std::iota(inputs.begin(), inputs.end(), 0);
    auto locks = LockExclusively<Device, T>(ctx, inputs);
    for (int i = 0; i < n; ++i) {
      tensorflow::core::RefCountPtr<tensorflow::Var> a, b;
      OP_REQUIRES_OK(ctx, tensorflow::LookupResource(ctx, tensorflow::HandleFromInput(ctx, i), &a));
      OP_REQUIRES_OK(ctx,
                     tensorflow::LookupResource(ctx, tensorflow::HandleFromInput(ctx, n + i), &b));
      OP_REQUIRES(ctx, a->tensor()->shape() == b->tensor()->shape(),
                  absl::InvalidArgumentError(absl::StrCat(
                      prefix, "variables ", DescribeVariableInput(ctx, i), " (shape ",
                      a->tensor()->shape().DebugString(), ") and ",
                      DescribeVariableInput(ctx, n + i), " (shape ",
                      b->tensor()->shape().DebugString(), ") have different shapes")));
    }
    for (int i = 0; i < n; ++i) OP_REQUIRES_OK(ctx, SwapVariables(ctx, i, n + i));
  }

 private:
  int num_pairs_;
};

#define SWA_REGISTER_SWAP(T)                                                                   \
  REGISTER_KERNEL_BUILDER(                                                                     \
      Name("SwapVariablesN").Device(tensorflow::DEVICE_CPU).TypeConstraint<T>("T"),            \
      SwapVariablesOp<CPUDevice, T>);

TF_CALL_half(SWA_REGISTER_SWAP);
TF_CALL_bfloat16(SWA_REGISTER_SWAP);
TF_CALL_float(SWA_REGISTER_SWAP);
TF_CALL_double(SWA_REGISTER_SWAP);

}  // namespace swa_ops
