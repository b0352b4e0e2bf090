# VRWKV6-S, ImageNet-1k from scratch, 224 px, 300 epochs, 8 GPUs x 128 images.
# Translated from the official mmcls 0.25 config (OpenGVLab/Vision-RWKV,
# classification/configs/vrwkv6/). Same recipe as VRWKV-S (inherited: data, RandAugment,
# Mixup/CutMix, AdamW, schedule, head, init) with the v6 backbone. Paper: 81.1 top-1,
# 27.7M params, 5.6G FLOPs.
# Official weights: vrwkv6_s_in1k_224.pth (HuggingFace OpenGVLab/Vision-RWKV); convert them with
#   python tools/model_converters/vrwkv2mmvrwkv.py vrwkv6_s_in1k_224.pth OUT.pth \
#       --config configs/vrwkv6/vrwkv6-small_8xb128_in1k.py
_base_ = ['../vrwkv/vrwkv-small_8xb128_in1k.py']

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmvrwkv.VRWKV6',
        # embed_dims 384, depth 12, 6 heads of 64 channels, post-norm, layer scale 1e-5
        # (v1 small: 1.0)
        arch='small',
        patch_size=16,
        drop_path_rate=0.3,
        shift_mode='q_shift_multihead',
        with_cls_token=False,
        out_indices=-1,
        final_norm=True),
    head=dict(in_channels=384),
)
# NOTE(translation): as for VRWKV-S: the original's BatchMixup + BatchCutMix with
# probabilities 0.5 / 0.5 are mmpretrain's RandomBatchAugment with a uniform choice, the
# warm-up-times-cosine lr is reproduced by overlapping LinearLR and CosineAnnealingLR
# (within 0.05 %), and the v6 time_maa_* / time_decay* / time_faaaa / LoRA parameters get
# weight decay 0.05 as in the original.
