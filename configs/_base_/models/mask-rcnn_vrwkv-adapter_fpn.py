# Mask R-CNN + FPN with the VRWKV adapter for mmdet 3.x: mmdet's Mask R-CNN model base with
# the ResNet-50 backbone replaced. Heads, anchors and train/test settings are mmdet's (COCO,
# 80 classes); the backbone values are those of the official detection recipe. Sized by
# `backbone.arch` (tiny here): the arch brings its own widths, depths, norms, layer scale,
# position grid and deformable-attention heads / ratio (VRWKVAdapter.arch_zoo), and the four
# interactions split the blocks evenly, so another size overrides `backbone.arch` and the one
# value that reads the backbone, `neck.in_channels` ([C] * 4: 192 / 384 / 768 / 1024 for
# T / S / B / L).
# No pretrained weights here: add
#   model = dict(backbone=dict(init_cfg=dict(
#       type='Pretrained', checkpoint='pretrained/vrwkv_t_in1k_224.pth', prefix='backbone.')))
# (configs/mask_rcnn/mask-rcnn_vrwkv-tiny-adapter_fpn_1x_coco.py does; the S/B/L configs
# inherit that one).
_base_ = 'mmdet::_base_/models/mask-rcnn_r50_fpn.py'

# Registers `mmvrwkv.VRWKVAdapter`; the default scope stays 'mmdet' (set by the runtime base).
custom_imports = dict(imports=['mmvrwkv'], allow_failed_imports=False)

model = dict(
    # NOTE(translation): mmdet 2.x put Normalize/Pad(size_divisor=32) in the pipeline; mmdet
    # 3.x does both in the data preprocessor (same mean/std, BGR->RGB, pad to 32, which the
    # adapter needs: input sides must be multiples of 32).
    data_preprocessor=dict(pad_size_divisor=32),
    backbone=dict(
        _delete_=True,
        type='mmvrwkv.VRWKVAdapter',
        # embed_dims 192, depth 12 in interactions [[0, 2], [3, 5], [6, 8], [9, 11]], a fresh
        # layer scale of 1.0 (cls tiny has none), 6 deformable heads of ratio 1.0
        arch='tiny',
        patch_size=16,
        drop_path_rate=0.1,
        with_cp=False,
        conv_inplane=64,
        n_points=4,
        init_values_inject=0.,
        cffn_ratio=0.25,
        use_extra_extractor=True,
        add_rwkv_feature=True,
        # detection recipe: the final RWKV features are added to all four levels
        rwkv_feature_fusion='final',
        # NOTE(translation): the original hard-codes nn.SyncBatchNorm in the adapter; here it
        # is norm_cfg (use dict(type='BN') on one device).
        norm_cfg=dict(type='SyncBN', requires_grad=True)),
    # four maps at strides 4 / 8 / 16 / 32, each with the backbone's 192 channels
    neck=dict(type='FPN', in_channels=[192] * 4, out_channels=256, num_outs=5))
