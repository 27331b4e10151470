// Force-included into every op library source (CMakeLists.txt): binds the one libstdc++ symbol
// that g++ 12's headers give a version newer than GCC 11's libstdc++ has to its older version,
// so that the op libraries load with the libstdc++ of RHEL 9-era systems (manylinux_2_34).
//
// std::condition_variable::wait(unique_lock&) (Eigen's Barrier waits on one) is GLIBCXX_3.4.30
// in GCC 12's libstdc++, which kept the GLIBCXX_3.4.11 version of the same function beside it;
// the newer one only differs in letting a thread cancellation unwind through the wait, and
// swa_ops never cancels a thread.
#ifndef SWA_OPS_CC_TF_LIBSTDCXX_COMPAT_H_
#define SWA_OPS_CC_TF_LIBSTDCXX_COMPAT_H_

#if defined(__cplusplus)
__asm__(".symver _ZNSt18condition_variable4waitERSt11unique_lockISt5mutexE,"
        "_ZNSt18condition_variable4waitERSt11unique_lockISt5mutexE@GLIBCXX_3.4.11");
#endif

#endif  // SWA_OPS_CC_TF_LIBSTDCXX_COMPAT_H_
