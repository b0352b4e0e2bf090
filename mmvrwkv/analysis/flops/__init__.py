"""Parameters and FLOPs of a model built from an mmvrwkv config (any OpenMMLab 2.0 task):
the library of ``tools/analysis/get_flops.py``.

The model is built through mmengine's ``MODELS`` registry under the config's
``default_scope`` (mmpretrain / mmdet / mmseg) and put in eval mode; one image
``[1, in_channels, H, W]`` of random values is traced by mmengine's ``FlopAnalyzer``
(TorchScript tracing, fvcore-style operator handles). What is run (:mod:`.inputs`):

* ``backbone_only``: ``model.backbone(x)``;
* otherwise (``forward='auto'``) the first that traces of ``model(x, mode='tensor')``
  (classifiers, segmentors, one-stage detectors), the same with a data sample carrying only
  image meta information (two-stage detectors need ``img_shape`` etc.), and
  ``model.extract_feat(x)`` (backbone + neck); the one used is reported. For two-stage
  detectors the RoI heads' count depends on the number of proposals the random input yields
  (up to the test_cfg's maximum); the paper's det/seg figures are backbone FLOPs.

Input size: the given shape; else the final size of the config's test pipeline when it is
fixed (``CenterCrop`` crop size, or a ``Resize`` without ``keep_ratio``), else the config's
``crop_size`` (mmseg), else the box a keep-ratio ``Resize`` fits images into (mmdet:
``scale=(1333, 800)`` -> H 800, W 1333, the size of detection FLOPs tables), else 224. The
sides are rounded up to the data preprocessor's ``pad_size_divisor`` (as the preprocessor
would pad). The source is reported.

What is counted (convention ``'mmcv'``, the default; the convention of mmcv's
``get_model_complexity_info``, with which the Vision-RWKV paper's numbers were made;
:mod:`.conventions`):

* 1 multiply-add (MAC) = 1 FLOP for ``linear`` / ``matmul`` / ``bmm`` / ``einsum`` / conv
  (Linear biases are not counted, conv biases add 1 per output element, as in mmcv);
* LayerNorm / GroupNorm / InstanceNorm / BatchNorm: 2 per element with an affine transform,
  1 without (mmcv); mmengine's default handles count 5 / 4 (fvcore) -- ``'fvcore'`` keeps
  those (and conv without bias, bilinear upsampling at 4 per output element);
* pooling: 1 per input element; interpolation (e.g. the bicubic resize of the position
  embedding, FPN upsampling): 1 per output element (mmcv counts this for ``nn.Upsample``
  modules only, not for functional ``F.interpolate``);
* the Bi-WKV op: **29 * B * T * C per call** (``mmvrwkv.ops.bi_wkv_flops``), the constant the
  original Vision-RWKV tool adds by hand per layer (29 * N * C), and the Bi-WKV6 op of VRWKV6:
  **7 * head_size * B * T * C per call** (``mmvrwkv.ops.bi_wkv6_flops``: per token, value
  channel and key channel of its head, 3 multiply-adds in each of the two scans plus 1 for
  the bonus; the head-size term of the original VRWKV6 FLOP tool). The trace sees each call
  as one node (:func:`mmvrwkv.ops.flops.counting`) counted by the op's formula
  (:func:`mmvrwkv.ops.flops.op_handles`) and attributed to the module that calls the op,
  e.g. ``backbone.layers.0.att``. The LoRA products around Bi-WKV6 (``@`` / ``bmm``) are
  ordinary traced matmuls;
* the adapter's multi-scale deformable attention: its projections are linear layers; its
  bilinear sampling is counted at 4 per sampled value (mmengine's ``grid_sampler`` handle,
  ``mmvrwkv.ops.ms_deform_attn.ms_deform_attn_flops``): while traced, the op's ``'auto'``
  backend runs its portable ``grid_sample`` path (also for the small maps it otherwise
  samples with one matrix product); mmcv's kernel, were it chosen explicitly, is opaque.

Not counted (in either convention, as in mmcv): element-wise ops (add, mul, lerp, sigmoid,
relu, square, tanh, softmax, ...), the Q-Shift data movement, indexing/reshapes. mmcv would
count ``nn.ReLU``-family *modules* at 1 per element; VRWKV has none (its squared ReLU is
functional). The skipped operators are listed in the report (:mod:`.summary`).

The per-module table shows the analyzer's FLOPs, the Bi-WKV (and Bi-WKV6) FLOPs and their
sum. Counts are per image (batch 1).
"""
from .analyze import OpCall, analyze_module, get_flops
from .conventions import convention_handles
from .inputs import DEFAULT_SIZE, default_input_size, forward_candidates
from .summary import format_table, report

__all__ = ['get_flops', 'report', 'analyze_module', 'OpCall', 'convention_handles',
           'default_input_size', 'forward_candidates', 'format_table', 'DEFAULT_SIZE']
