# Mask R-CNN + FPN with the VRWKV-B adapter, COCO 2017, 1x schedule (12 epochs),
# 8 GPUs x 2 images. Paper: box AP 46.8, mask AP 41.7 (backbone 106.6M params, 599.0G FLOPs).
# Translated from the official mmdet 2.28 config (OpenGVLab/Vision-RWKV,
# detection/configs/mask_rcnn/mask_rcnn_vrwkv_adapter_base_fpn_1x_coco.py).
# Official weights: mask_rcnn_vrwkv_adapter_base_fpn_1x_coco.pth (HuggingFace
# OpenGVLab/Vision-RWKV). Everything not set here (data, schedule, warm-up, translation
# notes) comes from the tiny config.
#
# Pretrained backbone: the ImageNet checkpoint at pretrained/vrwkv_b_in1k_224.pth.
_base_ = ['./mask-rcnn_vrwkv-tiny-adapter_fpn_1x_coco.py']

# The tiny recipe's model at size B: the arch brings the backbone and adapter values
# (VRWKVAdapter.arch_zoo); the recipe sets the drop-path rate and the checkpoint, and the
# neck reads the backbone's 768 channels.
model = dict(
    backbone=dict(
        arch='base',
        drop_path_rate=0.3,
        init_cfg=dict(type='Pretrained', checkpoint='pretrained/vrwkv_b_in1k_224.pth',
                      prefix='backbone.')),
    neck=dict(in_channels=[768] * 4))

# Layer-wise lr decay as for tiny (rate 0.85, num_layers from the backbone).
optim_wrapper = dict(optimizer=dict(lr=1e-4, weight_decay=0.05))
