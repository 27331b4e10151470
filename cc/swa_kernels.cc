// CPU kernels for SWAAssign, EMAAssign and DebiasedEMA (and their Variable and Ref variants).
#define EIGEN_USE_THREADS

#include <cmath>
#include <vector>

#include "absl/strings/str_cat.h"
#include "swa_functors.h"
#include "swa_math.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/register_types.h"
#include "tensorflow/core/framework/tensor.h"
#include "unsupported/Eigen/CXX11/Tensor"
#include "variable_access.h"

namespace swa_ops {

using CPUDevice = Eigen::ThreadPoolDevice;
using tensorflow::DataTypeToEnum;
using tensorflow::OpKernel;
using tensorflow::OpKernelConstruction;
using tensorflow::OpKernelContext;
using tensorflow::Tensor;

// half and bfloat16 are computed in float32 and rounded once when stored.
template <typename T>
struct ComputeType {
  using type = T;
};
template <>
struct ComputeType<Eigen::half> {
  using type = float;
};
template <>
struct ComputeType<Eigen::bfloat16> {
  using type = float;
};

namespace functor {

template <typename T>
struct MovingAverageUpdate<CPUDevice, T> {
  void operator()(const CPUDevice& device, T* average, const T* value, int64_t size,
                  double weight) {
    using C = typename ComputeType<T>::type;
    const C w = static_cast<C>(weight);
    const Eigen::TensorOpCost cost(2 * sizeof(T), sizeof(T), 3);
    device.parallelFor(size, cost, [=](Eigen::Index begin, Eigen::Index end) {
      T* __restrict__ avg = average;
      const T* __restrict__ val = value;
      for (Eigen::Index i = begin; i < end; ++i) {
        avg[i] = static_cast<T>(
            math::MovingAverageStep<C>(static_cast<C>(avg[i]), static_cast<C>(val[i]), w));
      }
    });
  }
};

template <typename T>
struct DebiasedMovingAverageUpdate<CPUDevice, T> {
  void operator()(const CPUDevice& device, T* average, T* biased, const T* value, int64_t size,
                  double weight, double debias_denominator) {
    using C = typename ComputeType<T>::type;
    const C w = static_cast<C>(weight);
    const C denominator = static_cast<C>(debias_denominator);
    const Eigen::TensorOpCost cost(3 * sizeof(T), 2 * sizeof(T), 5);
    device.parallelFor(size, cost, [=](Eigen::Index begin, Eigen::Index end) {
      T* __restrict__ avg = average;
      T* __restrict__ bia = biased;
      const T* __restrict__ val = value;
      for (Eigen::Index i = begin; i < end; ++i) {
        const T new_biased = static_cast<T>(
            math::MovingAverageStep<C>(static_cast<C>(bia[i]), static_cast<C>(val[i]), w));
        bia[i] = new_biased;
        avg[i] = static_cast<T>(math::Debias<C>(static_cast<C>(new_biased), denominator));
      }
    });
  }
};

}  // namespace functor

namespace {

std::string OpPrefix(OpKernelContext* ctx) {
  return absl::StrCat(ctx->op_kernel().type_string(), " '", ctx->op_kernel().name(), "': ");
}

// Reads scalar input `index` (int32, int64, half, bfloat16, float or double) as a double.
absl::Status ReadScalar(OpKernelContext* ctx, int index, const char* name, double* out) {
  const Tensor& t = ctx->input(index);
  if (!tensorflow::TensorShapeUtils::IsScalar(t.shape())) {
    return absl::InvalidArgumentError(absl::StrCat(OpPrefix(ctx), name, " must be a scalar, got shape ",
                                                   t.shape().DebugString()));
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

// SWA weight 1 / (n + 1) from the step count n, in double: exact enough at any step count.
absl::Status WeightFromStep(OpKernelContext* ctx, int index, double* weight) {
  double step;
  TF_RETURN_IF_ERROR(ReadScalar(ctx, index, "step", &step));
  if (!(step >= 0) || std::isinf(step)) {
    return absl::InvalidArgumentError(
        absl::StrCat(OpPrefix(ctx), "step must be finite and >= 0, got ", step));
  }
  *weight = 1.0 / (step + 1.0);
  return absl::OkStatus();
}

absl::Status ReadDecay(OpKernelContext* ctx, int index, double* decay) {
  TF_RETURN_IF_ERROR(ReadScalar(ctx, index, "decay", decay));
  if (!(*decay >= 0 && *decay <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat(OpPrefix(ctx), "decay must be in [0, 1], got ", *decay));
  }
  return absl::OkStatus();
}

absl::Status WeightFromDecay(OpKernelContext* ctx, int index, double* weight) {
  double decay;
  TF_RETURN_IF_ERROR(ReadDecay(ctx, index, &decay));
  *weight = 1.0 - decay;
  return absl::OkStatus();
}

// `expected_what` says where the expected shape comes from ("the value has", "it must have").
absl::Status CheckShape(OpKernelContext* ctx, const char* role, int index, const Tensor& tensor,
                        const tensorflow::TensorShape& expected, const char* expected_what) {
  if (tensor.shape() == expected) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      OpPrefix(ctx), role, " variable ", DescribeVariableInput(ctx, index), " has shape ",
      tensor.shape().DebugString(), " but ", expected_what, " shape ", expected.DebugString()));
}

constexpr char kValueShape[] = "the value has";

absl::Status CheckNotValue(OpKernelContext* ctx, const char* role, int index, int value_index,
                           const Tensor& tensor, const Tensor& value) {
  const bool shares_buffer = tensor.NumElements() > 0 &&
                             tensor.tensor_data().data() == value.tensor_data().data();
  if (SameResourceVariable(ctx, index, value_index) || shares_buffer) {
    return absl::InvalidArgumentError(absl::StrCat(OpPrefix(ctx), role, " variable ",
                                                   DescribeVariableInput(ctx, index),
                                                   " is also the value: a variable cannot be its own average"));
  }
  return absl::OkStatus();
}

}  // namespace

// SWAAssign / EMAAssign: inputs (average, value, step | decay).
template <typename Device, typename T, absl::Status (*GetWeight)(OpKernelContext*, int, double*)>
class MovingAverageAssignOp : public OpKernel {
 public:
  explicit MovingAverageAssignOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("use_locking", &use_locking_));
  }

  void Compute(OpKernelContext* ctx) override {
    constexpr int kAverage = 0, kValue = 1, kScalar = 2;
    double weight;
    OP_REQUIRES_OK(ctx, GetWeight(ctx, kScalar, &weight));
    OP_REQUIRES_OK(ctx, CheckVariableInput(ctx, kAverage, DataTypeToEnum<T>::value, "average"));
    Tensor value;
    OP_REQUIRES_OK(ctx, ReadValueInput<Device, T>(ctx, kValue, &value));
    {
      LockedVariables<Device, T> variables(ctx, {kAverage}, use_locking_);
      Tensor average;
      OP_REQUIRES_OK(ctx, variables.Get(kAverage, &average));
      OP_REQUIRES_OK(ctx, CheckShape(ctx, "average", kAverage, average, value.shape(), kValueShape));
      OP_REQUIRES_OK(ctx, CheckNotValue(ctx, "average", kAverage, kValue, average, value));
      functor::MovingAverageUpdate<Device, T>()(ctx->eigen_device<Device>(),
                                                average.flat<T>().data(), value.flat<T>().data(),
                                                average.NumElements(), weight);
    }
    ForwardRefOutput(ctx, kAverage, 0);
  }

 private:
  bool use_locking_;
};

// DebiasedEMA: inputs (average, biased, local_step, value, decay).
template <typename Device, typename T>
class DebiasedEMAOp : public OpKernel {
 public:
  explicit DebiasedEMAOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("use_locking", &use_locking_));
  }

  void Compute(OpKernelContext* ctx) override {
    constexpr int kAverage = 0, kBiased = 1, kLocalStep = 2, kValue = 3, kDecay = 4;
    double decay;
    OP_REQUIRES_OK(ctx, ReadDecay(ctx, kDecay, &decay));
    OP_REQUIRES(ctx, decay < 1,
                absl::InvalidArgumentError(absl::StrCat(
                    OpPrefix(ctx), "zero-debiasing needs decay < 1 (1 - decay ** step is 0 at decay 1)")));
    constexpr tensorflow::DataType kDtype = DataTypeToEnum<T>::value;
    OP_REQUIRES_OK(ctx, CheckVariableInput(ctx, kAverage, kDtype, "average"));
    OP_REQUIRES_OK(ctx, CheckVariableInput(ctx, kBiased, kDtype, "biased"));
    OP_REQUIRES_OK(ctx, CheckVariableInput(ctx, kLocalStep, kDtype, "local_step"));
    OP_REQUIRES(ctx,
                !SameResourceVariable(ctx, kAverage, kBiased) &&
                    !SameResourceVariable(ctx, kAverage, kLocalStep) &&
                    !SameResourceVariable(ctx, kBiased, kLocalStep),
                absl::InvalidArgumentError(absl::StrCat(
                    OpPrefix(ctx), "average, biased and local_step must be three distinct variables")));
    Tensor value;
    OP_REQUIRES_OK(ctx, ReadValueInput<Device, T>(ctx, kValue, &value));
    {
      LockedVariables<Device, T> variables(ctx, {kAverage, kBiased, kLocalStep}, use_locking_);
      Tensor average, biased, local_step;
      OP_REQUIRES_OK(ctx, variables.Get(kAverage, &average));
      OP_REQUIRES_OK(ctx, variables.Get(kBiased, &biased));
      OP_REQUIRES_OK(ctx, variables.Get(kLocalStep, &local_step));
      OP_REQUIRES_OK(ctx, CheckShape(ctx, "average", kAverage, average, value.shape(), kValueShape));
      OP_REQUIRES_OK(ctx, CheckShape(ctx, "biased", kBiased, biased, value.shape(), kValueShape));
      OP_REQUIRES_OK(ctx, CheckShape(ctx, "local_step", kLocalStep, local_step, {}, "it must be a scalar:"));
      OP_REQUIRES_OK(ctx, CheckNotValue(ctx, "average", kAverage, kValue, average, value));
      OP_REQUIRES_OK(ctx, CheckNotValue(ctx, "biased", kBiased, kValue, biased, value));
      using C = typename ComputeType<T>::type;
      T& step = local_step.scalar<T>()();
      const T new_step = static_cast<T>(static_cast<C>(step) + C(1));
      const double denominator = 1.0 - std::pow(decay, static_cast<double>(static_cast<C>(new_step)));
      functor::DebiasedMovingAverageUpdate<Device, T>()(
          ctx->eigen_device<Device>(), average.flat<T>().data(), biased.flat<T>().data(),
          value.flat<T>().data(), average.NumElements(), 1.0 - decay, denominator);
      step = new_step;
    }
    ForwardRefOutput(ctx, kAverage, 0);
  }

 private:
  bool use_locking_;
};

#define SWA_REGISTER_VARIANTS(NAME, DEVICE, T, ...)                                               \
  REGISTER_KERNEL_BUILDER(Name(NAME).Device(DEVICE).TypeConstraint<T>("T"), __VA_ARGS__);         \
  REGISTER_KERNEL_BUILDER(Name(NAME "Variable").Device(DEVICE).TypeConstraint<T>("T"),           \
                          __VA_ARGS__);                                                           \
  REGISTER_KERNEL_BUILDER(Name(NAME "Ref").Device(DEVICE).TypeConstraint<T>("T"), __VA_ARGS__)

#define SWA_REGISTER_CPU_KERNELS(T)                                                               \
  SWA_REGISTER_VARIANTS("SWAAssign", tensorflow::DEVICE_CPU, T,                                   \
                        MovingAverageAssignOp<CPUDevice, T, WeightFromStep>);                     \
  SWA_REGISTER_VARIANTS("EMAAssign", tensorflow::DEVICE_CPU, T,                                   \
                        MovingAverageAssignOp<CPUDevice, T, WeightFromDecay>);                    \
  SWA_REGISTER_VARIANTS("DebiasedEMA", tensorflow::DEVICE_CPU, T, DebiasedEMAOp<CPUDevice, T>);

TF_CALL_half(SWA_REGISTER_CPU_KERNELS);
TF_CALL_bfloat16(SWA_REGISTER_CPU_KERNELS);
TF_CALL_float(SWA_REGISTER_CPU_KERNELS);
TF_CALL_double(SWA_REGISTER_CPU_KERNELS);

}  // namespace swa_ops
