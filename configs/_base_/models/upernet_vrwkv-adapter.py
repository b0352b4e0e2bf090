# UperNet (+ auxiliary FCN head) with the VRWKV adapter for mmseg 1.x: mmseg's UperNet model
# base with the ResNet-50 backbone replaced. Head settings (channels, dropout, losses,
# num_classes 19, whole-image inference) are mmseg's; the backbone values are those of the
# official segmentation recipe. Sized by `backbone.arch` (tiny here): the arch brings its own
# widths, depths, norms, layer scale, position grid and deformable-attention heads / ratio
# (VRWKVAdapter.arch_zoo), and the four interactions split the blocks evenly, so another size
# overrides `backbone.arch` and the values that read the backbone, `decode_head.in_channels`
# ([C] * 4) and `auxiliary_head.in_channels` (C), C = 192 / 384 / 768 / 1024 for T / S / B / L.
# No pretrained weights here (mmseg's ResNet-50 ones are dropped): set
#   model = dict(pretrained='pretrained/vrwkv_t_in1k_224.pth')
# (configs/upernet/upernet_vrwkv-tiny-adapter_8xb2-160k_ade20k-512x512.py does; the S/B/L
# configs inherit that one). The adapter needs input sides that are multiples of 32: train on
# such crops (data_preprocessor `size`) and test with ResizeToMultiple 32 or data_preprocessor
# `size_divisor=32`.
_base_ = 'mmseg::_base_/models/upernet_r50.py'

# Registers `mmvrwkv.VRWKVAdapter`; the default scope stays 'mmseg' (set by the runtime base).
custom_imports = dict(imports=['mmvrwkv'], allow_failed_imports=False)

norm_cfg = dict(type='SyncBN', requires_grad=True)

model = dict(
    pretrained=None,
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
        # segmentation recipe: the output of interaction i is added to level i
        rwkv_feature_fusion='per_stage',
        # NOTE(translation): the original hard-codes nn.SyncBatchNorm in the adapter.
        norm_cfg=norm_cfg),
    # four maps at strides 4 / 8 / 16 / 32, each with the backbone's 192 channels; the
    # auxiliary head reads the stride-16 one (in_index 2)
    decode_head=dict(in_channels=[192] * 4),
    auxiliary_head=dict(in_channels=192))
