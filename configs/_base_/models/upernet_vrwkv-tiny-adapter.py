# Former name of upernet_vrwkv-adapter.py (renamed: the base is sized by backbone.arch, tiny by
# default). Kept so that configs inheriting the old name still load; new configs use the new name.
_base_ = './upernet_vrwkv-adapter.py'
