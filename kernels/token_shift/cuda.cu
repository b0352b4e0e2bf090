// CUDA driver of the token-shift-and-mix op. Three kernels, channels fastest so that every
// load and store of a warp is coalesced, all arithmetic from core.h:
//  - forward: one thread per element of x, writing its M mixed outputs;
//  - grad_x: one thread per element of x (its own M gradients plus those of the M outputs that
//    read it through the shift);
//  - grad_mix: one thread per (block of kRowsPerBlock tokens, channel), one partial sum per
//    coefficient, summed afterwards in a fixed order (deterministic, no atomics).
// fp32/fp16/bf16 storage with fp32 math, fp64 with fp64. The threads never communicate, so the
// file also builds with g++ as a host emulation (MMVRWKV_HOST_CUDA, common/launch.h; cuda_host.cpp).
#include "common/launch.h"

#include "token_shift/dispatch.h"

namespace tshift {
namespace {

unsigned int blocks_for(i64 n) { return kernels::grid_for(n, kCudaThreads); }

// Thread -> element idx of x [B, T, C] (n elements), its channel c, batch item b and token
// t, and src: the token its channel group reads (adjoint: the token that reads it through
// the shift), -1 outside the grid; false past the end.
struct Element {
  i64 n, idx, c, b, t, src;
};
KERNELS_DEVICE bool element_of(const Geometry& g, bool adjoint, Element& e) {
  e.n = g.B * g.T * g.C;
  e.idx = (i64)blockIdx.x * blockDim.x + threadIdx.x;
  if (e.idx >= e.n) return false;
  e.c = e.idx % g.C;
  const i64 row = e.idx / g.C;
  e.b = row / g.T;
  e.t = row % g.T;
  e.src = source_token(g, group_of(g, e.c), e.t, adjoint);
  return true;
}

template <class T, class A>
KERNELS_GLOBAL void forward_kernel(Geometry g, i64 M, const T* x, const T* mix, T* out) {
  Element e;
  if (!element_of(g, false, e)) return;
  const A xs = e.src < 0 ? A(0) : (A)x[(e.b * g.T + e.src) * g.C + e.c];
  const A xv = (A)x[e.idx];
  for (i64 m = 0; m < M; ++m) out[m * e.n + e.idx] = (T)lerp<A>(xs, xv, (A)mix[m * g.C + e.c]);
}

template <class T, class A>
KERNELS_GLOBAL void grad_x_kernel(Geometry g, i64 M, const T* mix, const T* gout, T* gx) {
  Element e;
  if (!element_of(g, true, e)) return;
  A acc = A(0);
  for (i64 m = 0; m < M; ++m) {
    const A w = (A)mix[m * g.C + e.c];
    acc += (A)gout[m * e.n + e.idx] * w;
    if (e.src >= 0) acc += (A)gout[m * e.n + (e.b * g.T + e.src) * g.C + e.c] * (A(1) - w);
  }
  gx[e.idx] = (T)acc;
}

template <class T, class A>
KERNELS_GLOBAL void grad_mix_kernel(Geometry g, i64 M, i64 nblk, const T* x, const T* gout,
                                    A* partial) {
  const i64 n = g.B * g.T * g.C;
  const i64 idx = (i64)blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= nblk * g.C) return;
  const i64 c = idx % g.C, blk = idx / g.C;
  const int group = group_of(g, c);
  const i64 r0 = blk * kRowsPerBlock;
  const i64 r1 = r0 + kRowsPerBlock < g.B * g.T ? r0 + kRowsPerBlock : g.B * g.T;
  for (i64 m = 0; m < M; ++m) {
    A acc = A(0);
    for (i64 row = r0; row < r1; ++row) {
      const i64 b = row / g.T, t = row % g.T;
      const i64 src = source_token(g, group, t, false);
      const A xs = src < 0 ? A(0) : (A)x[(b * g.T + src) * g.C + c];
      acc += (A)gout[m * n + row * g.C + c] * ((A)x[row * g.C + c] - xs);
    }
    partial[(blk * M + m) * g.C + c] = acc;
  }
}

}  // namespace

template <> struct Driver<Device::kCuda> : kernels::CudaDriver {
  // (The template parameter keeps the name the launch log of the host build records.)
  template <class scalar_t>
  static void forward(const Geometry& g, i64 M, const at::Tensor& x, const at::Tensor& mix,
                      at::Tensor& out) {
    using A = at::opmath_type<scalar_t>;
    KERNELS_LAUNCH(blocks_for(x.numel()), kCudaThreads, KERNELS_STREAM(), forward_kernel<scalar_t, A>)(
        g, M, x.data_ptr<scalar_t>(), mix.data_ptr<scalar_t>(), out.data_ptr<scalar_t>());
    KERNELS_LAUNCH_CHECK();
  }

  // Every (block, coefficient, channel) partial is written by one thread of grad_mix_kernel.
  static at::Tensor partial_buffer(i64 blocks, i64 M, i64 C, const at::TensorOptions& opt) {
    return kernels::poison(at::empty({blocks, M, C}, opt));
  }

  template <class scalar_t>
  static void backward(const Geometry& g, i64 M, const at::Tensor& x, const at::Tensor& mix,
                       const at::Tensor& grad_out, at::Tensor& gx, at::Tensor& partial) {
    using A = at::opmath_type<scalar_t>;
    const i64 nblk = blocks_of(g);
    auto stream = KERNELS_STREAM();
    KERNELS_LAUNCH(blocks_for(x.numel()), kCudaThreads, stream, grad_x_kernel<scalar_t, A>)(
        g, M, mix.data_ptr<scalar_t>(), grad_out.data_ptr<scalar_t>(), gx.data_ptr<scalar_t>());
    KERNELS_LAUNCH_CHECK();
    KERNELS_LAUNCH(blocks_for(nblk * g.C), kCudaThreads, stream, grad_mix_kernel<scalar_t, A>)(
        g, M, nblk, x.data_ptr<scalar_t>(), grad_out.data_ptr<scalar_t>(), partial.data_ptr<A>());
    KERNELS_LAUNCH_CHECK();
  }
};

template struct Op<Device::kCuda>;

}  // namespace tshift
