// CPU driver of the token-shift-and-mix op: at::parallel_for (torch's thread pool) over blocks
// of kRowsPerBlock tokens (rows of [B * T, C]). The channels of a row split into runs of one
// shift group each (core.h: group_of / group_end), the same runs for every row, so
// they are listed once per call; a row then finds its grid cell once and each run's source
// row with a few compares (source_token_at), and the work is plain unit-stride loops over the
// channels of a run that the compiler vectorises (lerp selects between its two branches).
// fp32/fp64 storage with their own math, fp16/bf16 storage with fp32 math.
// The mix gradient is written as one partial sum per block and summed afterwards in a fixed
// order, so it does not depend on the thread count.
#include <ATen/Parallel.h>

#include <algorithm>
#include <string>
#include <vector>

#include "token_shift/dispatch.h"

namespace tshift {
namespace {

// Channels [c0, c1) of one shift group.
struct Run {
  i64 c0, c1;
  int group;
};

std::vector<Run> runs_of(const Geometry& g) {
  std::vector<Run> runs;
  for (i64 c0 = 0; c0 < g.C;) {
    const i64 c1 = group_end(g, c0);
    runs.push_back(Run{c0, c1, group_of(g, c0)});
    c0 = c1;
  }
  return runs;
}

// Calls fn(blk, row, b, t, h, w) for every row, in parallel over row blocks (blk: the block
// index; (h, w): the token's grid cell, (0, 0) outside q_shift modes).
template <class F> void for_rows(const Geometry& g, F fn) {
  at::parallel_for(0, blocks_of(g), 1, [&](i64 begin, i64 end) {
    for (i64 blk = begin; blk < end; ++blk) {
      const i64 r0 = blk * kRowsPerBlock, r1 = std::min(g.B * g.T, r0 + kRowsPerBlock);
      for (i64 row = r0; row < r1; ++row) {
        const i64 b = row / g.T, t = row % g.T;
        const bool grid = g.mode == kQuad;
        fn(blk, row, b, t, grid ? t / g.W : 0, grid ? t % g.W : 0);
      }
    }
  });
}

// Row of x (or of one [B, T, C] slice of grad_out) that token t of batch item b reads through
// a run's group (adjoint: the row that reads token t); the zero row outside the grid.
template <class T>
const T* source_row(const Geometry& g, const T* base, const T* zeros, i64 b, i64 t, i64 h, i64 w,
                    int group, bool adjoint) {
  const i64 src = source_token_at(g, group, t, h, w, adjoint);
  return src < 0 ? zeros : base + (b * g.T + src) * g.C;
}

template <class T>
void forward_impl(const Geometry& g, i64 M, const T* x, const T* mix, const T* zeros, T* out) {
  using A = at::opmath_type<T>;
  const i64 n = g.B * g.T * g.C;
  const std::vector<Run> runs = runs_of(g);
  for_rows(g, [&](i64, i64 row, i64 b, i64 t, i64 h, i64 w) {
    const T* xr = x + row * g.C;
    for (const Run& run : runs) {
      const T* xs = source_row(g, x, zeros, b, t, h, w, run.group, false);
      for (i64 m = 0; m < M; ++m) {
        const T* mw = mix + m * g.C;
        T* o = out + m * n + row * g.C;
        for (i64 c = run.c0; c < run.c1; ++c) o[c] = (T)lerp<A>((A)xs[c], (A)xr[c], (A)mw[c]);
      }
    }
  });
}

template <class T>
void backward_impl(const Geometry& g, i64 M, const T* x, const T* mix, const T* gout,
                   const T* zeros, T* gx, at::opmath_type<T>* partial) {
  using A = at::opmath_type<T>;
  const i64 n = g.B * g.T * g.C;
  const std::vector<Run> runs = runs_of(g);
  for_rows(g, [&](i64 blk, i64 row, i64 b, i64 t, i64 h, i64 w) {
    const T* xr = x + row * g.C;
    T* gxr = gx + row * g.C;
    for (const Run& run : runs) {
      const T* xs = source_row(g, x, zeros, b, t, h, w, run.group, false);
      // the token whose output reads this token's channels through the shift
      const i64 dst = source_token_at(g, run.group, t, h, w, true);
      for (i64 c0 = run.c0; c0 < run.c1; c0 += kCpuTile) {
        const i64 len = std::min(kCpuTile, run.c1 - c0);
        A acc[kCpuTile];
        for (i64 i = 0; i < len; ++i) acc[i] = A(0);
        for (i64 m = 0; m < M; ++m) {
          const T* mw = mix + m * g.C + c0;
          const T* gm = gout + m * n + row * g.C + c0;
          const T* ga = dst < 0 ? zeros + c0 : gout + m * n + (b * g.T + dst) * g.C + c0;
          const T* xc = xr + c0;
          const T* sc = xs + c0;
          A* pm = partial + (blk * M + m) * g.C + c0;
          for (i64 i = 0; i < len; ++i) {
            const A wc = (A)mw[i], gc = (A)gm[i];
            acc[i] += gc * wc + (A)ga[i] * (A(1) - wc);
            pm[i] += gc * ((A)xc[i] - (A)sc[i]);
          }
        }
        for (i64 i = 0; i < len; ++i) gxr[c0 + i] = (T)acc[i];
      }
    }
  });
}

}  // namespace

template <> struct Driver<Device::kCpu> : kernels::CpuDriver {
  template <class T>
  static void forward(const Geometry& g, i64 M, const at::Tensor& x, const at::Tensor& mix,
                      at::Tensor& out) {
    at::Tensor zeros = at::zeros({g.C}, x.options());
    forward_impl<T>(g, M, x.data_ptr<T>(), mix.data_ptr<T>(), zeros.data_ptr<T>(), out.data_ptr<T>());
  }

  // Zero-filled: every row block adds into its partials.
  static at::Tensor partial_buffer(i64 blocks, i64 M, i64 C, const at::TensorOptions& opt) {
    return at::zeros({blocks, M, C}, opt);
  }

  template <class T>
  static void backward(const Geometry& g, i64 M, const at::Tensor& x, const at::Tensor& mix,
                       const at::Tensor& grad_out, at::Tensor& gx, at::Tensor& partial) {
    at::Tensor zeros = at::zeros({g.C}, x.options());
    backward_impl<T>(g, M, x.data_ptr<T>(), mix.data_ptr<T>(), grad_out.data_ptr<T>(),
                     zeros.data_ptr<T>(), gx.data_ptr<T>(), partial.data_ptr<at::opmath_type<T>>());
  }
};

template struct Op<Device::kCpu>;

}  // namespace tshift
