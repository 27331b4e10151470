// Op definitions. Each update comes in six variants:
//   <Op>           average (and debias state) as resource handles, value as a tensor;
//   <Op>Variable   value as a resource handle too, so a Variable is read by the op itself (no
//                  separate ReadVariableOp);
//   <Op>Ref        TF1 reference variables (Ref(T) inputs), returning the updated reference;
//   <Op>N          grouped: N averages (and N of each debias state variable) updated by one op,
//                  the N values as tensors;
//   <Op>NVariable  grouped, the N values as resource handles;
//   <Op>Group      grouped, the variables as one SWAVariableGroup handle: its members are the
//                  lists of variables updated, then the values, unless the values are tensors
//                  (each of dtype T).
// Inputs, in this order: the variables updated, the value(s), the scalar step or decay.
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/common_shape_fns.h"
#include "tensorflow/core/framework/op_def_builder.h"
#include "tensorflow/core/framework/shape_inference.h"

namespace swa_ops {
namespace {

using tensorflow::OpDefBuilder;
using tensorflow::shape_inference::InferenceContext;
using tensorflow::shape_inference::ShapeHandle;

// The step or decay input (before the G `apply_if` flags, which end the inputs).
int ScalarIndex(InferenceContext* c) {
  int64_t guards = 0;
  if (!c->GetAttr("G", &guards).ok()) guards = 0;
  return c->num_inputs() - 1 - static_cast<int>(guards);
}

// The step or decay input must be a scalar.
absl::Status ResourceUpdateShape(InferenceContext* c) {
  ShapeHandle scalar = c->input(ScalarIndex(c));
  if (c->RankKnown(scalar) && c->Rank(scalar) != 0) {
    tensorflow::DataType unused;
    const char* name = c->GetAttr("Tstep", &unused).ok() ? "step" : "decay";
    return absl::InvalidArgumentError(absl::StrCat(name, " must be a scalar, got shape ",
                                                   c->DebugString(scalar)));
  }
  return absl::OkStatus();
}

// Ref variants: the average (input 0) and the value have one shape; so does `biased`, if any.
absl::Status RefUpdateShape(InferenceContext* c) {
  TF_RETURN_IF_ERROR(ResourceUpdateShape(c));
  const int value_index = ScalarIndex(c) - 1;
  ShapeHandle shape = c->input(0);
  for (int i = 1; i <= value_index; ++i) {
    if (i == 2 && value_index == 3) continue;  // DebiasedEMARef's local_step is a scalar.
    TF_RETURN_IF_ERROR(c->Merge(shape, c->input(i), &shape));
  }
  c->set_output(0, shape);
  return absl::OkStatus();
}

struct UpdateOp {
  const char* name;
  std::vector<std::string> state;  // The variables updated: "average", maybe "biased", ...
  const char* scalar;              // "step" or "decay".
  const char* scalar_types;
  std::vector<std::string> extra_attrs = {};
};

void Register(const OpDefBuilder& builder) {
  tensorflow::OpRegistry::Global()->Register(
      [builder](tensorflow::OpRegistrationData* op_reg_data) {
        return builder.Finalize(op_reg_data);
      });
}

// Registers the six variants of `op` (see the top of this file).
void RegisterVariants(const UpdateOp& op) {
  enum Kind {
    kTensorValue, kVariableValue, kRef, kGroupedTensorValues, kGroupedVariableValues, kGroup
  };
  const char* suffixes[] = {"", "Variable", "Ref", "N", "NVariable", "Group"};
  const std::string scalar_attr = absl::StrCat("T", op.scalar);
  for (int kind = kTensorValue; kind <= kGroup; ++kind) {
    const bool grouped = kind == kGroupedTensorValues || kind == kGroupedVariableValues;
    const bool variable_value = kind == kVariableValue || kind == kGroupedVariableValues;
    OpDefBuilder builder(absl::StrCat(op.name, suffixes[kind]));
    if (kind == kGroup) {
      // The value tensors' dtypes are a list attribute, so that T can be given with none.
      builder.Input("group: resource")
          .Input("values: Tvalues")
          .Attr("Tvalues: list({half, bfloat16, float, double}) >= 0");
    } else {
      for (const std::string& state : op.state) {
        const char* type = kind == kRef ? "Ref(T)" : grouped ? "N * resource" : "resource";
        builder.Input(absl::StrCat(grouped ? state + "s" : state, ": ", type));
      }
      builder.Input(absl::StrCat(grouped ? "values: N * " : "value: ",
                                 variable_value ? "resource" : "T"));
    }
    builder.Input(absl::StrCat(op.scalar, ": ", scalar_attr));
    // G flags (usually 0 or 1): with a false one the op validates its inputs and changes
    // nothing (the non-finite guard: AllFinite's result, decided with no host sync).
    builder.Input("apply_if: G * bool");
    builder.Attr("G: int >= 0");
    builder.Attr("T: {half, bfloat16, float, double}");
    builder.Attr(absl::StrCat(scalar_attr, ": ", op.scalar_types));
    builder.Attr("use_locking: bool = false");
    if (grouped) builder.Attr("N: int >= 1");
    for (const std::string& attr : op.extra_attrs) builder.Attr(attr);
    if (kind == kRef) builder.Output("updated_average: Ref(T)");
    builder.SetShapeFn(kind == kRef ? RefUpdateShape : ResourceUpdateShape);
    builder.SetIsStateful();
    Register(builder);
  }
}

bool RegisterAll() {
  // average <- average - (average - value) / (k + 1), the weight computed in double; k = step,
  // or with a schedule: steps n >= start with (n - start) % period == 0 are averaged, as the
  // k-th snapshot, k = (n - start) / period; the other steps change nothing.
  RegisterVariants({"SWAAssign", {"average"}, "step", "{int32, int64, float, double}",
                    {"start: int >= 0 = 0", "period: int >= 1 = 1"}});
  // average <- average - (average - value) * (1 - decay).
  RegisterVariants({"EMAAssign", {"average"}, "decay", "{half, bfloat16, float, double}"});
  // biased <- biased - (biased - value) * (1 - decay); local_step <- local_step + 1;
  // average <- biased / (1 - decay ** local_step).
  RegisterVariants({"DebiasedEMA", {"average", "biased", "local_step"}, "decay",
                    "{half, bfloat16, float, double}"});
  // One handle for N resource variables of one device, which `...Group` ops take in place of
  // their variable lists (it holds the variables; freed with its last tensor).
  Register(OpDefBuilder("SWAVariableGroup")
               .Input("variables: N * resource")
               .Output("group: resource")
               .Attr("N: int >= 1")
               .SetIsStateful()
               .SetShapeFn(tensorflow::shape_inference::ScalarShape));
  // N new resource variables owned by their handles (as eager code's), initialised to copies of
  // initial_values and named by `names` (an input, not an attribute: one kernel for any names).
  Register(OpDefBuilder("SWANewVariables")
               .Input("initial_values: Tvalues")
               .Input("names: string")
               .Output("variables: N * resource")
               .Attr("Tvalues: list({half, bfloat16, float, double}) >= 1")
               .Attr("N: int >= 1")
               .SetIsStateful()
               .SetShapeFn([](InferenceContext* c) {
                 for (int i = 0; i < c->num_outputs(); ++i) c->set_output(i, c->Scalar());
                 return absl::OkStatus();
               }));
  // One group of the members of N groups made on the op's device, in order.
  Register(OpDefBuilder("SWAVariableGroupConcat")
               .Input("groups: N * resource")
               .Output("group: resource")
               .Attr("N: int >= 1")
               .SetIsStateful()
               .SetShapeFn(tensorflow::shape_inference::ScalarShape));
  // The group of the resource variables (containers[i], shared_names[i]) of the op's device, as
  // their VarHandleOps name them: SWAVariableGroup for graphs that run many times (TF1
  // sessions), without a handle input per variable. Made at the op's first run and kept by it.
  Register(OpDefBuilder("SWAVariableGroupByName")
               .Output("group: resource")
               .Attr("containers: list(string) >= 1")
               .Attr("shared_names: list(string) >= 1")
               .SetIsStateful()
               .SetShapeFn(tensorflow::shape_inference::ScalarShape));
  // True when every element of every value (tensors or resource variables, or the members of a
  // SWAVariableGroup given as the only input) is finite.
  Register(OpDefBuilder("AllFinite")
               .Input("values: Tvalues")
               .Output("all_finite: bool")
               .Attr("Tvalues: list({half, bfloat16, float, double, resource}) >= 1")
               .SetShapeFn(tensorflow::shape_inference::ScalarShape));
  // Exchanges the values of first[i] and second[i] (their buffers), bit-exactly.
  Register(OpDefBuilder("SwapVariablesN")
               .Input("first: N * resource")
               .Input("second: N * resource")
               .Attr("T: {half, bfloat16, float, double}")
               .Attr("N: int >= 1")
               .SetIsStateful()
               .SetShapeFn([](InferenceContext*) { return absl::OkStatus(); }));
  // SwapVariablesN on the 2N members of a SWAVariableGroup: the first N, then the second N.
  Register(OpDefBuilder("SwapVariablesGroup")
               .Input("pairs: resource")
               .Attr("T: {half, bfloat16, float, double}")
               .SetIsStateful()
               .SetShapeFn([](InferenceContext*) { return absl::OkStatus(); }));
  return true;
}

const bool kRegistered = RegisterAll();

}  // namespace
}  // namespace swa_ops
