// swa_ops._kernels: the core's updates on NumPy and DLPack arrays, without TensorFlow.
//
// Each function views its arguments (arrays.h), checks all of them (validation.h) and only
// then, with the GIL released, updates in place: a bad argument raises ValueError or TypeError
// and leaves every array as it was. The weights and the schedule are those of the TensorFlow ops
// (cc/tf/swa_kernels.cc): SWA 1 / (k + 1) and EMA 1 - decay in float64, the debias denominator
// 1 - decay ** local_step with std::pow on doubles; the element math is the core's.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <optional>

#include "updates.h"
#include "validation.h"

namespace swa_ops {
namespace pybind {
namespace {

// The DLPack stream number of the `stream` argument: None (or 0) is the legacy default stream.
StreamHandle ToStream(const std::optional<uint64_t>& stream) {
  if (!stream.has_value() || *stream == 0) return kLegacyDefaultStream;
  return static_cast<StreamHandle>(*stream);
}

// A CUDA array reaching a module built without CUDA is refused before anything is written.
void CheckDeviceBuilt(const Call& call, const Device& device) {
#if !SWA_OPS_WITH_CUDA
  if (device.is_cuda()) {
    ThrowValueError(Message(call.function, ": the arrays are on ", device.ToString(),
                            " but this swa_ops.kernels was built without CUDA"));
  }
#endif
}

// SWAAssign's weight: the k-th averaged step gets 1 / (k + 1), k = step, or with a schedule
// (start, period) k = (step - start) / period for steps step >= start with (step - start) %
// period == 0; other steps are skipped.
struct SwaWeight {
  double weight = 0;
  bool skip = false;
};

SwaWeight SwaWeightOf(const Call& call, double step, int64_t start, int64_t period) {
  if (start < 0 || period < 1) {
    ThrowValueError(Message(call.function, ": start must be >= 0 and period >= 1, got start=",
                            start, ", period=", period));
  }
  if (!(step >= 0) || std::isinf(step)) {
    ThrowValueError(Message(call.function, ": step must be finite and >= 0, got ", step));
  }
  double k = step;
  if (start != 0 || period != 1) {
    if (step != std::floor(step)) {
      ThrowValueError(Message(call.function,
                              ": step must be a whole number with start/period, got ", step));
    }
    const double since_start = step - static_cast<double>(start);
    if (since_start < 0 || std::fmod(since_start, static_cast<double>(period)) != 0) {
      return {0.0, true};
    }
    k = since_start / static_cast<double>(period);
  }
  return {1.0 / (k + 1.0), false};
}

void CheckDecay(const Call& call, double decay) {
  if (!(decay >= 0 && decay <= 1)) {
    ThrowValueError(Message(call.function, ": decay must be in [0, 1], got ", decay));
  }
}

// The validated arguments of SWA and EMA updates: averages[i] <- values[i].
struct MovingAverageArgs {
  ArrayList averages;
  ArrayList values;
  Device device;
};

MovingAverageArgs ViewMovingAverageArgs(const Call& call, py::handle averages,
                                        py::handle values) {
  MovingAverageArgs args{ViewList(call, averages, "averages"), ViewList(call, values, "values"),
                         {}};
  CheckLengths(call, {&args.averages, &args.values});
  CheckUpdated(call, args.averages);
  CheckValues(call, args.values, args.averages);
  args.device = CheckOneDevice(call, {&args.averages, &args.values});
  CheckDeviceBuilt(call, args.device);
  CheckDisjoint(call, {&args.averages}, {&args.values});
  return args;
}

void RunMovingAverage(const Call& call, const MovingAverageArgs& args, double weight) {
  py::gil_scoped_release release;
#if SWA_OPS_WITH_CUDA
  if (args.device.is_cuda()) {
    MovingAverageCuda(args.averages, args.values, weight, args.device.id, call.stream);
    return;
  }
#endif
  MovingAverageCpu(args.averages, args.values, weight);
}

void SwaAssign(py::handle averages, py::handle values, double step, int64_t start,
               int64_t period, std::optional<uint64_t> stream) {
  const Call call{"swa_assign", ToStream(stream)};
  const SwaWeight swa = SwaWeightOf(call, step, start, period);
  const MovingAverageArgs args = ViewMovingAverageArgs(call, averages, values);
  if (!swa.skip) RunMovingAverage(call, args, swa.weight);
}

void EmaAssign(py::handle averages, py::handle values, double decay,
               std::optional<uint64_t> stream) {
  const Call call{"ema_assign", ToStream(stream)};
  CheckDecay(call, decay);
  const MovingAverageArgs args = ViewMovingAverageArgs(call, averages, values);
  RunMovingAverage(call, args, 1.0 - decay);
}

// ---- Zero-debiased EMA ----

// local_steps: a writable, C-contiguous int64 array of shape (n,).
void CheckLocalSteps(const Call& call, const ArrayList& local_steps, size_t n) {
  const ArrayView& steps = local_steps.arrays[0];
  if (steps.dtype != DType::kInt64) {
    ThrowTypeError(Message(call.function, ": local_steps has dtype ", steps.DTypeString(),
                           "; it must be int64"));
  }
  if (steps.ndim != 1 || steps.shape[0] != static_cast<int64_t>(n)) {
    ThrowValueError(Message(call.function, ": local_steps has shape ", steps.ShapeString(),
                            " but there are ", n, " values: it must have shape (", n, ",)"));
  }
  if (!steps.writable || !steps.c_contiguous) {
    ThrowValueError(Message(call.function, ": local_steps is ",
                            steps.writable ? "not C-contiguous" : "read-only",
                            "; it is updated in place"));
  }
}

std::vector<int64_t> ReadLocalSteps(const Call& call, const ArrayView& steps, size_t n) {
  std::vector<int64_t> out(n);
  if (n == 0) return out;
#if SWA_OPS_WITH_CUDA
  if (steps.device.is_cuda()) {
    py::gil_scoped_release release;
    CopyInt64FromDevice(steps.data, out.data(), n, steps.device.id, call.stream);
    return out;
  }
#endif
  std::memcpy(out.data(), steps.data, n * sizeof(int64_t));
  return out;
}

void WriteLocalSteps(const Call& call, const std::vector<int64_t>& new_steps,
                     const ArrayView& steps) {
  if (new_steps.empty()) return;
#if SWA_OPS_WITH_CUDA
  if (steps.device.is_cuda()) {
    CopyInt64ToDevice(new_steps.data(), steps.data, new_steps.size(), steps.device.id,
                      call.stream);
    return;
  }
#endif
  std::memcpy(steps.data, new_steps.data(), new_steps.size() * sizeof(int64_t));
}

void DebiasedEma(py::handle averages_list, py::handle biased_list, py::handle local_steps_array,
                 py::handle values_list, double decay, std::optional<uint64_t> stream) {
  const Call call{"debiased_ema", ToStream(stream)};
  CheckDecay(call, decay);
  if (decay == 1) {
    ThrowValueError(Message(call.function, ": zero-debiasing needs decay < 1 (1 - decay ** "
                            "local_step is 0 at decay 1)"));
  }
  const ArrayList averages = ViewList(call, averages_list, "averages");
  const ArrayList biased = ViewList(call, biased_list, "biased");
  const ArrayList values = ViewList(call, values_list, "values");
  const ArgName steps_name{"local_steps", ArgName::kWhole};
  NumpyDTypeCache steps_dtype;
  const ArrayList local_steps{
      "local_steps",
      {ViewArray(local_steps_array, call.function, steps_name, call.stream, steps_dtype)},
      /*whole=*/true};
  const size_t n = values.size();
  CheckLengths(call, {&averages, &biased, &values});
  CheckUpdated(call, averages);
  CheckWritable(call, biased);
  CheckSameDTypes(call, biased, averages);
  CheckSameShapes(call, biased, averages);
  CheckValues(call, values, averages);
  CheckLocalSteps(call, local_steps, n);
  const Device device = CheckOneDevice(call, {&averages, &biased, &values, &local_steps});
  CheckDeviceBuilt(call, device);
  CheckDisjoint(call, {&averages, &biased, &local_steps}, {&values});

  std::vector<int64_t> new_steps = ReadLocalSteps(call, local_steps.arrays[0], n);
  std::vector<double> denominators(n);
  for (size_t i = 0; i < n; ++i) {
    if (new_steps[i] < 0 || new_steps[i] == std::numeric_limits<int64_t>::max()) {
      ThrowValueError(Message(call.function, ": local_steps[", i, "] is ", new_steps[i],
                              "; local steps count updates: >= 0"));
    }
    new_steps[i] += 1;
    denominators[i] = 1.0 - std::pow(decay, static_cast<double>(new_steps[i]));
  }
  py::gil_scoped_release release;
#if SWA_OPS_WITH_CUDA
  if (device.is_cuda()) {
    DebiasedCuda(averages, biased, values, 1.0 - decay, denominators, device.id, call.stream);
    WriteLocalSteps(call, new_steps, local_steps.arrays[0]);
    return;
  }
#endif
  DebiasedCpu(averages, biased, values, 1.0 - decay, denominators);
  WriteLocalSteps(call, new_steps, local_steps.arrays[0]);
}

// ---- Swap ----

void Swap(py::handle a_list, py::handle b_list, std::optional<uint64_t> stream) {
  const Call call{"swap", ToStream(stream)};
  const ArrayList a = ViewList(call, a_list, "a");
  const ArrayList b = ViewList(call, b_list, "b");
  CheckLengths(call, {&a, &b});
  CheckWritable(call, a);
  CheckWritable(call, b);
  CheckSameDTypes(call, b, a);
  CheckSameShapes(call, b, a);
  const Device device = CheckOneDevice(call, {&a, &b});
  CheckDeviceBuilt(call, device);
  CheckDisjoint(call, {&a, &b}, {});
  py::gil_scoped_release release;
#if SWA_OPS_WITH_CUDA
  if (device.is_cuda()) {
    SwapCuda(a, b, device.id, call.stream);
    return;
  }
#endif
  SwapCpu(a, b);
}

}  // namespace
}  // namespace pybind
}  // namespace swa_ops

PYBIND11_MODULE(_kernels, module) {
  namespace py = pybind11;
  using namespace swa_ops::pybind;
  module.doc() =
      "The fused SWA/EMA updates of swa_ops on NumPy and DLPack arrays (swa_ops.kernels "
      "documents them).";
  module.def("swa_assign", &SwaAssign, py::arg("averages"), py::arg("values"), py::arg("step"),
             py::kw_only(), py::arg("start") = 0, py::arg("period") = 1,
             py::arg("stream") = py::none());
  module.def("ema_assign", &EmaAssign, py::arg("averages"), py::arg("values"), py::arg("decay"),
             py::kw_only(), py::arg("stream") = py::none());
  module.def("debiased_ema", &DebiasedEma, py::arg("averages"), py::arg("biased"),
             py::arg("local_steps"), py::arg("values"), py::arg("decay"), py::kw_only(),
             py::arg("stream") = py::none());
  module.def("swap", &Swap, py::arg("a"), py::arg("b"), py::kw_only(),
             py::arg("stream") = py::none());
  module.def("cpu_threads", &CpuThreads, "The CPU threads an update uses (OpenMP's).");
#if SWA_OPS_WITH_CUDA
  module.attr("WITH_CUDA") = true;
#else
  module.attr("WITH_CUDA") = false;
#endif
}
