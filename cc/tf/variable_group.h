// A variable group: a fixed list of resource variables behind one handle (a ref-counting
// resource handle, freed with its last tensor). The `...Group` update ops take it in place of
// their N variable handles, so that a tf.function captures one tensor per group, not one per
// variable, and each variable is looked up in its resource manager once, not at every update.
#ifndef SWA_OPS_CC_VARIABLE_GROUP_H_
#define SWA_OPS_CC_VARIABLE_GROUP_H_

#include <algorithm>
#include <atomic>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/resource_base.h"
#include "tensorflow/core/framework/resource_handle.h"
#include "variable_access.h"

namespace swa_ops {

class VariableGroup : public tensorflow::ResourceBase {
 public:
  // The members, looked up: shared by the ops that run on the group, and replaced (not changed)
  // when one has to be looked up again.
  struct Members {
    std::vector<VarPtr> vars;
    // The member indices in the address order of their variables' mutexes: the order in which
    // an op locks them (OrderedLocks), so that it need not sort them at every update.
    std::vector<int> lock_order;
    // The number of leading members (the variables an op updates) found distinct from each other
    // and from the rest by an op's check, which then need not run again; -1: none yet.
    mutable std::atomic<int> checked_distinct{-1};
  };

  // `handles`: the members' handles, each on the device the group is made on.
  explicit VariableGroup(std::vector<tensorflow::ResourceHandle> handles)
      : handles_(std::move(handles)) {
    for (const tensorflow::ResourceHandle& handle : handles_) {
      ref_counting_.push_back(handle.IsRefCounting());
    }
  }

  std::string DebugString() const override;
  int size() const { return static_cast<int>(handles_.size()); }
  const tensorflow::ResourceHandle& handle(int member) const { return handles_[member]; }

  // The members, each looked up the first time and again once it has been deleted from its
  // resource manager (the group then holds its last reference), so that an op sees what a lookup
  // by handle would: a deleted variable is an error naming it (`role_of(member)`: "average",
  // "value", ...).
  template <typename RoleOf>
  absl::Status GetMembers(tensorflow::OpKernelContext* ctx, const RoleOf& role_of,
                          std::shared_ptr<const Members>* out) {
    tsl::mutex_lock lock(mu_);
    if (members_ == nullptr || !AllLive(*members_)) {
      auto fresh = std::make_shared<Members>();
      fresh->vars.resize(handles_.size());
      for (int member = 0; member < size(); ++member) {
        VarPtr& var = fresh->vars[member];
        if (members_ != nullptr && IsLive(member, members_->vars[member].get())) {
          members_->vars[member]->Ref();
          var.reset(members_->vars[member].get());
        } else {
          TF_RETURN_IF_ERROR(FindVariableByHandle(ctx, handles_[member], member,
                                                  role_of(member), &var));
        }
      }
      fresh->lock_order.resize(handles_.size());
      std::iota(fresh->lock_order.begin(), fresh->lock_order.end(), 0);
      std::sort(fresh->lock_order.begin(), fresh->lock_order.end(), [&](int a, int b) {
        return fresh->vars[a]->mu() < fresh->vars[b]->mu();
      });
      members_ = std::move(fresh);
    }
    *out = members_;
    return absl::OkStatus();
  }

 private:
  // A ref-counting handle owns its variable (TF2 eager variables), which so cannot be deleted:
  // only the others' variables are read (each a likely cache miss, at every update).
  bool IsLive(int member, tensorflow::Var* var) const {
    return var != nullptr && (ref_counting_[member] || !var->RefCountIsOne());
  }
  bool AllLive(const Members& members) const {
    for (int member = 0; member < size(); ++member) {
      if (!IsLive(member, members.vars[member].get())) return false;
    }
    return true;
  }

  const std::vector<tensorflow::ResourceHandle> handles_;
  std::vector<bool> ref_counting_;  // Of each handle.
  tsl::mutex mu_;
  std::shared_ptr<const Members> members_ TF_GUARDED_BY(mu_);
};

// The group at input `index`, or an error saying what the input is instead.
absl::Status GroupInput(tensorflow::OpKernelContext* ctx, int index,
                        tensorflow::core::RefCountPtr<VariableGroup>* group);

// Whether input `index` is a variable group's handle (a cheap check: the handle's type).
bool IsGroupInput(tensorflow::OpKernelContext* ctx, int index);

}  // namespace swa_ops

#endif  // SWA_OPS_CC_VARIABLE_GROUP_H_
