// CUDA driver of the token-shift-and-mix op. Three kernels, channels fastest so that every
// load and store of a warp is coalesced, all arithmetic from token_shift_core.h:
//  - forward: one thread per element of x, writing its M mixed outputs;
//  - grad_x: one thread per element of x (its own M gradients plus those of the M outputs that
//    read it through the shift);
//  - grad_mix: one thread per (block of kRowsPerBlock tokens, channel), one partial sum per
//    coefficient, summed afterwards in a fixed order (deterministic, no atomics).
// fp32/fp16/bf16 storage with fp32 math, fp64 with fp64. The threads never communicate, so the
// file also builds with g++ as a host emulation (BIWKV_HOST_CUDA, bi_wkv_cuda_launch.h).
#include "bi_wkv_cuda_launch.h"

#include <string>

#include "bi_wkv.h"  // poison(): NaN-filled outputs in the host build, so unwritten elements show
#include "token_shift.h"

namespace tshift {
#ifdef BIWKV_HOST_CUDA
using biwkv::blockDim;
using biwkv::blockIdx;
using biwkv::threadIdx;
#endif

namespace {

constexpr int kThreads = 256;

unsigned int blocks_for(i64 n) { return (unsigned int)((n + kThreads - 1) / kThreads); }

template <class T, class A>
BIWKV_KERNEL void forward_kernel(Geometry g, i64 M, const T* x, const T* mix, T* out) {
  const i64 n = g.B * g.T * g.C;
  const i64 idx = (i64)blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= n) return;
  const i64 c = idx % g.C, row = idx / g.C;
  const i64 b = row / g.T, t = row % g.T;
  const i64 src = source_token(g, group_of(g, c), t, false);
  const A xs = src < 0 ? A(0) : (A)x[(b * g.T + src) * g.C + c];
  const A xv = (A)x[idx];
  for (i64 m = 0; m < M; ++m) out[m * n + idx] = (T)lerp<A>(xs, xv, (A)mix[m * g.C + c]);
}

template <class T, class A>
BIWKV_KERNEL void grad_x_kernel(Geometry g, i64 M, const T* mix, const T* gout, T* gx) {
  const i64 n = g.B * g.T * g.C;
  const i64 idx = (i64)blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= n) return;
  const i64 c = idx % g.C, row = idx / g.C;
  const i64 b = row / g.T, t = row % g.T;
  const i64 dst = source_token(g, group_of(g, c), t, true);
  A acc = A(0);
  for (i64 m = 0; m < M; ++m) {
    const A w = (A)mix[m * g.C + c];
    acc += (A)gout[m * n + idx] * w;
    if (dst >= 0) acc += (A)gout[m * n + (b * g.T + dst) * g.C + c] * (A(1) - w);
  }
  gx[idx] = (T)acc;
}

template <class T, class A>
BIWKV_KERNEL void grad_mix_kernel(Geometry g, i64 M, i64 nblk, const T* x, const T* gout,
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

Geometry geometry(const at::Tensor& x, const at::Tensor& mix, int64_t H, int64_t W,
                  c10::string_view shift_mode, int64_t shift_pixel, int64_t head_size,
                  int64_t quarter) {
  return make_geometry(x, mix, H, W, std::string(shift_mode.data(), shift_mode.size()),
                       shift_pixel, head_size, quarter, biwkv::kInputsOnCuda);
}

}  // namespace

at::Tensor token_shift_mix_forward_cuda(const at::Tensor& x, const at::Tensor& mix, int64_t H,
                                        int64_t W, c10::string_view shift_mode, int64_t shift_pixel,
                                        int64_t head_size, int64_t quarter) {
  const Geometry g = geometry(x, mix, H, W, shift_mode, shift_pixel, head_size, quarter);
  BIWKV_DEVICE_GUARD(x.device());
  const i64 M = mix.size(0), n = x.numel();
  at::Tensor out = biwkv::poison(at::empty({M, g.B, g.T, g.C}, x.options()));
  if (n == 0) return out;
  auto stream = BIWKV_STREAM();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "token_shift_mix_forward_cuda", [&] {
    using A = at::opmath_type<scalar_t>;
    BIWKV_LAUNCH(blocks_for(n), kThreads, stream, forward_kernel<scalar_t, A>)(
        g, M, x.data_ptr<scalar_t>(), mix.data_ptr<scalar_t>(), out.data_ptr<scalar_t>());
    BIWKV_LAUNCH_CHECK();
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> token_shift_mix_backward_cuda(
    const at::Tensor& x, const at::Tensor& mix, const at::Tensor& grad_out, int64_t H, int64_t W,
    c10::string_view shift_mode, int64_t shift_pixel, int64_t head_size, int64_t quarter) {
  const Geometry g = geometry(x, mix, H, W, shift_mode, shift_pixel, head_size, quarter);
  check_grad(grad_out, x, mix);
  BIWKV_DEVICE_GUARD(x.device());
  const i64 M = mix.size(0), n = x.numel();
  const i64 nblk = blocks_of(g);
  at::Tensor gx = biwkv::empty_output_like(x);
  // every (block, coefficient, channel) partial is written by one thread of grad_mix_kernel
  at::Tensor partial = biwkv::poison(
      at::empty({nblk, M, g.C}, x.options().dtype(at::toOpMathType(x.scalar_type()))));
  if (n > 0) {
    auto stream = BIWKV_STREAM();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "token_shift_mix_backward_cuda", [&] {
      using A = at::opmath_type<scalar_t>;
      BIWKV_LAUNCH(blocks_for(n), kThreads, stream, grad_x_kernel<scalar_t, A>)(
          g, M, mix.data_ptr<scalar_t>(), grad_out.data_ptr<scalar_t>(), gx.data_ptr<scalar_t>());
      BIWKV_LAUNCH_CHECK();
      BIWKV_LAUNCH(blocks_for(nblk * g.C), kThreads, stream, grad_mix_kernel<scalar_t, A>)(
          g, M, nblk, x.data_ptr<scalar_t>(), grad_out.data_ptr<scalar_t>(), partial.data_ptr<A>());
      BIWKV_LAUNCH_CHECK();
    });
  }
  return {gx, partial.sum(0).to(mix.scalar_type())};
}

}  // namespace tshift
