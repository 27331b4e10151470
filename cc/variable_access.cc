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

namespace {

// "<Op> '<node>': <role> variable '<name>'" for messages.
std::string Where(OpKernelContext* ctx, int index, const char* role) {
  return absl::StrCat(ctx->op_kernel().type_string(), " '", ctx->op_kernel().name(), "': ", role,
                      " variable ", DescribeVariableInput(ctx, index));
}

constexpr char kUninitialized[] = " is uninitialized: run its initializer first";

}  // namespace

absl::Status LookupVariable(OpKernelContext* ctx, int index, DataType dtype, const char* role,
                            tensorflow::core::RefCountPtr<Var>* var) {
  // Messages are built only for an error: this runs for every variable of every update.
  const tensorflow::ResourceHandle& handle = tensorflow::HandleFromInput(ctx, index);
  const std::string& op_device = ctx->device()->attributes().name();
  if (!handle.device().empty() && handle.device() != op_device) {
    return absl::InvalidArgumentError(absl::StrCat(Where(ctx, index, role), " lives on ",
                                                   handle.device(), " but the op runs on ",
                                                   op_device, ": place the update with its variables"));
  }
  absl::Status found = tensorflow::LookupResource(ctx, handle, var);
  if (!found.ok()) {
    return absl::FailedPreconditionError(absl::StrCat(
        Where(ctx, index, role), " does not exist (uninitialized or deleted): ", found.message()));
  }
  tsl::tf_shared_lock lock(*(*var)->mu());
  if (!(*var)->is_initialized) {
    return absl::FailedPreconditionError(absl::StrCat(Where(ctx, index, role), kUninitialized));
  }
  const DataType actual = (*var)->tensor()->dtype();
  if (dtype != tensorflow::DT_INVALID && actual != dtype) {
    return absl::InvalidArgumentError(absl::StrCat(Where(ctx, index, role), " has dtype ",
                                                   DataTypeString(actual), " but the op expects ",
                                                   DataTypeString(dtype)));
  }
  return absl::OkStatus();
}

absl::Status CheckVariableInput(OpKernelContext* ctx, int index, DataType dtype, const char* role) {
  if (ctx->input_dtype(index) == tensorflow::DT_RESOURCE) {
    tensorflow::core::RefCountPtr<Var> var;
    return LookupVariable(ctx, index, dtype, role, &var);
  }
  // Reference input: the op definition already fixes its dtype to T.
  if (!ctx->mutable_input(index, /*lock_held=*/false).IsInitialized()) {
    return absl::FailedPreconditionError(absl::StrCat(Where(ctx, index, role), kUninitialized));
  }
  return absl::OkStatus();
}

absl::Status ShareVariableTensor(OpKernelContext* ctx, int index, tensorflow::Tensor* out) {
  tensorflow::core::RefCountPtr<Var> var;
  TF_RETURN_IF_ERROR(LookupVariable(ctx, index, tensorflow::DT_INVALID, "value", &var));
  tsl::tf_shared_lock lock(*var->mu());
  *out = *var->tensor();
  return absl::OkStatus();
}

OrderedLocks::OrderedLocks(std::vector<tsl::mutex*> mutexes, bool exclusive) {
  std::sort(mutexes.begin(), mutexes.end());
  mutexes.erase(std::unique(mutexes.begin(), mutexes.end()), mutexes.end());
  for (tsl::mutex* mu : mutexes) {
    if (exclusive) {
      exclusive_.emplace_back(*mu);
    } else {
      shared_.emplace_back(*mu);
    }
  }
}

void SwapVariables(Var* a, Var* b) {
  std::swap(*a->tensor(), *b->tensor());
  a->copy_on_read_mode.store(false);
  b->copy_on_read_mode.store(false);
}

}  // namespace swa_ops
