// CUDA driver of the Bi-WKV6 op: the core (bi_wkv6_core.h) with one thread per work item and
// no communication between threads (no shared memory, no atomics):
//  - forward and gradient of v: the column view in chunks of ~sqrt(T) tokens, one thread per
//    (batch, head, chunk, value channel i): chunk summaries, a carry scan over the chunks
//    (one thread per (b, h, i)), chunk walks. State blocks [N (j)][N (i)] per (b, h, chunk)
//    in global memory, so a warp's accesses to them are coalesced;
//  - gradients of r, k, w, u: one thread per (batch, head, key channel j), the row view, with
//    its row scratch (states, checkpoints every ~sqrt(T) tokens) in global memory.
// Nothing is sized at compile time: any B, T, H, N. fp32/fp16/bf16/fp64 storage, fp32
// (fp64) math. gu is reduced over the batch by a fixed-order sum (deterministic).
// The row pass is parallel over B * H * N only, one pass over T per thread (see
// kernels/README.md for why it is not chunked yet).
// CUDA syntax goes through the macros of bi_wkv_cuda_launch.h (shared with the Bi-WKV driver).
#include "bi_wkv_cuda_launch.h"

#include <vector>

#include "bi_wkv6.h"

namespace biwkv6 {

#ifdef BIWKV_HOST_CUDA
using biwkv::blockDim;
using biwkv::blockIdx;
using biwkv::threadIdx;
#endif

namespace {

constexpr int kThreads = 128;

// Thread -> (b, h, chunk c, column i), columns fastest; false past the end.
BIWKV_DEVICE_INLINE bool chunk_column(const Dims& d, i64& b, int& h, int& c, int& i) {
  const i64 idx = (i64)blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= d.B * d.H * d.nck * d.N) return false;
  i = (int)(idx % d.N);
  c = (int)((idx / d.N) % d.nck);
  const i64 bh = idx / ((i64)d.N * d.nck);
  h = (int)(bh % d.H);
  b = bh / d.H;
  return true;
}

// Chunk state block of (b, h, c) in a [B * H][nck][N][N] buffer.
BIWKV_DEVICE_INLINE i64 block_offset(const Dims& d, i64 b, int h, int c) {
  return ((b * d.H + h) * d.nck + c) * d.N * d.N;
}

template <class A, class T>
BIWKV_KERNEL void summary_kernel(Dims d, const T* q, const T* p, const T* x, const A* dec,
                                 A* EL, A* ER) {
  i64 b;
  int h, c, i;
  if (!chunk_column(d, b, h, c, i)) return;
  const i64 o = block_offset(d, b, h, c);
  column_chunk_summary<A, T, 1>(d, b, h, i, c, q, p, x, dec, EL + o, ER + o);
}

template <class A>
BIWKV_KERNEL void carry_kernel(Dims d, const A* D, A* EL, A* ER) {
  const i64 idx = (i64)blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= d.B * d.H * d.N) return;
  const int i = (int)(idx % d.N);
  const i64 bh = idx / d.N;
  const i64 o = block_offset(d, bh / d.H, (int)(bh % d.H), 0);
  column_carry<A, 1>(d, bh / d.H, (int)(bh % d.H), i, D, EL + o, ER + o);
}

template <class A, class T>
BIWKV_KERNEL void walk_kernel(Dims d, const T* q, const T* p, const T* x, const A* dec,
                              const A* u, A* SL, A* SR, A* acc) {
  i64 b;
  int h, c, i;
  if (!chunk_column(d, b, h, c, i)) return;
  const i64 o = block_offset(d, b, h, c);
  column_chunk_walk<A, T, 1>(d, b, h, i, c, q, p, x, dec, u, SL + o, SR + o, acc);
}

template <class A, class T>
BIWKV_KERNEL void rows_kernel(Dims d, const T* r, const T* k, const T* v, const T* g,
                              const A* dec, const A* ew, const A* u, A* scratch, A* gr, A* gk,
                              A* gw, A* gu) {
  const i64 row = (i64)blockIdx.x * blockDim.x + threadIdx.x;
  if (row >= d.B * d.H * d.N) return;
  const int j = (int)(row % d.N);
  const int h = (int)((row / d.N) % d.H);
  const i64 b = row / ((i64)d.N * d.H);
  gu[row] = row_item<A, T>(d, b, h, j, r, k, v, g, dec, ew, u, scratch + row * row_scratch_len(d),
                           gr, gk, gw);
}

unsigned int blocks_for(i64 n) { return (unsigned int)((n + kThreads - 1) / kThreads); }

// acc = the bidirectional column sum for (q, p, x) (y, or the gradient of v), chunked:
// summaries, carries between chunks, walks (bi_wkv6_core.h, column_chunk_*).
template <class A, class T>
void columns_cuda(const Dims& d, const T* q, const T* p, const T* x, const Decays& dw,
                  const at::Tensor& D, A* acc) {
  auto opt = dw.dec.options();
  auto EL = at::empty({d.B * d.H, d.nck, d.N, d.N}, opt);
  auto ER = at::empty({d.B * d.H, d.nck, d.N, d.N}, opt);
  const A* dec = dw.dec.data_ptr<A>();
  const i64 items = d.B * d.H * d.nck * d.N;
  BIWKV_LAUNCH(blocks_for(items), kThreads, BIWKV_STREAM(), summary_kernel<A, T>)(
      d, q, p, x, dec, EL.data_ptr<A>(), ER.data_ptr<A>());
  BIWKV_LAUNCH_CHECK();
  BIWKV_LAUNCH(blocks_for(d.B * d.H * d.N), kThreads, BIWKV_STREAM(), carry_kernel<A>)(
      d, D.data_ptr<A>(), EL.data_ptr<A>(), ER.data_ptr<A>());
  BIWKV_LAUNCH_CHECK();
  BIWKV_LAUNCH(blocks_for(items), kThreads, BIWKV_STREAM(), walk_kernel<A, T>)(
      d, q, p, x, dec, dw.u.data_ptr<A>(), EL.data_ptr<A>(), ER.data_ptr<A>(), acc);
  BIWKV_LAUNCH_CHECK();
}

}  // namespace

at::Tensor bi_wkv6_forward_cuda(const at::Tensor& r, const at::Tensor& k, const at::Tensor& v,
                                const at::Tensor& w, const at::Tensor& u) {
  check_inputs(r, k, v, w, u, biwkv::kInputsOnCuda);
  BIWKV_DEVICE_GUARD(r.device());
  const Dims d = make_dims(r, u);
  at::Tensor y;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, r.scalar_type(), "bi_wkv6_forward_cuda", [&] {
    using A = at::opmath_type<scalar_t>;
    const auto math = c10::CppTypeToScalarType<A>::value;
    auto acc = at::empty(r.sizes(), r.options().dtype(math));
    if (r.numel() > 0) {
      const Decays dw = decays(w, u, math);
      columns_cuda<A, scalar_t>(d, r.data_ptr<scalar_t>(), k.data_ptr<scalar_t>(),
                                v.data_ptr<scalar_t>(), dw, chunk_decays(dw.dec, d),
                                acc.data_ptr<A>());
    }
    y = acc.to(r.scalar_type());
  });
  return y;
}

std::vector<at::Tensor> bi_wkv6_backward_cuda(const at::Tensor& r, const at::Tensor& k,
                                              const at::Tensor& v, const at::Tensor& w,
                                              const at::Tensor& u, const at::Tensor& gy) {
  check_inputs(r, k, v, w, u, biwkv::kInputsOnCuda);
  check_grad(gy, r);
  BIWKV_DEVICE_GUARD(r.device());
  const Dims d = make_dims(r, u);
  std::vector<at::Tensor> out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, r.scalar_type(), "bi_wkv6_backward_cuda", [&] {
    using A = at::opmath_type<scalar_t>;
    const auto math = c10::CppTypeToScalarType<A>::value;
    const auto opt = r.options().dtype(math);
    auto gr = at::empty(r.sizes(), opt);
    auto gk = at::empty(r.sizes(), opt);
    auto gv = at::empty(r.sizes(), opt);
    auto gw = at::empty(r.sizes(), opt);
    auto gu = at::zeros({d.B, d.H, d.N}, opt);
    if (r.numel() > 0) {
      const Decays dw = decays(w, u, math);
      const scalar_t *rp = r.data_ptr<scalar_t>(), *kp = k.data_ptr<scalar_t>(),
                     *vp = v.data_ptr<scalar_t>(), *gp = gy.data_ptr<scalar_t>();
      const A *dec = dw.dec.data_ptr<A>(), *ew = dw.ew.data_ptr<A>(), *ua = dw.u.data_ptr<A>();
      const i64 items = d.B * d.H * d.N;
      columns_cuda<A, scalar_t>(d, kp, rp, gp, dw, chunk_decays(dw.dec, d), gv.data_ptr<A>());
      auto scratch = at::empty({items, row_scratch_len(d)}, opt);
      BIWKV_LAUNCH(blocks_for(items), kThreads, BIWKV_STREAM(), rows_kernel<A, scalar_t>)(
          d, rp, kp, vp, gp, dec, ew, ua, scratch.data_ptr<A>(), gr.data_ptr<A>(),
          gk.data_ptr<A>(), gw.data_ptr<A>(), gu.data_ptr<A>());
      BIWKV_LAUNCH_CHECK();
    }
    out = {gr.to(r.scalar_type()), gk.to(r.scalar_type()), gv.to(r.scalar_type()),
           gw.to(w.scalar_type()), gu.sum(0).to(u.scalar_type())};
  });
  return out;
}

}  // namespace biwkv6
