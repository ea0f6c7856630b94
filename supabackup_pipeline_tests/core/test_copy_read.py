"""The binary COPY reader (core/copy_read.py) against the server's real binary COPY: every value as
psycopg reads it, whatever the chunk size, also when a value holds the row signature itself."""

from __future__ import annotations

import io
import struct

import pyarrow as pa
import pytest

from supabackup_pipeline.core.copy_read import MARKER_SQL, read_chunks
from supabackup_pipeline.core.errors import SupabackupError
from supabackup_pipeline.core.snapshot import connect, open_snapshot

COLUMNS = "id int8, small int2, b bytea, t text, ts timestamptz, tsl timestamp, d date, tm time, u uuid, f4 real, f8 float8, ok bool"
TYPES = [pa.int64(), pa.int16(), pa.binary(), pa.string(), pa.timestamp("us", tz="UTC"), pa.timestamp("us"),
         pa.date32(), pa.time64("us"), pa.uuid(), pa.float32(), pa.float64(), pa.bool_()]
NAMES = [c.split()[0] for c in COLUMNS.split(", ")]
# What every row of this COPY starts with: its field count (the marker and 12 columns), the marker's
# length and the marker. A value holding exactly these bytes must not be taken for a row start.
SIGNATURE = "\\x000d00000008" + b"SBKP\x13\x37RW".hex()


@pytest.fixture
def conn(project_db_url):
    with connect(project_db_url) as conn:
        conn.execute(f"DROP TABLE IF EXISTS public.copy_read; CREATE TABLE public.copy_read ({COLUMNS})")
        yield conn
        conn.execute("DROP TABLE public.copy_read")


def _fill(conn) -> None:
    conn.execute(f"""
        INSERT INTO public.copy_read
        SELECT g, (g % 65536 - 32768)::int2,
               CASE WHEN g % 7 = 0 THEN NULL WHEN g % 5 = 0 THEN '{SIGNATURE}'::bytea
                    ELSE decode(repeat(lpad(to_hex(g), 4, '0'), g % 40), 'hex') END,
               CASE WHEN g % 11 = 0 THEN NULL WHEN g % 13 = 0 THEN '' ELSE repeat('ünï ' || g, g % 9) END,
               '2026-01-01 12:00:00+00'::timestamptz - g * interval '17 days 3 seconds',
               '1999-12-31 23:59:59.999999'::timestamp + g * interval '1 microsecond',
               '0001-01-01'::date + g * 37, '00:00:00'::time + g * interval '1.5 seconds',
               CASE WHEN g % 3 = 0 THEN NULL ELSE gen_random_uuid() END,
               CASE g % 4 WHEN 0 THEN '-0' WHEN 1 THEN 'NaN' ELSE g / 3.0 END,
               CASE WHEN g % 6 = 0 THEN NULL ELSE g * 1e-300 END, g % 2 = 0
        FROM generate_series(1, 2000) g
    """)


def _binary_copy(conn) -> bytes:
    with conn.cursor().copy(f"COPY (SELECT {MARKER_SQL}, * FROM public.copy_read ORDER BY id)"
                            " TO STDOUT (FORMAT binary)") as copy:
        return b"".join(bytes(chunk) for chunk in copy)


def _decoded(data: bytes, chunk: int) -> list[tuple]:
    batches = [pa.RecordBatch.from_arrays(arrays, names=NAMES) for arrays in read_chunks(io.BytesIO(data), TYPES, chunk)]
    table = pa.Table.from_batches(batches, pa.schema(list(zip(NAMES, TYPES))))
    return list(zip(*(table.column(name).to_pylist() for name in NAMES)))


def _same(name: str, a, b) -> bool:
    """Equal, NaN equal to NaN and -0.0 told from 0.0; real compared as float4 (psycopg reads its
    shortest text, 0.6666667, where the reader has the exact float4 value)."""
    if isinstance(a, float) and isinstance(b, float):
        fmt = ">f" if name == "f4" else ">d"
        return (a != a and b != b) or struct.pack(fmt, a) == struct.pack(fmt, b)
    return a == b


@pytest.mark.parametrize("chunk", [7, 1000, 1 << 20])
def test_every_value_as_psycopg_reads_it_whatever_the_chunk_size(conn, chunk):
    _fill(conn)
    expected = conn.execute("SELECT * FROM public.copy_read ORDER BY id").fetchall()
    data = _binary_copy(conn)
    assert data.count(bytes.fromhex(SIGNATURE[2:])) > 2000  # every row, and the values that mimic one

    got = _decoded(data, chunk)

    assert len(got) == len(expected) == 2000
    for row, want in zip(got, expected):
        for name, a, b in zip(NAMES, row, want):
            assert _same(name, a, b), (name, a, b)


def test_an_empty_table_reads_as_no_rows(conn):
    assert _decoded(_binary_copy(conn), 1 << 20) == []


def test_a_stream_cut_short_is_an_error_not_fewer_rows(conn):
    _fill(conn)
    data = _binary_copy(conn)
    for cut in (len(data) - 1, len(data) // 2, 15):
        with pytest.raises(ValueError, match="ended early|malformed"):
            _decoded(data[:cut], 1000)


def test_one_psql_session_runs_many_copies_in_the_snapshot_and_reports_a_failed_one(conn, project_db_url):
    """A worker's psql session reads table after table, all in the snapshot (rows added after it
    was taken are not seen), and a COPY the server refuses fails with the server's message."""
    _fill(conn)
    copy = f"COPY (SELECT {MARKER_SQL}, * FROM public.copy_read ORDER BY id) TO STDOUT (FORMAT binary)"
    with open_snapshot(project_db_url) as snap, snap.copy_session() as session:
        conn.execute("INSERT INTO public.copy_read (id) VALUES (5000)")
        for _ in range(2):
            with session.copy_out(copy) as stream:
                ids = [i for arrays in read_chunks(stream, TYPES) for i in arrays[0].to_pylist()]
            assert ids == list(range(1, 2001))
        with pytest.raises(SupabackupError, match="no_such_table"):
            with session.copy_out("COPY (SELECT * FROM public.no_such_table) TO STDOUT (FORMAT binary)") as stream:
                list(read_chunks(stream, TYPES))


def test_a_value_full_of_row_signatures_is_walked_a_bounded_block_at_a_time(conn, monkeypatch):
    """An upload that repeats the row signature makes each repeat a candidate row: a walk of every
    candidate's fields at once took fields × candidates of memory (2 GB for 32 MB over 60 columns).
    Past _WALK_CELLS they are walked a block at a time, and only real rows whole."""
    from supabackup_pipeline.core import copy_read

    blob = bytes.fromhex(SIGNATURE[2:]) * 50_000  # 700 KB, 50,000 candidates
    conn.execute("INSERT INTO public.copy_read (id, b) VALUES (1, %s), (2, 'x'), (3, %s)", (blob, blob))
    monkeypatch.setattr(copy_read, "_WALK_CELLS", 13 * 1000)
    walked, walk = [], copy_read._walk
    monkeypatch.setattr(copy_read, "_walk", lambda data, starts, n: walked.append(len(starts) * n) or walk(data, starts, n))

    got = _decoded(_binary_copy(conn), 1 << 20)

    assert [(row[0], row[2]) for row in got] == [(1, blob), (2, b"x"), (3, blob)]
    assert max(walked) <= 13 * 1000


class _Pipe:
    """A pipe that hands over `data` in the given piece sizes (read1 returns what is there)."""

    def __init__(self, data: bytes, sizes: list[int]):
        self._data, self._sizes = data, sizes

    def read1(self, _: int) -> bytes:
        size = self._sizes.pop(0) if self._sizes else len(self._data)
        piece, self._data = self._data[:size], self._data[size:]
        return piece


def _read_all(stream, size: int, into: bool) -> bytes:
    """What `read(size)`, or `readinto` a buffer of `size` bytes (all of it if negative), hands out."""
    out = b""
    if not into:
        while chunk := stream.read(size):
            out += chunk
        return out
    buffer = bytearray(size if size > 0 else 4096)
    while n := stream.readinto(buffer):
        out += buffer[:n]
    return out


@pytest.mark.parametrize("sizes", [[], [1] * 80, [3, 7, 5, 1, 1, 2], [40, 1, 1], [41, 40, 39, 2, 1]])
@pytest.mark.parametrize("reads", [1, 4, 64, -1])
@pytest.mark.parametrize("into", [False, True], ids=["read", "readinto"])
def test_a_psql_stream_ends_exactly_at_its_mark_however_the_pipe_splits_it(sizes, reads, into):
    """The end mark may arrive in pieces, even byte by byte; what comes before it is handed on
    whole and unchanged, whatever the read sizes, read or copied into the reader's buffer."""
    from supabackup_pipeline.core.snapshot import _UntilMark

    mark = b"--supabackup-copy-end-0123456789--\n"
    body = bytes(range(256)) * 3 + mark[:-1] + b"x"  # a value that starts like the mark is data
    stream = _UntilMark(_Pipe(body + mark, sizes), mark)
    assert _read_all(stream, reads, into) == body and stream.marked
