"""Reading REES46 event logs on Ray Data: one read task per Parquet file and per byte range of a CSV.

Ray Data reads a file in one task, so a single multi-GB CSV would not parallelise: `csv_ranges` cuts
it at line ends (one newline-counting pass gives each range its first line number) and each range is
parsed as the header plus that range. Every chunk is checked by the pandas loader's own
`validate_rees46_chunk`, so both preparation paths keep out the same rows for the same reasons; a
row is stamped `pos = file_index << LINE_BITS | line` (also the input order), and bad rows travel as
rows with a `reason`. Used by `recdata.rayprep`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from recdata.csvrows import LineTracker, check_columns, read_csv_chunks
from recdata.loaders import REES46_COLUMNS, _header, validate_rees46_chunk
from recdata.schema import BadRowReport, DataError, EventWeights

RAY_FORMATS = ("rees46",)
LINE_BITS = 40  # pos = file index << 40 | line: 10^12 lines per file, 2^23 files
ATTRS = ("category", "category_id", "brand")
SUFFIXES = (".csv", ".parquet", ".pq")
RANGE_BYTES = 64 << 20  # a CSV is read by one task per this many bytes


def input_files(path: str | Path) -> list[Path]:
    """The files a folder holds (CSV and Parquet shards, sorted by name: the pandas loader's order), or
    the one file given."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in SUFFIXES and p.is_file())
        if not files:
            raise DataError(f"{path} is a folder with no .csv or .parquet files; point --path at REES46 shards")
        return files
    if not path.exists():
        raise DataError(f"{path} does not exist; check --path")
    if path.suffix not in SUFFIXES:
        raise DataError(f"{path}: the Ray Data path reads .csv or .parquet files")
    return [path]


def input_bytes(path: str | Path) -> int:
    p = Path(path)
    files = [f for f in p.rglob("*") if f.is_file()] if p.is_dir() else ([p] if p.exists() else [])
    return sum(f.stat().st_size for f in files)


# ---------------------------------------------------------------------------------------------------
# read: one task per file
# ---------------------------------------------------------------------------------------------------
class _EveryLine(BadRowReport):
    """A per-chunk report that keeps every line (the shared one keeps the first 1000 per reason);
    its rows are handed on as bad-row rows and the report is emptied after each chunk."""

    def add(self, reason: str, line_numbers) -> None:
        lines = [int(n) for n in np.asarray(line_numbers).ravel()]
        if lines:
            self.counts[reason] = self.counts.get(reason, 0) + len(lines)
            self.lines.setdefault(reason, []).extend(lines)


def _block(cols: dict | None, attrs: pd.DataFrame | None, lines_ok: np.ndarray, bad: BadRowReport, fidx: int,
           suffix: str):
    import pyarrow as pa

    n = 0 if cols is None else len(lines_ok)
    bad_reasons = [(r + suffix, ln) for r, lns in bad.lines.items() for ln in lns]
    m = len(bad_reasons)
    base = np.int64(fidx) << LINE_BITS
    if n:
        # Item attributes only on the last row of each item within this chunk: the item table needs
        # each item's last row overall, which is the last of these.
        last = ~pd.Series(cols["item"]).duplicated(keep="last").to_numpy()
        has = np.concatenate([last, np.zeros(m, bool)])
        attr = {k: pa.array(np.concatenate([np.where(last, attrs[k].to_numpy(object), None),
                                            np.full(m, None, object)]), pa.string()) for k in ATTRS}
        price = np.concatenate([attrs["price"].to_numpy(np.float32), np.zeros(m, np.float32)])
    else:
        has = np.zeros(m, bool)
        attr = {k: pa.nulls(m, pa.string()) for k in ATTRS}
        price = np.zeros(m, np.float32)

    def col(k, dtype):
        return np.concatenate([cols[k].astype(dtype) if n else np.empty(0, dtype), np.zeros(m, dtype)])

    event = col("event", np.int8)
    return pa.table({
        "user": col("user", np.int64), "item": col("item", np.int64), "ts": col("ts", np.int64),
        "event": event, "weight": EventWeights().of(event).astype(np.float32), "session": col("session", np.int64),
        "pos": base | np.concatenate([np.asarray(lines_ok, np.int64), np.array([ln for _, ln in bad_reasons],
                                                                              np.int64)]),
        "has_attrs": has, **attr, "price": price,
        "reason": pa.array([""] * n + [r for r, _ in bad_reasons], pa.string()),
    })


def csv_ranges(path: Path, range_bytes: int) -> list[tuple[int, int, int]]:
    """A CSV cut into byte ranges of about `range_bytes`, each ending at a line end: (start, end,
    line number of its first line). Ray Data reads a file in one task; these ranges are what lets one
    multi-GB file be read by many. Costs one pass counting newlines (no parsing)."""
    size = path.stat().st_size
    out = []
    with open(path, "rb") as f:
        start = len(f.readline())  # the header
        line = 2
        while start < size:
            f.seek(min(size, start + range_bytes))
            end = min(size, f.tell() + len(f.readline())) if start + range_bytes < size else size
            f.seek(start)
            newlines, left = 0, end - start
            while left:
                buf = f.read(min(left, 1 << 24))
                newlines += buf.count(b"\n")
                left -= len(buf)
            out.append((start, end, line))
            start, line = end, line + newlines
    return out


class _Shifted(_EveryLine):
    """Lines of a range's rows are counted from its first line: shift them to the file's numbering."""

    def __init__(self, shift: int):
        super().__init__()
        self.shift = shift

    def add(self, reason: str, line_numbers) -> None:
        super().add(reason, np.asarray(line_numbers, np.int64).ravel() + self.shift)


def _read_csv(fidx: int, path: Path, chunksize: int, suffix: str, span: tuple[int, int, int] | None = None):
    """Rows of one CSV (or of one byte range of it: the header, then that range as if it were the
    file), checked chunk by chunk; lines numbered as in the whole file."""
    import io

    header = _header(path)
    check_columns(path, header, REES46_COLUMNS, "rees46")
    source, shift = path, 0
    if span is not None:
        start, end, first_line = span
        with open(path, "rb") as f:
            head = f.readline()
            f.seek(start)
            source, shift = io.BytesIO(head + f.read(end - start)), first_line - 2
    tracker, report, pos = LineTracker(), _Shifted(shift), 0
    for chunk in read_csv_chunks(source, chunksize, report, tracker):
        n = len(chunk)
        lines = tracker.lines_of(np.arange(pos, pos + n, dtype=np.int64))  # counted from the range's start
        pos += n
        ok, cols, attrs = validate_rees46_chunk(chunk, lines, report)
        yield _block(cols, attrs, lines[ok] + shift, report, fidx, suffix)
        report.counts.clear()
        report.lines.clear()


def _read_parquet(fidx: int, path: Path, chunksize: int, suffix: str):
    """Parquet shards in the REES46 columns: each row's `line` is its 1-based row number."""
    import pyarrow.parquet as pq

    f = pq.ParquetFile(path)
    check_columns(path, f.schema_arrow.names, REES46_COLUMNS, "rees46")
    start = 0
    for batch in f.iter_batches(batch_size=chunksize, columns=list(REES46_COLUMNS)):
        df = batch.to_pandas()
        for c in df.columns:
            if pd.api.types.is_datetime64_any_dtype(df[c]):
                df[c] = df[c].dt.strftime("%Y-%m-%d %H:%M:%S UTC")
            df[c] = df[c].astype(object).where(df[c].notna(), "").astype(str)
        lines = np.arange(start + 1, start + 1 + len(df), dtype=np.int64)
        start += len(df)
        report = _EveryLine()
        ok, cols, attrs = validate_rees46_chunk(df.reset_index(drop=True), lines, report)
        yield _block(cols, attrs, lines[ok], report, fidx, suffix)


def rees46_datasource(files: list[Path], chunksize: int, range_bytes: int):
    from ray.data.block import BlockMetadata
    from ray.data.datasource import Datasource, ReadTask

    several = len(files) > 1

    tasks = []
    for i, f in enumerate(files):
        suffix = f" [{f.name}]" if several else ""  # the pandas loader's per-file reasons
        if f.suffix == ".csv":
            for span in csv_ranges(f, range_bytes) or [None]:
                size = int(f.stat().st_size if span is None else span[1] - span[0])
                tasks.append(ReadTask(lambda i=i, f=f, s=suffix, sp=span: _read_csv(i, f, chunksize, s, sp),
                                      BlockMetadata(num_rows=None, size_bytes=size, exec_stats=None,
                                                    input_files=[str(f)])))
        else:
            tasks.append(ReadTask(lambda i=i, f=f, s=suffix: _read_parquet(i, f, chunksize, s),
                                  BlockMetadata(num_rows=None, size_bytes=int(f.stat().st_size),
                                                exec_stats=None, input_files=[str(f)])))

    class Rees46Shards(Datasource):
        """One read task per Parquet file and per `range_bytes` of a CSV (Ray Data itself never
        splits a file: a 5 GB CSV would be read by one task)."""

        def estimate_inmemory_data_size(self):
            return sum(f.stat().st_size for f in files)

        def get_read_tasks(self, parallelism, per_task_row_limit=None, data_context=None):
            return tasks

    return Rees46Shards()


