# Decides whether the core gets its CUDA kernels (SWA_OPS_WITH_CUDA) and writes what the fatbinary
# holds to swa_ops_cuda.json for setup.py. Included by CMakeLists.txt.
# Decided before anything else of the library, so that a missing nvcc with ON fails fast.
string(TOUPPER "${SWA_OPS_CUDA}" SWA_OPS_CUDA)
if(NOT SWA_OPS_CUDA MATCHES "^(AUTO|ON|OFF)$")
  message(FATAL_ERROR "SWA_OPS_CUDA must be AUTO, ON or OFF, not '${SWA_OPS_CUDA}'")
endif()
set(SWA_OPS_WITH_CUDA OFF)
if(SWA_OPS_CUDA STREQUAL "OFF")
  message(STATUS "swa_ops: SWA_OPS_CUDA=OFF: building CPU-only")
else()
  include(CheckLanguage)
  # nvcc off PATH in its usual place: check_language and enable_language find it via CUDACXX.
  if(NOT CMAKE_CUDA_COMPILER AND NOT DEFINED ENV{CUDACXX})
    find_program(SWA_OPS_NVCC_ON_PATH nvcc NO_DEFAULT_PATH PATHS ENV PATH)
    if(NOT SWA_OPS_NVCC_ON_PATH AND EXISTS /usr/local/cuda/bin/nvcc)
      set(ENV{CUDACXX} /usr/local/cuda/bin/nvcc)
    endif()
    unset(SWA_OPS_NVCC_ON_PATH CACHE)
  endif()
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    set(SWA_OPS_WITH_CUDA ON)
  elseif(SWA_OPS_CUDA STREQUAL "ON")
    message(FATAL_ERROR "SWA_OPS_CUDA=ON but no working CUDA compiler was found: put nvcc on "
                        "PATH, set CUDACXX or -DCMAKE_CUDA_COMPILER=/path/to/nvcc, or build "
                        "CPU-only with -DSWA_OPS_CUDA=OFF")
  else()
    message(STATUS "swa_ops: no working CUDA compiler (nvcc) found: building "
                   "CPU-only")
  endif()
endif()
if(SWA_OPS_WITH_CUDA)
  set(CMAKE_CUDA_ARCHITECTURES ${SWA_OPS_CUDA_ARCHITECTURES})
  enable_language(CUDA)
  # What the fatbinary holds, for _build_info.py: SASS (sm_XX) and PTX (compute_XX) per entry.
  set(SWA_OPS_SASS "")
  set(SWA_OPS_PTX "")
  foreach(arch IN LISTS SWA_OPS_CUDA_ARCHITECTURES)
    if(NOT arch MATCHES "^([0-9]+[a-z]?)(-real|-virtual)?$")
      message(FATAL_ERROR "SWA_OPS_CUDA_ARCHITECTURES: '${arch}' is not of the form 90, 90-real "
                          "or 90-virtual")
    endif()
    if(NOT CMAKE_MATCH_2 STREQUAL "-virtual")
      list(APPEND SWA_OPS_SASS "\"sm_${CMAKE_MATCH_1}\"")
    endif()
    if(NOT CMAKE_MATCH_2 STREQUAL "-real")
      list(APPEND SWA_OPS_PTX "\"compute_${CMAKE_MATCH_1}\"")
    endif()
  endforeach()
  list(JOIN SWA_OPS_SASS ", " SWA_OPS_SASS)
  list(JOIN SWA_OPS_PTX ", " SWA_OPS_PTX)
  set(SWA_OPS_CUDA_VERSION "\"${CMAKE_CUDA_COMPILER_VERSION}\"")
  message(STATUS "swa_ops: CUDA ${CMAKE_CUDA_COMPILER_VERSION} kernels for "
                 "${SWA_OPS_CUDA_ARCHITECTURES} (${CMAKE_CUDA_COMPILER})")
else()
  set(SWA_OPS_SASS "")
  set(SWA_OPS_PTX "")
  set(SWA_OPS_CUDA_VERSION "null")
endif()
# Read by setup.py into _build_info.py; written at every configure, so never stale.
file(WRITE "${CMAKE_BINARY_DIR}/swa_ops_cuda.json"
     "{\"cuda_version\": ${SWA_OPS_CUDA_VERSION}, \"sass\": [${SWA_OPS_SASS}], "
     "\"ptx\": [${SWA_OPS_PTX}]}\n")
