// The host side of the token-shift entry points, once for both devices: the Geometry (and
// its checks), outputs, the dtype dispatch and the fixed-order reduction of the mix
// gradient's partials; the device's work is Driver<D> (host.h). Included by the drivers only
// (cpu.cpp, cuda.cu), which instantiate Op<D> after defining their Driver<D>.
#pragma once
#include <string>

#include "token_shift/host.h"

namespace tshift {

template <Device D>
at::Tensor Op<D>::forward(const at::Tensor& x, const at::Tensor& mix, int64_t H, int64_t W,
                          c10::string_view shift_mode, int64_t shift_pixel, int64_t head_size,
                          int64_t quarter) {
  using Dev = Driver<D>;
  const Geometry g = make_geometry(x, mix, H, W, std::string(shift_mode.data(), shift_mode.size()),
                                   shift_pixel, head_size, quarter, Dev::kOnCuda);
  const typename Dev::Guard guard(x.device());
  const i64 M = mix.size(0);
  at::Tensor out = kernels::poison(at::empty({M, g.B, g.T, g.C}, x.options()));
  if (out.numel() == 0) return out;
  constexpr const char* kDispatch = D == Device::kCpu ? "token_shift_mix_forward_cpu"
                                                  : "token_shift_mix_forward_cuda";  // names dtype errors
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), kDispatch, [&] {
    Dev::template forward<scalar_t>(g, M, x, mix, out);
  });
  return out;
}

template <Device D>
std::tuple<at::Tensor, at::Tensor> Op<D>::backward(
    const at::Tensor& x, const at::Tensor& mix, const at::Tensor& grad_out, int64_t H, int64_t W,
    c10::string_view shift_mode, int64_t shift_pixel, int64_t head_size, int64_t quarter) {
  using Dev = Driver<D>;
  const Geometry g = make_geometry(x, mix, H, W, std::string(shift_mode.data(), shift_mode.size()),
                                   shift_pixel, head_size, quarter, Dev::kOnCuda);
  check_grad(grad_out, x, mix);
  const typename Dev::Guard guard(x.device());
  const i64 M = mix.size(0);
  at::Tensor gx = kernels::empty_output_like(x);
  at::Tensor partial = Dev::partial_buffer(
      blocks_of(g), M, g.C, x.options().dtype(at::toOpMathType(x.scalar_type())));
  if (x.numel() > 0) {
    constexpr const char* kDispatch = D == Device::kCpu ? "token_shift_mix_backward_cpu"
                                                  : "token_shift_mix_backward_cuda";  // names dtype errors
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), kDispatch, [&] {
      Dev::template backward<scalar_t>(g, M, x, mix, grad_out, gx, partial);
    });
  }
  return {gx, partial.sum(0).to(mix.scalar_type())};
}

}  // namespace tshift
