#include "validation.h"

#include <algorithm>

namespace swa_ops {
namespace pybind {

void ThrowValueError(const std::string& message) { throw py::value_error(message); }
void ThrowTypeError(const std::string& message) { throw py::type_error(message); }

ArrayList ViewList(const Call& call, py::handle list, const char* name) {
  if (!py::isinstance<py::list>(list) && !py::isinstance<py::tuple>(list)) {
    ThrowTypeError(Message(call.function, ": ", name, " must be a list or tuple of arrays, got ",
                           py::str(py::type::handle_of(list).attr("__name__")).cast<std::string>()));
  }
  // The list's or tuple's own item array, by index (its length re-read each time: viewing a
  // DLPack producer runs Python code); each item held while it is viewed.
  PyObject* items = list.ptr();
  ArrayList out{name, {}};
  out.arrays.reserve(PySequence_Fast_GET_SIZE(items));
  NumpyDTypeCache dtypes;
  for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(items); ++i) {
    const py::object item = py::reinterpret_borrow<py::object>(PySequence_Fast_GET_ITEM(items, i));
    out.arrays.push_back(ViewArray(item, call.function, out.Arg(i), call.stream, dtypes));
  }
  return out;
}

void CheckLengths(const Call& call, const std::vector<const ArrayList*>& lists) {
  for (const ArrayList* list : lists) {
    if (list->size() != lists[0]->size()) {
      ThrowValueError(Message(call.function, ": ", lists[0]->name, " has ", lists[0]->size(),
                              " arrays but ", list->name, " has ", list->size(),
                              ": the lists must have one length"));
    }
  }
}

namespace {

// The messages of the per-array checks, built out of line (cold): the checks themselves are a
// few comparisons each, run on every array of a call, and inline where the message code would
// keep them from it.
#define SWA_COLD [[noreturn]] __attribute__((cold, noinline))

SWA_COLD void ThrowNotFloat(const Call& call, const ArrayView& array, const ArgName& name) {
  ThrowTypeError(Message(call.function, ": ", name.ToString(), " has dtype ",
                         array.DTypeString(),
                         "; arrays are float16, bfloat16, float32 or float64"));
}

SWA_COLD void ThrowNotContiguous(const Call& call, const ArgName& name) {
  ThrowValueError(Message(call.function, ": ", name.ToString(),
                          " is not C-contiguous (or not aligned): pass a contiguous array "
                          "(numpy.ascontiguousarray copies, so update the copy)"));
}

SWA_COLD void ThrowReadOnly(const Call& call, const ArgName& name) {
  ThrowValueError(Message(call.function, ": ", name.ToString(),
                          " is read-only; it is updated in place"));
}

SWA_COLD void ThrowNotDTypeOfFirst(const Call& call, const ArrayList& list, size_t index) {
  ThrowTypeError(Message(call.function, ": ", list.Arg(index).ToString(), " has dtype ",
                         list.arrays[index].DTypeString(), " but ", list.Arg(0).ToString(),
                         " has ", DTypeName(list.arrays[0].dtype), ": the arrays of a list "
                         "have one dtype (one call per dtype)"));
}

SWA_COLD void ThrowDifferentDTypes(const Call& call, const ArrayList& list,
                                   const ArrayList& like, size_t i) {
  ThrowTypeError(Message(call.function, ": ", list.Arg(i).ToString(), " has dtype ",
                         list.arrays[i].DTypeString(), " but ", like.Arg(i).ToString(),
                         " has dtype ", like.arrays[i].DTypeString()));
}

SWA_COLD void ThrowCannotTake(const Call& call, const ArrayList& values,
                              const ArrayList& averages, size_t i) {
  ThrowTypeError(Message(call.function, ": ", values.Arg(i).ToString(), " has dtype ",
                         values.arrays[i].DTypeString(), ", which ", averages.Arg(i).ToString(),
                         " (", averages.arrays[i].DTypeString(), ") cannot take: an average "
                         "has its value's dtype or a wider float (float32 or float64 for "
                         "float16/bfloat16 values, float64 for float32 values)"));
}

SWA_COLD void ThrowDifferentShapes(const Call& call, const ArrayList& list,
                                   const ArrayList& like, size_t i) {
  ThrowValueError(Message(call.function, ": ", list.Arg(i).ToString(), " has shape ",
                          list.arrays[i].ShapeString(), " but ", like.Arg(i).ToString(),
                          " has shape ", like.arrays[i].ShapeString()));
}

#undef SWA_COLD

// An array this call reads or writes: C-contiguous, of a float dtype.
inline void CheckContiguousFloat(const Call& call, const ArrayView& array, const ArgName& name) {
  if (!IsFloat(array.dtype)) ThrowNotFloat(call, array, name);
  if (!array.c_contiguous) ThrowNotContiguous(call, name);
}

inline void CheckDTypeOfFirst(const Call& call, const ArrayList& list, size_t index) {
  if (list.arrays[index].dtype != list.arrays[0].dtype) ThrowNotDTypeOfFirst(call, list, index);
}

}  // namespace

void CheckWritable(const Call& call, const ArrayList& updated) {
  for (size_t i = 0; i < updated.size(); ++i) {
    const ArrayView& array = updated.arrays[i];
    CheckContiguousFloat(call, array, updated.Arg(i));
    if (!array.writable) ThrowReadOnly(call, updated.Arg(i));
  }
}

void CheckUpdated(const Call& call, const ArrayList& updated) {
  CheckWritable(call, updated);
  for (size_t i = 0; i < updated.size(); ++i) CheckDTypeOfFirst(call, updated, i);
}

void CheckSameDTypes(const Call& call, const ArrayList& list, const ArrayList& like) {
  for (size_t i = 0; i < list.size(); ++i) {
    if (list.arrays[i].dtype != like.arrays[i].dtype) ThrowDifferentDTypes(call, list, like, i);
  }
}

bool AverageTakes(DType average, DType value) {
  if (average == value) return true;
  const bool wide_average = average == DType::kFloat32 || average == DType::kFloat64;
  return wide_average && IsFloat(value) && ItemSize(value) < ItemSize(average);
}

void CheckValues(const Call& call, const ArrayList& values, const ArrayList& averages) {
  for (size_t i = 0; i < values.size(); ++i) {
    const ArrayView& value = values.arrays[i];
    CheckContiguousFloat(call, value, values.Arg(i));
    CheckDTypeOfFirst(call, values, i);
    if (!AverageTakes(averages.arrays[i].dtype, value.dtype)) {
      ThrowCannotTake(call, values, averages, i);
    }
  }
  CheckSameShapes(call, values, averages);
}

void CheckSameShapes(const Call& call, const ArrayList& list, const ArrayList& like) {
  for (size_t i = 0; i < list.size(); ++i) {
    if (!list.arrays[i].SameShape(like.arrays[i])) ThrowDifferentShapes(call, list, like, i);
  }
}

Device CheckOneDevice(const Call& call, const std::vector<const ArrayList*>& lists) {
  const ArrayList* first_list = nullptr;
  for (const ArrayList* list : lists) {
    if (list->size() > 0) {
      first_list = list;
      break;
    }
  }
  if (first_list == nullptr) return Device{1, 0};
  const Device device = first_list->arrays[0].device;
  for (const ArrayList* list : lists) {
    for (size_t i = 0; i < list->size(); ++i) {
      if (list->arrays[i].device == device) continue;
      const bool mixed_kinds = list->arrays[i].device.is_cuda() != device.is_cuda();
      ThrowValueError(Message(call.function, ": ", list->Arg(i).ToString(), " is on ",
                              list->arrays[i].device.ToString(), " but ",
                              first_list->Arg(0).ToString(), " is on ", device.ToString(),
                              mixed_kinds ? ": arrays on mixed devices (CPU and CUDA)"
                                          : ": all arrays of a call must be on one device"));
    }
  }
  return device;
}

namespace {

// The bytes [begin, end) of argument `name`.
struct Extent {
  uintptr_t begin;
  uintptr_t end;
  ArgName name;
};

// Sorts `extents` by start as a natural merge sort: the ascending runs already there, merged
// pairwise until one is left. Arrays allocated one after the other mostly ascend (2000 arrays of
// a list made in a loop come as about ten runs), so this costs O(n log runs) against std::sort's
// O(n log n) (measured: a quarter of the checks of 2000 + 2000 arrays went to std::sort).
void SortByStart(std::vector<Extent>& extents) {
  std::vector<size_t> runs;  // Where each ascending run starts.
  for (size_t k = 0; k < extents.size(); ++k) {
    if (k == 0 || extents[k].begin < extents[k - 1].begin) runs.push_back(k);
  }
  auto by_start = [](const Extent& a, const Extent& b) { return a.begin < b.begin; };
  while (runs.size() > 1) {
    std::vector<size_t> merged;
    for (size_t r = 0; r < runs.size(); r += 2) {
      merged.push_back(runs[r]);
      if (r + 1 == runs.size()) break;
      const size_t end = r + 2 < runs.size() ? runs[r + 2] : extents.size();
      std::inplace_merge(extents.begin() + runs[r], extents.begin() + runs[r + 1],
                         extents.begin() + end, by_start);
    }
    runs.swap(merged);
  }
}

// The non-empty arrays of `lists` as extents, sorted by start.
std::vector<Extent> SortedExtents(const std::vector<const ArrayList*>& lists) {
  size_t count = 0;
  for (const ArrayList* list : lists) count += list->size();
  std::vector<Extent> extents;
  extents.reserve(count);
  for (const ArrayList* list : lists) {
    for (size_t i = 0; i < list->size(); ++i) {
      const ArrayView& array = list->arrays[i];
      if (array.bytes() == 0) continue;
      const auto begin = reinterpret_cast<uintptr_t>(array.data);
      extents.push_back({begin, begin + static_cast<uintptr_t>(array.bytes()), list->Arg(i)});
    }
  }
  SortByStart(extents);
  return extents;
}

bool SameArg(const ArgName& a, const ArgName& b) {
  return a.index == b.index && std::string(a.list) == b.list;
}

}  // namespace

void CheckDisjoint(const Call& call, const std::vector<const ArrayList*>& written,
                   const std::vector<const ArrayList*>& read) {
  const std::vector<Extent> updated = SortedExtents(written);
  // Sorted by start, disjoint extents each end before the next starts; the one reaching
  // furthest so far is the one an overlap is with.
  for (size_t k = 1; k < updated.size(); ++k) {
    if (updated[k].begin < updated[k - 1].end) {
      ThrowValueError(Message(call.function, ": ", updated[k - 1].name.ToString(), " and ",
                              updated[k].name.ToString(),
                              " share memory (the same array twice?): each array may be updated "
                              "once per call"));
    }
  }
  // Both sorted by start: one sweep. For each value, the last updated extent starting before
  // the value ends is the only one it can overlap (the updated extents are disjoint).
  auto after = updated.begin();
  for (const Extent& value : SortedExtents(read)) {
    while (after != updated.end() && after->begin < value.end) ++after;
    if (after == updated.begin()) continue;
    const Extent& candidate = *(after - 1);
    if (candidate.end <= value.begin) continue;
    const ArgName average{"averages", value.name.index};
    if (SameArg(candidate.name, average) && value.begin == candidate.begin) {
      ThrowValueError(Message(call.function, ": ", average.ToString(), " is also its value ",
                              value.name.ToString(), ": an array cannot be its own average"));
    }
    ThrowValueError(Message(call.function, ": ", value.name.ToString(), " shares memory with ",
                            candidate.name.ToString(),
                            ", which this call updates: a value must not be written while read"));
  }
}

}  // namespace pybind
}  // namespace swa_ops
