"""Backend names and the one rule every op package uses to pick its backend.

Every op with compiled kernels (``bi_wkv``, ``bi_wkv6``, ``token_shift_mix``) has the same
backends, :data:`BACKENDS`:

* ``'cuda'`` / ``'cpu'``: its compiled kernels in ``mmvrwkv._ext``;
* ``'torch'``: a portable PyTorch path (tracing, scripting, ONNX export, no extension);
* ``'reference'``: a float64 summation (tests only).

``'auto'`` takes the compiled kernel of the tensors' device when the extension has it, and
``'torch'`` while tracing/scripting/exporting (the exporters record aten ops, not our custom
ops) or without the extension. Under ``torch.compile`` the compiled kernels stay: they are
custom ops with fake implementations.
"""
from typing import Dict, Optional, Tuple

import torch

from ._ext import ext_available, ext_has_cuda, ext_load_error

BACKENDS = ('auto', 'cuda', 'cpu', 'torch', 'reference')
#: Floating-point dtypes every op accepts.
FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def check_float_tensors(op: str, **tensors) -> None:
    """TypeError naming the argument unless every value is a floating-point torch.Tensor of
    one of :data:`FLOAT_DTYPES`."""
    for name, x in tensors.items():
        if not isinstance(x, torch.Tensor):
            raise TypeError(f'{op}: {name} must be a torch.Tensor, got {type(x).__name__}')
        if x.dtype not in FLOAT_DTYPES:
            raise TypeError(f'{op}: {name} must be a floating-point tensor '
                            f'(float16, bfloat16, float32 or float64), got {x.dtype}')


def exporting() -> bool:
    """True inside ``torch.onnx.export`` (the legacy exporter's flag)."""
    onnx = getattr(torch, 'onnx', None)
    return bool(onnx is not None and hasattr(onnx, 'is_in_onnx_export') and onnx.is_in_onnx_export())


def portable_only() -> bool:
    """True while tracing, scripting or exporting, where only the ``'torch'`` paths work."""
    return torch.jit.is_tracing() or torch.jit.is_scripting() or exporting()


def capturing_graph() -> bool:
    """True while tracing, scripting, exporting or compiling: code then runs on stand-in
    tensors for later calls, so data-dependent checks, caches and Python-side choices that the
    graph cannot hold must be skipped."""
    return portable_only() or torch.compiler.is_compiling()


def has_kernels(kernel: str) -> bool:
    """Whether the loaded extension registers ``torch.ops.mmvrwkv.<kernel>`` (an extension
    built before an op was added lacks it)."""
    return ext_available() and hasattr(torch.ops.mmvrwkv, kernel)


def missing_kernels_reason(kernel: str) -> Optional[str]:
    """Why ``torch.ops.mmvrwkv.<kernel>`` is unavailable, or None when it is there."""
    if not ext_available():
        return f'mmvrwkv._ext failed to load: {ext_load_error()}'
    if not hasattr(torch.ops.mmvrwkv, kernel):
        return (f'mmvrwkv._ext predates the {kernel} kernels: rebuild it '
                '(pip install --no-build-isolation -e .)')
    return None


#: op name -> (forward kernel in ``torch.ops.mmvrwkv``, whether the extension has it); filled
#: by each op's ``compiled.py`` (:func:`register_compiled`) when ``mmvrwkv.ops`` is imported.
_COMPILED: Dict[str, Tuple[str, bool]] = {}


def register_compiled(op: str, kernel: str) -> bool:
    """Declare that ``op``'s compiled forward is ``torch.ops.mmvrwkv.<kernel>``; returns
    whether the loaded extension has it (its ``compiled.py`` then adds its rules)."""
    _COMPILED[op] = (kernel, has_kernels(kernel))
    return _COMPILED[op][1]


def _compiled_entry(op: str) -> Tuple[str, bool]:
    if op not in _COMPILED:
        raise ValueError(f'op must be one of {tuple(_COMPILED)}, got {op!r}')
    return _COMPILED[op]


def compiled_available(op: str) -> bool:
    """True when the loaded extension has the compiled kernels of ``op`` (CPU at least)."""
    return _compiled_entry(op)[1]


def available_backends(op: str = 'bi_wkv') -> Tuple[str, ...]:
    """Backends of ``op`` ('bi_wkv', 'bi_wkv6' or 'token_shift_mix') usable in this process,
    best first."""
    compiled = compiled_available(op)
    names = []
    if compiled and ext_has_cuda() and torch.cuda.is_available():
        names.append('cuda')
    if compiled:
        names.append('cpu')
    return tuple(names) + ('torch', 'reference')


def resolve_backend(op: str, backend: str, device: torch.device) -> str:
    """The backend op ``op`` runs for the requested ``backend`` on ``device``.

    Args:
        op: the op's name ('bi_wkv', 'bi_wkv6', 'token_shift_mix'), also for messages.
        backend: one of :data:`BACKENDS`.
        device: the device of the op's tensors.

    Raises:
        ValueError: unknown backend, or a compiled backend for tensors on another device.
        RuntimeError: a compiled backend is requested and not built.
    """
    if backend not in BACKENDS:
        raise ValueError(f'{op}: backend must be one of {BACKENDS}, got {backend!r}')
    kernel = _compiled_entry(op)[0]
    compiled = compiled_available(op)
    with_cuda = compiled and ext_has_cuda()
    if backend == 'auto':
        if portable_only():
            return 'torch'
        if device.type == 'cuda' and with_cuda:
            return 'cuda'
        if device.type == 'cpu' and compiled:
            return 'cpu'
        return 'torch'
    if backend in ('cuda', 'cpu'):
        if not compiled:
            raise RuntimeError(f'{op}: backend {backend!r} needs the compiled extension '
                               f'mmvrwkv._ext with its kernels: '
                               f'{missing_kernels_reason(kernel) or "not loaded"}')
        if backend == 'cuda' and not with_cuda:
            raise RuntimeError(f"{op}: backend 'cuda' requested but mmvrwkv._ext was built "
                               'without CUDA (reinstall with nvcc available, MMVRWKV_WITH_CUDA=1)')
        if device.type != backend:
            raise ValueError(f'{op}: backend {backend!r} needs {backend} tensors, '
                             f'got tensors on {device}')
    return backend
