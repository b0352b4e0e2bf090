// CPU driver of the Bi-WKV6 op (core: bi_wkv6_core.h). at::parallel_for (torch's thread pool)
// over work items: the forward over (batch, head, block of kColumns value channels), the
// backward over the same column blocks (gradient of v) and then over (batch, head, key
// channel) rows (gradients of r, k, w, u). Inner loops run over contiguous value channels.
// Math in A = opmath of the storage type (float for fp32/fp16/bf16, double for fp64).
#include <ATen/Parallel.h>

#include "bi_wkv6.h"

namespace biwkv6 {
namespace {

// Value channels per CPU column item (a few vector registers of fp32); the N % kColumns
// channels after the last full block are single-column items.
constexpr int kColumns = 16;

// acc = the bidirectional sum of column_item for (q, p, x), over every (b, h, column item).
template <class A, class T>
void columns_cpu(const Dims& d, const T* q, const T* p, const T* x, const A* dec, const A* u,
                 A* state, A* acc) {
  const int full = d.N / kColumns;
  const int per_head = full + d.N % kColumns;  // items per (b, h)
  at::parallel_for(0, d.B * d.H * per_head, 1, [&](i64 begin, i64 end) {
    for (i64 item = begin; item < end; ++item) {
      const int n = (int)(item % per_head);
      const i64 bh = item / per_head;
      const int h = (int)(bh % d.H);
      const i64 b = bh / d.H;
      A* S = state + bh * d.N * d.N;
      if (n < full)
        column_item<A, T, kColumns>(d, b, h, n * kColumns, q, p, x, dec, u, S, acc);
      else
        column_item<A, T, 1>(d, b, h, full * kColumns + (n - full), q, p, x, dec, u, S, acc);
    }
  });
}

}  // namespace

at::Tensor bi_wkv6_forward_cpu(const at::Tensor& r, const at::Tensor& k, const at::Tensor& v,
                               const at::Tensor& w, const at::Tensor& u) {
  check_inputs(r, k, v, w, u, false);
  const Dims d = make_dims(r, u);
  at::Tensor y;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, r.scalar_type(), "bi_wkv6_forward_cpu", [&] {
    using A = at::opmath_type<scalar_t>;
    const auto math = c10::CppTypeToScalarType<A>::value;
    const Decays dw = decays(w, u, math);
    auto acc = at::empty(r.sizes(), r.options().dtype(math));
    auto state = at::empty({d.B * d.H, d.N, d.N}, r.options().dtype(math));
    columns_cpu<A, scalar_t>(d, r.data_ptr<scalar_t>(), k.data_ptr<scalar_t>(), v.data_ptr<scalar_t>(),
                             dw.dec.data_ptr<A>(), dw.u.data_ptr<A>(), state.data_ptr<A>(),
                             acc.data_ptr<A>());
    y = acc.to(r.scalar_type());
  });
  return y;
}

std::vector<at::Tensor> bi_wkv6_backward_cpu(const at::Tensor& r, const at::Tensor& k,
                                             const at::Tensor& v, const at::Tensor& w,
                                             const at::Tensor& u, const at::Tensor& gy) {
  check_inputs(r, k, v, w, u, false);
  check_grad(gy, r);
  const Dims d = make_dims(r, u);
  std::vector<at::Tensor> out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, r.scalar_type(), "bi_wkv6_backward_cpu", [&] {
    using A = at::opmath_type<scalar_t>;
    const auto math = c10::CppTypeToScalarType<A>::value;
    const auto opt = r.options().dtype(math);
    const Decays dw = decays(w, u, math);
    const scalar_t *rp = r.data_ptr<scalar_t>(), *kp = k.data_ptr<scalar_t>(),
                   *vp = v.data_ptr<scalar_t>(), *gp = gy.data_ptr<scalar_t>();
    const A *dec = dw.dec.data_ptr<A>(), *ew = dw.ew.data_ptr<A>(), *ua = dw.u.data_ptr<A>();
    // gradient of v: the column view with (q, p, x) = (k, r, grad_y)
    auto gv = at::empty(r.sizes(), opt);
    auto state = at::empty({d.B * d.H, d.N, d.N}, opt);
    columns_cpu<A, scalar_t>(d, kp, rp, gp, dec, ua, state.data_ptr<A>(), gv.data_ptr<A>());
    // gradients of r, k, w and the per-(batch, row) parts of u's
    auto gr = at::empty(r.sizes(), opt);
    auto gk = at::empty(r.sizes(), opt);
    auto gw = at::empty(r.sizes(), opt);
    auto gu = at::empty({d.B, d.H, d.N}, opt);
    A *grp = gr.data_ptr<A>(), *gkp = gk.data_ptr<A>(), *gwp = gw.data_ptr<A>(), *gup = gu.data_ptr<A>();
    const i64 scratch_len = row_scratch_len(d);
    at::parallel_for(0, d.B * d.H * d.N, 1, [&](i64 begin, i64 end) {
      std::vector<A> scratch(scratch_len);  // one row's scratch, reused by the rows of this range
      for (i64 row = begin; row < end; ++row) {
        const int j = (int)(row % d.N);
        const int h = (int)((row / d.N) % d.H);
        const i64 b = row / ((i64)d.N * d.H);
        gup[row] = row_item<A, scalar_t>(d, b, h, j, rp, kp, vp, gp, dec, ew, ua, scratch.data(),
                                         grp, gkp, gwp);
      }
    });
    out = {gr.to(r.scalar_type()), gk.to(r.scalar_type()), gv.to(r.scalar_type()),
           gw.to(w.scalar_type()), gu.sum(0).to(u.scalar_type())};
  });
  return out;
}

}  // namespace biwkv6
