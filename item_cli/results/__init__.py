"""Results of `item detect --output DIR` at any scale: one row per input, in shards written whole by any number
of processes, resumable and incremental (see `shards` for the folder's layout, `rows` for a row's columns,
`run` for what a rerun scores again).

Read them with `datasets.load_dataset("parquet", data_files="DIR/part-*.parquet", split="train")` (every row
ever written; JSON Lines shards with `load_dataset("json", ..., features=features())`: a chunk whose values are
all missing would otherwise be read with other types), or `latest_rows(read_rows(DIR))` / `item detect --merge DIR` (the newest row per path).
"""

from .rows import SCHEMA
from .shards import FORMATS, chunk_files, latest_rows, merge, read_rows

__all__ = ["FORMATS", "SCHEMA", "chunk_files", "features", "latest_rows", "merge", "read_rows"]


def features():
    """The rows' columns as `datasets.Features` (for loading JSON Lines shards)."""
    from datasets import Features

    return Features.from_arrow_schema(SCHEMA)
