"""Read `COPY ... TO STDOUT (FORMAT binary)` into Arrow arrays, vectorized (the dump's read path).

Binary COPY costs the server far less than text: a timestamptz, uuid or bytea is sent as its
bytes, not printed. Its rows are a sequence of length-prefixed fields, so where a row starts is
only known once the row before it is read: a loop per row, too slow in Python. Instead every
row starts with a marker field (`MARKER_SQL`, an int8 constant whose 8 bytes are unlikely in
data), the rows are located by that signature, and the fields are walked one column at a time
over all rows of a chunk at once (numpy). The walk proves each row ends where the next signature
begins; should a value contain the signature, the rows are chained one by one instead (slower,
same result). Fixed-width fields are gathered and byte-swapped; text and bytea are cut out of
the chunk by Arrow's `take`, in C++.
"""

from __future__ import annotations

from typing import IO, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from supabackup_pipeline.core.pg_types import validity_bitmap

_MARKER = b"SBKP\x13\x37RW"
MARKER_SQL = f"{int.from_bytes(_MARKER, 'big', signed=True)}::int8"
_HEADER = b"PGCOPY\n\xff\r\n\x00"
_TRAILER = b"\xff\xff"
CHUNK_BYTES = 4 << 20  # rows are decoded a chunk at a time: one Parquet row group each
_PG_EPOCH_DAYS = 10_957  # 2000-01-01, PostgreSQL's epoch, in days since 1970-01-01
_PG_EPOCH_US = _PG_EPOCH_DAYS * 86_400_000_000


def read_exact(stream: IO[bytes], n: int) -> bytes:
    data = stream.read(n)
    if len(data) != n:
        raise ValueError("binary COPY stream ended early")
    return data


def read_chunks(stream: IO[bytes], types: list[pa.DataType], chunk: int = CHUNK_BYTES) -> Iterator[list[pa.Array]]:
    """Arrays of `types` (the fields after the marker) for each chunk of complete rows."""
    header = read_exact(stream, 19)
    if header[:11] != _HEADER:
        raise ValueError("not a binary COPY stream")
    read_exact(stream, int.from_bytes(header[15:19], "big"))  # header extension
    signature = (len(types) + 1).to_bytes(2, "big") + b"\x00\x00\x00\x08" + _MARKER
    pending = b""
    while True:
        more = stream.read(chunk)
        data = pending + more if pending else more
        if not more:
            if data[-2:] != _TRAILER:
                raise ValueError("binary COPY stream ended early")
            data = data[:-2]
        buf = np.frombuffer(data, dtype=np.uint8)
        starts, fields, rest = _rows(buf, signature, len(types) + 1, complete=not more)
        if len(starts):
            yield [_decode(buf, data, fields[0][j + 1], fields[1][j + 1], t) for j, t in enumerate(types)]
        pending = data[rest:]
        if not more:
            if pending:
                raise ValueError("malformed binary COPY stream")
            return


def _rows(buf: np.ndarray, signature: bytes, nfields: int, complete: bool):
    """(row starts, (field starts, field lengths) per field, where the unread rest begins)."""
    starts = _candidates(buf, signature)
    fstarts, flens, ends = _walk(buf, starts, nfields)
    limit = len(buf)
    consistent = len(starts) > 0 and starts[0] == 0 and (ends[:-1] == starts[1:]).all()
    if consistent and complete and ends[-1] != limit:
        consistent = False
    if not consistent:
        chosen = _chain(starts, ends, limit)
        if complete and (ends[chosen[-1]] != limit if chosen else limit):
            raise ValueError("malformed binary COPY stream")
        starts, fstarts, flens, ends = starts[chosen], fstarts[:, chosen], flens[:, chosen], ends[chosen]
    if not complete:  # the last row may continue in the next chunk
        rest = int(starts[-1]) if len(starts) else 0
        return starts[:-1], (fstarts[:, :-1], flens[:, :-1]), rest
    return starts, (fstarts, flens), limit


def _candidates(buf: np.ndarray, signature: bytes) -> np.ndarray:
    """Positions where the row signature (field count, marker length, marker) occurs."""
    size = len(signature)
    if len(buf) < size:
        return np.empty(0, np.int64)
    # the marker's length's last byte and the marker's first, `\x08S`: rare in text (a backspace)
    # and in binary fields (an 8-byte field whose value starts with 0x53: no timestamp, small or
    # negative integer, or float below 1e90)
    end = len(buf) - size + 7
    hits = np.flatnonzero((buf[6:end] == signature[6]) & (buf[5:end - 1] == signature[5]))
    if not len(hits):
        return hits
    window = _windows(buf, size)[hits]
    return hits[(window == np.frombuffer(signature, np.uint8)).all(axis=1)]


def _walk(buf: np.ndarray, starts: np.ndarray, nfields: int):
    """Field starts and lengths (nfields × rows) and row ends, for every row start at once."""
    n = len(starts)
    fstarts = np.empty((nfields, n), np.int64)
    flens = np.empty((nfields, n), np.int32)
    pos = starts + 2
    if len(buf) < 4:
        return fstarts, flens, pos
    words = _windows(buf, 4)
    last = len(words) - 1
    for j in range(nfields):
        length = words[np.minimum(pos, last)].view(">i4").ravel()
        fstarts[j] = pos + 4
        flens[j] = length
        pos = pos + 4 + np.maximum(length, 0)
    return fstarts, flens, pos


def _windows(buf: np.ndarray, width: int) -> np.ndarray:
    """Every `width` consecutive bytes of buf (a view, no copy): `_windows(buf, 4)[positions]`
    gathers the 4 bytes at each position in one indexing step."""
    return np.lib.stride_tricks.sliding_window_view(buf, width)


def _chain(starts: np.ndarray, ends: np.ndarray, limit: int) -> list[int]:
    """The candidates that really start rows, followed one by one from the first row (used only
    when a value holds the row signature). Stops where the next row's signature is not (yet) in
    the chunk: the caller keeps that last row for the next chunk, or finds the stream malformed."""
    index = {int(p): k for k, p in enumerate(starts)}
    chosen: list[int] = []
    k = index.get(0)
    while k is not None:
        chosen.append(k)
        k = index.get(int(ends[k])) if ends[k] < limit else None
    return chosen


_FIXED = {  # Arrow type id → (wire width, big-endian wire dtype)
    pa.int16(): (2, ">i2"), pa.int32(): (4, ">i4"), pa.int64(): (8, ">i8"),
    pa.float32(): (4, ">u4"), pa.float64(): (8, ">u8"), pa.bool_(): (1, "u1"),
    pa.date32(): (4, ">i4"), pa.timestamp("us"): (8, ">i8"), pa.timestamp("us", tz="UTC"): (8, ">i8"),
    pa.time64("us"): (8, ">i8"), pa.uuid(): (16, None),
}
_NATIVE = {pa.float32(): np.uint32, pa.float64(): np.uint64}  # floats as their bits: NaN payloads kept


def _decode(buf: np.ndarray, data: bytes, fstart: np.ndarray, flen: np.ndarray, arrow_type: pa.DataType) -> pa.Array:
    """One column of a chunk: the fields at `fstart` (length `flen`, -1 for NULL) as `arrow_type`."""
    valid = flen >= 0
    validity = validity_bitmap(valid)
    n = len(flen)
    if arrow_type in (pa.string(), pa.binary()):
        return _variable(data, fstart, np.maximum(flen, 0), validity, arrow_type)
    width, wire = _FIXED[arrow_type]
    if (flen[valid] != width).any():
        raise ValueError(f"unexpected field length for {arrow_type} in binary COPY")
    raw = _windows(buf, width)[np.where(valid, fstart, 0)]
    if arrow_type == pa.uuid():
        storage = pa.Array.from_buffers(pa.binary(16), n, [validity, pa.py_buffer(raw)])
        return pa.ExtensionArray.from_storage(pa.uuid(), storage)
    if arrow_type == pa.bool_():
        return pa.Array.from_buffers(arrow_type, n, [validity, pa.py_buffer(np.packbits(raw[:, 0] != 0, bitorder="little"))])
    values = raw.view(wire).ravel().astype(_NATIVE.get(arrow_type, wire[1:]))
    if arrow_type == pa.date32():
        values += _PG_EPOCH_DAYS
    elif pa.types.is_timestamp(arrow_type):
        values += _PG_EPOCH_US
    return pa.Array.from_buffers(arrow_type, n, [validity, pa.py_buffer(values)])


def _variable(data: bytes, fstart: np.ndarray, length: np.ndarray, validity, arrow_type: pa.DataType) -> pa.Array:
    """Text or bytea fields cut out of the chunk: a binary array over the whole chunk alternating
    field and gap (offsets only, no copy), of which `take` keeps the fields."""
    n = len(length)
    if n == 0:
        return pa.array([], arrow_type)
    bounds = np.empty(2 * n, np.int64)
    bounds[0::2] = fstart
    bounds[1::2] = fstart + length
    whole = pa.Array.from_buffers(pa.large_binary(), 2 * n - 1, [None, pa.py_buffer(bounds), pa.py_buffer(data)])
    fields = pc.take(whole, pa.array(np.arange(0, 2 * n, 2, dtype=np.int64)))
    offsets = np.frombuffer(fields.buffers()[1], np.int64, count=n + 1)
    if offsets[-1] >= 1 << 31:
        raise ValueError("a chunk of binary COPY holds more than 2 GB of one column")
    return pa.Array.from_buffers(arrow_type, n, [validity, pa.py_buffer(offsets.astype(np.int32)), fields.buffers()[2]])
