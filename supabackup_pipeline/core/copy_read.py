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
_WALK_CELLS = 1 << 22  # candidate rows × fields walked at once (~50 MB of positions)
_PG_EPOCH_DAYS = 10_957  # 2000-01-01, PostgreSQL's epoch, in days since 1970-01-01
_PG_EPOCH_US = _PG_EPOCH_DAYS * 86_400_000_000


def read_exact(stream: IO[bytes], n: int) -> bytes:
    data = stream.read(n)
    if len(data) != n:
        raise ValueError("binary COPY stream ended early")
    return data


def read_chunks(stream: IO[bytes], types: list[pa.DataType], chunk: int | None = None) -> Iterator[list[pa.Array]]:
    """Arrays of `types` (the fields after the marker) for each chunk (CHUNK_BYTES) of complete rows."""
    chunk = chunk or CHUNK_BYTES
    header = read_exact(stream, 19)
    if header[:11] != _HEADER:
        raise ValueError("not a binary COPY stream")
    read_exact(stream, int.from_bytes(header[15:19], "big"))  # header extension
    signature = (len(types) + 1).to_bytes(2, "big") + b"\x00\x00\x00\x08" + _MARKER
    pending = b""
    while True:
        # a row larger than a chunk: double, not creep
        data, more = _read_after(stream, pending, max(chunk, len(pending)))
        if not more:
            if data[-2:] != _TRAILER:
                raise ValueError("binary COPY stream ended early")
            del data[-2:]
        starts, fields, rest = _rows(data, signature, len(types) + 1, complete=not more)
        if len(starts):
            yield [_decode(data, fields[0][j + 1], fields[1][j + 1], t) for j, t in enumerate(types)]
        pending = data[rest:]
        if not more:
            return


def _read_after(stream: IO[bytes], pending: bytes, size: int) -> tuple[bytearray, int]:
    """(`pending` followed by up to `size` bytes of the stream in one new buffer, how many were read):
    the stream's bytes are copied once, straight into it."""
    data = bytearray(len(pending) + size)
    data[:len(pending)] = pending
    got = len(pending)
    with memoryview(data) as view:
        while got < len(data):
            n = stream.readinto(view[got:])
            if not n:
                break
            got += n
    del data[got:]
    return data, got - len(pending)


def _rows(data: bytes, signature: bytes, nfields: int, complete: bool):
    """(row starts, (field starts, field lengths) per field, where the unread rest begins);
    `complete`: data ends after its last row (else an error)."""
    starts = _candidates(data, np.frombuffer(data, np.uint8), signature)
    if len(starts) * nfields > _WALK_CELLS:  # far more candidates than rows: values full of signatures
        starts = _real_starts(data, starts, nfields)
    fstarts, flens, ends = _walk(data, starts, nfields)
    limit = len(data)
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


def _real_starts(data: bytes, starts: np.ndarray, nfields: int) -> np.ndarray:
    """The candidates chained from the first row, walked _WALK_CELLS at a time: only the row ends of
    every candidate are kept (8 bytes each), not the fields × candidates of a whole walk."""
    block = max(1, _WALK_CELLS // nfields)
    ends = np.concatenate([_walk(data, starts[i:i + block], nfields)[2] for i in range(0, len(starts), block)])
    if starts[0] == 0 and (ends[:-1] == starts[1:]).all():
        return starts
    return starts[_chain(starts, ends, len(data))]


def _candidates(data: bytes, buf: np.ndarray, signature: bytes) -> np.ndarray:
    """Positions where the row signature (field count, marker length, marker) occurs.

    One pass over the chunk looks for the marker's fifth byte (0x13, a control character: rare in
    text, 1 in 256 of binary bytes); the signature's other bytes are then compared at those few
    positions only, 8, 4 and 2 at a time."""
    size = len(signature)
    if len(buf) < size:
        return np.empty(0, np.int64)
    rare = 10  # the signature's byte the pass looks for (the marker starts at 6)
    starts = np.flatnonzero(buf[rare:len(buf) - size + rare + 1] == signature[rare])
    if not len(starts):
        return starts
    starts = starts[_at_every_byte(data, 8)[starts + 6] == np.frombuffer(signature, "<i8", count=1, offset=6)[0]]
    starts = starts[_at_every_byte(data, 4)[starts + 2] == np.frombuffer(signature, "<i4", count=1, offset=2)[0]]
    return starts[_at_every_byte(data, 2)[starts] == np.frombuffer(signature, "<i2", count=1)[0]]


def _walk(data: bytes, starts: np.ndarray, nfields: int):
    """Field starts and lengths (nfields × rows) and row ends, for every row start at once."""
    n = len(starts)
    fstarts = np.empty((nfields, n), np.int64)
    flens = np.empty((nfields, n), np.int32)
    pos = starts + 2
    if len(data) < 4:
        return fstarts, flens, pos
    words = _at_every_byte(data, 4)
    last = len(words) - 1
    for j in range(nfields):
        length = words[np.minimum(pos, last)].byteswap()
        fstarts[j] = pos + 4
        flens[j] = length
        pos = pos + 4 + np.maximum(length, 0)
    return fstarts, flens, pos


def _at_every_byte(data: bytes, width: int) -> np.ndarray:
    """The `width`-byte integer starting at every byte offset of data (a view, no copy; native byte
    order, so `.byteswap()` a gathered result to read network order): `_at_every_byte(data, 4)[p]`
    gathers the 4 bytes at each position p in one indexing step."""
    words = np.frombuffer(data, f"<i{width}", count=len(data) // width)
    return np.lib.stride_tricks.as_strided(words, shape=(len(data) - width + 1,), strides=(1,), writeable=False)


def _chain(starts: np.ndarray, ends: np.ndarray, limit: int) -> list[int]:
    """The candidates that really start rows, followed one by one from the first row (used only
    when a value holds the row signature). Stops where the next row's signature is not (yet) in
    the chunk: the caller keeps that last row for the next chunk, or finds the stream malformed.
    `starts` is sorted: each next row is found by bisection, with no index of every candidate."""
    chosen: list[int] = []
    k = 0 if len(starts) and starts[0] == 0 else None
    while k is not None:
        chosen.append(k)
        if ends[k] >= limit:
            break
        j = int(np.searchsorted(starts, ends[k]))
        k = j if j < len(starts) and starts[j] == ends[k] else None
    return chosen


_FIXED = {  # Arrow type → wire width
    pa.int16(): 2, pa.int32(): 4, pa.int64(): 8, pa.float32(): 4, pa.float64(): 8, pa.bool_(): 1,
    pa.date32(): 4, pa.timestamp("us"): 8, pa.timestamp("us", tz="UTC"): 8, pa.time64("us"): 8, pa.uuid(): 16,
}


def _decode(data: bytes, fstart: np.ndarray, flen: np.ndarray, arrow_type: pa.DataType) -> pa.Array:
    """One column of a chunk: the fields at `fstart` (length `flen`, -1 for NULL) as `arrow_type`."""
    valid = flen >= 0
    validity = validity_bitmap(valid)
    n = len(flen)
    if arrow_type in (pa.string(), pa.binary()):
        return _variable(data, fstart, np.maximum(flen, 0), validity, arrow_type)
    width = _FIXED[arrow_type]
    if (flen[valid] != width).any():
        raise ValueError(f"unexpected field length for {arrow_type} in binary COPY")
    where = np.where(valid, fstart, 0)
    if arrow_type == pa.uuid():  # 16 bytes as they are: two 8-byte gathers side by side
        raw = np.empty((n, 2), np.int64)
        raw[:, 0] = _at_every_byte(data, 8)[where]
        raw[:, 1] = _at_every_byte(data, 8)[where + 8]
        storage = pa.Array.from_buffers(pa.binary(16), n, [validity, pa.py_buffer(raw)])
        return pa.ExtensionArray.from_storage(pa.uuid(), storage)
    if arrow_type == pa.bool_():
        bits = np.packbits(np.frombuffer(data, np.uint8)[where] != 0, bitorder="little")
        return pa.Array.from_buffers(arrow_type, n, [validity, pa.py_buffer(bits)])
    values = _at_every_byte(data, width)[where].byteswap()  # floats too, as their bits: NaN payloads kept
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
