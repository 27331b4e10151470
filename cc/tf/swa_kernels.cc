// CPU kernels for SWAAssign, EMAAssign and DebiasedEMA: the single-variable ops, their Variable
// and Ref variants, and the grouped ops (`...N`) that update a whole list of variables at once.
//
// Every op has the same input layout: K lists of N variables to update (K = 1: averages; K = 3:
// averages, biased, local_steps), then N values, then the scalar step or decay. A single-variable
// op is the N = 1 case, so one kernel serves them all.
#define EIGEN_USE_THREADS

#include <algorithm>
#include <atomic>
#include <cmath>
#include <deque>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "cpu_updates.h"
#include "float_types.h"
#include "gpu_device.h"
#include "swa_functors.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/register_types.h"
#include "tensorflow/core/framework/tensor.h"
#include "unsupported/Eigen/CXX11/Tensor"
#include "variable_access.h"
#include "variable_group.h"
#if SWA_OPS_WITH_CUDA
#include "swa_launchers.h"
#endif

namespace swa_ops {

using CPUDevice = Eigen::ThreadPoolDevice;
using tensorflow::DataTypeToEnum;
using tensorflow::OpKernel;
using tensorflow::OpKernelConstruction;
using tensorflow::OpKernelContext;
using tensorflow::Tensor;

namespace functor {

// Updates moving at most this many bytes are split by ParallelBlocksWithCaller, larger ones by
// Eigen's parallelFor. Measured on 2 cores, alternating processes: 2000 x 1000 float32 (24 MB)
// 1.07 instead of 1.13 ms per tf.function call, 4M floats in 10 to 3000 variables 0.05-0.1 ms
// faster; one 64M-float variable was 0.5 ms slower (of 16) with the calling thread working.
constexpr double kCallerWorksMaxBytes = 64 << 20;

// Runs run_block(b) for b in [0, blocks) on the calling thread and threads - 1 threads of the
// device's pool, which take blocks in turn. Eigen's parallelFor runs the work on the pool while
// the calling thread sleeps when there are more blocks than threads: a thread hop each way,
// which a small update feels.
template <typename RunBlock>
void ParallelBlocksWithCaller(const CPUDevice& device, int threads, int64_t blocks,
                              const RunBlock& run_block) {
  std::atomic<int64_t> next_block{0};
  auto run_blocks = [&] {
    for (int64_t b; (b = next_block.fetch_add(1, std::memory_order_relaxed)) < blocks;) {
      run_block(b);
    }
  };
  const int helpers = static_cast<int>(std::min<int64_t>(threads, blocks)) - 1;
  Eigen::Barrier done(static_cast<unsigned int>(helpers));
  for (int h = 0; h < helpers; ++h) {
    device.getPool()->Schedule([&] {
      run_blocks();
      done.Notify();
    });
  }
  run_blocks();
  done.Wait();
}

// Runs body(segment, begin, end) over every element of `segments`, split into ranges over TF's
// intra-op thread pool by bytes, not by variable, so one huge variable and thousands of tiny
// ones alike use every core; Eigen's cost model decides how many threads (a small total runs
// inline).
template <typename Segment, typename Body>
void ParallelOverSegments(const CPUDevice& device, const Segment* segments, int64_t count,
                          const Eigen::TensorOpCost& cost_per_element, const Body& body) {
  const SegmentRanges<Segment> ranges(segments, count);
  const int64_t total = ranges.total();
  if (total == 0) return;
  const double bytes =
      (cost_per_element.bytes_loaded() + cost_per_element.bytes_stored()) * total;
  if (bytes > kCallerWorksMaxBytes) {
    device.parallelFor(total, cost_per_element, [&](Eigen::Index begin, Eigen::Index end) {
      ranges.ForEach(begin, end, body);
    });
    return;
  }
  const int threads = Eigen::TensorCostModel<CPUDevice>::numThreads(
      static_cast<double>(total), cost_per_element, device.numThreads());
  if (threads <= 1) {
    ranges.ForEach(0, total, body);
    return;
  }
  const int64_t blocks = 4 * threads;
  ParallelBlocksWithCaller(device, threads, blocks, [&](int64_t b) {
    ranges.ForEach(total * b / blocks, total * (b + 1) / blocks, body);
  });
}

template <typename T, typename V>
struct MovingAverageUpdate<CPUDevice, T, V> {
  void operator()(const CPUDevice& device, const MovingAverageSegment<T, V>* segments,
                  int64_t count, double weight) {
    ParallelOverSegments(device, segments, count,
                         Eigen::TensorOpCost(sizeof(T) + sizeof(V), sizeof(T), 3),
                         [weight](const MovingAverageSegment<T, V>& segment, int64_t begin,
                                  int64_t end) { MovingAverageRange(segment, begin, end, weight); });
  }
};

template <typename T, typename V>
struct DebiasedMovingAverageUpdate<CPUDevice, T, V> {
  void operator()(const CPUDevice& device, const DebiasedSegment<T, V>* segments, int64_t count,
                  double weight) {
    ParallelOverSegments(device, segments, count,
                         Eigen::TensorOpCost(2 * sizeof(T) + sizeof(V), 2 * sizeof(T), 5),
                         [weight](const DebiasedSegment<T, V>& segment, int64_t begin,
                                  int64_t end) { DebiasedRange(segment, begin, end, weight); });
  }
};

}  // namespace functor

// The device argument of the update functors, and the host's access to scalar variables
// (DebiasedEMA's local_step) on that device.
template <typename Device>
struct DeviceArg;

template <>
struct DeviceArg<CPUDevice> {
  const CPUDevice* device = nullptr;

  absl::Status Init(OpKernelContext* ctx) {
    device = &ctx->eigen_device<CPUDevice>();
    return absl::OkStatus();
  }
  const CPUDevice& get() const { return *device; }
  template <typename T>
  absl::Status CopyToHost(const Tensor& scalar, T* out) const {
    *out = scalar.scalar<T>()();
    return absl::OkStatus();
  }
  template <typename T>
  absl::Status CopyFromHost(const T& value, Tensor* scalar) const {
    scalar->scalar<T>()() = value;
    return absl::OkStatus();
  }
  absl::Status Finish(OpKernelContext*) const { return absl::OkStatus(); }
};

#if SWA_OPS_WITH_CUDA
// On the GPU a scalar is copied synchronously (DebiasedEMA only: the debias denominator
// 1 - decay ** local_step is computed on the host, as on the CPU, so both agree bit for bit).
template <>
struct DeviceArg<GpuDevice> {
  GpuDevice device;

  absl::Status Init(OpKernelContext* ctx) { return GpuDeviceOf(ctx, &device); }
  const GpuDevice& get() const { return device; }
  template <typename T>
  absl::Status CopyToHost(const Tensor& scalar, T* out) const {
    return Check(cudaMemcpyAsync(out, scalar.tensor_data().data(), sizeof(T),
                                 cudaMemcpyDeviceToHost, device.stream));
  }
  template <typename T>
  absl::Status CopyFromHost(const T& value, Tensor* scalar) const {
    return Check(cudaMemcpyAsync(const_cast<char*>(scalar->tensor_data().data()), &value,
                                 sizeof(T), cudaMemcpyHostToDevice, device.stream));
  }
  absl::Status Finish(OpKernelContext* ctx) const {
    if (device.error == cudaSuccess) return absl::OkStatus();
    return absl::InternalError(absl::StrCat(ctx->op_kernel().type_string(), " '",
                                            ctx->op_kernel().name(), "': CUDA launch failed: ",
                                            cudaGetErrorString(device.error)));
  }

 private:
  // Waits for the copy (its host side lives on the caller's stack).
  absl::Status Check(cudaError_t error) const {
    if (error == cudaSuccess) error = cudaStreamSynchronize(device.stream);
    if (error == cudaSuccess) return absl::OkStatus();
    return absl::InternalError(absl::StrCat("copying a scalar variable: ",
                                            cudaGetErrorString(error)));
  }
};

namespace functor {

template <typename T, typename V>
struct MovingAverageUpdate<GpuDevice, T, V> {
  void operator()(const GpuDevice& device, const MovingAverageSegment<T, V>* segments,
                  int64_t count, double weight) {
    using CT = typename CudaType<T>::type;
    using CV = typename CudaType<V>::type;
    device.Record(cuda::LaunchMovingAverageUpdate<CT, CV>(
        reinterpret_cast<const MovingAverageSegment<CT, CV>*>(segments), count, weight,
        device.stream));
  }
};

template <typename T, typename V>
struct DebiasedMovingAverageUpdate<GpuDevice, T, V> {
  void operator()(const GpuDevice& device, const DebiasedSegment<T, V>* segments, int64_t count,
                  double weight) {
    using CT = typename CudaType<T>::type;
    using CV = typename CudaType<V>::type;
    device.Record(cuda::LaunchDebiasedMovingAverageUpdate<CT, CV>(
        reinterpret_cast<const DebiasedSegment<CT, CV>*>(segments), count, weight,
        device.stream));
  }
};

}  // namespace functor
#endif  // SWA_OPS_WITH_CUDA

// The value dtypes V an average of dtype T takes: T itself, or a narrower float, converted
// exactly to T's compute type (float32 or float64 averages of float16/bfloat16 weights).
template <typename T, typename V>
constexpr bool kAveragesValuesOf =
    std::is_same_v<T, V> ||
    ((std::is_same_v<T, float> || std::is_same_v<T, double>) && sizeof(V) < sizeof(T));

namespace {

std::string OpPrefix(OpKernelContext* ctx) {
  return absl::StrCat(ctx->op_kernel().type_string(), " '", ctx->op_kernel().name(), "': ");
}

// Reads scalar input `index` (int32, int64, half, bfloat16, float or double) as a double.
absl::Status ReadScalar(OpKernelContext* ctx, int index, const char* name, double* out) {
  const Tensor& t = ctx->input(index);
  if (!tensorflow::TensorShapeUtils::IsScalar(t.shape())) {
    return absl::InvalidArgumentError(absl::StrCat(
        OpPrefix(ctx), name, " must be a scalar, got shape ", t.shape().DebugString()));
  }
  switch (t.dtype()) {
    case tensorflow::DT_INT32: *out = t.scalar<int32_t>()(); break;
    case tensorflow::DT_INT64: *out = static_cast<double>(t.scalar<int64_t>()()); break;
    case tensorflow::DT_HALF: *out = static_cast<float>(t.scalar<Eigen::half>()()); break;
    case tensorflow::DT_BFLOAT16: *out = static_cast<float>(t.scalar<Eigen::bfloat16>()()); break;
    case tensorflow::DT_FLOAT: *out = t.scalar<float>()(); break;
    case tensorflow::DT_DOUBLE: *out = t.scalar<double>()(); break;
    default:
      return absl::InvalidArgumentError(absl::StrCat(OpPrefix(ctx), name, " has unsupported dtype ",
                                                     tensorflow::DataTypeString(t.dtype())));
  }
  return absl::OkStatus();
}

// The scalars of one update: the weight of the new value, for zero-debiasing the decay, and
// whether the step is one to skip (outside the SWA schedule).
struct UpdateScalars {
  double weight;
  double decay;
  bool skip = false;
};

// SWAAssign's schedule (attributes `start`, `period`): steps n >= start with
// (n - start) % period == 0 are averaged, the k-th of them (k = (n - start) / period) with weight
// 1 / (k + 1); other steps change nothing. The default (0, 1) averages every step: k = n.
struct StepSchedule {
  int64_t start = 0;
  int64_t period = 1;
};

// SWA: weight 1 / (k + 1), in double: exact enough at any step count.
absl::Status ScalarsFromStep(OpKernelContext* ctx, int index, const StepSchedule& schedule,
                             UpdateScalars* out) {
  double step;
  TF_RETURN_IF_ERROR(ReadScalar(ctx, index, "step", &step));
  if (!(step >= 0) || std::isinf(step)) {
    return absl::InvalidArgumentError(
        absl::StrCat(OpPrefix(ctx), "step must be finite and >= 0, got ", step));
  }
  double k = step;
  if (schedule.start != 0 || schedule.period != 1) {
    if (step != std::floor(step)) {
      return absl::InvalidArgumentError(absl::StrCat(
          OpPrefix(ctx), "step must be a whole number with start/period, got ", step));
    }
    const double since_start = step - static_cast<double>(schedule.start);
    const double period = static_cast<double>(schedule.period);
    if (since_start < 0 || std::fmod(since_start, period) != 0) {
      *out = {0.0, 1.0, true};
      return absl::OkStatus();
    }
    k = since_start / period;
  }
  *out = {1.0 / (k + 1.0), k / (k + 1.0)};
  return absl::OkStatus();
}

absl::Status ScalarsFromDecay(OpKernelContext* ctx, int index, const StepSchedule&,
                              UpdateScalars* out) {
  double decay;
  TF_RETURN_IF_ERROR(ReadScalar(ctx, index, "decay", &decay));
  if (!(decay >= 0 && decay <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat(OpPrefix(ctx), "decay must be in [0, 1], got ", decay));
  }
  *out = {1.0 - decay, decay};
  return absl::OkStatus();
}

absl::Status ScalarsForDebiasing(OpKernelContext* ctx, int index, const StepSchedule& schedule,
                                 UpdateScalars* out) {
  TF_RETURN_IF_ERROR(ScalarsFromDecay(ctx, index, schedule, out));
  if (out->decay == 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        OpPrefix(ctx), "zero-debiasing needs decay < 1 (1 - decay ** step is 0 at decay 1)"));
  }
  return absl::OkStatus();
}

constexpr const char* kStateRoles[] = {"average", "biased", "local_step"};

absl::Status OwnAverageError(OpKernelContext* ctx, int state_index, int num_variables) {
  return absl::InvalidArgumentError(absl::StrCat(
      OpPrefix(ctx), kStateRoles[state_index / num_variables], " variable ",
      DescribeVariableInput(ctx, state_index),
      " is also the value averaged into it: a variable cannot be its own average"));
}

// No variable may appear twice among the variables an op updates (`state`: the looked-up
// resource variables, null for references), nor be the value averaged into one of them
// (`values`: null for a tensor value). Compared as variables, not names, before anything is
// locked or written.
absl::Status CheckDistinctVariables(OpKernelContext* ctx, absl::Span<const VarPtr> state,
                                    absl::Span<const VarPtr> values) {
  const int num_variables = static_cast<int>(values.size());
  absl::flat_hash_map<const tensorflow::Var*, int> seen;
  seen.reserve(state.size());
  for (int index = 0; index < static_cast<int>(state.size()); ++index) {
    if (state[index] == nullptr) continue;
    auto [it, inserted] = seen.emplace(state[index].get(), index);
    if (!inserted) {
      return absl::InvalidArgumentError(absl::StrCat(
          OpPrefix(ctx), "variable ", DescribeVariableInput(ctx, index), " appears twice (as ",
          kStateRoles[it->second / num_variables], " ", it->second % num_variables, " and as ",
          kStateRoles[index / num_variables], " ", index % num_variables,
          "): each variable may be updated once per op"));
    }
  }
  for (const VarPtr& value : values) {
    if (value == nullptr) continue;
    auto it = seen.find(value.get());
    if (it != seen.end()) return OwnAverageError(ctx, it->second, num_variables);
  }
  return absl::OkStatus();
}

// `expected_what` says where the expected shape comes from ("the value has", "it must have").
absl::Status CheckShape(OpKernelContext* ctx, int index, const Tensor& tensor,
                        const tensorflow::TensorShape& expected, const char* role,
                        const char* expected_what) {
  if (tensor.shape() == expected) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      OpPrefix(ctx), role, " variable ", DescribeVariableInput(ctx, index), " has shape ",
      tensor.shape().DebugString(), " but ", expected_what, " shape ", expected.DebugString()));
}

// Reference variables have no resource to compare (CheckDistinctVariables): an updated buffer that
// is also the value's (or another updated variable's) buffer is the same variable.
absl::Status CheckDistinctBuffers(OpKernelContext* ctx, const std::vector<Tensor*>& state,
                                  const std::vector<const Tensor*>& values, int num_variables) {
  absl::flat_hash_map<const void*, int> seen;
  for (int index = 0; index < static_cast<int>(state.size()); ++index) {
    if (state[index]->NumElements() == 0) continue;
    if (!seen.emplace(state[index]->tensor_data().data(), index).second) {
      return absl::InvalidArgumentError(absl::StrCat(OpPrefix(ctx), "variable ",
                                                     DescribeVariableInput(ctx, index),
                                                     " is updated twice by one op"));
    }
  }
  for (int i = 0; i < num_variables; ++i) {
    if (values[i]->NumElements() == 0) continue;
    auto it = seen.find(values[i]->tensor_data().data());
    if (it != seen.end()) {
      return OwnAverageError(ctx, it->second, num_variables);
    }
  }
  return absl::OkStatus();
}

}  // namespace

using ScalarReader = absl::Status (*)(OpKernelContext*, int, const StepSchedule&,
                                      UpdateScalars*);

// Looks up the resource variables the op updates (inputs [0, vars->size())); a reference's entry
// stays null.
absl::Status FindStateVariables(OpKernelContext* ctx, int num_variables,
                                std::vector<VarPtr>* vars) {
  for (int index = 0; index < static_cast<int>(vars->size()); ++index) {
    if (ctx->input_dtype(index) != tensorflow::DT_RESOURCE) continue;
    TF_RETURN_IF_ERROR(
        FindVariable(ctx, index, kStateRoles[index / num_variables], &(*vars)[index]));
  }
  return absl::OkStatus();
}

// Checks the first average (variable 0; null for a reference input): initialised and of a float
// dtype, `*dtype`, which every variable the op updates must have. REQUIRES: its lock held (a
// reference's only if `ref_lock_held`).
absl::Status CheckFirstAverage(OpKernelContext* ctx, tensorflow::Var* var, bool ref_lock_held,
                               tensorflow::DataType* dtype) {
  TF_RETURN_IF_ERROR(CheckLockedVariableInput(ctx, 0, var, tensorflow::DT_INVALID, kStateRoles[0],
                                              ref_lock_held, dtype));
  if (!WithFloatType(*dtype, [](auto) {})) {
    return absl::InvalidArgumentError(absl::StrCat(
        OpPrefix(ctx), "average variable ", DescribeVariableInput(ctx, 0), " has dtype ",
        tensorflow::DataTypeString(*dtype),
        "; averages are float16, bfloat16, float32 or float64"));
  }
  return absl::OkStatus();
}

// Looks up the resource variables among the values (inputs value_begin + i); a tensor value's
// entry stays null.
absl::Status FindValueVariables(OpKernelContext* ctx, int value_begin, std::vector<VarPtr>* vars) {
  for (int i = 0; i < static_cast<int>(vars->size()); ++i) {
    if (ctx->input_dtype(value_begin + i) != tensorflow::DT_RESOURCE) continue;
    TF_RETURN_IF_ERROR(FindVariable(ctx, value_begin + i, "value", &(*vars)[i]));
  }
  return absl::OkStatus();
}

// Reads value input `index` (the resource variable `var`, or a tensor if null; ReadLockedValue),
// of dtype `dtype`. REQUIRES: var->mu() held.
template <typename Device>
absl::Status ReadValue(OpKernelContext* ctx, int index, tensorflow::Var* var,
                       tensorflow::DataType dtype, std::deque<Tensor>* copies,
                       const Tensor** value) {
  TF_RETURN_IF_ERROR(ReadLockedValue<Device>(ctx, index, var, copies, value));
  if ((*value)->dtype() == dtype) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      OpPrefix(ctx), "value variable ", DescribeVariableInput(ctx, index), " has dtype ",
      tensorflow::DataTypeString((*value)->dtype()), " but the op expects ",
      tensorflow::DataTypeString(dtype)));
}

// The kernel of every op: kLists = 1 (SWAAssign*, EMAAssign*) or 3 (DebiasedEMA*).
// Attribute T is the values' dtype; the variables updated have T or a wider float (read from
// them at run time). Everything is validated (dtypes, initialisation, distinct variables,
// shapes) before the first write, so a bad input leaves every variable of the op unchanged.
template <typename Device, int kLists, ScalarReader kReadScalars>
class MovingAverageOp : public OpKernel {
 public:
  explicit MovingAverageOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("use_locking", &use_locking_));
    if (ctx->HasAttr("N")) OP_REQUIRES_OK(ctx, ctx->GetAttr("N", &num_variables_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("G", &num_guards_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("T", &value_dtype_));
    from_group_ = ctx->HasAttr("Tvalues");
    if (from_group_) {
      tensorflow::DataTypeVector value_types;
      OP_REQUIRES_OK(ctx, ctx->GetAttr("Tvalues", &value_types));
      for (tensorflow::DataType type : value_types) {
        OP_REQUIRES(ctx, type == value_dtype_,
                    absl::InvalidArgumentError(absl::StrCat(
                        type_string(), " '", name(), "': the value tensors must have dtype T = ",
                        tensorflow::DataTypeString(value_dtype_), ", got ",
                        tensorflow::DataTypeString(type))));
      }
      num_value_tensors_ = static_cast<int>(value_types.size());
    }
    if (ctx->HasAttr("start")) {
      OP_REQUIRES_OK(ctx, ctx->GetAttr("start", &schedule_.start));
      OP_REQUIRES_OK(ctx, ctx->GetAttr("period", &schedule_.period));
    }
  }

  void Compute(OpKernelContext* ctx) override {
    OP_REQUIRES_OK(ctx, CheckHandleInputs(ctx));
    Layout layout;
    OP_REQUIRES_OK(ctx, GetLayout(ctx, &layout));
    const int n = layout.num_variables;
    const int state_count = kLists * n;
    UpdateScalars scalars;
    OP_REQUIRES_OK(ctx, kReadScalars(ctx, layout.scalar_input, schedule_, &scalars));
    for (int g = 0; g < num_guards_; ++g) {
      const Tensor& guard = ctx->input(layout.scalar_input + 1 + g);
      OP_REQUIRES(ctx, tensorflow::TensorShapeUtils::IsScalar(guard.shape()),
                  absl::InvalidArgumentError(absl::StrCat(OpPrefix(ctx),
                                                          "apply_if must be a scalar, got shape ",
                                                          guard.shape().DebugString())));
      if (!guard.scalar<bool>()()) scalars.skip = true;
    }
    // Each variable is looked up once (here, or by its group when first used) and used for
    // every check, the read and the update. Every variable updated has the first average's
    // dtype, T or a wider float.
    std::vector<VarPtr> inputs_state, inputs_values(n);  // Looked up here: not in a group.
    std::shared_ptr<const VariableGroup::Members> members;  // Or the group's.
    absl::Span<const VarPtr> state_vars, value_vars = inputs_values;
    if (layout.group != nullptr) {
      auto role_of = [state_count, n](int member) {
        return member < state_count ? kStateRoles[member / n] : "value";
      };
      OP_REQUIRES_OK(ctx, layout.group->GetMembers(ctx, role_of, &members));
      state_vars = absl::MakeConstSpan(members->vars).subspan(0, state_count);
      if (num_value_tensors_ == 0) {
        value_vars = absl::MakeConstSpan(members->vars).subspan(state_count, n);
      }
    } else {
      inputs_state.resize(state_count);
      OP_REQUIRES_OK(ctx, FindStateVariables(ctx, n, &inputs_state));
      OP_REQUIRES_OK(ctx, FindValueVariables(ctx, layout.value_begin, &inputs_values));
      state_vars = inputs_state;
    }
    if (members == nullptr || members->checked_distinct.load() != state_count) {
      OP_REQUIRES_OK(ctx, CheckDistinctVariables(ctx, state_vars, value_vars));
      if (members != nullptr) members->checked_distinct.store(state_count);
    }
    std::optional<OrderedLocks> locks;
    if (members != nullptr) {
      locks.emplace(members->lock_order.size());
      OP_REQUIRES_OK(ctx, PrepareAndLockGroup(ctx, state_vars, value_vars, *members, &*locks));
    } else {
      std::vector<LockRequest> requests;
      OP_REQUIRES_OK(ctx, PrepareAndListLocks(ctx, state_vars, value_vars, &requests));
      locks.emplace(std::move(requests));
    }
    tensorflow::DataType state_dtype;
    OP_REQUIRES_OK(ctx, CheckFirstAverage(ctx, state_vars[0].get(), use_locking_, &state_dtype));
    WithFloatType(state_dtype, [&](auto average_type) {
      WithFloatType(value_dtype_, [&](auto value_type) {
        ComputeWithTypes<decltype(average_type), decltype(value_type)>(
            ctx, scalars, state_vars, value_vars, layout.value_begin);
      });
    });
  }

 private:
  // Prepares each resource variable the op updates for an in-place update and lists the locks
  // the op takes: those variables' (exclusive with use_locking), the value variables' (shared),
  // and with use_locking a reference input's.
  absl::Status PrepareAndListLocks(OpKernelContext* ctx, absl::Span<const VarPtr> state_vars,
                                   absl::Span<const VarPtr> value_vars,
                                   std::vector<LockRequest>* out) const {
    const int state_count = static_cast<int>(state_vars.size());
    const int count = state_count + static_cast<int>(value_vars.size());
    out->reserve(count);
    // Variable k: the k-th updated, then the (k - state_count)-th value.
    auto var_of = [&](int64_t k) {
      return k >= state_count ? value_vars[k - state_count].get() : state_vars[k].get();
    };
    return VisitPrefetched(
        count, [&](int64_t k) { PrefetchVar(var_of(k)); },
        [&](int64_t k) -> absl::Status {
          tensorflow::Var* var = var_of(k);
          if (k >= state_count) {
            if (var != nullptr) out->push_back({var->mu(), /*exclusive=*/false});
          } else if (var != nullptr) {
            TF_RETURN_IF_ERROR(PrepareInPlaceUpdate<Device>(ctx, var));
            out->push_back({var->mu(), use_locking_});
          } else if (use_locking_) {
            out->push_back({ctx->input_ref_mutex(k), /*exclusive=*/true});
          }
          return absl::OkStatus();
        });
  }

  // PrepareAndListLocks for a group's members (resource variables: the updated ones, then the
  // value variables unless the values are tensors), fused with taking the locks: one visit to
  // each variable, in the group's lock order. A variable is prepared (which takes its lock
  // exclusively for a moment) while the locks of the variables before it in that order are
  // held, so the op still takes every lock in address order.
  absl::Status PrepareAndLockGroup(OpKernelContext* ctx, absl::Span<const VarPtr> state_vars,
                                   absl::Span<const VarPtr> value_vars,
                                   const VariableGroup::Members& members,
                                   OrderedLocks* locks) const {
    const int state_count = static_cast<int>(state_vars.size());
    auto var_of = [&](int k) {
      return k >= state_count ? value_vars[k - state_count].get() : state_vars[k].get();
    };
    const std::vector<int>& order = members.lock_order;
    return VisitPrefetched(
        static_cast<int64_t>(order.size()), [&](int64_t j) { PrefetchVar(var_of(order[j])); },
        [&](int64_t j) -> absl::Status {
          const bool updated = order[j] < state_count;
          tensorflow::Var* var = var_of(order[j]);
          if (updated) TF_RETURN_IF_ERROR(PrepareInPlaceUpdate<Device>(ctx, var));
          return locks->LockNext({var->mu(), updated && use_locking_});
        });
  }

  // Where an op's variables and scalars are. Variable `index` < kLists * n is the one updated
  // (average, then biased and local_step); the values start at `value_begin`: input indices
  // (variable or tensor), or, for a `...Group` op, member indices in `group` (its members: the
  // lists of variables updated, then the value variables unless the values are tensor inputs
  // 1 .. M, M = len(Tvalues)).
  struct Layout {
    int num_variables = 1;
    int value_begin = 0;
    int scalar_input = 0;
    tensorflow::core::RefCountPtr<VariableGroup> group;
  };

  absl::Status GetLayout(OpKernelContext* ctx, Layout* out) const {
    if (!from_group_) {
      out->num_variables = num_variables_;
      out->value_begin = kLists * num_variables_;
      out->scalar_input = out->value_begin + num_variables_;
      return absl::OkStatus();
    }
    TF_RETURN_IF_ERROR(GroupInput(ctx, 0, &out->group));
    const int lists = kLists + (num_value_tensors_ == 0 ? 1 : 0);
    const int size = out->group->size();
    const int n = size / lists;
    if (size == 0 || size % lists != 0 || (num_value_tensors_ > 0 && n != num_value_tensors_)) {
      const std::string list_names = absl::StrCat(
          kLists == 1 ? "averages" : "averages, biased, local_steps",
          num_value_tensors_ == 0 ? ", values)" : ")");
      const std::string length =
          num_value_tensors_ == 0
              ? std::string()
              : absl::StrCat(" of ", num_value_tensors_, " each (one per value tensor)");
      return absl::InvalidArgumentError(
          absl::StrCat(OpPrefix(ctx), "the group holds ", size, " variables; this op takes ",
                       lists, " lists of one length (", list_names, length));
    }
    out->num_variables = n;
    out->value_begin = num_value_tensors_ == 0 ? kLists * n : 1;
    out->scalar_input = 1 + num_value_tensors_;
    return absl::OkStatus();
  }

  // The rest of Compute for averages of dtype T and values of dtype V, under the op's locks:
  // check and read every variable, update.
  template <typename T, typename V>
  void ComputeWithTypes(OpKernelContext* ctx, const UpdateScalars& scalars,
                        absl::Span<const VarPtr> state_vars, absl::Span<const VarPtr> value_vars,
                        int value_begin) {
    if constexpr (!kAveragesValuesOf<T, V>) {
      ctx->CtxFailure(absl::InvalidArgumentError(absl::StrCat(
          OpPrefix(ctx), "average variable ", DescribeVariableInput(ctx, 0), " has dtype ",
          tensorflow::DataTypeString(DataTypeToEnum<T>::value),
          " but the values averaged into it have dtype ",
          tensorflow::DataTypeString(DataTypeToEnum<V>::value),
          ": an average has its value's dtype or a wider float (float32 or float64 for "
          "float16/bfloat16 values, float64 for float32 values)")));
    } else {
      const int n = static_cast<int>(value_vars.size());
      // The checks and reads are one pass over the variables (a grouped op's thousands of
      // variables, scattered over the heap, cost a cache miss or two at each visit). It finds
      // the values (ReadValue) and the tensors updated: a resource variable's own (valid while
      // locked) or a reference input's (held in `references`); and it reads their data pointers
      // and sizes for Update, which so need not visit their buffer objects again.
      std::vector<const Tensor*> values(n);
      std::deque<Tensor> copies;
      UpdateArrays<T, V> arrays(n, kLists);
      std::vector<Tensor*>& state = arrays.state;
      std::vector<Tensor> references;
      if (ctx->input_is_ref(0)) references.resize(kLists * n);
      // Variables kPrefetchAhead places ahead, and the buffer objects of those half as far ahead
      // (asked for kPrefetchAhead / 2 visits ago, their variables are in the cache by now).
      auto prefetch = [&](int64_t ahead) {
        const int64_t near = ahead - kPrefetchAhead / 2;
        PrefetchVar(value_vars[ahead].get());
        PrefetchVarBuffer(value_vars[near].get());
        for (int list = 0; list < kLists; ++list) {
          PrefetchVar(state_vars[list * n + ahead].get());
          PrefetchVarBuffer(state_vars[list * n + near].get());
        }
      };
      auto check_and_read = [&](int64_t i) -> absl::Status {
        TF_RETURN_IF_ERROR(ReadValue<Device>(ctx, value_begin + i, value_vars[i].get(),
                                             DataTypeToEnum<V>::value, &copies, &values[i]));
        arrays.value_data[i] = CheckedData<V>(values[i]);
        arrays.sizes[i] = values[i]->NumElements();
        for (int list = 0; list < kLists; ++list) {
          const int index = list * n + i;
          tensorflow::Var* var = state_vars[index].get();
          TF_RETURN_IF_ERROR(CheckLockedVariableInput(ctx, index, var, DataTypeToEnum<T>::value,
                                                      kStateRoles[list], use_locking_));
          if (var != nullptr) {
            state[index] = var->tensor();
          } else {
            references[index] = ctx->mutable_input(index, /*lock_held=*/use_locking_);
            state[index] = &references[index];
          }
          arrays.state_data[index] = CheckedData<T>(state[index]);
          const bool is_local_step = list == 2;
          TF_RETURN_IF_ERROR(CheckShape(ctx, index, *state[index],
                                        is_local_step ? tensorflow::TensorShape()
                                                      : values[i]->shape(),
                                        kStateRoles[list],
                                        is_local_step ? "it must be a scalar:" : "the value has"));
        }
        return absl::OkStatus();
      };
      OP_REQUIRES_OK(ctx, VisitPrefetched(n, prefetch, check_and_read));
      if (!references.empty()) OP_REQUIRES_OK(ctx, CheckDistinctBuffers(ctx, state, values, n));
      if (!scalars.skip) Update<T, V>(ctx, scalars, arrays);
      if (n == 1 && !from_group_) ForwardRefOutput(ctx, 0, 0);
    }
  }

  // What Update needs of the tensors ComputeWithTypes checked: their data pointers and sizes (of
  // each value, and so of its average and biased value), and the tensors updated, through which
  // DebiasedEMA reads and writes its local steps.
  template <typename T, typename V>
  struct UpdateArrays {
    UpdateArrays(int n, int lists)
        : state(lists * n), state_data(lists * n), value_data(n), sizes(n) {}
    std::vector<Tensor*> state;
    std::vector<T*> state_data;
    std::vector<const V*> value_data;
    std::vector<int64_t> sizes;
  };

  template <typename T, typename V>
  void Update(OpKernelContext* ctx, const UpdateScalars& scalars,
              const UpdateArrays<T, V>& arrays) {
    const int n = static_cast<int>(arrays.sizes.size());
    DeviceArg<Device> device;
    OP_REQUIRES_OK(ctx, device.Init(ctx));
    if constexpr (kLists == 1) {
      std::vector<MovingAverageSegment<T, V>> segments(n);
      for (int i = 0; i < n; ++i) {
        segments[i] = {arrays.state_data[i], arrays.value_data[i], arrays.sizes[i]};
      }
      functor::MovingAverageUpdate<Device, T, V>()(device.get(), segments.data(), n,
                                                   scalars.weight);
    } else {
      using C = typename ComputeType<T>::type;
      std::vector<DebiasedSegment<T, V>> segments(n);
      std::vector<T> new_steps(n);
      for (int i = 0; i < n; ++i) {
        T step;
        OP_REQUIRES_OK(ctx, device.CopyToHost(*arrays.state[2 * n + i], &step));
        new_steps[i] = static_cast<T>(static_cast<C>(step) + C(1));
        const double local_step = static_cast<double>(static_cast<C>(new_steps[i]));
        segments[i] = {arrays.state_data[i], arrays.state_data[n + i], arrays.value_data[i],
                       arrays.sizes[i], 1.0 - std::pow(scalars.decay, local_step)};
      }
      functor::DebiasedMovingAverageUpdate<Device, T, V>()(device.get(), segments.data(), n,
                                                           scalars.weight);
      for (int i = 0; i < n; ++i) {
        OP_REQUIRES_OK(ctx, device.CopyFromHost(new_steps[i], arrays.state[2 * n + i]));
      }
    }
    OP_REQUIRES_OK(ctx, device.Finish(ctx));
  }

  bool use_locking_;
  tensorflow::DataType value_dtype_;
  int num_variables_ = 1;
  bool from_group_;            // A `...Group` op: the variables are a group's members.
  int num_value_tensors_ = 0;  // Its value tensors (none: the values are members too).
  int num_guards_;
  StepSchedule schedule_;
};

// An op's variants: <NAME>, <NAME>Variable, <NAME>Ref, and the grouped <NAME>N, <NAME>NVariable,
// <NAME>Group.
// One kernel per device for every dtype: it dispatches on the dtypes it finds. MEMORY: further
// kernel-builder calls (host memory inputs), or nothing.
#define SWA_REGISTER_VARIANTS(NAME, DEVICE, MEMORY, ...)                                          \
  REGISTER_KERNEL_BUILDER(Name(NAME).Device(DEVICE) MEMORY, __VA_ARGS__);                         \
  REGISTER_KERNEL_BUILDER(Name(NAME "Variable").Device(DEVICE) MEMORY, __VA_ARGS__);              \
  REGISTER_KERNEL_BUILDER(Name(NAME "Ref").Device(DEVICE) MEMORY, __VA_ARGS__);                   \
  REGISTER_KERNEL_BUILDER(Name(NAME "N").Device(DEVICE) MEMORY, __VA_ARGS__);                     \
  REGISTER_KERNEL_BUILDER(Name(NAME "NVariable").Device(DEVICE) MEMORY, __VA_ARGS__);             \
  REGISTER_KERNEL_BUILDER(Name(NAME "Group").Device(DEVICE) MEMORY, __VA_ARGS__)

#define SWA_REGISTER_DEVICE(DEVICE_TYPE, DEVICE, MEMORY_STEP, MEMORY_DECAY)                      \
  SWA_REGISTER_VARIANTS("SWAAssign", DEVICE, MEMORY_STEP,                                         \
                        MovingAverageOp<DEVICE_TYPE, 1, ScalarsFromStep>);                        \
  SWA_REGISTER_VARIANTS("EMAAssign", DEVICE, MEMORY_DECAY,                                        \
                        MovingAverageOp<DEVICE_TYPE, 1, ScalarsFromDecay>);                       \
  SWA_REGISTER_VARIANTS("DebiasedEMA", DEVICE, MEMORY_DECAY,                                      \
                        MovingAverageOp<DEVICE_TYPE, 3, ScalarsForDebiasing>)

SWA_REGISTER_DEVICE(CPUDevice, tensorflow::DEVICE_CPU, , );

#if SWA_OPS_WITH_CUDA
// On the GPU the step or decay and the apply_if flag stay in host memory: the kernel reads them
// with no device-to-host copy.
SWA_REGISTER_DEVICE(GpuDevice, tensorflow::DEVICE_GPU,
                    .HostMemory("step").HostMemory("apply_if"),
                    .HostMemory("decay").HostMemory("apply_if"));
#endif

}  // namespace swa_ops
