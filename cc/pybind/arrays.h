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

// Inline: the checks ask these of every array of a call.
inline int ItemSize(DType dtype) {
  switch (dtype) {
    case DType::kFloat16:
    case DType::kBFloat16: return 2;
    case DType::kFloat32: return 4;
    case DType::kFloat64:
    case DType::kInt64: return 8;
    case DType::kOther: break;
  }
  return 0;
}

inline bool IsFloat(DType dtype) { return dtype != DType::kInt64 && dtype != DType::kOther; }

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
  bool SameShape(const ArrayView& other) const {
    if (ndim != other.ndim) return false;
    for (int d = 0; d < ndim; ++d) {
      if (shape[d] != other.shape[d]) return false;
    }
    return true;
  }
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

// The DType of the NumPy dtype object seen last. The arrays of a list almost always share one
// dtype object (NumPy's float32 descriptor, say), so viewing each costs a pointer comparison
// instead of a look into its dtype. The descriptor is that of an array the call holds (its
// view's `owner`), so the pointer stays valid, and unique, for the call.
struct NumpyDTypeCache {
  const void* descriptor = nullptr;
  DType dtype = DType::kOther;
};

// Views `object` (argument `name` of function `function`). Raises TypeError if it is no array
// this module reads (not a NumPy array, buffer or DLPack producer; a DLPack array on a device
// other than the CPU or CUDA). Never copies: a view of the caller's memory or an error.
// A NumPy array is read straight from its struct (no Python calls, one new reference: `owner`).
ArrayView ViewArray(py::handle object, const char* function, const ArgName& name,
                    StreamHandle stream, NumpyDTypeCache& dtypes);

}  // namespace pybind
}  // namespace swa_ops

#endif  // SWA_OPS_CC_PYBIND_ARRAYS_H_
