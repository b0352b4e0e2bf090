// CUDA driver of the Bi-WKV6 op: the core (core.h, ScalarOrder) with one thread per work item and
// no communication between threads (no shared memory, no atomics):
//  - forward and gradient of v: the column view in chunks of ~sqrt(T) tokens, one thread per
//    (batch, head, chunk, value channel i): chunk summaries, a carry scan over the chunks
//    (one thread per (b, h, i)), chunk walks. State blocks [N (j)][N (i)] per (b, h, chunk)
//    in global memory, so a warp's accesses to them are coalesced;
//  - gradients of r, k, w, u: one thread per (batch, head, key channel j), the row view, with
//    its row scratch (states, checkpoints every ~sqrt(T) tokens) in global memory.
// Nothing is sized at compile time: any B, T, H, N. fp32/fp16/bf16/fp64 storage, fp32
// (fp64) math. gu is reduced over the batch by a fixed-order sum (deterministic).
// The row pass is parallel over B * H * N only, one pass over T per thread (see README.md
// for why it is not chunked yet). The host side of the entry points is dispatch.h.
// CUDA syntax goes through the macros of common/launch.h, so this file also builds with g++
// as a host emulation for tests (MMVRWKV_HOST_CUDA, cuda_host.cpp).
#include "common/launch.h"

#include "bi_wkv6/dispatch.h"

namespace biwkv6 {
namespace {

// Thread -> (b, h, chunk c, column i), columns fastest; false past the end.
KERNELS_DEVICE bool chunk_column(const Dims& d, i64& b, int& h, int& c, int& i) {
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
KERNELS_DEVICE i64 block_offset(const Dims& d, i64 b, int h, int c) {
  return ((b * d.H + h) * d.nck + c) * d.N * d.N;
}

template <class A, class T>
KERNELS_GLOBAL void summary_kernel(Dims d, const T* q, const T* p, const T* x, const A* dec,
                                   A* EL, A* ER) {
  i64 b;
  int h, c, i;
  if (!chunk_column(d, b, h, c, i)) return;
  const i64 o = block_offset(d, b, h, c);
  column_chunk_summary<A, T>(d, b, h, i, c, q, p, x, dec, EL + o, ER + o);
}

template <class A>
KERNELS_GLOBAL void carry_kernel(Dims d, const A* D, A* EL, A* ER) {
  const i64 idx = (i64)blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= d.B * d.H * d.N) return;
  const int i = (int)(idx % d.N);
  const i64 bh = idx / d.N;
  const i64 o = block_offset(d, bh / d.H, (int)(bh % d.H), 0);
  column_carry<A>(d, bh / d.H, (int)(bh % d.H), i, D, EL + o, ER + o);
}

template <class A, class T>
KERNELS_GLOBAL void walk_kernel(Dims d, const T* q, const T* p, const T* x, const A* dec,
                                const A* u, A* SL, A* SR, A* acc) {
  i64 b;
  int h, c, i;
  if (!chunk_column(d, b, h, c, i)) return;
  const i64 o = block_offset(d, b, h, c);
  column_chunk_walk<A, T>(d, b, h, i, c, q, p, x, dec, u, SL + o, SR + o, acc);
}

template <class A, class T>
KERNELS_GLOBAL void rows_kernel(Dims d, const T* r, const T* k, const T* v, const T* g,
                                const A* dec, const A* ew, const A* u, A* scratch, A* gr, A* gk,
                                A* gw, A* gu) {
  const i64 row = (i64)blockIdx.x * blockDim.x + threadIdx.x;
  if (row >= d.B * d.H * d.N) return;
  const int j = (int)(row % d.N);
  const int h = (int)((row / d.N) % d.H);
  const i64 b = row / ((i64)d.N * d.H);
  gu[row] = row_item<ScalarOrder, A, A>(d, b, h, j, r, k, v, g, dec, ew, u, (const A*)nullptr,
                                        scratch + row * row_scratch_len(d), gr, gk, gw);
}

unsigned int blocks_for(i64 n) { return kernels::grid_for(n, kCudaThreads); }

// acc = the bidirectional column sum for (q, p, x) (y, or the gradient of v), chunked:
// summaries, carries between chunks, walks (core.h, column_chunk_*).
template <class A, class T>
void columns_cuda(const Dims& d, const T* q, const T* p, const T* x, const Decays& dw,
                  const at::Tensor& D, A* acc) {
  auto opt = dw.dec.options();
  auto EL = at::empty({d.B * d.H, d.nck, d.N, d.N}, opt);
  auto ER = at::empty({d.B * d.H, d.nck, d.N, d.N}, opt);
  const A* dec = dw.dec.data_ptr<A>();
  const i64 items = d.B * d.H * d.nck * d.N;
  KERNELS_LAUNCH(blocks_for(items), kCudaThreads, KERNELS_STREAM(), summary_kernel<A, T>)(
      d, q, p, x, dec, EL.data_ptr<A>(), ER.data_ptr<A>());
  KERNELS_LAUNCH_CHECK();
  KERNELS_LAUNCH(blocks_for(d.B * d.H * d.N), kCudaThreads, KERNELS_STREAM(), carry_kernel<A>)(
      d, D.data_ptr<A>(), EL.data_ptr<A>(), ER.data_ptr<A>());
  KERNELS_LAUNCH_CHECK();
  KERNELS_LAUNCH(blocks_for(items), kCudaThreads, KERNELS_STREAM(), walk_kernel<A, T>)(
      d, q, p, x, dec, dw.u.data_ptr<A>(), EL.data_ptr<A>(), ER.data_ptr<A>(), acc);
  KERNELS_LAUNCH_CHECK();
}

}  // namespace

template <> struct Driver<Device::kCuda> : kernels::CudaDriver {
  template <class scalar_t, class A>
  static void forward(const Dims& d, const at::Tensor& r, const at::Tensor& k, const at::Tensor& v,
                      const at::Tensor& w, const at::Tensor& u, at::Tensor& y) {
    if (r.numel() == 0) return;
    const Decays dw = decays(w, u, c10::CppTypeToScalarType<A>::value);
    columns_cuda<A, scalar_t>(d, r.data_ptr<scalar_t>(), k.data_ptr<scalar_t>(),
                              v.data_ptr<scalar_t>(), dw, chunk_decays(dw.dec, d), y.data_ptr<A>());
  }

  template <class scalar_t, class A>
  static void backward(const Dims& d, const at::Tensor& r, const at::Tensor& k, const at::Tensor& v,
                       const at::Tensor& w, const at::Tensor& u, const at::Tensor& gy, GradsA& g) {
    if (r.numel() > 0) {
      const Decays dw = decays(w, u, c10::CppTypeToScalarType<A>::value);
      const scalar_t *rp = r.data_ptr<scalar_t>(), *kp = k.data_ptr<scalar_t>(),
                     *vp = v.data_ptr<scalar_t>(), *gp = gy.data_ptr<scalar_t>();
      const A *dec = dw.dec.data_ptr<A>(), *ew = dw.ew.data_ptr<A>(), *ua = dw.u.data_ptr<A>();
      const i64 items = d.B * d.H * d.N;
      columns_cuda<A, scalar_t>(d, kp, rp, gp, dw, chunk_decays(dw.dec, d), g.gv.data_ptr<A>());
      at::Tensor scratch = at::empty({items, row_scratch_len(d)}, g.gr.options());
      KERNELS_LAUNCH(blocks_for(items), kCudaThreads, KERNELS_STREAM(), rows_kernel<A, scalar_t>)(
          d, rp, kp, vp, gp, dec, ew, ua, scratch.data_ptr<A>(), g.gr.data_ptr<A>(),
          g.gk.data_ptr<A>(), g.gw.data_ptr<A>(), g.gu.data_ptr<A>());
      KERNELS_LAUNCH_CHECK();
    }
  }
};

template struct Op<Device::kCuda>;

}  // namespace biwkv6
