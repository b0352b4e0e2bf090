// Host-side code shared by the token-shift bindings and the CPU / CUDA drivers: the input
// checks every entry point runs (the Python front, mmvrwkv/ops/token_shift, checks first with
// friendlier messages; these keep direct torch.ops callers away from bad pointers), the
// Geometry of a call and the entry points Op<D>.
#pragma once
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/sum.h>
#include <ATen/ops/zeros.h>
#include <c10/util/Exception.h>

#include <string>
#include <tuple>

#include "common/host.h"
#include "token_shift/core.h"
#include "token_shift/params.h"

namespace tshift {

using kernels::Device;

// Token blocks of the mix gradient's partial sums (params.h, kRowsPerBlock).
inline i64 blocks_of(const Geometry& g) { return (g.B * g.T + kRowsPerBlock - 1) / kRowsPerBlock; }

// Mode of a Python shift_mode name.
inline int mode_of(const std::string& shift_mode) {
  if (shift_mode == "q_shift" || shift_mode == "q_shift_multihead") return kQuad;
  if (shift_mode == "token_shift") return kPrev;
  if (shift_mode == "none") return kNone;
  TORCH_CHECK(false, "token_shift_mix: unknown shift_mode '", shift_mode,
              "' (q_shift, q_shift_multihead, token_shift or none)");
  return kNone;
}

inline Geometry make_geometry(const at::Tensor& x, const at::Tensor& mix, int64_t H, int64_t W,
                              const std::string& shift_mode, int64_t shift_pixel,
                              int64_t head_size, int64_t quarter, bool cuda) {
  TORCH_CHECK(x.dim() == 3, "token_shift_mix: x must be [B, T, C], got ", x.sizes());
  TORCH_CHECK(at::isFloatingType(x.scalar_type()), "token_shift_mix: x must be floating point");
  TORCH_CHECK(mix.dim() == 2 && mix.size(1) == x.size(2) && mix.size(0) >= 1,
              "token_shift_mix: mix must be [M, C] with M >= 1 and C = ", x.size(2), ", got ",
              mix.sizes());
  TORCH_CHECK(mix.scalar_type() == x.scalar_type(), "token_shift_mix: mix must have x's dtype");
  TORCH_CHECK(x.is_contiguous() && mix.is_contiguous(),
              "token_shift_mix: x and mix must be contiguous");
  TORCH_CHECK(mix.device() == x.device(), "token_shift_mix: mix must be on x's device ", x.device());
  TORCH_CHECK(x.is_cuda() == cuda, "token_shift_mix: wrong device for this kernel");
  TORCH_CHECK(shift_pixel >= 0, "token_shift_mix: shift_pixel must be >= 0, got ", shift_pixel);
  Geometry g;
  g.B = x.size(0);
  g.T = x.size(1);
  g.C = x.size(2);
  g.mode = mode_of(shift_mode);
  g.s = shift_pixel;
  g.H = H;
  g.W = W;
  g.head_size = head_size;
  g.quarter = quarter;
  if (g.mode == kQuad) {
    TORCH_CHECK(H >= 1 && W >= 1 && H * W == g.T, "token_shift_mix: grid ", H, " x ", W,
                " does not match T = ", g.T);
    TORCH_CHECK(head_size >= 1 && g.C % head_size == 0, "token_shift_mix: head_size ", head_size,
                " must divide C = ", g.C);
    TORCH_CHECK(quarter >= 0 && 4 * quarter <= head_size, "token_shift_mix: quarter ", quarter,
                " must be in [0, head_size / 4]");
    if (quarter == 0) g.mode = kNone;  // no channel moves
  }
  return g;
}

inline void check_grad(const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& mix) {
  TORCH_CHECK(grad_out.dim() == 4 && grad_out.size(0) == mix.size(0) && grad_out.size(1) == x.size(0) &&
                  grad_out.size(2) == x.size(1) && grad_out.size(3) == x.size(2) &&
                  grad_out.scalar_type() == x.scalar_type() && grad_out.device() == x.device() &&
                  grad_out.is_contiguous(),
              "token_shift_mix: grad_out must be a contiguous [M, B, T, C] tensor of x's dtype and device");
}

// What a driver provides (cpu.cpp: Driver<Device::kCpu>, cuda.cu: Driver<Device::kCuda>):
//   Guard, kOnCuda               from kernels::CpuDriver / kernels::CudaDriver
//   forward<T>(g, M, x, mix, out)                   out [M, B, T, C]
//   partial_buffer(blocks, M, C, opt)               the mix gradient's partials [blocks, M, C]
//   backward<T>(g, M, x, mix, grad_out, gx, partial)
template <Device D> struct Driver;

// The entry points torch.ops.mmvrwkv.token_shift_mix_forward / _backward of device D
// (defined once for both devices in dispatch.h, instantiated by each driver).
template <Device D> struct Op {
  static at::Tensor forward(const at::Tensor& x, const at::Tensor& mix, int64_t H, int64_t W,
                            c10::string_view shift_mode, int64_t shift_pixel, int64_t head_size,
                            int64_t quarter);
  static std::tuple<at::Tensor, at::Tensor> backward(
      const at::Tensor& x, const at::Tensor& mix, const at::Tensor& grad_out, int64_t H, int64_t W,
      c10::string_view shift_mode, int64_t shift_pixel, int64_t head_size, int64_t quarter);
};

}  // namespace tshift
