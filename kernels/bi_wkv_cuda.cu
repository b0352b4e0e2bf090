// CUDA driver of the Bi-WKV op: one thread per (batch, chunk, channel), channels fastest so
// every load of k, v, g and every store is coalesced. The chunk count grows with T
// (chunk_len <= kCudaMaxChunk tokens), so a single image at T = 16384 still launches
// 16384 / chunk_len * C threads. All arithmetic is in bi_wkv_core.h (the CPU kernel's general
// path runs the same functions). fp32/fp16/bf16/fp64 storage, fp32 (fp64) math.
// gw/gu are written as per-(batch, chunk) partials and summed by a fixed-order reduction,
// so they are deterministic. The kernels use no shared memory and their threads never
// communicate.
// CUDA-only syntax goes through the macros of bi_wkv_cuda_launch.h, so this file also builds
// with g++ as a host emulation for tests (BIWKV_HOST_CUDA); CUDA builds see the CUDA syntax.
// Only c10/cuda headers (there): ATen/cuda/CUDAContext.h pulls in cuSPARSE/cuBLAS headers,
// which a bare CUDA toolkit (nvcc + cudart, as on CI) does not have.
#include "bi_wkv_cuda_launch.h"

#include <vector>

#include "bi_wkv.h"

namespace biwkv {
namespace {

constexpr int kThreads = 256;

struct Index {
  i64 b, c;
  int j;
};

// Thread -> work item (batch b, chunk j, channel c), channels fastest; false past the end.
BIWKV_DEVICE_INLINE bool chunk_item(const Dims& d, Index& ix) {
  i64 idx = (i64)blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= d.B * d.nch * d.C) return false;
  ix.c = idx % d.C;
  i64 bj = idx / d.C;
  ix.j = (int)(bj % d.nch);
  ix.b = bj / d.nch;
  return true;
}

// Thread -> (batch b, channel c) column of the carry scan.
BIWKV_DEVICE_INLINE bool column_item(const Dims& d, Index& ix) {
  i64 idx = (i64)blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= d.B * d.C) return false;
  ix.c = idx % d.C;
  ix.b = idx / d.C;
  ix.j = 0;
  return true;
}

template <bool DW, int F, class T, class A>
BIWKV_KERNEL void summary_kernel(Dims d, const T* k, const T* v, const A* w, A* carry) {
  Index ix;
  if (chunk_item(d, ix)) item_summary<DW, F, A>(d, k, v, w, carry, ix.b, ix.j, ix.c, 1);
}

template <bool DW, int F, class A>
BIWKV_KERNEL void carry_kernel(Dims d, const A* w, A* carry, bool left_dir, bool right_dir) {
  Index ix;
  if (column_item(d, ix)) item_carry<DW, F, A>(d, w, carry, ix.b, ix.c, 1, left_dir, right_dir);
}

template <class T, class A>
BIWKV_KERNEL void forward_kernel(Dims d, const T* k, const T* v, T* y, const A* w, const A* u, A* carry) {
  Index ix;
  State<A> buf[kCudaMaxChunk];
  if (chunk_item(d, ix)) item_forward<kFieldsPlain, A>(d, k, v, y, w, u, carry, ix.b, ix.j, ix.c, 1, buf);
}

template <class T, class A>
BIWKV_KERNEL void backward_stats_kernel(Dims d, const T* k, const T* v, const T* g, const A* w,
                                        const A* u, A* carry, A* pcarry, A* gwp, A* gup) {
  Index ix;
  State<A> buf[kCudaMaxChunk];
  if (chunk_item(d, ix))
    item_backward_stats<A>(d, k, v, g, w, u, carry, pcarry, gwp, gup, ix.b, ix.j, ix.c, 1, buf);
}

template <class T, class A>
BIWKV_KERNEL void backward_kv_kernel(Dims d, const T* k, const T* v, const T* g, T* gk, T* gv,
                                     const A* w, const A* u, A* carry, A* pcarry) {
  Index ix;
  State<A> buf[2 * kCudaMaxChunk];
  if (chunk_item(d, ix))
    item_backward_kv<A>(d, k, v, g, gk, gv, w, u, carry, pcarry, ix.b, ix.j, ix.c, 1, buf);
}

unsigned int blocks_for(i64 n) { return (unsigned int)((n + kThreads - 1) / kThreads); }

Dims cuda_dims(const at::Tensor& k, int64_t chunk_len, bool causal) {
  TORCH_CHECK(chunk_len <= kCudaMaxChunk, "bi_wkv (cuda): chunk_len must be <= ", kCudaMaxChunk,
              ", got ", chunk_len);
  Dims d = make_dims(k, chunk_len, causal);
  TORCH_CHECK(d.B * d.nch * d.C / kThreads < (i64)0x7fffffff, "bi_wkv (cuda): input too large");
  return d;
}

}  // namespace

at::Tensor bi_wkv_forward_cuda(const at::Tensor& w, const at::Tensor& u, const at::Tensor& k,
                               const at::Tensor& v, int64_t chunk_len, bool causal) {
  check_inputs(w, u, k, v, chunk_len, kInputsOnCuda);
  BIWKV_DEVICE_GUARD(k.device());
  Dims d = cuda_dims(k, chunk_len, causal);
  auto y = empty_output_like(k);
  if (k.numel() == 0) return y;
  auto stream = BIWKV_STREAM();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, k.scalar_type(), "bi_wkv_forward_cuda", [&] {
    using A = at::opmath_type<scalar_t>;
    auto opt = k.options().dtype(c10::CppTypeToScalarType<A>::value);
    auto wa = w.to(opt.dtype()).contiguous();
    auto ua = u.to(opt.dtype()).contiguous();
    auto carry = carry_buffer(d, kFieldsPlain, opt);
    const scalar_t* kp = k.data_ptr<scalar_t>();
    const scalar_t* vp = v.data_ptr<scalar_t>();
    const i64 items = d.B * d.nch * d.C;
    BIWKV_LAUNCH(blocks_for(items), kThreads, stream, summary_kernel<false, kFieldsPlain, scalar_t, A>)(
        d, kp, vp, wa.data_ptr<A>(), carry.data_ptr<A>());
    BIWKV_LAUNCH_CHECK();
    BIWKV_LAUNCH(blocks_for(d.B * d.C), kThreads, stream, carry_kernel<false, kFieldsPlain, A>)(
        d, wa.data_ptr<A>(), carry.data_ptr<A>(), true, !causal);
    BIWKV_LAUNCH_CHECK();
    BIWKV_LAUNCH(blocks_for(items), kThreads, stream, forward_kernel<scalar_t, A>)(
        d, kp, vp, y.data_ptr<scalar_t>(), wa.data_ptr<A>(), ua.data_ptr<A>(), carry.data_ptr<A>());
    BIWKV_LAUNCH_CHECK();
  });
  return y;
}

std::vector<at::Tensor> bi_wkv_backward_cuda(const at::Tensor& w, const at::Tensor& u,
                                             const at::Tensor& k, const at::Tensor& v,
                                             const at::Tensor& gy, int64_t chunk_len, bool causal) {
  check_inputs(w, u, k, v, chunk_len, kInputsOnCuda);
  check_grad(gy, k);
  BIWKV_DEVICE_GUARD(k.device());
  Dims d = cuda_dims(k, chunk_len, causal);
  auto gk = empty_output_like(k);
  auto gv = empty_output_like(v);
  at::Tensor gw, gu;
  auto stream = BIWKV_STREAM();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, k.scalar_type(), "bi_wkv_backward_cuda", [&] {
    using A = at::opmath_type<scalar_t>;
    auto opt = k.options().dtype(c10::CppTypeToScalarType<A>::value);
    auto wa = w.to(opt.dtype()).contiguous();
    auto ua = u.to(opt.dtype()).contiguous();
    auto gwp = partial_sums(d, opt);
    auto gup = partial_sums(d, opt);
    if (k.numel() > 0) {
      auto g = gy.contiguous();
      auto carry = carry_buffer(d, kFieldsDW, opt);
      auto pcarry = carry_buffer(d, kFieldsPlain, opt);
      const scalar_t* kp = k.data_ptr<scalar_t>();
      const scalar_t* vp = v.data_ptr<scalar_t>();
      const scalar_t* gp = g.data_ptr<scalar_t>();
      const A* wp = wa.data_ptr<A>();
      const A* up = ua.data_ptr<A>();
      const i64 items = d.B * d.nch * d.C;
      BIWKV_LAUNCH(blocks_for(items), kThreads, stream, summary_kernel<true, kFieldsDW, scalar_t, A>)(
          d, kp, vp, wp, carry.data_ptr<A>());
      BIWKV_LAUNCH_CHECK();
      BIWKV_LAUNCH(blocks_for(d.B * d.C), kThreads, stream, carry_kernel<true, kFieldsDW, A>)(
          d, wp, carry.data_ptr<A>(), true, !causal);
      BIWKV_LAUNCH_CHECK();
      BIWKV_LAUNCH(blocks_for(items), kThreads, stream, backward_stats_kernel<scalar_t, A>)(
          d, kp, vp, gp, wp, up, carry.data_ptr<A>(), pcarry.data_ptr<A>(), gwp.data_ptr<A>(),
          gup.data_ptr<A>());
      BIWKV_LAUNCH_CHECK();
      BIWKV_LAUNCH(blocks_for(d.B * d.C), kThreads, stream, carry_kernel<false, kFieldsPlain, A>)(
          d, wp, pcarry.data_ptr<A>(), !causal, true);
      BIWKV_LAUNCH_CHECK();
      BIWKV_LAUNCH(blocks_for(items), kThreads, stream, backward_kv_kernel<scalar_t, A>)(
          d, kp, vp, gp, gk.data_ptr<scalar_t>(), gv.data_ptr<scalar_t>(), wp, up,
          carry.data_ptr<A>(), pcarry.data_ptr<A>());
      BIWKV_LAUNCH_CHECK();
    }
    gw = gwp.sum({0, 1}).to(w.scalar_type());
    gu = gup.sum({0, 1}).to(u.scalar_type());
  });
  return {gw, gu, gk, gv};
}

}  // namespace biwkv
