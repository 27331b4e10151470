// VariableGroup and its op, SWAVariableGroup: N variable handles in, one group handle out.
#include "variable_group.h"

#include "absl/strings/str_cat.h"
#include "tensorflow/core/framework/resource_mgr.h"
#include "tensorflow/core/framework/type_index.h"

namespace swa_ops {

using tensorflow::OpKernelContext;
using tensorflow::ResourceHandle;

std::string VariableGroup::DebugString() const {
  return absl::StrCat("swa_ops variable group of ", handles_.size(), " variables");
}

bool IsGroupInput(OpKernelContext* ctx, int index) {
  return ctx->input_dtype(index) == tensorflow::DT_RESOURCE &&
         ctx->input(index).NumElements() == 1 &&
         tensorflow::HandleFromInput(ctx, index).hash_code() ==
             tensorflow::TypeIndex::Make<VariableGroup>().hash_code();
}

absl::Status GroupInput(OpKernelContext* ctx, int index,
                        tensorflow::core::RefCountPtr<VariableGroup>* group) {
  const ResourceHandle& handle = tensorflow::HandleFromInput(ctx, index);
  const absl::Status found = tensorflow::LookupResource(ctx, handle, group);
  if (found.ok()) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      ctx->op_kernel().type_string(), " '", ctx->op_kernel().name(), "': input ", index,
      " must be a variable group (SWAVariableGroup's output) made on the op's device: ",
      found.message()));
}

namespace {

// A host scalar tensor holding a ref-counting handle to a new group of `handles`, on the op's
// device: the group lives as long as a copy of the tensor does.
absl::Status NewGroupTensor(OpKernelContext* ctx, std::vector<ResourceHandle> handles,
                            tensorflow::Tensor* out) {
  tensorflow::AllocatorAttributes on_host;
  on_host.set_on_host(true);
  TF_RETURN_IF_ERROR(
      ctx->allocate_temp(tensorflow::DT_RESOURCE, tensorflow::TensorShape({}), out, on_host));
  out->scalar<ResourceHandle>()() = ResourceHandle::MakeRefCountingHandle(
      new VariableGroup(std::move(handles)), ctx->device()->attributes().name());
  return absl::OkStatus();
}

class VariableGroupOp : public tensorflow::OpKernel {
 public:
  using OpKernel::OpKernel;

  void Compute(OpKernelContext* ctx) override {
    OP_REQUIRES_OK(ctx, CheckHandleInputs(ctx));
    const std::string& device = ctx->device()->attributes().name();
    std::vector<ResourceHandle> handles(ctx->num_inputs());
    for (int index = 0; index < ctx->num_inputs(); ++index) {
      handles[index] = tensorflow::HandleFromInput(ctx, index);
      OP_REQUIRES(ctx, handles[index].device().empty() || handles[index].device() == device,
                  absl::InvalidArgumentError(absl::StrCat(
                      type_string(), " '", name(), "': variable '", handles[index].name(),
                      "' lives on ", handles[index].device(), " but the group is made on ",
                      device, ": a group holds the variables of one device")));
      OP_REQUIRES(ctx, !IsGroupInput(ctx, index),
                  absl::InvalidArgumentError(absl::StrCat(type_string(), " '", name(),
                                                          "': input ", index,
                                                          " is a group, not a variable")));
    }
    tensorflow::Tensor group;
    OP_REQUIRES_OK(ctx, NewGroupTensor(ctx, std::move(handles), &group));
    ctx->set_output(0, group);
  }
};

// The members of N groups, in order, as one group: eager execution builds a kernel for each
// distinct number of inputs, at a cost that grows faster than that number, so a group of many
// variables is made from groups of a few hundred joined by this op.
class VariableGroupConcatOp : public tensorflow::OpKernel {
 public:
  using OpKernel::OpKernel;

  void Compute(OpKernelContext* ctx) override {
    const std::string& device = ctx->device()->attributes().name();
    std::vector<ResourceHandle> handles;
    for (int index = 0; index < ctx->num_inputs(); ++index) {
      tensorflow::core::RefCountPtr<VariableGroup> group;
      OP_REQUIRES_OK(ctx, GroupInput(ctx, index, &group));
      const std::string& group_device = tensorflow::HandleFromInput(ctx, index).device();
      OP_REQUIRES(ctx, group_device == device,
                  absl::InvalidArgumentError(absl::StrCat(
                      type_string(), " '", name(), "': group ", index, " was made on ",
                      group_device, " but the joined group is made on ", device,
                      ": a group holds the variables of one device")));
      for (int member = 0; member < group->size(); ++member) {
        handles.push_back(group->handle(member));
      }
    }
    tensorflow::Tensor group;
    OP_REQUIRES_OK(ctx, NewGroupTensor(ctx, std::move(handles), &group));
    ctx->set_output(0, group);
  }
};

// The group is made once per kernel (per graph and session) and its handle output at every run:
// the group looks its members up at the first update and again only if one is deleted.
class VariableGroupByNameOp : public tensorflow::OpKernel {
 public:
  explicit VariableGroupByNameOp(tensorflow::OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("containers", &containers_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("shared_names", &shared_names_));
    OP_REQUIRES(ctx, containers_.size() == shared_names_.size(),
                absl::InvalidArgumentError(absl::StrCat(
                    type_string(), " '", name(), "': ", containers_.size(), " containers but ",
                    shared_names_.size(), " shared_names; give one of each per variable")));
  }

  void Compute(OpKernelContext* ctx) override {
    tsl::mutex_lock lock(mu_);
    if (group_.dtype() != tensorflow::DT_RESOURCE) {  // The first run.
      std::vector<ResourceHandle> handles;
      handles.reserve(shared_names_.size());
      for (size_t i = 0; i < shared_names_.size(); ++i) {
        handles.push_back(tensorflow::MakeResourceHandle<tensorflow::Var>(ctx, containers_[i],
                                                                          shared_names_[i]));
      }
      OP_REQUIRES_OK(ctx, NewGroupTensor(ctx, std::move(handles), &group_));
    }
    ctx->set_output(0, group_);
  }

 private:
  std::vector<std::string> containers_, shared_names_;
  tsl::mutex mu_;
  tensorflow::Tensor group_ TF_GUARDED_BY(mu_);
};

#define SWA_REGISTER_GROUP_OPS(DEVICE)                                                     \
  REGISTER_KERNEL_BUILDER(Name("SWAVariableGroup").Device(DEVICE), VariableGroupOp);      \
  REGISTER_KERNEL_BUILDER(Name("SWAVariableGroupConcat").Device(DEVICE),                  \
                          VariableGroupConcatOp);                                         \
  REGISTER_KERNEL_BUILDER(Name("SWAVariableGroupByName").Device(DEVICE), VariableGroupByNameOp)

SWA_REGISTER_GROUP_OPS(tensorflow::DEVICE_CPU);
#if SWA_OPS_WITH_CUDA
SWA_REGISTER_GROUP_OPS(tensorflow::DEVICE_GPU);
#endif

}  // namespace
}  // namespace swa_ops
