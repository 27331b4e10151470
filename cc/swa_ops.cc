// Op definitions. Each update comes in three variants:
//   <Op>          average (and debias state) as resource handles, value as a tensor;
//   <Op>Variable  value as a resource handle too, so a Variable is read by the op itself (no
//                 separate ReadVariableOp);
//   <Op>Ref       TF1 reference variables (Ref(T) inputs), returning the updated reference.
#include "absl/strings/str_cat.h"
#include "tensorflow/core/framework/common_shape_fns.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/shape_inference.h"

namespace swa_ops {
namespace {

using tensorflow::shape_inference::InferenceContext;
using tensorflow::shape_inference::ShapeHandle;

// The step or decay input (always the last one) must be a scalar.
absl::Status ResourceUpdateShape(InferenceContext* c) {
  ShapeHandle scalar = c->input(c->num_inputs() - 1);
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
  const int value_index = c->num_inputs() - 2;
  ShapeHandle shape = c->input(0);
  for (int i = 1; i <= value_index; ++i) {
    if (i == 2 && c->num_inputs() == 5) continue;  // DebiasedEMARef's local_step is a scalar.
    TF_RETURN_IF_ERROR(c->Merge(shape, c->input(i), &shape));
  }
  c->set_output(0, shape);
  return absl::OkStatus();
}

}  // namespace

#define SWA_FLOAT_TYPES "{half, bfloat16, float, double}"
#define SWA_STEP_TYPES "{int32, int64, float, double}"

// One update op in its three variants. STATE: the variables the op updates besides `average`;
// SCALAR: the scalar input ("step: Tstep" or "decay: Tdecay"), SCALAR_ATTR its type attribute.
#define SWA_REGISTER_UPDATE_OPS(NAME, RESOURCE_STATE, REF_STATE, SCALAR, SCALAR_ATTR)            \
  REGISTER_OP(NAME)                                                                               \
      .Input("average: resource") RESOURCE_STATE                                                  \
      .Input("value: T")                                                                          \
      .Input(SCALAR)                                                                              \
      .Attr("T: " SWA_FLOAT_TYPES)                                                                \
      .Attr(SCALAR_ATTR)                                                                          \
      .Attr("use_locking: bool = false")                                                          \
      .SetShapeFn(ResourceUpdateShape);                                                           \
  REGISTER_OP(NAME "Variable")                                                                    \
      .Input("average: resource") RESOURCE_STATE                                                  \
      .Input("value: resource")                                                                   \
      .Input(SCALAR)                                                                              \
      .Attr("T: " SWA_FLOAT_TYPES)                                                                \
      .Attr(SCALAR_ATTR)                                                                          \
      .Attr("use_locking: bool = false")                                                          \
      .SetShapeFn(ResourceUpdateShape);                                                           \
  REGISTER_OP(NAME "Ref")                                                                         \
      .Input("average: Ref(T)") REF_STATE                                                         \
      .Input("value: T")                                                                          \
      .Input(SCALAR)                                                                              \
      .Output("updated_average: Ref(T)")                                                          \
      .Attr("T: " SWA_FLOAT_TYPES)                                                                \
      .Attr(SCALAR_ATTR)                                                                          \
      .Attr("use_locking: bool = false")                                                          \
      .SetShapeFn(RefUpdateShape)

#define SWA_NO_STATE
#define SWA_DEBIAS_RESOURCE_STATE .Input("biased: resource").Input("local_step: resource")
#define SWA_DEBIAS_REF_STATE .Input("biased: Ref(T)").Input("local_step: Ref(T)")

// average <- average - (average - value) / (step + 1), the weight computed in double.
SWA_REGISTER_UPDATE_OPS("SWAAssign", SWA_NO_STATE, SWA_NO_STATE, "step: Tstep",
                        "Tstep: " SWA_STEP_TYPES);

// average <- average - (average - value) * (1 - decay).
SWA_REGISTER_UPDATE_OPS("EMAAssign", SWA_NO_STATE, SWA_NO_STATE, "decay: Tdecay",
                        "Tdecay: " SWA_FLOAT_TYPES);

// biased <- biased - (biased - value) * (1 - decay); local_step <- local_step + 1;
// average <- biased / (1 - decay ** local_step).
SWA_REGISTER_UPDATE_OPS("DebiasedEMA", SWA_DEBIAS_RESOURCE_STATE, SWA_DEBIAS_REF_STATE,
                        "decay: Tdecay", "Tdecay: " SWA_FLOAT_TYPES);

}  // namespace swa_ops
