#include "variable_access.h"

#include "absl/strings/str_cat.h"

namespace swa_ops {

using tensorflow::DataType;
using tensorflow::DataTypeString;
using tensorflow::OpKernelContext;
using tensorflow::Var;

std::string DescribeVariableInput(OpKernelContext* ctx, int index) {
  if (ctx->input_dtype(index) == tensorflow::DT_RESOURCE) {
    const tensorflow::ResourceHandle& handle = tensorflow::HandleFromInput(ctx, index);
    return absl::StrCat("'", handle.name(), "'");
  }
  return absl::StrCat("'", ctx->op_kernel().requested_input(index), "'");
}

absl::Status CheckVariableInput(OpKernelContext* ctx, int index, DataType dtype, const char* role) {
  // Built only for an error: this runs for every variable of every update.
  auto where = [&] {
    return absl::StrCat(ctx->op_kernel().type_string(), " '", ctx->op_kernel().name(), "': ",
                        role, " variable ", DescribeVariableInput(ctx, index));
  };
  if (ctx->input_dtype(index) != tensorflow::DT_RESOURCE) {
    // Reference input: the op definition already fixes its dtype to T.
    if (!ctx->mutable_input(index, /*lock_held=*/false).IsInitialized()) {
      return absl::FailedPreconditionError(
          absl::StrCat(where(), " is uninitialized: run its initializer first"));
    }
    return absl::OkStatus();
  }
  const tensorflow::ResourceHandle& handle = tensorflow::HandleFromInput(ctx, index);
  if (!handle.device().empty() && handle.device() != ctx->device()->attributes().name()) {
    return absl::InvalidArgumentError(absl::StrCat(where(), " lives on ", handle.device(),
                                                   " but the op runs on ",
                                                   ctx->device()->attributes().name(),
                                                   ": place the update with its variables"));
  }
  tensorflow::core::RefCountPtr<Var> var;
  absl::Status found = tensorflow::LookupResource(ctx, handle, &var);
  if (!found.ok()) {
    return absl::FailedPreconditionError(absl::StrCat(
        where(), " does not exist (uninitialized or deleted): ", found.message()));
  }
  tsl::tf_shared_lock lock(*var->mu());
  if (!var->is_initialized) {
    return absl::FailedPreconditionError(
        absl::StrCat(where(), " is uninitialized: run its initializer first"));
  }
  if (var->tensor()->dtype() != dtype) {
    return absl::InvalidArgumentError(absl::StrCat(where(), " has dtype ",
                                                   DataTypeString(var->tensor()->dtype()),
                                                   " but the op expects ", DataTypeString(dtype)));
  }
  return absl::OkStatus();
}

absl::Status ShareVariableTensor(OpKernelContext* ctx, int index, tensorflow::Tensor* out) {
  tensorflow::core::RefCountPtr<Var> var;
  absl::Status found =
      tensorflow::LookupResource(ctx, tensorflow::HandleFromInput(ctx, index), &var);
  const std::string where = absl::StrCat(ctx->op_kernel().type_string(), " '",
                                         ctx->op_kernel().name(), "': variable ",
                                         DescribeVariableInput(ctx, index));
  if (!found.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat(where, " does not exist (uninitialized or deleted): ", found.message()));
  }
  tsl::tf_shared_lock lock(*var->mu());
  if (!var->is_initialized) {
    return absl::FailedPreconditionError(
        absl::StrCat(where, " is uninitialized: run its initializer first"));
  }
  *out = *var->tensor();
  return absl::OkStatus();
}

bool SameResourceVariable(OpKernelContext* ctx, int index, int other) {
  if (ctx->input_dtype(index) != tensorflow::DT_RESOURCE ||
      ctx->input_dtype(other) != tensorflow::DT_RESOURCE) {
    return false;
  }
  const tensorflow::ResourceHandle& a = tensorflow::HandleFromInput(ctx, index);
  const tensorflow::ResourceHandle& b = tensorflow::HandleFromInput(ctx, other);
  return a.device() == b.device() && a.container() == b.container() && a.name() == b.name();
}

absl::Status SwapVariables(OpKernelContext* ctx, int first, int second) {
  tensorflow::core::RefCountPtr<Var> a, b;
  TF_RETURN_IF_ERROR(tensorflow::LookupResource(ctx, tensorflow::HandleFromInput(ctx, first), &a));
  TF_RETURN_IF_ERROR(tensorflow::LookupResource(ctx, tensorflow::HandleFromInput(ctx, second), &b));
  std::swap(*a->tensor(), *b->tensor());
  a->copy_on_read_mode.store(false);
  b->copy_on_read_mode.store(false);
  return absl::OkStatus();
}

}  // namespace swa_ops
