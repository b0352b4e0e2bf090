"""Build and install mmvrwkv.

The Bi-WKV op is compiled ahead of time into ``mmvrwkv._ext`` (no JIT at import):

* the CPU kernel always;
* the CUDA kernel when torch is a CUDA build and nvcc is found, also without a GPU (CI
  compiles it). Switches: ``MMVRWKV_WITH_CUDA=1`` forces it (fails without nvcc),
  ``MMVRWKV_WITH_CUDA=0`` skips it. Architectures come from ``TORCH_CUDA_ARCH_LIST``; the
  default covers the common GPUs the installed nvcc supports, plus PTX of the newest one.
* ``MMVRWKV_CPU_NATIVE=0`` builds the CPU kernel for the generic x86-64/aarch64 target instead
  of the build machine's own instruction set (``-march=native``, the default).

``MMVRWKV_NO_EXT=1`` installs the pure-Python package only (the ``torch`` backend still works).
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


def default_arch_list(version) -> str:
    """Common GPUs (Turing .. Hopper, Blackwell where nvcc knows it) + PTX for newer ones."""
    archs = ['7.5', '8.0', '8.6', '8.9', '9.0']
    if version < (13, 0):
        archs.insert(0, '7.0')  # Volta; CUDA 13 dropped it
    if version >= (12, 8):
        archs += ['10.0', '12.0']
    return ';'.join(archs[:-1] + [archs[-1] + '+PTX'])


def extensions():
    if os.environ.get('MMVRWKV_NO_EXT', '0') == '1':
        return [], {}
    if not os.environ.get('CUDA_HOME') and os.path.exists('/usr/local/cuda/bin/nvcc'):
        # torch would otherwise derive CUDA_HOME from `which nvcc`, which may be a wrapper
        # script outside the toolkit (e.g. /usr/local/bin/nvcc -> wrong include dir).
        os.environ['CUDA_HOME'] = os.path.realpath('/usr/local/cuda')
    import torch
    from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension

    cxx = ['-O3']
    if os.environ.get('MMVRWKV_CPU_NATIVE', '1') == '1':
        cxx.append('-march=native')
    sources = ['kernels/bi_wkv.cpp', 'kernels/bi_wkv_cpu.cpp']
    want = os.environ.get('MMVRWKV_WITH_CUDA', 'auto')
    nvcc_ver = nvcc_version(CUDA_HOME) if CUDA_HOME else None
    with_cuda = want == '1' or (want == 'auto' and torch.version.cuda is not None and nvcc_ver is not None)
    if with_cuda:
        if nvcc_ver is None:
            sys.exit('MMVRWKV_WITH_CUDA=1 but nvcc was not found (set CUDA_HOME)')
        if not os.environ.get('TORCH_CUDA_ARCH_LIST'):
            os.environ['TORCH_CUDA_ARCH_LIST'] = default_arch_list(nvcc_ver)
        print(f'[mmvrwkv] building the CUDA kernel for TORCH_CUDA_ARCH_LIST='
              f"{os.environ['TORCH_CUDA_ARCH_LIST']} (nvcc {nvcc_ver[0]}.{nvcc_ver[1]})")
        ext = CUDAExtension(
            'mmvrwkv._ext',
            sources + ['kernels/bi_wkv_cuda.cu'],
            include_dirs=[os.path.join(ROOT, 'kernels')],
            define_macros=[('BIWKV_WITH_CUDA', None)],
            extra_compile_args={'cxx': cxx, 'nvcc': ['-O3', '-lineinfo']})
    else:
        print('[mmvrwkv] building the CPU kernel only')
        ext = CppExtension(
            'mmvrwkv._ext', sources, include_dirs=[os.path.join(ROOT, 'kernels')],
            extra_compile_args={'cxx': cxx})
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
    },
    ext_modules=ext_modules,
    cmdclass=cmdclass,
    zip_safe=False,
)
