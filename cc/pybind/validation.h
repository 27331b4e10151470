// The checks every kernels-module call makes before it writes anything: a bad argument raises
// ValueError or TypeError naming the list index and the problem, and leaves every array as it
// was.
#ifndef SWA_OPS_CC_PYBIND_VALIDATION_H_
#define SWA_OPS_CC_PYBIND_VALIDATION_H_

#include <string>
#include <vector>

#include "arrays.h"

namespace swa_ops {
namespace pybind {

[[noreturn]] void ThrowValueError(const std::string& message);
[[noreturn]] void ThrowTypeError(const std::string& message);

// One call's name (for messages) and stream (for DLPack exports of CUDA arrays).
struct Call {
  const char* function;
  StreamHandle stream;
};

// A named list of arrays; `whole`: one array argument (local_steps), named without an index.
struct ArrayList {
  const char* name;
  std::vector<ArrayView> arrays;
  bool whole = false;
  size_t size() const { return arrays.size(); }
  ArgName Arg(size_t index) const { return {name, whole ? ArgName::kWhole : index}; }
};

// Views each element of `list` (a list or tuple: TypeError otherwise).
ArrayList ViewList(const Call& call, py::handle list, const char* name);

// Every list has the first one's length.
void CheckLengths(const Call& call, const std::vector<const ArrayList*>& lists);

// Arrays updated in place: writable, C-contiguous, float.
void CheckWritable(const Call& call, const ArrayList& updated);

// CheckWritable, and all of the first one's dtype.
void CheckUpdated(const Call& call, const ArrayList& updated);

// Each array of `list` has the dtype of `like`'s array of its index.
void CheckSameDTypes(const Call& call, const ArrayList& list, const ArrayList& like);

// Values: C-contiguous floats of one dtype, each the shape of `averages`' array of its index,
// and a dtype its average takes (the same, or narrower into a float32/float64 average).
void CheckValues(const Call& call, const ArrayList& values, const ArrayList& averages);

// Each array of `list` has the shape of `like`'s array of its index (biased vs averages).
void CheckSameShapes(const Call& call, const ArrayList& list, const ArrayList& like);

// Every array is on one device (that of the first array of the first non-empty list), which is
// returned; the CPU for no arrays at all.
Device CheckOneDevice(const Call& call, const std::vector<const ArrayList*>& lists);

// No memory is written twice or read while written: the arrays of `written` are pairwise
// disjoint, and no array of `read` overlaps any of them. An average passed as its own value
// is named as such.
void CheckDisjoint(const Call& call, const std::vector<const ArrayList*>& written,
                   const std::vector<const ArrayList*>& read);

// Whether values of dtype `value` may be averaged into averages of dtype `average`.
bool AverageTakes(DType average, DType value);

}  // namespace pybind
}  // namespace swa_ops

#endif  // SWA_OPS_CC_PYBIND_VALIDATION_H_
