# UperNet (+ auxiliary FCN head) with the VRWKV-T adapter for mmseg 1.x: mmseg's UperNet model
# base with the ResNet-50 backbone replaced. Head settings (channels, dropout, losses,
# num_classes 19, whole-image inference) are mmseg's; the backbone values are those of the
# official VRWKV-T segmentation recipe.
# No pretrained weights here (mmseg's ResNet-50 ones are dropped): set
#   model = dict(pretrained='pretrained/vrwkv_t_in1k_224.pth')
# (configs/upernet/upernet_vrwkv-tiny-adapter_8xb2-160k_ade20k-512x512.py does). The adapter
# needs input sides that are multiples of 32: train on such crops (data_preprocessor `size`)
# and test with ResizeToMultiple 32 or data_preprocessor `size_divisor=32`. Other sizes
# override `backbone.arch`, the size-dependent backbone values, `decode_head.in_channels`
# ([C] * 4) and `auxiliary_head.in_channels` (C).
_base_ = 'mmseg::_base_/models/upernet_r50.py'

# Registers `mmvrwkv.VRWKVAdapter`; the default scope stays 'mmseg' (set by the runtime base).
custom_imports = dict(imports=['mmvrwkv'], allow_failed_imports=False)

embed_dims = 192
norm_cfg = dict(type='SyncBN', requires_grad=True)

model = dict(
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type='mmvrwkv.VRWKVAdapter',
        arch='tiny',  # embed_dims 192, depth 12; the values below are the arch defaults
        img_size=224,
        patch_size=16,
        drop_path_rate=0.1,
        init_values=1.0,  # det/seg tiny creates a fresh layer scale (cls tiny has none)
        post_norm=False,
        key_norm=False,
        with_cp=False,
        conv_inplane=64,
        n_points=4,
        deform_num_heads=6,
        deform_ratio=1.0,
        init_values_inject=0.,
        cffn_ratio=0.25,
        interaction_indexes=[[0, 2], [3, 5], [6, 8], [9, 11]],
        use_extra_extractor=True,
        add_rwkv_feature=True,
        # segmentation recipe: the output of interaction i is added to level i
        rwkv_feature_fusion='per_stage',
        # NOTE(translation): the original hard-codes nn.SyncBatchNorm in the adapter.
        norm_cfg=norm_cfg),
    # four maps at strides 4 / 8 / 16 / 32, each with embed_dims channels; the auxiliary
    # head reads the stride-16 one (in_index 2)
    decode_head=dict(in_channels=[embed_dims] * 4),
    auxiliary_head=dict(in_channels=embed_dims))
