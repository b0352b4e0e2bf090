# UperNet (+ auxiliary FCN head) with the VRWKV-B adapter, ADE20K, 512x512 crops, 160k
# iterations, 8 GPUs x 2 images, AMP. Paper: mIoU 49.2 single-scale (backbone 106.6M params,
# 146.0G FLOPs at 512x512).
# Translated from the official mmseg 0.30 config (OpenGVLab/Vision-RWKV,
# segmentation/configs/ade20k/upernet_vrwkv_adapter_base_512_160k_ade20k.py).
# Official weights: upernet_vrwkv_adapter_base_512_160k_ade20k.pth (HuggingFace
# OpenGVLab/Vision-RWKV). Everything not set here (data, schedule, AMP, slide inference,
# translation notes) comes from the tiny config.
#
# Pretrained backbone: the ImageNet checkpoint at pretrained/vrwkv_b_in1k_224.pth.
_base_ = ['./upernet_vrwkv-tiny-adapter_8xb2-160k_ade20k-512x512.py']

# The tiny recipe's model at size B: the arch brings the backbone and adapter values
# (VRWKVAdapter.arch_zoo); the recipe sets the drop-path rate and the checkpoint, and the
# heads read the backbone's 768 channels.
model = dict(
    pretrained='pretrained/vrwkv_b_in1k_224.pth',
    backbone=dict(
        arch='base',
        drop_path_rate=0.3),
    decode_head=dict(in_channels=[768] * 4),
    auxiliary_head=dict(in_channels=768))

# num_layers of the layer-wise lr decay: the backbone's depth, read from the model.
optim_wrapper = dict(
    optimizer=dict(lr=6e-5),
    paramwise_cfg=dict(layer_decay_rate=0.8))
