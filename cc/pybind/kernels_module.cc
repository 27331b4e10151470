// swa_ops._kernels: the core's updates on NumPy and DLPack arrays, without TensorFlow.
#include <pybind11/pybind11.h>

#include "cpu_updates.h"

PYBIND11_MODULE(_kernels, module) {
  module.doc() = "The fused SWA/EMA updates of swa_ops on NumPy and DLPack arrays.";
}
