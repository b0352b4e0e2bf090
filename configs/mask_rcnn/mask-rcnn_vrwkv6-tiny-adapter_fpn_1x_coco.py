# Mask R-CNN + FPN with the VRWKV6-T adapter, COCO 2017, 1x schedule (12 epochs),
# 8 GPUs x 2 images. The original repository has no VRWKV6 detection model: this is the
# VRWKV-T recipe (inherited: data, AdamW + layer-wise lr decay 0.85, 1x schedule, adapter
# settings, SyncBN, FPN on [192] * 4) with the VRWKV6-T backbone (3 heads of 64 channels,
# multi-head Q-Shift, data-dependent decay, bidirectional WKV6 without a token limit).
# No published results.
#
# Pretrained backbone: put the official ImageNet checkpoint at
# pretrained/vrwkv6_t_in1k_224.pth (it loads as it is: the key names are the official ones;
# adapter keys are reported as new, `ln1` and the head as unused). Training from scratch:
# --cfg-options model.backbone.init_cfg=None
_base_ = ['./mask-rcnn_vrwkv-tiny-adapter_fpn_1x_coco.py']

model = dict(
    backbone=dict(
        type='mmvrwkv.VRWKV6Adapter',
        # embed_dims 192, depth 12, 3 heads; deform heads 6, ratio 1.0.
        # NOTE(translation): no v6 detection recipe exists. The arch keeps the layer scale
        # of the v6 classification model (none for tiny), so the ImageNet checkpoint fills
        # every backbone key; the VRWKV-T detection recipe creates a fresh gamma = 1.0.
        arch='tiny',
        shift_mode='q_shift_multihead',
        init_cfg=dict(type='Pretrained', checkpoint='pretrained/vrwkv6_t_in1k_224.pth',
                      prefix='backbone.')))
