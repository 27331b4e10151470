// Access to the variables a moving-average op updates: validation, locking and copy-on-write.
//
// This is the only file that uses TensorFlow's internal training_op_helpers.h. It handles both
// kinds of variable input: resource handles (TF2, and TF1 with resource variables) and TF1
// reference variables (Ref(T) inputs).
//
// Locking model, for resource variables:
//  * use_locking=false (the default): the variable is switched once to copy-on-read mode (readers
//    then copy, so no live tensor shares its buffer) and updated in place under a *shared* lock.
//    Concurrent updates do not exclude each other (lock-free, like TF's use_locking=False sparse
//    training ops); assignments, which take the exclusive lock, are excluded.
//  * use_locking=true: the same, under an exclusive lock.
// An op takes all its locks at once, in address order (so that ops sharing variables cannot
// deadlock), before its checks: the variables it updates as above, the value variables it reads
// shared. The checks, the read of the values and the update then see one state.
// Reference variables follow TF1: no lock unless use_locking, in place.
#ifndef SWA_OPS_CC_VARIABLE_ACCESS_H_
#define SWA_OPS_CC_VARIABLE_ACCESS_H_

#include <deque>
#include <string>
#include <vector>

#include "absl/types/span.h"
#include "tensorflow/core/common_runtime/dma_helper.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/resource_mgr.h"
#include "tensorflow/core/framework/resource_var.h"
#include "tensorflow/core/kernels/dense_update_functor.h"
#include "tensorflow/core/kernels/training_op_helpers.h"
#include "float_types.h"
#include "gpu_device.h"

namespace swa_ops {

// A name for variable input `index` in error messages: the variable's shared name for a resource
// handle (or, in a `...Group` op, for member `index` of the group), the producing node for a
// reference variable.
std::string DescribeVariableInput(tensorflow::OpKernelContext* ctx, int index);

// Checks that every resource input holds exactly one handle (a graph can feed a resource
// tensor of another size, whose missing handle would otherwise be read): first in every kernel.
absl::Status CheckHandleInputs(tensorflow::OpKernelContext* ctx);

// A resource variable, looked up once per op and held (one reference) while the op uses it.
using VarPtr = tensorflow::core::RefCountPtr<tensorflow::Var>;

// Looks up the resource variable at input `index`, with messages that name it (`role`: "average",
// "value", ...): it lives on the op's device and exists. Takes no lock: CheckInitialized, under
// the variable's lock, checks the rest.
absl::Status FindVariable(tensorflow::OpKernelContext* ctx, int index, const char* role,
                          VarPtr* var);

// FindVariable for `handle`, the handle of variable `index` (an input's, or a group member's).
absl::Status FindVariableByHandle(tensorflow::OpKernelContext* ctx,
                                  const tensorflow::ResourceHandle& handle, int index,
                                  const char* role, VarPtr* var);

// Checks that `var`, the variable at input `index`, is initialised and (unless `dtype` is
// DT_INVALID) has `dtype`. REQUIRES: var->mu() held, shared or exclusive.
absl::Status CheckInitialized(tensorflow::OpKernelContext* ctx, int index, tensorflow::Var* var,
                              tensorflow::DataType dtype, const char* role);

// Checks, without writing anything, that variable `index` is initialised and of `dtype` (any
// dtype if DT_INVALID): the resource variable `var` (FindVariable's, or a group member), or, with
// `var` null, the reference input `index` (of the op's T). `*actual` (if given) receives its dtype.
// REQUIRES: var->mu() held (shared or exclusive), or, for a reference input, its mutex held if
// `ref_lock_held`.
absl::Status CheckLockedVariableInput(tensorflow::OpKernelContext* ctx, int index,
                                      tensorflow::Var* var, tensorflow::DataType dtype,
                                      const char* role, bool ref_lock_held,
                                      tensorflow::DataType* actual = nullptr);

// CheckInitialized for the resource variable `var` (variable `index`), under its lock taken
// shared here.
absl::Status CheckVariable(tensorflow::OpKernelContext* ctx, int index, tensorflow::Var* var,
                           tensorflow::DataType dtype, const char* role);

// The current tensor of `var`, variable `index` (shared, not copied: for a read-only scan such as
// AllFinite), after checking it is initialised.
absl::Status ShareVariableTensor(tensorflow::OpKernelContext* ctx, int index, tensorflow::Var* var,
                                 tensorflow::Tensor* out);

// Prefetches for the passes over a grouped op's variables: thousands of Var objects and tensor
// buffers scattered over the heap, each a cache miss that a pass would otherwise wait for in turn.
// A pass asks for the memory of the variable kPrefetchAhead places ahead of the one it visits.
constexpr int kPrefetchAhead = 16;

// Calls visit(k) for k in [0, count), each after prefetch(k + kPrefetchAhead) where that is
// below count; stops at the first error visit returns, and returns it.
template <typename Prefetch, typename Visit>
absl::Status VisitPrefetched(int64_t count, const Prefetch& prefetch, const Visit& visit) {
  for (int64_t k = 0; k < count; ++k) {
    if (k + kPrefetchAhead < count) prefetch(k + kPrefetchAhead);
    absl::Status status = visit(k);
    if (!status.ok()) return status;
  }
  return absl::OkStatus();
}

// The fields of `var` an op reads: its flags, mutex and tensor (one or two cache lines).
inline void PrefetchVar(tensorflow::Var* var) {
  if (var == nullptr) return;
  __builtin_prefetch(&var->is_initialized);
  __builtin_prefetch(reinterpret_cast<const char*>(var->tensor() + 1) - 1);
}

// The buffer object of `var`'s tensor (which holds its data pointer). REQUIRES: var->mu() held;
// of use once `var` itself is in the cache (PrefetchVar some visits earlier).
inline void PrefetchVarBuffer(tensorflow::Var* var) {
  if (var != nullptr) __builtin_prefetch(tensorflow::DMAHelper::buffer(var->tensor()));
}

// The data of a tensor whose dtype the op has checked (flat<T>() would check it again, reading
// the buffer object once more).
template <typename T>
T* CheckedData(tensorflow::Tensor* tensor) {
  return static_cast<T*>(tensorflow::DMAHelper::base(tensor));
}
template <typename T>
const T* CheckedData(const tensorflow::Tensor* tensor) {
  return static_cast<const T*>(tensorflow::DMAHelper::base(tensor));
}

// A mutex to take, exclusively or shared.
struct LockRequest {
  tsl::mutex* mu;
  bool exclusive;
};

// Takes each distinct mutex of `requests` once (exclusively if any request for it is), in
// address order, so that ops sharing variables cannot deadlock; releases them when destroyed.
// Requests already in address order are not sorted.
class OrderedLocks {
 public:
  explicit OrderedLocks(std::vector<LockRequest> requests);
  // None held yet: LockNext takes them, one at a time. `capacity`: how many will be.
  explicit OrderedLocks(size_t capacity) { held_.reserve(capacity); }
  ~OrderedLocks();
  OrderedLocks(const OrderedLocks&) = delete;
  OrderedLocks& operator=(const OrderedLocks&) = delete;

  // Takes `request`, whose mutex must be the last one held or come after it in address order;
  // the last one again is not taken twice. An error (held locks untouched) if it comes before,
  // or is the last one held shared and asked for exclusively: a lock cannot be upgraded.
  absl::Status LockNext(const LockRequest& request);

 private:
  static void Take(const LockRequest& request);  // Locks, exclusively or shared.

  std::vector<LockRequest> held_;  // Sorted, distinct, all held.
};

// A copy of `source` in a new buffer on `Device` (specialised per device in variable_access.cc).
template <typename Device>
absl::Status CopyToNewBuffer(tensorflow::OpKernelContext* ctx, const tensorflow::Tensor& source,
                             tensorflow::Tensor* out);

// Reads the value input `index`, of any dtype (the caller checks it): a plain tensor (`var`
// null), or the resource variable `var` (FindVariable's) after checking it is initialised, read
// in place under the lock the caller holds (as TF's own readers such as ResourceGather do: no
// reference taken, no copy), or, when the variable is in copy-on-read mode (where writers
// update in place under a shared lock), a copy appended to `copies`. `*out` points into the
// input, the variable or `copies`, valid while the lock is held and `copies` lives.
// REQUIRES: var->mu() held, shared or exclusive.
template <typename Device>
absl::Status ReadLockedValue(tensorflow::OpKernelContext* ctx, int index, tensorflow::Var* var,
                             std::deque<tensorflow::Tensor>* copies,
                             const tensorflow::Tensor** out) {
  if (var == nullptr) {
    *out = &ctx->input(index);
    return absl::OkStatus();
  }
  TF_RETURN_IF_ERROR(CheckInitialized(ctx, index, var, tensorflow::DT_INVALID, "value"));
  if (!var->copy_on_read_mode.load()) {
    *out = var->tensor();
    return absl::OkStatus();
  }
  TF_RETURN_IF_ERROR(CopyToNewBuffer<Device>(ctx, *var->tensor(), &copies->emplace_back()));
  *out = &copies->back();
  return absl::OkStatus();
}

// How a variable is made safe to update in place: copy-on-read mode (readers copy, so no tensor
// shares its buffer); a no-op once the variable is in that mode. TensorFlow's helper on the CPU.
template <typename Device, typename T>
struct InPlaceAccess {
  static absl::Status Prepare(tensorflow::OpKernelContext* ctx, tensorflow::Var* var) {
    return tensorflow::EnsureSparseVariableAccess<Device, T>(ctx, var);
  }
};

#if SWA_OPS_WITH_CUDA
// The cudaStream_t of the op's GPU work, with the CUDA runtime's current device set to the
// stream's; an error if the op has no GPU stream.
absl::Status GpuDeviceOf(tensorflow::OpKernelContext* ctx, GpuDevice* out);

// Copy-on-read mode for a variable on the GPU, copying a shared buffer with our own device copy
// (TensorFlow's GPU copy functor is not in tensorflow-cpu, which the library is built against).
absl::Status EnsureCopyOnReadOnGpu(tensorflow::OpKernelContext* ctx, tensorflow::Var* var);

template <typename T>
struct InPlaceAccess<GpuDevice, T> {
  static absl::Status Prepare(tensorflow::OpKernelContext* ctx, tensorflow::Var* var) {
    return EnsureCopyOnReadOnGpu(ctx, var);
  }
};
#endif  // SWA_OPS_WITH_CUDA

// Makes the resource variable `var` safe to update in place under a shared lock (InPlaceAccess);
// once it is, this costs one atomic load. An uninitialised variable, or one that is not a float,
// is left as it is: the checks under the op's locks report it.
template <typename Device>
absl::Status PrepareInPlaceUpdate(tensorflow::OpKernelContext* ctx, tensorflow::Var* var) {
  if (var->copy_on_read_mode.load()) return absl::OkStatus();
  tensorflow::DataType dtype;
  {
    tsl::tf_shared_lock lock(*var->mu());
    if (!var->is_initialized) return absl::OkStatus();
    dtype = var->tensor()->dtype();
  }
  absl::Status status;
  WithFloatType(dtype, [&](auto type) {
    status = InPlaceAccess<Device, decltype(type)>::Prepare(ctx, var);
  });
  return status;
}

// Exchanges the values of variables `a` and `b` (their buffers: no copy, no arithmetic, so
// bit-exact). REQUIRES: both exclusively locked. Both leave copy-on-read mode: with every
// writer excluded, no other tensor can be writing into either buffer, and each later update
// copies a buffer that is still shared.
void SwapVariables(tensorflow::Var* a, tensorflow::Var* b);

// For the Ref(T) variants: the updated reference becomes the op's output, as TF1 training ops do.
inline void ForwardRefOutput(tensorflow::OpKernelContext* ctx, int input, int output) {
  if (ctx->input_dtype(input) != tensorflow::DT_RESOURCE) {
    ctx->forward_ref_input_to_ref_output(input, output);
  }
}

}  // namespace swa_ops

#endif  // SWA_OPS_CC_VARIABLE_ACCESS_H_
