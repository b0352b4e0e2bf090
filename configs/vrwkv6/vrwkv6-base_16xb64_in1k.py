# VRWKV6-B, ImageNet-1k from scratch, 224 px, 300 epochs, 16 GPUs x 64 images.
# Translated from the official mmcls 0.25 config (OpenGVLab/Vision-RWKV,
# classification/configs/vrwkv6/). Same recipe as VRWKV-B (inherited: data, RandAugment,
# Mixup/CutMix, AdamW, schedule, batch 64 per GPU, head, init) with the v6 backbone.
# Paper: 82.6 top-1, 104.9M params, 20.9G FLOPs.
# Official weights: vrwkv6_b_in1k_224.pth (HuggingFace OpenGVLab/Vision-RWKV); convert them with
#   python tools/model_converters/vrwkv2mmvrwkv.py vrwkv6_b_in1k_224.pth OUT.pth \
#       --config configs/vrwkv6/vrwkv6-base_16xb64_in1k.py
_base_ = ['../vrwkv/vrwkv-base_16xb64_in1k.py']

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmvrwkv.VRWKV6',
        # embed_dims 768, depth 12, 12 heads of 64 channels, post-norm, layer scale 1e-5
        arch='base',
        patch_size=16,
        drop_path_rate=0.5,
        shift_mode='q_shift_multihead',
        with_cls_token=False,
        out_indices=-1,
        final_norm=True),
    head=dict(in_channels=768),
)
# NOTE(translation): as for VRWKV-B (uniform Mixup/CutMix choice, overlapping LinearLR and
# CosineAnnealingLR within 0.05 % of the original lr); the v6 time_maa_* / time_decay* /
# time_faaaa / LoRA parameters get weight decay 0.05 as in the original.
