#include "arrays.h"

#include <pybind11/numpy.h>

#include "dlpack.h"
#include "validation.h"

namespace swa_ops {
namespace pybind {

static_assert(sizeof(py::ssize_t) == sizeof(int64_t), "NumPy's extents are read as int64_t");

const char* DTypeName(DType dtype) {
  switch (dtype) {
    case DType::kFloat16: return "float16";
    case DType::kBFloat16: return "bfloat16";
    case DType::kFloat32: return "float32";
    case DType::kFloat64: return "float64";
    case DType::kInt64: return "int64";
    case DType::kOther: break;
  }
  return "unsupported";
}

bool Device::is_cuda() const { return type == dlpack::kDLCUDA; }

std::string Device::ToString() const {
  if (type == dlpack::kDLCPU) return "cpu";
  if (type == dlpack::kDLCUDA) return Message("cuda:", id);
  return Message("DLPack device (", type, ", ", id, ")");
}

std::string ArrayView::ShapeString() const {
  std::ostringstream out;
  out << "(";
  for (int d = 0; d < ndim; ++d) out << (d ? ", " : "") << shape[d];
  out << (ndim == 1 ? ",)" : ")");
  return out.str();
}

namespace {
std::string DLPackDTypeName(uint32_t packed);
std::string NumpyDTypeName(const py::dtype& dtype);
}  // namespace

std::string ArrayView::DTypeString() const {
  if (dtype != DType::kOther) return DTypeName(dtype);
  if (from_dlpack) return DLPackDTypeName(dlpack_dtype);
  return NumpyDTypeName(py::reinterpret_borrow<py::array>(owner).dtype());
}

namespace {

bool IsAligned(const void* data, int item_size) {
  return item_size == 0 || reinterpret_cast<uintptr_t>(data) % item_size == 0;
}

// ---- NumPy ----

DType NumpyDType(const py::dtype& dtype) {
  const char kind = dtype.kind();
  const bool native = dtype.byteorder() != '>';
  const auto size = dtype.itemsize();
  if (kind == 'f' && native) {
    if (size == 2) return DType::kFloat16;
    if (size == 4) return DType::kFloat32;
    if (size == 8) return DType::kFloat64;
  }
  if (kind == 'i' && native && size == 8) return DType::kInt64;
  // ml_dtypes.bfloat16 registers a user dtype (kind 'V') named "bfloat16".
  if (kind == 'V' && size == 2 && py::str(dtype.attr("name")).cast<std::string>() == "bfloat16") {
    return DType::kBFloat16;
  }
  return DType::kOther;
}

std::string NumpyDTypeName(const py::dtype& dtype) {
  std::string name = py::str(dtype).cast<std::string>();
  if (dtype.byteorder() == '>') name += " (big-endian)";
  return name;
}

// Reads the array's struct directly: thousands of arrays per call, and each pybind11 accessor
// (dtype(), flags(), size(), ...) would take and drop references or call into NumPy.
ArrayView ViewNumpy(py::handle array, NumpyDTypeCache& dtypes) {
  namespace detail = py::detail;
  const detail::PyArray_Proxy* numpy = detail::array_proxy(array.ptr());
  if (numpy->descr != dtypes.descriptor) {
    dtypes.descriptor = numpy->descr;
    dtypes.dtype = NumpyDType(py::reinterpret_borrow<py::dtype>(numpy->descr));
  }
  ArrayView view;
  view.dtype = dtypes.dtype;
  view.data = numpy->data;
  view.ndim = numpy->nd;
  view.shape = reinterpret_cast<const int64_t*>(numpy->dimensions);
  view.size = 1;
  for (int d = 0; d < numpy->nd; ++d) view.size *= view.shape[d];
  view.writable = (numpy->flags & detail::npy_api::NPY_ARRAY_WRITEABLE_) != 0;
  view.c_contiguous = (numpy->flags & detail::npy_api::NPY_ARRAY_C_CONTIGUOUS_) != 0 &&
                      IsAligned(view.data, ItemSize(view.dtype));
  view.device = {dlpack::kDLCPU, 0};
  view.owner = py::reinterpret_borrow<py::object>(array);
  return view;
}

// ---- DLPack ----

DType DLPackDType(const dlpack::DLDataType& type) {
  if (type.lanes != 1) return DType::kOther;
  if (type.code == dlpack::kDLFloat) {
    if (type.bits == 16) return DType::kFloat16;
    if (type.bits == 32) return DType::kFloat32;
    if (type.bits == 64) return DType::kFloat64;
  }
  if (type.code == dlpack::kDLBfloat && type.bits == 16) return DType::kBFloat16;
  if (type.code == dlpack::kDLInt && type.bits == 64) return DType::kInt64;
  return DType::kOther;
}

uint32_t PackDLPackDType(const dlpack::DLDataType& type) {
  return type.code | (static_cast<uint32_t>(type.bits) << 8) |
         (static_cast<uint32_t>(type.lanes) << 16);
}

std::string DLPackDTypeName(uint32_t packed) {
  const dlpack::DLDataType type{static_cast<uint8_t>(packed & 0xff),
                                static_cast<uint8_t>((packed >> 8) & 0xff),
                                static_cast<uint16_t>(packed >> 16)};
  static const char* const kCodes[] = {"int", "uint", "float", "opaque", "bfloat", "complex",
                                       "bool"};
  const char* code = type.code < 7 ? kCodes[type.code] : "code?";
  std::string name = Message(code, static_cast<int>(type.bits));
  if (type.lanes != 1) name += Message("x", type.lanes);
  return name;
}

// Row-major with no gaps (extents of 1 may have any stride); null strides mean exactly that.
bool DLPackCContiguous(const dlpack::DLTensor& tensor) {
  if (tensor.strides == nullptr) return true;
  int64_t expected = 1;
  for (int d = tensor.ndim - 1; d >= 0; --d) {
    if (tensor.shape[d] == 0) return true;
    if (tensor.shape[d] != 1 && tensor.strides[d] != expected) return false;
    expected *= tensor.shape[d];
  }
  return true;
}

// Calls object.__dlpack__, asking for a versioned capsule first (producers older than DLPack 1.0
// reject max_version with a TypeError: then the classic one). `stream` only for CUDA arrays.
py::object ExportDLPack(py::handle object, bool cuda, StreamHandle stream) {
  py::dict kwargs;
  if (cuda) kwargs["stream"] = py::int_(stream);
  kwargs["max_version"] = py::make_tuple(dlpack::kMajorVersion, dlpack::kMinorVersion);
  py::object method = object.attr("__dlpack__");
  try {
    return method(**kwargs);
  } catch (py::error_already_set& error) {
    if (!error.matches(PyExc_TypeError)) throw;
  }
  kwargs.attr("pop")("max_version");
  return method(**kwargs);
}

// The capsule is borrowed, not consumed: it keeps its name, so its producer's destructor
// frees the tensor when `owner` lets it go, after the call.
ArrayView ViewDLPack(py::handle object, const char* function, const ArgName& name,
                     StreamHandle stream) {
  py::tuple device = object.attr("__dlpack_device__")();
  const int32_t device_type = py::int_(device[0]).cast<int32_t>();
  if (device_type != dlpack::kDLCPU && device_type != dlpack::kDLCUDA) {
    ThrowTypeError(Message(function, ": ", name.ToString(), " is on DLPack device type ",
                           device_type, "; swa_ops.kernels takes CPU and CUDA arrays"));
  }
  ArrayView view;
  view.owner = ExportDLPack(object, device_type == dlpack::kDLCUDA, stream);
  PyObject* capsule = view.owner.ptr();
  const dlpack::DLTensor* tensor = nullptr;
  bool read_only = false;
  if (PyCapsule_IsValid(capsule, dlpack::kVersionedCapsuleName)) {
    auto* managed = static_cast<dlpack::DLManagedTensorVersioned*>(
        PyCapsule_GetPointer(capsule, dlpack::kVersionedCapsuleName));
    if (managed->version.major != dlpack::kMajorVersion) {
      ThrowTypeError(Message(function, ": ", name.ToString(), " is a DLPack ",
                             managed->version.major, ".", managed->version.minor,
                             " tensor; swa_ops.kernels reads DLPack 1.x"));
    }
    tensor = &managed->dl_tensor;
    read_only = (managed->flags & dlpack::kFlagReadOnly) != 0;
  } else if (PyCapsule_IsValid(capsule, dlpack::kCapsuleName)) {
    tensor = &static_cast<dlpack::DLManagedTensor*>(
                  PyCapsule_GetPointer(capsule, dlpack::kCapsuleName))->dl_tensor;
  } else {
    ThrowTypeError(Message(function, ": ", name.ToString(),
                           ".__dlpack__() did not return a DLPack capsule"));
  }
  view.dtype = DLPackDType(tensor->dtype);
  view.from_dlpack = true;
  view.dlpack_dtype = PackDLPackDType(tensor->dtype);
  view.data = static_cast<char*>(tensor->data) + tensor->byte_offset;
  view.ndim = tensor->ndim;
  view.shape = tensor->shape;
  view.size = 1;
  for (int d = 0; d < tensor->ndim; ++d) view.size *= tensor->shape[d];
  view.writable = !read_only;
  view.c_contiguous = DLPackCContiguous(*tensor) && IsAligned(view.data, ItemSize(view.dtype));
  view.device = {tensor->device.device_type, tensor->device.device_id};
  return view;
}

std::string TypeName(py::handle object) {
  return py::str(py::type::handle_of(object).attr("__name__")).cast<std::string>();
}

}  // namespace

ArrayView ViewArray(py::handle object, const char* function, const ArgName& name,
                    StreamHandle stream, NumpyDTypeCache& dtypes) {
  if (py::isinstance<py::array>(object)) return ViewNumpy(object, dtypes);
  if (PyObject_CheckBuffer(object.ptr())) {
    // Any other buffer (memoryview, array.array, ...) through a NumPy view of it: no copy.
    py::array array = py::array::ensure(object);
    if (!array) {
      PyErr_Clear();
      ThrowTypeError(Message(function, ": ", name.ToString(), " (a ", TypeName(object),
                             ") exports a buffer NumPy cannot view"));
    }
    return ViewNumpy(array, dtypes);
  }
  if (py::hasattr(object, "__dlpack__") && py::hasattr(object, "__dlpack_device__")) {
    return ViewDLPack(object, function, name, stream);
  }
  ThrowTypeError(Message(function, ": ", name.ToString(), " is a ", TypeName(object),
                         ", not an array: pass NumPy arrays, or CUDA/CPU arrays with __dlpack__ "
                         "(CuPy, PyTorch)"));
}

}  // namespace pybind
}  // namespace swa_ops
