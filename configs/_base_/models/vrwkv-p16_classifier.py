# VRWKV image classifier for mmpretrain: backbone (patch 16) -> global average pooling ->
# linear head, as in the official ImageNet-1k recipes (1000 classes, label smoothing 0.1,
# truncated-normal Linear / unit LayerNorm init). Sized by `backbone.arch` (tiny here): the
# arch brings its own widths, depths, norms, layer scale and position grid (VRWKV.arch_zoo),
# so another size overrides `backbone.arch` and the one value that reads the backbone,
# `head.in_channels` (= embed_dims of the arch):
#   arch        embed_dims (= head.in_channels)
#   tiny        192
#   small       384
#   base        768
#   large       1024
# Inherit it together with a dataset, a schedule and a runtime (which sets the default scope
# 'mmpretrain'), e.g. configs/vrwkv/vrwkv-tiny_8xb128_in1k.py (T/S/B/L all inherit it).

# Registers `mmvrwkv.VRWKV`; the default scope stays 'mmpretrain'.
custom_imports = dict(imports=['mmvrwkv'], allow_failed_imports=False)

model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='mmvrwkv.VRWKV',
        # embed_dims 192, depth 12, pre-norm, no layer scale (no gamma parameters at all;
        # the det/seg tiny adapters use init_values=1.0 instead), 224-px position grid
        arch='tiny',
        patch_size=16,
        drop_path_rate=0.,
        # the last block's tokens as one [B, C, H/16, W/16] map, after the final LayerNorm
        out_indices=-1,
        final_norm=True),
    # VRWKV has no class token: the classifier pools the token map.
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=192,
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
        # The classifier-level init_cfg below initialises the head too.
        init_cfg=None),
    init_cfg=[
        dict(type='TruncNormal', layer='Linear', std=.02, bias=0.),
        dict(type='Constant', layer='LayerNorm', val=1., bias=0.),
    ],
)
