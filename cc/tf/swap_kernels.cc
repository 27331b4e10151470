// SwapVariablesN and SwapVariablesGroup: exchange the values of N pairs of resource variables in
// one op, bit-exactly and without copies (the variables trade buffers), all pairs checked before
// any is swapped.
#define EIGEN_USE_THREADS

#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/register_types.h"
#include "unsupported/Eigen/CXX11/Tensor"
#include "variable_access.h"
#include "variable_group.h"

namespace swa_ops {

using tensorflow::OpKernelContext;

// SwapVariablesN takes the pairs as 2N handle inputs, SwapVariablesGroup as one group of 2N
// members (a tf.function captures one tensor; eager code runs one kernel for any N).
template <typename T>
class SwapVariablesOp : public tensorflow::OpKernel {
 public:
  explicit SwapVariablesOp(tensorflow::OpKernelConstruction* ctx) : OpKernel(ctx) {
    if (ctx->HasAttr("N")) OP_REQUIRES_OK(ctx, ctx->GetAttr("N", &num_pairs_));
  }

  void Compute(OpKernelContext* ctx) override {
    OP_REQUIRES_OK(ctx, CheckHandleInputs(ctx));
    // Messages are built only for an error.
    auto prefix = [this] { return absl::StrCat(type_string(), " '", name(), "': "); };
    // Declared before the locks: released after them.
    std::vector<VarPtr> looked_up;
    std::shared_ptr<const VariableGroup::Members> members;
    absl::Span<const VarPtr> vars;
    int n = num_pairs_;
    if (n == 0) {  // A group.
      tensorflow::core::RefCountPtr<VariableGroup> group;
      OP_REQUIRES_OK(ctx, GroupInput(ctx, 0, &group));
      OP_REQUIRES(ctx, group->size() % 2 == 0,
                  absl::InvalidArgumentError(absl::StrCat(
                      prefix(), "the group holds ", group->size(),
                      " variables; this op takes two lists of one length (first, second)")));
      n = group->size() / 2;
      OP_REQUIRES_OK(ctx, group->GetMembers(ctx, [n](int member) { return RoleOf(member, n); },
                                            &members));
      vars = members->vars;
    } else {
      looked_up.resize(2 * n);
      for (int index = 0; index < 2 * n; ++index) {
        OP_REQUIRES_OK(ctx, FindVariable(ctx, index, RoleOf(index, n), &looked_up[index]));
      }
      vars = looked_up;
    }
    const bool checked_distinct = members != nullptr && members->checked_distinct == 2 * n;
    absl::flat_hash_set<tensorflow::Var*> seen;
    if (!checked_distinct) seen.reserve(2 * n);
    std::vector<LockRequest> locks_to_take;
    locks_to_take.reserve(2 * n);
    for (int index = 0; index < 2 * n; ++index) {
      tensorflow::Var* var = vars[index].get();
      OP_REQUIRES_OK(ctx, CheckVariable(ctx, index, var, tensorflow::DataTypeToEnum<T>::value,
                                        RoleOf(index, n)));
      OP_REQUIRES(ctx, checked_distinct || seen.insert(var).second,
                  absl::InvalidArgumentError(absl::StrCat(
                      prefix(), "variable ", DescribeVariableInput(ctx, index),
                      " appears twice: each variable may be swapped once per op")));
      locks_to_take.push_back({var->mu(), /*exclusive=*/true});
    }
    if (members != nullptr) members->checked_distinct = 2 * n;
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
  static const char* RoleOf(int index, int n) { return index < n ? "first" : "second"; }

  int num_pairs_ = 0;  // Of SwapVariablesN; 0: SwapVariablesGroup.
};

#define SWA_REGISTER_SWAP(T)                                                                   \
  REGISTER_KERNEL_BUILDER(                                                                     \
      Name("SwapVariablesN").Device(tensorflow::DEVICE_CPU).TypeConstraint<T>("T"),            \
      SwapVariablesOp<T>);                                                                     \
  REGISTER_KERNEL_BUILDER(                                                                     \
      Name("SwapVariablesGroup").Device(tensorflow::DEVICE_CPU).TypeConstraint<T>("T"),        \
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
      SwapVariablesOp<T>);                                                                     \
  REGISTER_KERNEL_BUILDER(                                                                     \
      Name("SwapVariablesGroup").Device(tensorflow::DEVICE_GPU).TypeConstraint<T>("T"),        \
      SwapVariablesOp<T>);

TF_CALL_half(SWA_REGISTER_GPU_SWAP);
TF_CALL_bfloat16(SWA_REGISTER_GPU_SWAP);
TF_CALL_float(SWA_REGISTER_GPU_SWAP);
TF_CALL_double(SWA_REGISTER_GPU_SWAP);
#endif

}  // namespace swa_ops
