"""Loads the compiled extension ``mmvrwkv._ext`` (built by setup.py, never at import time),
which registers the kernels ``torch.ops.mmvrwkv.*``. Each op's ``compiled.py`` adds the
fake-tensor and autograd rules of its own kernels."""
from types import ModuleType
from typing import Optional

import torch  # noqa: F401  (the extension links against libtorch: load it first)

_ext: Optional[ModuleType] = None
_load_error: Optional[BaseException] = None
try:  # pragma: no cover - depends on how the package was installed
    from mmvrwkv import _ext  # noqa: F401  (registers torch.ops.mmvrwkv)
except ImportError as e:  # pure-Python install (MMVRWKV_NO_EXT=1) or a failed build
    _load_error = e


def extension() -> Optional[ModuleType]:
    """The loaded extension module, or None."""
    return _ext


def ext_available() -> bool:
    """True when the compiled op (at least its CPU kernel) is loaded."""
    return _ext is not None


def ext_has_cuda() -> bool:
    """True when the compiled op includes the CUDA kernel."""
    return _ext is not None and bool(_ext.with_cuda)


def ext_load_error() -> Optional[BaseException]:
    """Why the extension did not load (None when it did)."""
    return _load_error
