"""Build and install mmvrwkv.

The compiled ops (Bi-WKV, Bi-WKV6, token shift; sources in kernels/, see kernels/README.md)
are built ahead of time into ``mmvrwkv._ext`` (no JIT at import):

* the CPU kernels always;
* the CUDA kernels when torch is a CUDA build and nvcc is found, also without a GPU (CI
  compiles them). Switches: ``MMVRWKV_WITH_CUDA=1`` forces them (fails without nvcc),
  ``MMVRWKV_WITH_CUDA=0`` skips them. GPU architectures, first match wins:

  1. ``TORCH_CUDA_ARCH_LIST`` when set (e.g. ``"8.0;9.0+PTX"``);
  2. ``MMVRWKV_ALL_ARCHS=1``: the common GPUs the installed nvcc supports (Turing .. Hopper,
     Blackwell with nvcc >= 12.8, Volta with nvcc < 13) plus PTX of the newest one, for
     binaries that travel (wheels);
  3. a GPU is visible: the architectures of the visible GPUs, plus PTX;
  4. no GPU visible: the oldest architecture of that list plus its PTX (one SASS target, so
     CI still proves the kernel compiles, and the PTX runs on every newer GPU).

  nvcc compiles the targets in parallel (``--threads``, one per target up to the CPU count;
  ``MMVRWKV_NVCC_THREADS`` overrides). With ninja installed (requirements/build.txt) the
  source files compile in parallel too (``MAX_JOBS`` limits the jobs).
* ``MMVRWKV_CPU_NATIVE=0`` builds the CPU kernels for the generic x86-64/aarch64 target instead
  of the build machine's own instruction set (``-march=native``, the default).

``MMVRWKV_NO_EXT=1`` installs the pure-Python package only (the ``torch`` backend still works).
The test-only host builds of the CUDA drivers (kernels/<op>/cuda_host.cpp) are not built here;
the kernel tests in tests/ops build them on demand.
"""
import os
import platform
import re
import shutil
import subprocess
import sys

from setuptools import find_packages, setup

ROOT = os.path.dirname(os.path.abspath(__file__))


def read_version() -> str:
    with open(os.path.join(ROOT, 'mmvrwkv', 'version.py')) as f:
        return re.search(r"__version__ = '([^']+)'", f.read()).group(1)


def read_requirements(name: str) -> list:
    reqs = []
    with open(os.path.join(ROOT, 'requirements', name)) as f:
        for line in f:
            line = line.split('#')[0].strip()
            if line and not line.startswith('-'):
                reqs.append(line)
    return reqs


def nvcc_version(cuda_home):
    try:
        out = subprocess.check_output([os.path.join(cuda_home, 'bin', 'nvcc'), '--version'], text=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    m = re.search(r'release (\d+)\.(\d+)', out)
    return (int(m.group(1)), int(m.group(2))) if m else None


def common_archs(version) -> list:
    """Common GPUs (Turing .. Hopper, Blackwell where nvcc knows it), oldest first."""
    archs = ['7.5', '8.0', '8.6', '8.9', '9.0']
    if version < (13, 0):
        archs.insert(0, '7.0')  # Volta; CUDA 13 dropped it
    if version >= (12, 8):
        archs += ['10.0', '12.0']
    return archs


def with_ptx(archs) -> str:
    """TORCH_CUDA_ARCH_LIST for SASS of every arch and PTX of the newest."""
    return ';'.join(archs[:-1] + [archs[-1] + '+PTX'])


def default_arch_list(version) -> str:
    """The full list (MMVRWKV_ALL_ARCHS=1): common GPUs + PTX for newer ones."""
    return with_ptx(common_archs(version))


def visible_gpu_archs(newest: str) -> list:
    """Architectures of the visible GPUs ('9.0', ...), capped at `newest` (the PTX of an older
    arch runs on a GPU this nvcc cannot target); [] when none is visible."""
    import torch
    try:
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # noqa: BLE001 - a broken driver means no usable GPU for the build
        n = 0

    def key(a):
        return tuple(int(x) for x in a.split('.'))

    archs = set()
    for i in range(n):
        major, minor = torch.cuda.get_device_capability(i)
        a = f'{major}.{minor}'
        archs.add(a if key(a) <= key(newest) else newest)
    return sorted(archs, key=key)


def cuda_arch_list(version):
    """(TORCH_CUDA_ARCH_LIST, why) for the CUDA kernel; see the module docstring."""
    if os.environ.get('TORCH_CUDA_ARCH_LIST'):
        return os.environ['TORCH_CUDA_ARCH_LIST'], 'from TORCH_CUDA_ARCH_LIST'
    archs = common_archs(version)
    if os.environ.get('MMVRWKV_ALL_ARCHS', '0') == '1':
        return with_ptx(archs), 'MMVRWKV_ALL_ARCHS=1'
    visible = visible_gpu_archs(archs[-1])
    if visible:
        return with_ptx(visible), 'the visible GPUs; MMVRWKV_ALL_ARCHS=1 builds for all common GPUs'
    # No GPU: one SASS target plus PTX. The oldest supported arch, because (a) its PTX is
    # JIT-compiled by the driver for every newer GPU, so the binary still runs on any GPU the
    # full list covers (the first launch on another arch pays a one-time JIT compile, cached
    # by the driver), and (b) compiling SASS for the oldest arch is where a use of newer-arch
    # features would fail, so CI proves the kernel builds for the whole supported range.
    return with_ptx(archs[:1]), 'no GPU visible; MMVRWKV_ALL_ARCHS=1 builds for all common GPUs'


def nvcc_threads(arch_list: str) -> int:
    """nvcc --threads: one per compilation target (SASS archs + PTX), at most the CPU count."""
    if os.environ.get('MMVRWKV_NVCC_THREADS'):
        return max(1, int(os.environ['MMVRWKV_NVCC_THREADS']))
    entries = [a for a in re.split(r'[;\s]+', arch_list) if a]
    targets = len(entries) + sum('+PTX' in a for a in entries)
    return max(1, min(targets, os.cpu_count() or 1))


#: The compiled ops: one folder kernels/<op>/ each (kernels/README.md).
KERNEL_OPS = ('bi_wkv', 'bi_wkv6', 'token_shift')
#: Sources of ``mmvrwkv._ext``: the library and module file, then per op its binding file
#: (``TORCH_LIBRARY_FRAGMENT``) and CPU driver; the CUDA drivers only in a CUDA build.
CPU_SOURCES = ('kernels/common/module.cpp',) + tuple(
    f'kernels/{op}/{name}' for op in KERNEL_OPS for name in ('op.cpp', 'cpu.cpp'))
CUDA_SOURCES = tuple(f'kernels/{op}/cuda.cu' for op in KERNEL_OPS)


def extensions():
    if os.environ.get('MMVRWKV_NO_EXT', '0') == '1':
        return [], {}
    if not os.environ.get('CUDA_HOME') and os.path.exists('/usr/local/cuda/bin/nvcc'):
        # torch would otherwise derive CUDA_HOME from `which nvcc`, which may be a wrapper
        # script outside the toolkit (e.g. /usr/local/bin/nvcc -> wrong include dir).
        os.environ['CUDA_HOME'] = os.path.realpath('/usr/local/cuda')
    import torch
    from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension

    # -g0 overrides the -g of Python's CFLAGS: no debug info, a shorter build.
    cxx = ['-O3', '-g0']
    if os.environ.get('MMVRWKV_CPU_NATIVE', '1') == '1':
        cxx.append('-march=native')
    # The CPU kernels' threads come from at::parallel_for, a header template whose
    # `#pragma omp parallel` acts only where the extension itself is compiled with OpenMP:
    # without -fopenmp every kernel runs on one thread, whatever torch.set_num_threads says.
    # (libgomp.so.1 then resolves to the copy torch has loaded: one thread pool.)
    link = []
    if platform.system() == 'Linux' and torch.backends.openmp.is_available():
        cxx.append('-fopenmp')
        link.append('-fopenmp')
    sources = list(CPU_SOURCES)
    want = os.environ.get('MMVRWKV_WITH_CUDA', 'auto')
    nvcc_ver = nvcc_version(CUDA_HOME) if CUDA_HOME else None
    with_cuda = want == '1' or (want == 'auto' and torch.version.cuda is not None and nvcc_ver is not None)
    if with_cuda:
        if nvcc_ver is None:
            sys.exit('MMVRWKV_WITH_CUDA=1 but nvcc was not found (set CUDA_HOME)')
        arch_list, why = cuda_arch_list(nvcc_ver)
        os.environ['TORCH_CUDA_ARCH_LIST'] = arch_list  # read by torch's CUDAExtension
        threads = nvcc_threads(arch_list)
        print(f'[mmvrwkv] building the CUDA kernels for TORCH_CUDA_ARCH_LIST={arch_list} ({why}; '
              f'nvcc {nvcc_ver[0]}.{nvcc_ver[1]}, --threads {threads})')
        ext = CUDAExtension(
            'mmvrwkv._ext',
            sources + list(CUDA_SOURCES),
            include_dirs=[os.path.join(ROOT, 'kernels')],
            define_macros=[('MMVRWKV_WITH_CUDA', None)],
            extra_link_args=link,
            extra_compile_args={'cxx': cxx, 'nvcc': ['-O3', '-lineinfo'] + (
                ['--threads', str(threads)] if nvcc_ver >= (11, 2) else [])})  # 11.2 added it
    else:
        print('[mmvrwkv] building the CPU kernels only')
        ext = CppExtension(
            'mmvrwkv._ext', sources, include_dirs=[os.path.join(ROOT, 'kernels')],
            extra_compile_args={'cxx': cxx}, extra_link_args=link)
    return [ext], {'build_ext': BuildExtension}


def add_mim_extension():
    """Put ``configs``, ``tools`` and ``model-index.yml`` into ``mmvrwkv/.mim`` (OpenMMLab
    style), where ``mim train/test mmvrwkv CFG`` looks for them in the installed package.

    ``setup.py develop`` (a legacy editable install): symlinks to the checkout (copies on
    Windows). ``sdist`` / ``bdist_wheel`` / ``install`` (``pip install .``): copies. Other
    commands, including PEP 660 editable installs (``editable_wheel``), leave it alone.
    """
    if 'develop' in sys.argv:
        mode = 'copy' if platform.system() == 'Windows' else 'symlink'
    elif any(cmd in sys.argv for cmd in ('sdist', 'bdist_wheel', 'install')):
        mode = 'copy'
    else:
        return
    mim_path = os.path.join(ROOT, 'mmvrwkv', '.mim')
    os.makedirs(mim_path, exist_ok=True)
    for name in ('configs', 'tools', 'model-index.yml'):
        src = os.path.join(ROOT, name)
        if not os.path.exists(src):  # building from an sdist: .mim is already filled
            continue
        dst = os.path.join(mim_path, name)
        if os.path.islink(dst) or os.path.isfile(dst):
            os.remove(dst)
        elif os.path.isdir(dst):
            shutil.rmtree(dst)
        if mode == 'symlink':
            os.symlink(os.path.relpath(src, mim_path), dst)
        elif os.path.isdir(src):
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns('__pycache__', '*.pyc'))
        else:
            shutil.copyfile(src, dst)


add_mim_extension()
ext_modules, cmdclass = extensions()

setup(
    name='mmvrwkv',
    version=read_version(),
    description='Vision-RWKV backbones for OpenMMLab 2.0 (mmpretrain, mmdet, mmseg)',
    long_description=open(os.path.join(ROOT, 'README.md')).read() if os.path.exists(
        os.path.join(ROOT, 'README.md')) else '',
    long_description_content_type='text/markdown',
    license='Apache-2.0',
    python_requires='>=3.9',
    packages=find_packages(exclude=('tests', 'tests.*', 'configs', 'tools')),
    include_package_data=True,
    # mim's configs/tools copy (see add_mim_extension; MANIFEST.in lists them for the sdist)
    package_data={'mmvrwkv': ['.mim/model-index.yml', '.mim/configs/**/*', '.mim/tools/**/*']},
    install_requires=read_requirements('runtime.txt'),
    extras_require={
        'tests': read_requirements('tests.txt'),
        'mim': read_requirements('mminstall.txt'),
        # mmengine's TensorboardVisBackend (vis_backends=[dict(type='TensorboardVisBackend')])
        'tensorboard': ['tensorboard'],
    },
    ext_modules=ext_modules,
    cmdclass=cmdclass,
    zip_safe=False,
)
