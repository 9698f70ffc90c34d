"""Parquet files (TRL's completions, mapped `.parquet` files), read with pyarrow when installed."""

from __future__ import annotations

from .common import Unreadable

HINT = "pip install 'trajdocs[parquet]'"


def read_table(data: bytes):  # type: ignore[no-untyped-def]
    """The Parquet table in `data`; `Unreadable` when pyarrow is missing or the bytes are no
    complete Parquet file (e.g. still being written). Read on the calling thread, starting no thread:
    pyarrow's thread pools, once started, can abort the process at exit ("terminate called without
    an active exception", apache/arrow#34314), which crashed about one finished `trajdocs check` in
    twenty (`pq.read_table` starts one even with `use_threads=False`). pyarrow is imported here:
    only builds with Parquet files pay for it."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise Unreadable(f"reading Parquet needs the 'pyarrow' package: {HINT}") from None
    try:
        return pq.ParquetFile(pa.BufferReader(data)).read(use_threads=False)
    except Exception as err:  # noqa: BLE001 - pyarrow raises several kinds for a damaged file
        raise Unreadable(f"not a complete Parquet file ({type(err).__name__}: {err}); "
                         "the trainer may still be writing it") from None
