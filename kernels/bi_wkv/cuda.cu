// CUDA driver of the Bi-WKV op: one thread per (batch, chunk, channel), channels fastest so
// every load of k, v, g and every store is coalesced. The chunk count grows with T
// (chunk_len <= kCudaMaxChunk tokens), so a single image at T = 16384 still launches
// 16384 / chunk_len * C threads. All arithmetic is the core's general walk (core.h, which the
// CPU kernel's general path runs too). fp32/fp16/bf16/fp64 storage, fp32 (fp64) math.
// gw/gu are written as per-(batch, chunk) partials and summed by a fixed-order reduction
// (dispatch.h), so they are deterministic. The kernels use no shared memory and their
// threads never communicate.
// CUDA-only syntax goes through the macros of common/launch.h, so this file also builds with
// g++ as a host emulation for tests (MMVRWKV_HOST_CUDA, cuda_host.cpp); CUDA builds see the
// CUDA syntax. Only c10/cuda headers (there): ATen/cuda/CUDAContext.h pulls in cuSPARSE /
// cuBLAS headers, which a bare CUDA toolkit (nvcc + cudart, as on CI) does not have.
#include "common/launch.h"

#include "bi_wkv/dispatch.h"

namespace biwkv {
namespace {

using kernels::grid_for;

struct Index {
  i64 b, c;
  int j;
};

// Thread -> work item (batch b, chunk j, channel c), channels fastest; false past the end.
KERNELS_DEVICE bool chunk_item(const Dims& d, Index& ix) {
  i64 idx = (i64)blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= d.B * d.nch * d.C) return false;
  ix.c = idx % d.C;
  i64 bj = idx / d.C;
  ix.j = (int)(bj % d.nch);
  ix.b = bj / d.nch;
  return true;
}

// Thread -> (batch b, channel c) column of the carry scan.
KERNELS_DEVICE bool column_item(const Dims& d, Index& ix) {
  i64 idx = (i64)blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= d.B * d.C) return false;
  ix.c = idx % d.C;
  ix.b = idx / d.C;
  ix.j = 0;
  return true;
}

template <bool DW, int F, class T, class A>
KERNELS_GLOBAL void summary_kernel(Dims d, const T* k, const T* v, const A* w, A* carry) {
  Index ix;
  if (chunk_item(d, ix)) item_summary<DW, F, A>(d, k, v, w, carry, ix.b, ix.j, ix.c, 1);
}

template <bool DW, int F, class A>
KERNELS_GLOBAL void carry_kernel(Dims d, const A* w, A* carry, bool left_dir, bool right_dir) {
  Index ix;
  if (column_item(d, ix)) item_carry<DW, F, A>(d, w, carry, ix.b, ix.c, 1, left_dir, right_dir);
}

template <class T, class A>
KERNELS_GLOBAL void forward_kernel(Dims d, const T* k, const T* v, T* y, const A* w, const A* u, A* carry) {
  Index ix;
  State<A> buf[kCudaMaxChunk];
  if (chunk_item(d, ix)) item_forward<kFieldsPlain, A>(d, k, v, y, w, u, carry, ix.b, ix.j, ix.c, 1, buf);
}

template <class T, class A>
KERNELS_GLOBAL void backward_stats_kernel(Dims d, const T* k, const T* v, const T* g, const A* w,
                                          const A* u, A* carry, A* pcarry, A* gwp, A* gup) {
  Index ix;
  State<A> buf[kCudaMaxChunk];
  if (chunk_item(d, ix))
    item_backward_stats<A>(d, k, v, g, w, u, carry, pcarry, gwp, gup, ix.b, ix.j, ix.c, 1, buf);
}

template <class T, class A>
KERNELS_GLOBAL void backward_kv_kernel(Dims d, const T* k, const T* v, const T* g, T* gk, T* gv,
                                       const A* w, const A* u, A* carry, A* pcarry) {
  Index ix;
  State<A> buf[2 * kCudaMaxChunk];
  if (chunk_item(d, ix))
    item_backward_kv<A>(d, k, v, g, gk, gv, w, u, carry, pcarry, ix.b, ix.j, ix.c, 1, buf);
}

// Blocks of a launch over n items.
unsigned int blocks_for(i64 n) { return grid_for(n, kCudaThreads); }

// Phases 1 and 2 of a pass: the chunk summaries, then the carry scans (left, and right
// unless causal). DW: with w-derivatives (F = kFieldsDW), the backward's forward sums.
template <bool DW, int F, class scalar_t, class A, class Stream>
void summaries_and_carries(const Dims& d, const scalar_t* kp, const scalar_t* vp, const A* wp,
                           A* cp, Stream stream) {
  KERNELS_LAUNCH(blocks_for(d.B * d.nch * d.C), kCudaThreads, stream, summary_kernel<DW, F, scalar_t, A>)(
      d, kp, vp, wp, cp);
  KERNELS_LAUNCH_CHECK();
  KERNELS_LAUNCH(blocks_for(d.B * d.C), kCudaThreads, stream, carry_kernel<DW, F, A>)(
      d, wp, cp, true, !d.causal);
  KERNELS_LAUNCH_CHECK();
}

}  // namespace

template <> struct Driver<Device::kCuda> : kernels::CudaDriver {
  static Dims dims(const at::Tensor& k, int64_t chunk_len, bool causal) {
    TORCH_CHECK(chunk_len <= kCudaMaxChunk, "bi_wkv (cuda): chunk_len must be <= ", kCudaMaxChunk,
                ", got ", chunk_len);
    Dims d = make_dims(k, chunk_len, causal);
    TORCH_CHECK(d.B * d.nch * d.C / kCudaThreads < (i64)0x7fffffff, "bi_wkv (cuda): input too large");
    return d;
  }

  template <class scalar_t, class A>
  static void forward(const Dims& d, const scalar_t* kp, const scalar_t* vp, scalar_t* yp,
                      const A* wp, const A* up, A* cp) {
    auto stream = KERNELS_STREAM();
    summaries_and_carries<false, kFieldsPlain>(d, kp, vp, wp, cp, stream);
    KERNELS_LAUNCH(blocks_for(d.B * d.nch * d.C), kCudaThreads, stream, forward_kernel<scalar_t, A>)(
        d, kp, vp, yp, wp, up, cp);
    KERNELS_LAUNCH_CHECK();
  }

  template <class scalar_t, class A>
  static void backward(const Dims& d, const scalar_t* kp, const scalar_t* vp, const scalar_t* gp,
                       scalar_t* gkp, scalar_t* gvp, const A* wp, const A* up, A* cp, A* pcp,
                       A* gwp, A* gup) {
    auto stream = KERNELS_STREAM();
    const i64 items = d.B * d.nch * d.C;
    summaries_and_carries<true, kFieldsDW>(d, kp, vp, wp, cp, stream);
    KERNELS_LAUNCH(blocks_for(items), kCudaThreads, stream, backward_stats_kernel<scalar_t, A>)(
        d, kp, vp, gp, wp, up, cp, pcp, gwp, gup);
    KERNELS_LAUNCH_CHECK();
    KERNELS_LAUNCH(blocks_for(d.B * d.C), kCudaThreads, stream, carry_kernel<false, kFieldsPlain, A>)(
        d, wp, pcp, !d.causal, true);
    KERNELS_LAUNCH_CHECK();
    KERNELS_LAUNCH(blocks_for(items), kCudaThreads, stream, backward_kv_kernel<scalar_t, A>)(
        d, kp, vp, gp, gkp, gvp, wp, up, cp, pcp);
    KERNELS_LAUNCH_CHECK();
  }
};

template struct Op<Device::kCuda>;

}  // namespace biwkv
