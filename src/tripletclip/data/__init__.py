"""Training data: the batch contract, the shard format (write, read, patterns, manifests), the sources and the
resumable train loader.

Importing the package registers the built-in sources (``wds``, ``csv``, ``parquet``, ``synthetic``) in
:data:`~tripletclip.data.source.SOURCES`, as timm's model modules register themselves: ``data.type`` names one.
Import the heavy parts from their modules: ``tripletclip.data.shards.ShardWriter``,
``tripletclip.data.shard_reader.read_shard``, ``tripletclip.data.loader.build_train_loader``.
"""
from tripletclip.data import synthetic, tables, wds  # noqa: F401  (registration of the sources)
from tripletclip.data.contract import BATCH_KEYS, DataError, Sample, collate
from tripletclip.edit_types import EDIT_TYPES, edit_type_id

__all__ = ["BATCH_KEYS", "EDIT_TYPES", "DataError", "Sample", "collate", "edit_type_id"]
