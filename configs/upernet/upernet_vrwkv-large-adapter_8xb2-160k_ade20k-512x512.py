# UperNet (+ auxiliary FCN head) with the VRWKV-L adapter, ADE20K, 512x512 crops, 160k
# iterations, 8 GPUs x 2 images, AMP. Paper: mIoU 53.5 single-scale (backbone 351.9M params,
# 421.9G FLOPs at 512x512).
# Translated from the official mmseg 0.30 config (OpenGVLab/Vision-RWKV,
# segmentation/configs/ade20k/upernet_vrwkv_adapter_large_512_160k_ade20k.py).
# Official weights: upernet_vrwkv_adapter_large_512_160k_ade20k.pth (HuggingFace
# OpenGVLab/Vision-RWKV). Everything not set here (data, schedule, AMP, slide inference,
# translation notes) comes from the tiny config.
#
# Pretrained backbone: the ImageNet-22k checkpoint (192 px) at pretrained/vrwkv_l_in22k_192.pth.
_base_ = ['./upernet_vrwkv-tiny-adapter_8xb2-160k_ade20k-512x512.py']

# The tiny recipe's model at size L: the arch brings the backbone and adapter values
# (VRWKVAdapter.arch_zoo); the recipe sets the drop-path rate and the checkpoint, and the
# heads read the backbone's 1024 channels.
model = dict(
    pretrained='pretrained/vrwkv_l_in22k_192.pth',
    backbone=dict(
        arch='large',
        drop_path_rate=0.4),
    decode_head=dict(in_channels=[1024] * 4),
    auxiliary_head=dict(in_channels=1024))

# num_layers of the layer-wise lr decay: the backbone's depth, read from the model.
optim_wrapper = dict(
    optimizer=dict(lr=6e-5),
    paramwise_cfg=dict(layer_decay_rate=0.9))
