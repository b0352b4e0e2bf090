// The CUDA-only constructs of the CUDA drivers (<op>/cuda.cu), as macros and types with two
// definitions:
//  - CUDA builds (nvcc): exactly the CUDA syntax they stand for;
//  - MMVRWKV_HOST_CUDA (a test-only g++ build, never installed; <op>/cuda_host.cpp): a host
//    emulation, so a driver's host logic and its kernels' bodies run on CPU tensors without
//    a GPU.
//
//   KERNELS_GLOBAL                __global__
//   KERNELS_DEVICE                __device__ __forceinline__
//   kernels::DeviceGuard g(dev);  const c10::cuda::CUDAGuard g(dev);
//   KERNELS_STREAM()              c10::cuda::getCurrentCUDAStream()
//   KERNELS_LAUNCH(blocks, threads, stream, kernel)(args...)
//                                 kernel<<<blocks, threads, 0, stream>>>(args...)
//   KERNELS_LAUNCH_CHECK();       C10_CUDA_KERNEL_LAUNCH_CHECK();
//   kernels::kInputsOnCuda        true (host build: false, the inputs are CPU tensors)
//   kernels::grid_for(n, threads) blocks of a 1-D launch over n items
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

#include <cstdint>

#ifndef MMVRWKV_HOST_CUDA

#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#define KERNELS_GLOBAL __global__
#define KERNELS_DEVICE __device__ __forceinline__
#define KERNELS_STREAM() c10::cuda::getCurrentCUDAStream()
#define KERNELS_LAUNCH(blocks, threads, stream, ...) __VA_ARGS__<<<blocks, threads, 0, stream>>>
#define KERNELS_LAUNCH_CHECK() C10_CUDA_KERNEL_LAUNCH_CHECK()

namespace kernels {
constexpr bool kInputsOnCuda = true;
using DeviceGuard = c10::cuda::CUDAGuard;
}  // namespace kernels

#else  // MMVRWKV_HOST_CUDA

#if defined(__CUDACC__)
#error "MMVRWKV_HOST_CUDA is the g++ emulation of the CUDA drivers; do not compile it with nvcc"
#endif

#include <c10/core/Device.h>
#include <c10/util/Exception.h>

#include <string>
#include <vector>

#define KERNELS_GLOBAL
#define KERNELS_DEVICE inline
#define KERNELS_STREAM() 0
#define KERNELS_LAUNCH(blocks, threads, stream, ...) \
  ::kernels::host_cuda::launcher(#__VA_ARGS__, blocks, threads, stream, &__VA_ARGS__)
#define KERNELS_LAUNCH_CHECK() (void)0

namespace kernels {
constexpr bool kInputsOnCuda = false;

struct DeviceGuard {
  explicit DeviceGuard(const c10::Device&) {}
};

namespace host_cuda {

struct Dim3 {
  unsigned int x = 1, y = 1, z = 1;
};

}  // namespace host_cuda
}  // namespace kernels

// CUDA's built-in index variables, global as in CUDA (set by the launcher below).
inline thread_local kernels::host_cuda::Dim3 threadIdx, blockIdx, blockDim, gridDim;

namespace kernels {
namespace host_cuda {

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
}  // namespace kernels

#endif  // MMVRWKV_HOST_CUDA

namespace kernels {

// What every CUDA Driver<Device::kCuda> shares (the CPU drivers': CpuDriver, common/host.h):
// the device guard of the inputs' device, and whether they are CUDA tensors.
struct CudaDriver {
  using Guard = DeviceGuard;
  static constexpr bool kOnCuda = kInputsOnCuda;
};

// Blocks of `threads` threads that cover n items (a 1-D grid).
inline unsigned int grid_for(int64_t n, int threads) {
  return (unsigned int)((n + threads - 1) / threads);
}

}  // namespace kernels
