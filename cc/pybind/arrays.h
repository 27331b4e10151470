// The kernels module's view of one argument array, whatever it came as: a NumPy array (or any
// object with the buffer protocol, viewed through NumPy without a copy) or an object with
// __dlpack__ (CuPy, PyTorch, JAX; on the CPU or a CUDA device). Only reads: nothing here writes
// an array.
#ifndef SWA_OPS_CC_PYBIND_ARRAYS_H_
#define SWA_OPS_CC_PYBIND_ARRAYS_H_

#include <pybind11/pybind11.h>

#include <cstdint>
#include <sstream>
#include <string>
#include <utility>

namespace swa_ops {
namespace pybind {

namespace py = pybind11;

// The element types the updates take (floats), and int64 for DebiasedEMA's local steps.
enum class DType : uint8_t { kFloat16, kBFloat16, kFloat32, kFloat64, kInt64, kOther };

const char* DTypeName(DType dtype);
int ItemSize(DType dtype);
bool IsFloat(DType dtype);

// Where an array lives: DLPack's device type (1 CPU, 2 CUDA) and the device's index.
struct Device {
  int32_t type;
  int32_t id;
  bool operator==(const Device& other) const { return type == other.type && id == other.id; }
  bool operator!=(const Device& other) const { return !(*this == other); }
  bool is_cuda() const;
  std::string ToString() const;  // "cpu", "cuda:0".
};

// Kept small (a call views thousands): no strings; an unsupported dtype's name is made only
// for its error message (DTypeString).
struct ArrayView {
  void* data = nullptr;
  const int64_t* shape = nullptr;  // ndim extents, valid while `owner` lives.
  int64_t size = 0;                // Elements.
  py::object owner;  // Keeps data and shape alive: the NumPy array, or the DLPack capsule.
  Device device{1, 0};
  int32_t ndim = 0;
  DType dtype = DType::kOther;
  bool writable = false;
  bool c_contiguous = false;
  bool from_dlpack = false;
  uint32_t dlpack_dtype = 0;  // A DLPack array's DLDataType (code, bits, lanes), for messages.

  int64_t bytes() const { return size * ItemSize(dtype); }
  std::string ShapeString() const;
  std::string DTypeString() const;  // Needs the GIL.
  bool SameShape(const ArrayView& other) const;
};

// Names an argument for error messages: "averages[3]", or "local_steps" (kWhole: an argument
// that is one array, not a list).
struct ArgName {
  static constexpr size_t kWhole = static_cast<size_t>(-1);
  const char* list;
  size_t index;
  std::string ToString() const {
    if (index == kWhole) return list;
    return std::string(list) + "[" + std::to_string(index) + "]";
  }
};

// Builds a message from anything streamable.
template <typename... Parts>
std::string Message(const Parts&... parts) {
  std::ostringstream out;
  (out << ... << parts);
  return out.str();
}

// The CUDA stream an update runs on, as the DLPack protocol numbers it: 1 the legacy default
// stream, 2 the per-thread default stream, else a cudaStream_t. Passed to __dlpack__ of CUDA
// arrays, so that their producer makes them ready on it.
using StreamHandle = uintptr_t;
constexpr StreamHandle kLegacyDefaultStream = 1;

// Views `object` (argument `name` of function `function`). Raises TypeError if it is no array
// this module reads (not a NumPy array, buffer or DLPack producer; a DLPack array on a device
// other than the CPU or CUDA). Never copies: a view of the caller's memory or an error.
ArrayView ViewArray(py::handle object, const char* function, const ArgName& name,
                    StreamHandle stream);

}  // namespace pybind
}  // namespace swa_ops

#endif  // SWA_OPS_CC_PYBIND_ARRAYS_H_
