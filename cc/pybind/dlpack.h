// The few DLPack definitions the kernels module reads, written from the public DLPack
// specification, version 1.1 (https://dmlc.github.io/dlpack/latest/c_api.html, dlpack.h v1.1):
// the classic DLManagedTensor (capsule name "dltensor") and the versioned
// DLManagedTensorVersioned (capsule name "dltensor_versioned", DLPack 1.0 and newer, which adds
// a version and flags such as read-only). Layouts and enum values are those of the spec; no
// DLPack header is vendored.
#ifndef SWA_OPS_CC_PYBIND_DLPACK_H_
#define SWA_OPS_CC_PYBIND_DLPACK_H_

#include <cstdint>

namespace swa_ops {
namespace dlpack {

// The DLPack version this module asks producers for (max_version in __dlpack__).
constexpr uint32_t kMajorVersion = 1;
constexpr uint32_t kMinorVersion = 0;

// Capsule names of the Python exchange protocol (__dlpack__).
constexpr const char* kCapsuleName = "dltensor";
constexpr const char* kVersionedCapsuleName = "dltensor_versioned";

// DLDeviceType: the values this module handles (the spec lists more).
enum DeviceType : int32_t {
  kDLCPU = 1,
  kDLCUDA = 2,
  kDLCUDAHost = 3,
  kDLCUDAManaged = 13,
};

// DLDataTypeCode.
enum DataTypeCode : uint8_t {
  kDLInt = 0,
  kDLUInt = 1,
  kDLFloat = 2,
  kDLOpaqueHandle = 3,
  kDLBfloat = 4,
  kDLComplex = 5,
  kDLBool = 6,
};

struct DLDevice {
  int32_t device_type;  // DeviceType
  int32_t device_id;
};

struct DLDataType {
  uint8_t code;  // DataTypeCode
  uint8_t bits;
  uint16_t lanes;
};

struct DLTensor {
  void* data;
  DLDevice device;
  int32_t ndim;
  DLDataType dtype;
  int64_t* shape;
  int64_t* strides;  // In elements; null: compact row-major.
  uint64_t byte_offset;
};

struct DLManagedTensor {
  DLTensor dl_tensor;
  void* manager_ctx;
  void (*deleter)(DLManagedTensor* self);
};

struct DLPackVersion {
  uint32_t major;
  uint32_t minor;
};

// DLManagedTensorVersioned::flags bits.
constexpr uint64_t kFlagReadOnly = 1ULL << 0;
constexpr uint64_t kFlagIsCopied = 1ULL << 1;

struct DLManagedTensorVersioned {
  DLPackVersion version;
  void* manager_ctx;
  void (*deleter)(DLManagedTensorVersioned* self);
  uint64_t flags;
  DLTensor dl_tensor;
};

}  // namespace dlpack
}  // namespace swa_ops

#endif  // SWA_OPS_CC_PYBIND_DLPACK_H_
