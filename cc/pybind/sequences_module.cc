// swa_ops._sequences: a helper of the TensorFlow side (swa_ops.averager), in a module of its own
// so that `import swa_ops` loads no OpenMP runtime (the kernels module's, whose wait policy
// swa_ops.kernels sets before it loads).
#include <pybind11/pybind11.h>

#include <cstring>
#include <string>

namespace {

namespace py = pybind11;

// Whether the lists or tuples `a` and `b` hold the same objects in the same order: compared by
// identity, reading only the sequences' item pointers. A Python loop (`all(map(operator.is_,
// a, b))`) takes a reference to every item, touching each object: an eager apply() of 10,000
// variables checks its list this way at every step.
bool SameObjects(py::handle a, py::handle b) {
  for (py::handle sequence : {a, b}) {
    if (!PyList_Check(sequence.ptr()) && !PyTuple_Check(sequence.ptr())) {
      throw py::type_error(std::string("same_objects takes lists or tuples, got ") +
                           Py_TYPE(sequence.ptr())->tp_name);
    }
  }
  const Py_ssize_t size = PySequence_Fast_GET_SIZE(a.ptr());
  if (size != PySequence_Fast_GET_SIZE(b.ptr())) return false;
  return size == 0 || std::memcmp(PySequence_Fast_ITEMS(a.ptr()), PySequence_Fast_ITEMS(b.ptr()),
                                  size * sizeof(PyObject*)) == 0;
}

}  // namespace

PYBIND11_MODULE(_sequences, module) {
  module.doc() = "Helpers of swa_ops' TensorFlow side on Python sequences.";
  module.def("same_objects", &SameObjects, py::arg("a"), py::arg("b"),
             "Whether lists or tuples a and b hold the same objects in the same order (by "
             "identity, without touching them).");
}
