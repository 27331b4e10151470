// SwapVariablesN: exchanges the values of N pairs of resource variables in one op, bit-exactly
// and without copies (the variables trade buffers), all pairs checked before any is swapped.
#define EIGEN_USE_THREADS

#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/register_types.h"
#include "unsupported/Eigen/CXX11/Tensor"
#include "variable_access.h"

namespace swa_ops {

using tensorflow::OpKernelContext;

template <typename T>
class SwapVariablesOp : public tensorflow::OpKernel {
 public:
  explicit SwapVariablesOp(tensorflow::OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("N", &num_pairs_));
  }

  void Compute(OpKernelContext* ctx) override {
    OP_REQUIRES_OK(ctx, CheckHandleInputs(ctx));
    const int n = num_pairs_;
    // Messages are built only for an error.
    auto prefix = [this] { return absl::StrCat(type_string(), " '", name(), "': "); };
    // Declared before the locks: released after them.
    std::vector<VarPtr> vars(2 * n);
    absl::flat_hash_set<tensorflow::Var*> seen;
    seen.reserve(2 * n);
    std::vector<LockRequest> locks_to_take;
    locks_to_take.reserve(2 * n);
    for (int index = 0; index < 2 * n; ++index) {
      OP_REQUIRES_OK(ctx, LookupVariable(ctx, index, tensorflow::DataTypeToEnum<T>::value,
                                         index < n ? "first" : "second", &vars[index]));
      OP_REQUIRES(ctx, seen.insert(vars[index].get()).second,
                  absl::InvalidArgumentError(absl::StrCat(
                      prefix(), "variable ", DescribeVariableInput(ctx, index),
                      " appears twice: each variable may be swapped once per op")));
      locks_to_take.push_back({vars[index]->mu(), /*exclusive=*/true});
    }
    OrderedLocks locks(std::move(locks_to_take));
    for (int i = 0; i < n; ++i) {
      const tensorflow::TensorShape& a = vars[i]->tensor()->shape();
      const tensorflow::TensorShape& b = vars[n + i]->tensor()->shape();
      OP_REQUIRES(ctx, a == b,
                  absl::InvalidArgumentError(absl::StrCat(
                      prefix(), "variables ", DescribeVariableInput(ctx, i), " (shape ",
                      a.DebugString(), ") and ", DescribeVariableInput(ctx, n + i), " (shape ",
                      b.DebugString(), ") have different shapes")));
    }
    for (int i = 0; i < n; ++i) SwapVariables(vars[i].get(), vars[n + i].get());
  }

 private:
  int num_pairs_;
};

#define SWA_REGISTER_SWAP(T)                                                                   \
  REGISTER_KERNEL_BUILDER(                                                                     \
      Name("SwapVariablesN").Device(tensorflow::DEVICE_CPU).TypeConstraint<T>("T"),            \
      SwapVariablesOp<T>);

TF_CALL_half(SWA_REGISTER_SWAP);
TF_CALL_bfloat16(SWA_REGISTER_SWAP);
TF_CALL_float(SWA_REGISTER_SWAP);
TF_CALL_double(SWA_REGISTER_SWAP);

#if SWA_OPS_WITH_CUDA
// The variables trade buffers: no device code, the same kernel on the GPU.
#define SWA_REGISTER_GPU_SWAP(T)                                                               \
  REGISTER_KERNEL_BUILDER(                                                                     \
      Name("SwapVariablesN").Device(tensorflow::DEVICE_GPU).TypeConstraint<T>("T"),            \
      SwapVariablesOp<T>);

TF_CALL_half(SWA_REGISTER_GPU_SWAP);
TF_CALL_bfloat16(SWA_REGISTER_GPU_SWAP);
TF_CALL_float(SWA_REGISTER_GPU_SWAP);
TF_CALL_double(SWA_REGISTER_GPU_SWAP);
#endif

}  // namespace swa_ops
