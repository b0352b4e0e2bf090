// The CUDA-only constructs of the CUDA driver (bi_wkv_cuda.cu), as macros with two
// definitions:
//  - CUDA builds (nvcc): exactly the CUDA syntax they stand for;
//  - BIWKV_HOST_CUDA (a test-only g++ build, never installed; see
//    tests/ops/test_bi_wkv_kernels.py): a host emulation, so the driver's host logic and the
//    kernels' bodies run on CPU tensors without a GPU.
//
//   BIWKV_KERNEL                  __global__
//   BIWKV_DEVICE_INLINE           __device__ __forceinline__
//   BIWKV_DEVICE_GUARD(device);   const c10::cuda::CUDAGuard guard(device);
//   BIWKV_STREAM()                c10::cuda::getCurrentCUDAStream()
//   BIWKV_LAUNCH(blocks, threads, stream, kernel)(args...)
//                                 kernel<<<blocks, threads, 0, stream>>>(args...)
//   BIWKV_LAUNCH_CHECK();         C10_CUDA_KERNEL_LAUNCH_CHECK();
//   kInputsOnCuda                 true (host build: false, the inputs are CPU tensors)
//
// The emulation runs every thread of a launch, one after the other, on the calling CPU
// thread, with blockIdx / threadIdx / blockDim / gridDim set as CUDA would. That is exact for
// kernels whose threads do not communicate (no __shared__ memory, __syncthreads, warp
// intrinsics or atomics): each thread then computes the same function of the same inputs
// whatever the order. None of those is defined here, so a kernel that starts using them
// fails to compile in the host build instead of being emulated wrongly. Threads can run in
// ascending or descending order (set_reverse_order); identical results in both orders show
// that no thread reads what another one writes in the same launch.
#pragma once

#ifndef BIWKV_HOST_CUDA

#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#define BIWKV_KERNEL __global__
#define BIWKV_DEVICE_INLINE __device__ __forceinline__
#define BIWKV_DEVICE_GUARD(device) const c10::cuda::CUDAGuard biwkv_device_guard(device)
#define BIWKV_STREAM() c10::cuda::getCurrentCUDAStream()
#define BIWKV_LAUNCH(blocks, threads, stream, ...) __VA_ARGS__<<<blocks, threads, 0, stream>>>
#define BIWKV_LAUNCH_CHECK() C10_CUDA_KERNEL_LAUNCH_CHECK()

namespace biwkv {
constexpr bool kInputsOnCuda = true;
}  // namespace biwkv

#else  // BIWKV_HOST_CUDA

#if defined(__CUDACC__)
#error "BIWKV_HOST_CUDA is the g++ emulation of the CUDA driver; do not compile it with nvcc"
#endif

#include <c10/util/Exception.h>

#include <cstdint>
#include <string>
#include <vector>

#define BIWKV_KERNEL
#define BIWKV_DEVICE_INLINE inline
#define BIWKV_DEVICE_GUARD(device) (void)(device)
#define BIWKV_STREAM() 0
#define BIWKV_LAUNCH(blocks, threads, stream, ...) \
  ::biwkv::host_cuda::launcher(#__VA_ARGS__, blocks, threads, stream, &__VA_ARGS__)
#define BIWKV_LAUNCH_CHECK() (void)0

namespace biwkv {
constexpr bool kInputsOnCuda = false;

namespace host_cuda {

struct Dim3 {
  unsigned int x = 1, y = 1, z = 1;
};
inline thread_local Dim3 threadIdx, blockIdx, blockDim, gridDim;

// One record per launch (kernel as written at the launch site, grid and block size), for
// the tests; cleared by them. Launches come from the calling thread only.
struct Launch {
  std::string kernel;
  unsigned int blocks, threads;
};
inline std::vector<Launch>& launches() {
  static std::vector<Launch> log;
  return log;
}
inline bool& reverse_order() {
  static bool reverse = false;
  return reverse;
}

template <class K> struct Launcher {
  const char* name;
  long long blocks, threads;
  K kernel;
  // The limits a CUDA launch of a 1-D grid enforces ("invalid configuration argument").
  template <class... Args> void operator()(const Args&... args) const {
    TORCH_CHECK(threads >= 1 && threads <= 1024, "host_cuda: ", name, ": ", threads,
                " threads per block");
    TORCH_CHECK(blocks >= 1 && blocks <= 0x7fffffffLL, "host_cuda: ", name, ": ", blocks, " blocks");
    launches().push_back(Launch{name, (unsigned int)blocks, (unsigned int)threads});
    gridDim = Dim3{(unsigned int)blocks, 1, 1};
    blockDim = Dim3{(unsigned int)threads, 1, 1};
    const long long n = blocks * threads;
    for (long long i = 0; i < n; ++i) {
      const long long t = reverse_order() ? n - 1 - i : i;
      blockIdx = Dim3{(unsigned int)(t / threads), 0, 0};
      threadIdx = Dim3{(unsigned int)(t % threads), 0, 0};
      kernel(args...);
    }
  }
};

// blocks and threads as the launch site passes them (CUDA converts both to dim3).
template <class K>
Launcher<K> launcher(const char* name, unsigned int blocks, int threads, int /*stream*/, K kernel) {
  return Launcher<K>{name, (long long)blocks, (long long)threads, kernel};
}

}  // namespace host_cuda

using host_cuda::blockDim;
using host_cuda::blockIdx;
using host_cuda::gridDim;
using host_cuda::threadIdx;

}  // namespace biwkv

#endif  // BIWKV_HOST_CUDA
