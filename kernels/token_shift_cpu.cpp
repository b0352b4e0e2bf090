// CPU driver of the token-shift-and-mix op: at::parallel_for (torch's thread pool) over blocks
// of kRowsPerBlock tokens (rows of [B * T, C]); inside a row, one run of channels per shift
// group (token_shift_core.h: group_of / group_end), whose source row is fixed, so the inner
// loops over channels are plain unit-stride loops the compiler vectorises. fp32/fp64 storage
// with their own math, fp16/bf16 storage with fp32 math.
// The mix gradient is written as one partial sum per block and summed afterwards in a fixed
// order, so it does not depend on the thread count.
#include <ATen/Parallel.h>

#include <string>
#include <vector>

#include "token_shift.h"

namespace tshift {
namespace {

// Calls fn(row, b, t, c0, c1, group) for every run of equal-group channels of every row, in
// parallel over row blocks; fn also gets the block index.
template <class F> void for_runs(const Geometry& g, F fn) {
  at::parallel_for(0, blocks_of(g), 1, [&](i64 begin, i64 end) {
    for (i64 blk = begin; blk < end; ++blk) {
      const i64 r1 = std::min(g.B * g.T, (blk + 1) * kRowsPerBlock);
      for (i64 row = blk * kRowsPerBlock; row < r1; ++row) {
        for (i64 c0 = 0; c0 < g.C;) {
          const i64 c1 = group_end(g, c0);
          fn(blk, row, row / g.T, row % g.T, c0, c1, group_of(g, c0));
          c0 = c1;
        }
      }
    }
  });
}

// Row of x (or of one [B, T, C] slice of grad_out) that token t of batch item b reads; the
// zero row where the source is outside the grid.
template <class T>
const T* source_row(const Geometry& g, const T* base, const T* zeros, i64 b, i64 t, int group,
                    bool adjoint) {
  const i64 src = source_token(g, group, t, adjoint);
  return src < 0 ? zeros : base + (b * g.T + src) * g.C;
}

template <class T>
void forward_impl(const Geometry& g, i64 M, const T* x, const T* mix, const T* zeros, T* out) {
  using A = at::opmath_type<T>;
  const i64 n = g.B * g.T * g.C;
  for_runs(g, [&](i64, i64 row, i64 b, i64 t, i64 c0, i64 c1, int group) {
    const T* xr = x + row * g.C;
    const T* xs = source_row(g, x, zeros, b, t, group, false);
    for (i64 m = 0; m < M; ++m) {
      const T* w = mix + m * g.C;
      T* o = out + m * n + row * g.C;
      for (i64 c = c0; c < c1; ++c) o[c] = (T)lerp<A>((A)xs[c], (A)xr[c], (A)w[c]);
    }
  });
}

template <class T>
void backward_impl(const Geometry& g, i64 M, const T* x, const T* mix, const T* gout,
                   const T* zeros, T* gx, at::opmath_type<T>* partial) {
  using A = at::opmath_type<T>;
  const i64 n = g.B * g.T * g.C;
  for_runs(g, [&](i64 blk, i64 row, i64 b, i64 t, i64 c0, i64 c1, int group) {
    thread_local std::vector<A> acc;
    if ((i64)acc.size() < g.C) acc.resize(g.C);
    const T* xr = x + row * g.C;
    const T* xs = source_row(g, x, zeros, b, t, group, false);
    for (i64 c = c0; c < c1; ++c) acc[c] = A(0);
    for (i64 m = 0; m < M; ++m) {
      const T* w = mix + m * g.C;
      const T* gm = gout + m * n + row * g.C;
      // grad of the output that reads this token's channels through the shift
      const T* ga = source_row(g, gout + m * n, zeros, b, t, group, true);
      A* pm = partial + (blk * M + m) * g.C;
      for (i64 c = c0; c < c1; ++c) {
        const A wc = (A)w[c], gc = (A)gm[c];
        acc[c] += gc * wc + (A)ga[c] * (A(1) - wc);
        pm[c] += gc * ((A)xr[c] - (A)xs[c]);
      }
    }
    T* gxr = gx + row * g.C;
    for (i64 c = c0; c < c1; ++c) gxr[c] = (T)acc[c];
  });
}

}  // namespace

at::Tensor token_shift_mix_forward_cpu(const at::Tensor& x, const at::Tensor& mix, int64_t H,
                                       int64_t W, c10::string_view shift_mode, int64_t shift_pixel,
                                       int64_t head_size, int64_t quarter) {
  const Geometry g = make_geometry(x, mix, H, W, std::string(shift_mode.data(), shift_mode.size()),
                                   shift_pixel, head_size, quarter, false);
  const i64 M = mix.size(0);
  at::Tensor out = at::empty({M, g.B, g.T, g.C}, x.options());
  if (out.numel() == 0) return out;
  at::Tensor zeros = at::zeros({g.C}, x.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "token_shift_mix_forward_cpu", [&] {
    forward_impl<scalar_t>(g, M, x.data_ptr<scalar_t>(), mix.data_ptr<scalar_t>(),
                           zeros.data_ptr<scalar_t>(), out.data_ptr<scalar_t>());
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> token_shift_mix_backward_cpu(
    const at::Tensor& x, const at::Tensor& mix, const at::Tensor& grad_out, int64_t H, int64_t W,
    c10::string_view shift_mode, int64_t shift_pixel, int64_t head_size, int64_t quarter) {
  const Geometry g = make_geometry(x, mix, H, W, std::string(shift_mode.data(), shift_mode.size()),
                                   shift_pixel, head_size, quarter, false);
  check_grad(grad_out, x, mix);
  const i64 M = mix.size(0);
  at::Tensor gx = at::empty_like(x);
  const auto acc_type = at::toOpMathType(x.scalar_type());
  at::Tensor partial = at::zeros({blocks_of(g), M, g.C}, x.options().dtype(acc_type));
  if (x.numel() > 0) {
    at::Tensor zeros = at::zeros({g.C}, x.options());
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "token_shift_mix_backward_cpu", [&] {
      backward_impl<scalar_t>(g, M, x.data_ptr<scalar_t>(), mix.data_ptr<scalar_t>(),
                              grad_out.data_ptr<scalar_t>(), zeros.data_ptr<scalar_t>(),
                              gx.data_ptr<scalar_t>(), partial.data_ptr<at::opmath_type<scalar_t>>());
    });
  }
  return {gx, partial.sum(0).to(mix.scalar_type())};
}

}  // namespace tshift
