# Former name of mask-rcnn_vrwkv-adapter_fpn.py (renamed: the base is sized by backbone.arch, tiny by
# default). Kept so that configs inheriting the old name still load; new configs use the new name.
_base_ = './mask-rcnn_vrwkv-adapter_fpn.py'
