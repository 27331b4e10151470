// What libswa_core exports: the core is built with hidden visibility, and only the entry points
// marked SWA_CORE_API are seen by its two front ends (the TensorFlow op libraries and the
// pybind11 module).
#ifndef SWA_OPS_CC_CORE_EXPORT_H_
#define SWA_OPS_CC_CORE_EXPORT_H_

#define SWA_CORE_API __attribute__((visibility("default")))

#endif  // SWA_OPS_CC_CORE_EXPORT_H_
