"""Training data: the batch contract, shard writing, shard/table readers and the resumable train loader.

Import the heavy parts from their modules: ``tripletclip.data.shards.ShardWriter``,
``tripletclip.data.loader.build_train_loader``.
"""
from tripletclip.data.contract import BATCH_KEYS, DataError, Sample, collate
from tripletclip.edit_types import EDIT_TYPES, edit_type_id

__all__ = ["BATCH_KEYS", "EDIT_TYPES", "DataError", "Sample", "collate", "edit_type_id"]
