# ImageNet-1k, 224 px, for the Vision-RWKV T/S/B classification recipes.
#
# The original (mmcls 0.25) used `_base_/datasets/imagenet_bs64_swin_224.py`; its mmpretrain
# 1.x successor below has the same pipeline, operation for operation:
#   train: RandomResizedCrop 224 (pillow, bicubic) -> RandomFlip 0.5 -> RandAugment
#          (timm "increasing" policies, num_policies 2, total_level 10, magnitude_level 9,
#          magnitude_std 0.5, pad = mean, bicubic) -> RandomErasing (p 0.25, mode 'rand',
#          area 0.02-1/3, fill mean/std) -> PackInputs
#   test:  ResizeEdge short side 256 (pillow, bicubic) -> CenterCrop 224 -> PackInputs
#   normalisation (data_preprocessor): mean 123.675/116.28/103.53, std 58.395/57.12/57.375,
#          BGR -> RGB.
# Only the per-GPU batch size and the workers differ (original: 128 per GPU, 8 workers).
_base_ = 'mmpretrain::_base_/datasets/imagenet_bs64_swin_224.py'

train_dataloader = dict(batch_size=128, num_workers=8)
# mmcls 0.25 used samples_per_gpu for validation as well.
val_dataloader = dict(batch_size=128, num_workers=8)
test_dataloader = dict(batch_size=128, num_workers=8)
