# VRWKV-T image classifier for mmpretrain: backbone -> global average pooling -> linear head.
# The values are those of the official VRWKV-T ImageNet-1k recipe (1000 classes, label
# smoothing 0.1, truncated-normal Linear / unit LayerNorm init). Other sizes override
# `backbone.arch` and the size-dependent backbone values, and `head.in_channels`:
#   arch        embed_dims (= head.in_channels)
#   tiny        192
#   small       384
#   base        768
#   large       1024
# Inherit it together with a dataset, a schedule and a runtime (which sets the default scope
# 'mmpretrain'), e.g. configs/vrwkv/vrwkv-tiny_8xb128_in1k.py.

# Registers `mmvrwkv.VRWKV`; the default scope stays 'mmpretrain'.
custom_imports = dict(imports=['mmvrwkv'], allow_failed_imports=False)

model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='mmvrwkv.VRWKV',
        arch='tiny',  # embed_dims 192, depth 12
        img_size=224,
        patch_size=16,
        drop_path_rate=0.,
        # Classification tiny has no layer scale (no gamma parameters at all); the det/seg
        # tiny configs use init_values=1.0 instead.
        init_values=None,
        post_norm=False,
        key_norm=False,
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
