#include "variable_access.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "variable_group.h"
#if SWA_OPS_WITH_CUDA
#include "tensorflow/core/framework/device_base.h"
#include "xla/stream_executor/stream.h"
#endif

namespace swa_ops {

using tensorflow::DataType;
using tensorflow::DataTypeString;
using tensorflow::OpKernelContext;
using tensorflow::Var;

absl::Status CheckHandleInputs(OpKernelContext* ctx) {
  for (int index = 0; index < ctx->num_inputs(); ++index) {
    if (ctx->input_dtype(index) != tensorflow::DT_RESOURCE) continue;
    const int64_t handles = ctx->input(index).NumElements();
    if (handles != 1) {
      return absl::InvalidArgumentError(absl::StrCat(
          ctx->op_kernel().type_string(), " '", ctx->op_kernel().name(), "': input ", index, " ('",
          ctx->op_kernel().requested_input(index), "') holds ", handles,
          " resource handles; a variable input must be exactly one variable's handle"));
    }
  }
  return absl::OkStatus();
}

std::string DescribeVariableInput(OpKernelContext* ctx, int index) {
  if (ctx->num_inputs() > 0 && IsGroupInput(ctx, 0)) {  // A `...Group` op: member `index`.
    tensorflow::core::RefCountPtr<VariableGroup> group;
    if (GroupInput(ctx, 0, &group).ok() && index < group->size()) {
      return absl::StrCat("'", group->handle(index).name(), "'");
    }
    return absl::StrCat("#", index, " of the group");
  }
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

absl::Status FindVariable(OpKernelContext* ctx, int index, const char* role, VarPtr* var) {
  return FindVariableByHandle(ctx, tensorflow::HandleFromInput(ctx, index), index, role, var);
}

absl::Status FindVariableByHandle(OpKernelContext* ctx, const tensorflow::ResourceHandle& handle,
                                  int index, const char* role, VarPtr* var) {
  // Messages are built only for an error: this runs for every variable of every update.
  const std::string& op_device = ctx->device()->attributes().name();
  if (!handle.device().empty() && handle.device() != op_device) {
    return absl::InvalidArgumentError(
        absl::StrCat(Where(ctx, index, role), " lives on ", handle.device(),
                     " but the op runs on ", op_device, ": place the update with its variables"));
  }
  absl::Status found = tensorflow::LookupResource(ctx, handle, var);
  if (!found.ok()) {
    return absl::FailedPreconditionError(absl::StrCat(
        Where(ctx, index, role), " does not exist (uninitialized or deleted): ", found.message()));
  }
  return absl::OkStatus();
}

absl::Status CheckInitialized(OpKernelContext* ctx, int index, Var* var, DataType dtype,
                              const char* role) {
  if (!var->is_initialized) {
    return absl::FailedPreconditionError(absl::StrCat(Where(ctx, index, role), kUninitialized));
  }
  const DataType actual = var->tensor()->dtype();
  if (dtype != tensorflow::DT_INVALID && actual != dtype) {
    return absl::InvalidArgumentError(absl::StrCat(Where(ctx, index, role), " has dtype ",
                                                   DataTypeString(actual), " but the op expects ",
                                                   DataTypeString(dtype)));
  }
  return absl::OkStatus();
}

absl::Status CheckLockedVariableInput(OpKernelContext* ctx, int index, Var* var, DataType dtype,
                                      const char* role, bool ref_lock_held, DataType* actual) {
  if (var != nullptr) {
    TF_RETURN_IF_ERROR(CheckInitialized(ctx, index, var, dtype, role));
    if (actual != nullptr) *actual = var->tensor()->dtype();
    return absl::OkStatus();
  }
  // Reference input: the op definition already fixes its dtype to T.
  if (!ctx->mutable_input(index, ref_lock_held).IsInitialized()) {
    return absl::FailedPreconditionError(absl::StrCat(Where(ctx, index, role), kUninitialized));
  }
  if (actual != nullptr) *actual = tensorflow::BaseType(ctx->input_dtype(index));
  return absl::OkStatus();
}

absl::Status CheckVariable(OpKernelContext* ctx, int index, Var* var, DataType dtype,
                           const char* role) {
  tsl::tf_shared_lock lock(*var->mu());
  return CheckInitialized(ctx, index, var, dtype, role);
}

absl::Status ShareVariableTensor(OpKernelContext* ctx, int index, Var* var,
                                 tensorflow::Tensor* out) {
  tsl::tf_shared_lock lock(*var->mu());
  TF_RETURN_IF_ERROR(CheckInitialized(ctx, index, var, tensorflow::DT_INVALID, "value"));
  *out = *var->tensor();
  return absl::OkStatus();
}

OrderedLocks::OrderedLocks(std::vector<LockRequest> requests) : held_(std::move(requests)) {
  auto by_address = [](const LockRequest& a, const LockRequest& b) { return a.mu < b.mu; };
  if (!std::is_sorted(held_.begin(), held_.end(), by_address)) {
    std::sort(held_.begin(), held_.end(), by_address);
  }
  // One entry per mutex, exclusive if any request for it is.
  size_t kept = 0;
  for (const LockRequest& request : held_) {
    if (kept > 0 && held_[kept - 1].mu == request.mu) {
      held_[kept - 1].exclusive |= request.exclusive;
    } else {
      held_[kept++] = request;
    }
  }
  held_.resize(kept);
  VisitPrefetched(
      static_cast<int64_t>(held_.size()), [&](int64_t i) { __builtin_prefetch(held_[i].mu, 1); },
      [&](int64_t i) {
        Take(held_[i]);
        return absl::OkStatus();
      });
}

void OrderedLocks::Take(const LockRequest& request) {
  if (request.exclusive) {
    request.mu->lock();
  } else {
    request.mu->lock_shared();
  }
}

absl::Status OrderedLocks::LockNext(const LockRequest& request) {
  if (!held_.empty() && held_.back().mu == request.mu) {
    if (request.exclusive && !held_.back().exclusive) {
      return absl::InternalError("a variable's lock is asked for shared, then exclusively");
    }
    return absl::OkStatus();
  }
  if (!held_.empty() && request.mu < held_.back().mu) {
    return absl::InternalError("variable locks asked for out of address order");
  }
  Take(request);
  held_.push_back(request);
  return absl::OkStatus();
}

OrderedLocks::~OrderedLocks() {
  const int64_t count = static_cast<int64_t>(held_.size());
  auto from_last = [&](int64_t k) -> const LockRequest& { return held_[count - 1 - k]; };
  VisitPrefetched(
      count, [&](int64_t k) { __builtin_prefetch(from_last(k).mu, 1); },
      [&](int64_t k) {
        if (from_last(k).exclusive) {
          from_last(k).mu->unlock();
        } else {
          from_last(k).mu->unlock_shared();
        }
        return absl::OkStatus();
      });
}

template <>
absl::Status CopyToNewBuffer<Eigen::ThreadPoolDevice>(OpKernelContext* ctx,
                                                      const tensorflow::Tensor& source,
                                                      tensorflow::Tensor* out) {
  TF_RETURN_IF_ERROR(ctx->allocate_temp(source.dtype(), source.shape(), out));
  const absl::string_view bytes = source.tensor_data();
  if (!bytes.empty()) {
    std::memcpy(const_cast<char*>(out->tensor_data().data()), bytes.data(), bytes.size());
  }
  return absl::OkStatus();
}

#if SWA_OPS_WITH_CUDA
absl::Status GpuDeviceOf(OpKernelContext* ctx, GpuDevice* out) {
  const tensorflow::DeviceContext* device_context = ctx->op_device_context();
  void* stream = device_context == nullptr || device_context->stream() == nullptr
                     ? nullptr
                     : device_context->stream()->platform_specific_handle().stream;
  if (stream == nullptr) {
    return absl::InternalError(absl::StrCat(ctx->op_kernel().type_string(), " '",
                                            ctx->op_kernel().name(), "': no CUDA stream on ",
                                            ctx->device()->name()));
  }
  out->stream = static_cast<cudaStream_t>(stream);
  int device = 0;
  cudaError_t error = cudaStreamGetDevice(out->stream, &device);
  if (error == cudaSuccess) error = cudaSetDevice(device);
  if (error != cudaSuccess) {
    return absl::InternalError(absl::StrCat(ctx->op_kernel().type_string(), " '",
                                            ctx->op_kernel().name(), "': CUDA error ",
                                            cudaGetErrorString(error)));
  }
  return absl::OkStatus();
}

template <>
absl::Status CopyToNewBuffer<GpuDevice>(OpKernelContext* ctx, const tensorflow::Tensor& source,
                                        tensorflow::Tensor* out) {
  GpuDevice device;
  TF_RETURN_IF_ERROR(GpuDeviceOf(ctx, &device));
  TF_RETURN_IF_ERROR(ctx->allocate_temp(source.dtype(), source.shape(), out));
  const absl::string_view bytes = source.tensor_data();
  if (bytes.empty()) return absl::OkStatus();
  const cudaError_t error =
      cudaMemcpyAsync(const_cast<char*>(out->tensor_data().data()), bytes.data(), bytes.size(),
                      cudaMemcpyDeviceToDevice, device.stream);
  if (error != cudaSuccess) {
    return absl::InternalError(absl::StrCat("copying a variable's buffer on the GPU: ",
                                            cudaGetErrorString(error)));
  }
  return absl::OkStatus();
}

absl::Status EnsureCopyOnReadOnGpu(OpKernelContext* ctx, Var* var) {
  if (var->copy_on_read_mode.load()) return absl::OkStatus();
  tsl::mutex_lock lock(*var->mu());
  if (var->copy_on_read_mode.load()) return absl::OkStatus();  // Another op got here first.
  if (!var->tensor()->RefCountIsOne()) {  // A live tensor shares the buffer: update a copy.
    tensorflow::Tensor copy;
    TF_RETURN_IF_ERROR(CopyToNewBuffer<GpuDevice>(ctx, *var->tensor(), &copy));
    *var->tensor() = copy;
  }
  var->copy_on_read_mode.store(true);
  return absl::OkStatus();
}

#endif  // SWA_OPS_WITH_CUDA

void SwapVariables(Var* a, Var* b) {
  std::swap(*a->tensor(), *b->tensor());
  a->copy_on_read_mode.store(false);
  b->copy_on_read_mode.store(false);
}

}  // namespace swa_ops
