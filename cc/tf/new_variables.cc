// SWANewVariables: N new resource variables, as eager code creates them (VarHandleOp with an
// anonymous shared name: each owned by its handle, and published to the resource manager under
// the handle's name), initialised to copies of N tensors and named by a string tensor. Eager
// execution builds a kernel per distinct set of attributes: VarHandleOp's debug name is an
// attribute, so creating thousands of differently named variables one by one builds thousands
// of kernels; this op takes the names as an input, and one kernel serves every batch of the
// same dtypes.
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/resource_handle.h"
#include "tensorflow/core/framework/resource_mgr.h"
#include "tensorflow/core/framework/resource_var.h"
#include "tensorflow/core/framework/tensor.h"

namespace swa_ops {
namespace {

using tensorflow::OpKernelContext;
using tensorflow::Tensor;

class NewVariablesOp : public tensorflow::OpKernel {
 public:
  using OpKernel::OpKernel;

  void Compute(OpKernelContext* ctx) override {
    tensorflow::OpInputList initial_values;
    OP_REQUIRES_OK(ctx, ctx->input_list("initial_values", &initial_values));
    const Tensor& names = ctx->input(ctx->num_inputs() - 1);
    OP_REQUIRES(ctx,
                tensorflow::TensorShapeUtils::IsVector(names.shape()) &&
                    names.NumElements() == initial_values.size(),
                absl::InvalidArgumentError(absl::StrCat(
                    type_string(), " '", name(), "': names must be a vector of ",
                    initial_values.size(), " names (one per initial value), got shape ",
                    names.shape().DebugString())));
    OP_REQUIRES(ctx, ctx->num_outputs() == initial_values.size(),
                absl::InvalidArgumentError(absl::StrCat(
                    type_string(), " '", name(), "': N = ", ctx->num_outputs(), " but ",
                    initial_values.size(), " initial values")));
    const auto name_of = names.vec<tensorflow::tstring>();
    tensorflow::AllocatorAttributes on_host;
    on_host.set_on_host(true);
    // The values first, one after the other, then the variables: the allocator then tends to
    // place the values side by side, and the variables too, not each between the others'
    // objects, and an update that walks them in order reads fewer pages.
    std::vector<Tensor> values(initial_values.size());
    for (int i = 0; i < initial_values.size(); ++i) {
      const Tensor& initial = initial_values[i];
      OP_REQUIRES_OK(ctx, ctx->allocate_temp(initial.dtype(), initial.shape(), &values[i]));
      std::memcpy(const_cast<char*>(values[i].tensor_data().data()), initial.tensor_data().data(),
                  initial.TotalBytes());
    }
    std::vector<tensorflow::core::RefCountPtr<tensorflow::Var>> vars(initial_values.size());
    for (int i = 0; i < initial_values.size(); ++i) {
      std::string debug_name(name_of(i));
      vars[i].reset(new tensorflow::Var(initial_values[i].dtype(), debug_name));
      *vars[i]->tensor() = std::move(values[i]);
      vars[i]->is_initialized = true;
    }
    for (int i = 0; i < initial_values.size(); ++i) {
      const Tensor& initial = initial_values[i];
      tensorflow::Var* var = vars[i].release();  // The handle owns it.
      tensorflow::ResourceHandle handle =
          tensorflow::ResourceHandle::MakeRefCountingHandle<tensorflow::Var>(
              var, ctx->device()->name(), {{initial.dtype(), initial.shape()}});
      // Published to the resource manager too, as VarHandleOp publishes an eager variable: some
      // ops (AssignVariableOp, XLA's) still look a variable up by container and name.
      OP_REQUIRES_OK(ctx, ctx->resource_manager()->CreateUnowned<tensorflow::Var>(
                              handle.container(), handle.name(), var));
      Tensor handle_tensor;
      OP_REQUIRES_OK(ctx, ctx->allocate_temp(tensorflow::DT_RESOURCE, tensorflow::TensorShape({}),
                                             &handle_tensor, on_host));
      handle_tensor.scalar<tensorflow::ResourceHandle>()() = std::move(handle);
      ctx->set_output(i, handle_tensor);
    }
  }
};

// Host memory only: the copy is a memcpy.
REGISTER_KERNEL_BUILDER(Name("SWANewVariables").Device(tensorflow::DEVICE_CPU), NewVariablesOp);

}  // namespace
}  // namespace swa_ops
