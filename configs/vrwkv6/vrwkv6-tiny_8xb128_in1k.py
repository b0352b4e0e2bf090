# VRWKV6-T, ImageNet-1k from scratch, 224 px, 300 epochs, 8 GPUs x 128 images.
# Translated from the official mmcls 0.25 config (OpenGVLab/Vision-RWKV,
# classification/configs/vrwkv6/). The v6 recipe is the v1 recipe of the same size (data,
# augmentation, AdamW, schedule, head, init), so this file inherits the VRWKV-T config and
# swaps the backbone. Paper: 76.6 top-1, 7.6M params, 1.6G FLOPs.
# Official weights: vrwkv6_t_in1k_224.pth (HuggingFace OpenGVLab/Vision-RWKV); convert them with
#   python tools/model_converters/vrwkv2mmvrwkv.py vrwkv6_t_in1k_224.pth OUT.pth \
#       --config configs/vrwkv6/vrwkv6-tiny_8xb128_in1k.py
_base_ = ['../vrwkv/vrwkv-tiny_8xb128_in1k.py']

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmvrwkv.VRWKV6',
        # embed_dims 192, depth 12, 3 heads of 64 channels, pre-norm, no layer scale
        arch='tiny',
        patch_size=16,
        drop_path_rate=0.,
        shift_mode='q_shift_multihead',
        with_cls_token=False,
        out_indices=-1,
        final_norm=True),
    head=dict(in_channels=192),
    # Tiny: no Mixup / CutMix, as the v1 tiny recipe.
)
# NOTE(translation): the weight-decay policy is the v1 one (0.05 for every parameter except
# norms and biases): the v6 time_maa_* / time_decay* / time_faaaa / LoRA parameters are
# decayed, as in the original (its paramwise_cfg has no entry for them).
