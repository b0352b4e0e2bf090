"""What the analysis tools (``tools/analysis``) share, as a library.

A benchmark in ``tools/analysis`` only says what it measures (its cases) and how it reports
(its columns); the rest is here:

* ``options``: the options every benchmark has, device presets, the dtypes;
* ``timing``: the timer (warm-up, CUDA events, budget) and its statistics;
* ``memory``: peak memory meters (CPU resident set, CUDA allocator), out-of-memory test;
* ``machine``: what a measurement ran on (environment record, load warnings);
* ``progress``: the text progress bar;
* ``accuracy``: the relative error of a result against a reference;
* ``report``: tables and JSON;
* ``plots``: plot helpers (matplotlib is imported only when a plot is drawn);
* ``backbones``: VRWKV / VRWKV6 and the ViT (DeiT) baseline the tools compare;
* ``targets``: the project's performance targets, evaluated on a benchmark's JSON;
* ``flops``: parameters and FLOPs of a model built from a config (``tools/analysis/get_flops.py``).

Nothing is imported here: ``import mmvrwkv`` stays light, and each module imports
matplotlib, mmpretrain or torchvision only inside the functions that need them.
"""
