"""Every value comes back exactly: dump a table to Parquet, load it into an empty copy, compare.

Comparison is by each row's full Postgres text form (and float bit patterns), row by row, so a
single changed digit, lost -0, flattened array or shifted timestamp fails the test. Tables that
load as binary COPY are also loaded as CSV (the `copy_format` fixture), so both paths are checked.
"""

import json
import threading
import random
import struct
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from supabackup_pipeline.core import table_load
from supabackup_pipeline.core.catalog import TableRef
from supabackup_pipeline.core.snapshot import connect, open_snapshot
from supabackup_pipeline.core.table_dump import dump_table
from supabackup_pipeline.core.table_load import load_table

ALL_TYPES_DDL = """
CREATE TYPE public.mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN public.positive_int AS integer CHECK (VALUE > 0);
CREATE TYPE public.address AS (street text, number int, tags text[]);
CREATE TABLE public."AllTypes" (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    "select" text, "Mixed Case" varchar(20), c char(5),
    i2 smallint, i4 integer, i8 bigint, f4 real, f8 double precision,
    n numeric, n_prec numeric(12, 2), n_big numeric(60, 20), mon money,
    b bytea, bl boolean, u uuid, j json, jb jsonb,
    d date, t time, ttz timetz, ts timestamp, tstz timestamptz, iv interval,
    ip inet, net cidr, mac macaddr, m public.mood, pos public.positive_int, addr public.address,
    r_int int4range, r_ts tstzrange, r_num numrange,
    a_int int[], a_txt text[], a_f8 float8[], a_bool boolean[], a_2d int[], a_uuid uuid[], a_ts timestamptz[],
    tsv tsvector, pt point, bits bit(4), vbits varbit, doc xml,
    doubled bigint GENERATED ALWAYS AS (i4::bigint * 2) STORED
);
"""

COLUMNS = (
    '"select", "Mixed Case", c, i2, i4, i8, f4, f8, n, n_prec, n_big, mon, b, bl, u, j, jb, d, t, ttz, ts, tstz, iv,'
    " ip, net, mac, m, pos, addr, r_int, r_ts, r_num, a_int, a_txt, a_f8, a_bool, a_2d, a_uuid, a_ts,"
    " tsv, pt, bits, vbits, doc"
)

ROWS = [
    # edge values
    """('', 'MiXeD', 'ab', -32768, -2147483648, -9223372036854775808, 'NaN', '-0', 'NaN', 0.10, 
        '-12345678901234567890123456789012345678.12345678901234567890', -0.01, '\\x00ff10', true,
        '00000000-0000-0000-0000-000000000000', '{"a":  1, "a": 2}', '{"k": [1, 2.50, null]}',
        'infinity', '24:00:00', '23:59:59+14', '-infinity', 'infinity', '1 year 2 mons -3 days 04:05:06.789',
        '::1', '10.0.0.0/8', '08:00:2b:01:02:03', 'sad', 1, ROW('Main "St"', 5, '{a,NULL}'),
        '[1,5)', '[2026-01-01,infinity)', '(,1.5]',
        '{1,NULL,3}', '{"with,comma","with \\"quote\\"","back\\\\slash",NULL,"","NULL"}', '{1.5,-0,2.5e-308}',
        '{t,f,NULL}', '{{1,2},{3,4}}', '{00000000-0000-0000-0000-000000000001}', '{2026-01-01 00:00:00+00}',
        'a:1 fat:2 cat:3', '(1.5,-2)', B'1010', B'101', '<a b="1">x &amp; y</a>')""",
    # ordinary values
    """(E'multi\\nline\\r\\n"q" ,;', 'x', 'abcde', 32767, 2147483647, 9223372036854775807, 3.4028235e38, 5e-324,
        '1e-1000', 12.30, 1.5, 1234567.89, '\\x', false, gen_random_uuid(), '[]', '"str"',
        '2026-11-27', '12:34:56.789012', '00:00:00-03', '2026-11-27 17:43:02.123456', '2026-11-27 17:43:02.123456+05:30',
        '0', '2001:db8::1/64', '2001:db8::/32', 'ff:ff:ff:ff:ff:ff', 'happy', 2147483647, ROW(NULL, NULL, NULL),
        'empty', '[2026-01-01 00:00:00+00,2026-01-02 00:00:00+00)', '[-Infinity,NaN]',
        '{}', '{}', '{Infinity,-Infinity}', '{}', '[0:1]={5,6}', '{}', '{infinity}',
        '', '(0,0)', B'0000', B'', '<empty/>')""",
    # out of Arrow's range: BC, year 10000+, far future
    """('ünïcødé ✓ 🎉', NULL, NULL, 0, 0, 0, 1.17549435e-38, 1e308, 'Infinity', NULL, '0.00000000000000000001', NULL,
        NULL, NULL, NULL, 'null', 'null', '0044-03-15 BC', '00:00:00', NULL, '10000-01-01 00:00:00',
        '0044-03-15 12:00:00+00 BC', '-178000000 years', NULL, NULL, NULL, NULL, NULL, NULL,
        NULL, NULL, NULL, NULL, '{{{1}}}', '{NaN}', NULL, '[-5:-5]={1}', NULL, NULL, NULL, NULL, NULL, NULL, NULL)""",
    # all NULL
    "(" + ", ".join(["NULL"] * len(COLUMNS.split(","))) + ")",
]

@pytest.fixture(autouse=True)
def empty_public_schema(db):
    """Each test starts from an empty public schema (several run twice, once per copy format)."""
    yield
    db.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")


@pytest.fixture(params=["binary", "csv"])
def copy_format(request, monkeypatch):
    """Load as binary COPY where the table allows it, or always as CSV; `.used` lists the format
    each load took, so a test also shows which path it went through."""
    used = []
    choose = table_load._binary_encoders

    def chosen(*args):
        encoders = choose(*args) if request.param == "binary" else None
        used.append("binary" if encoders else "csv")
        return encoders

    monkeypatch.setattr(table_load, "_binary_encoders", chosen)
    return type("CopyFormat", (), {"name": request.param, "used": used})


def dump_and_reload(db_url, db, tmp_path, table: str) -> tuple[dict, pa.Table]:
    """Dump public.<table>, load it into an empty copy public.<table>_copy; return sidecar and Parquet."""
    with open_snapshot(db_url) as snap, snap.worker() as conn:
        dump = dump_table(snap, conn, TableRef("public", table), tmp_path)
    sidecar = json.loads((tmp_path / dump.sidecar_file).read_text())
    db.execute(f'CREATE TABLE public."{table}_copy" (LIKE public."{table}" INCLUDING ALL)')
    with connect(db_url) as conn, conn.transaction():
        loaded = load_table(conn, tmp_path / dump.parquet_file, sidecar, TableRef("public", f"{table}_copy"))
    assert loaded == sidecar["row_count"] == dump.rows
    return sidecar, pq.read_table(tmp_path / dump.parquet_file)


def load_choosing_format(db_url, path, sidecar: dict, table: str, monkeypatch) -> list:
    """Load a dump into public.<table>; the binary encoders chosen (None: the table went as CSV)."""
    used = []
    choose = table_load._binary_encoders
    monkeypatch.setattr(table_load, "_binary_encoders", lambda *args: used.append(choose(*args)) or used[-1])
    with connect(db_url) as conn, conn.transaction():
        load_table(conn, path, sidecar, TableRef("public", table))
    return used


def rows_as_text(db, table: str) -> list[str]:
    """Every row's text, sorted. `ROW(t.*)`, not `t::text`: in a table with a column `t`, that
    would be the column alone."""
    return [r[0] for r in db.execute(f'SELECT ROW(t.*)::text FROM public."{table}" t ORDER BY 1').fetchall()]


def test_every_type_round_trips_exactly(project_db_url, db, tmp_path, copy_format):
    db.execute(ALL_TYPES_DDL)
    for row in ROWS:
        db.execute(f'INSERT INTO public."AllTypes" ({COLUMNS}) VALUES {row}')
    original = rows_as_text(db, "AllTypes")
    assert len(original) == len(ROWS)

    sidecar, table = dump_and_reload(project_db_url, db, tmp_path, "AllTypes")

    assert rows_as_text(db, "AllTypes_copy") == original
    assert copy_format.used == ["csv"]  # interval, inet, enums…: no binary form here
    # the identity column's values came back too, not regenerated
    assert [r[0] for r in db.execute('SELECT id FROM public."AllTypes_copy" ORDER BY id')] == [1, 2, 3, 4]
    assert sidecar["row_count"] == len(ROWS)
    columns = {c["name"]: c for c in sidecar["columns"]}
    assert columns["n_prec"]["type"] == "numeric(12,2)"
    assert columns["m"]["type"] == "public.mood"
    assert columns["id"]["identity"] == "always" and columns["doubled"]["generated"] == "stored"
    assert any(k["type"] == "p" for k in sidecar["constraints"])


def test_a_stored_generated_column_is_not_dumped_and_the_load_computes_it(project_db_url, db, tmp_path):
    """As `pg_dump` and `COPY table` do: the Parquet holds the columns a restore loads, the sidecar
    keeps the generated column and its expression, and the loading server computes its values."""
    db.execute("""
        CREATE TABLE public.posts (id int PRIMARY KEY, title text, body text,
            search tsvector GENERATED ALWAYS AS (to_tsvector('english', title || ' ' || body)) STORED);
        INSERT INTO public.posts (id, title, body)
        SELECT g, 'Post ' || g, repeat('running words ', g % 7) FROM generate_series(1, 500) g;
    """)
    original = rows_as_text(db, "posts")

    sidecar, table = dump_and_reload(project_db_url, db, tmp_path, "posts")

    assert table.column_names == ["id", "title", "body"]
    search = sidecar["columns"][3]
    assert search["name"] == "search" and search["generated"] == "stored" and "to_tsvector" in search["default"]
    assert rows_as_text(db, "posts_copy") == original


def test_native_columns_use_lossless_arrow_types_with_the_same_values(project_db_url, db, tmp_path, copy_format):
    db.execute("""
        CREATE TABLE public.native (i2 smallint, i4 int, i8 bigint, f4 real, f8 float8, bl bool, tx text,
                                    b bytea, u uuid, d date, t time, ts timestamp, tstz timestamptz, a int[])
    """)
    rows = [
        (-1, 2, 2**62, 0.5, 0.1, True, "x", b"\x00\x01\xfe", uuid.uuid4(), datetime(2026, 1, 2).date(),
         datetime(2026, 1, 1, 1, 2, 3, 4).time(), datetime(1999, 12, 31, 23, 59, 59, 999999),
         datetime(2026, 11, 27, 17, 43, 2, 123456, tzinfo=timezone.utc), [1, None, 3]),
        (None,) * 14,
    ]
    with db.cursor() as cur:
        cur.executemany("INSERT INTO public.native VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)", rows)
    _, table = dump_and_reload(project_db_url, db, tmp_path, "native")
    types = {f.name: f.type for f in table.schema}
    assert types["i2"] == pa.int16() and types["i4"] == pa.int32() and types["i8"] == pa.int64()
    assert types["f4"] == pa.float32() and types["f8"] == pa.float64() and types["bl"] == pa.bool_()
    assert types["b"] == pa.binary() and types["u"] == pa.uuid()
    assert types["tstz"] == pa.timestamp("us", tz="UTC") and types["ts"] == pa.timestamp("us")
    assert types["d"] == pa.date32() and types["t"] == pa.time64("us") and types["a"] == pa.list_(pa.int32())
    got = table.to_pylist()
    expected = rows[0]
    assert [got[0][k] for k in ("i2", "i4", "i8", "f4", "f8", "bl", "tx", "b")] == list(expected[:8])
    assert got[0]["u"] == expected[8] and got[0]["d"] == expected[9] and got[0]["t"] == expected[10]
    assert got[0]["ts"] == expected[11] and got[0]["tstz"] == expected[12] and got[0]["a"] == [1, None, 3]
    assert all(v is None for k, v in got[1].items() if not k.startswith("__pgtext__"))
    assert rows_as_text(db, "native_copy") == rows_as_text(db, "native")
    assert copy_format.used == [copy_format.name]


def test_floats_keep_every_bit(project_db_url, db, tmp_path, copy_format):
    rng = random.Random(42)
    values = [0.0, -0.0, 5e-324, -5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, float("inf"), float("-inf")]
    while len(values) < 3000:
        (value,) = struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))
        if value == value:  # NaN payloads are not kept by Postgres itself
            values.append(value)
    db.execute("CREATE TABLE public.floats (id int, f8 float8, f4 real)")
    with db.cursor() as cur:
        cur.executemany("INSERT INTO public.floats VALUES (%s, %s, %s::float8::real)",
                        [(i, v, v if 1e-37 < abs(v) < 3e38 else -0.0) for i, v in enumerate(values)])
    dump_and_reload(project_db_url, db, tmp_path, "floats")
    bits = "SELECT id, float8send(f8), float4send(f4) FROM public.{} ORDER BY id"
    assert db.execute(bits.format("floats_copy")).fetchall() == db.execute(bits.format("floats")).fetchall()
    assert copy_format.used == [copy_format.name]


def test_quoted_names_and_keywords(project_db_url, db, tmp_path):
    db.execute('CREATE TABLE public."Odd ""Name"".x/y" ("from" int, "Order" text, "a.b" text, "ü" text)')
    db.execute('INSERT INTO public."Odd ""Name"".x/y" VALUES (1, \'o\', \'ab\', \'ü\')')
    with open_snapshot(project_db_url) as snap, snap.worker() as conn:
        dump = dump_table(snap, conn, TableRef("public", 'Odd "Name".x/y'), tmp_path)
    assert "/" not in dump.parquet_file and dump.parquet_file.startswith("public.")
    assert [p.name for p in tmp_path.iterdir()] and all(p.parent == tmp_path for p in tmp_path.iterdir())
    sidecar = json.loads((tmp_path / dump.sidecar_file).read_text())
    assert sidecar["table"] == 'Odd "Name".x/y'
    assert [c["name"] for c in sidecar["columns"]] == ["from", "Order", "a.b", "ü"]
    assert pq.read_table(tmp_path / dump.parquet_file).to_pylist() == [{"from": 1, "Order": "o", "a.b": "ab", "ü": "ü"}]


def test_empty_table_and_table_without_columns(project_db_url, db, tmp_path):
    db.execute("CREATE TABLE public.empty_one (id int primary key, v numeric)")
    db.execute("CREATE TABLE public.no_columns (); INSERT INTO public.no_columns DEFAULT VALUES; INSERT INTO public.no_columns DEFAULT VALUES")
    sidecar, table = dump_and_reload(project_db_url, db, tmp_path, "empty_one")
    assert sidecar["row_count"] == 0 and table.num_rows == 0 and table.schema.names == ["id", "v"]
    sidecar, _ = dump_and_reload(project_db_url, db, tmp_path, "no_columns")
    assert sidecar["row_count"] == 2
    assert db.execute("SELECT count(*) FROM public.no_columns_copy").fetchone()[0] == 2


@pytest.mark.parametrize("rows", [200_000])
def test_large_table_streams_in_batches(project_db_url, db, tmp_path, rows, copy_format):
    db.execute(f"CREATE TABLE public.big AS SELECT g AS id, md5(g::text) AS h, g * 1.5 AS n FROM generate_series(1, {rows}) g")
    _, table = dump_and_reload(project_db_url, db, tmp_path, "big")
    assert table.num_rows == rows
    parquet = pq.ParquetFile(next(tmp_path.glob("public.big.parquet")))
    assert parquet.metadata.num_row_groups >= 1
    checksum = "SELECT md5(string_agg(t::text, ',' ORDER BY id)) FROM public.{} t"
    assert db.execute(checksum.format("big_copy")).fetchone() == db.execute(checksum.format("big")).fetchone()
    assert Decimal(table.column("n")[-1].as_py()) == Decimal(rows) * Decimal("1.5")
    assert copy_format.used == [copy_format.name]


def _random_arrays(rng: random.Random, n: int) -> list[tuple]:
    """Rows of 1-D arrays of every list element type, with NULL arrays, NULL elements, empty arrays
    and edge values: int extremes, -0, subnormals, float4 extremes, strings JSON and Postgres both quote."""
    pieces = ['"', "\\", "\n", "\r\n", "\t", ",", "{", "}", " ", "NULL", "null", "'", "ü", "🎉", "\x01", "\x1f",
              "\u2028", "\ufeff", "a", "b c", "\\u0041", "[1]", "[0:1]={", "=", "NuLl", "\x0b", "\x0c", "\\\\\""]
    ints = {
        "i2": [-32768, 32767, 0, -1, 1],
        "i4": [-2147483648, 2147483647, 0, -1],
        "i8": [-9223372036854775808, 9223372036854775807, 0, -1, 2**53 + 1],
    }
    f8_edges = [0.0, -0.0, 5e-324, -5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, 0.1, 1e21, 1e-7]
    f4_edges = [0.0, -0.0, 1.401298464324817e-45, 3.4028234663852886e38, 1.1754943508222875e-38, 0.10000000149011612]

    def finite(fmt: str, bits: int, edges: list[float]) -> float:
        """An edge value, or random bits read as a float of `fmt` (NaN and infinities skipped)."""
        if rng.random() < 0.3:
            return rng.choice(edges)
        while True:
            (v,) = struct.unpack(fmt, rng.getrandbits(bits).to_bytes(bits // 8, "little"))
            if v == v and abs(v) != float("inf"):
                return v

    def f8() -> float:
        return finite("<d", 64, f8_edges)

    def f4() -> float:
        return finite("<f", 32, f4_edges)

    def text() -> str:
        return "".join(rng.choice(pieces) for _ in range(rng.randrange(0, 5)))

    def array(make):
        roll = rng.random()
        if roll < 0.08:
            return None
        if roll < 0.16:
            return []
        return [None if rng.random() < 0.1 else make() for _ in range(rng.randrange(1, 8))]

    return [
        (
            i,
            array(lambda: rng.choice(ints["i2"]) if rng.random() < 0.3 else rng.randint(-32768, 32767)),
            array(lambda: rng.choice(ints["i4"]) if rng.random() < 0.3 else rng.randint(-2**31, 2**31 - 1)),
            array(lambda: rng.choice(ints["i8"]) if rng.random() < 0.3 else rng.randint(-2**63, 2**63 - 1)),
            array(f4), array(f8), array(lambda: rng.random() < 0.5),
            array(text), array(text), array(lambda: text()[:3].rstrip(" ")),
        )
        for i in range(n)
    ]


def _float_bits(values: list | None) -> list | None:
    return None if values is None else [None if v is None else struct.pack("<d", v) for v in values]


@pytest.mark.parametrize("with_overflow", [True, False], ids=["overflow-values", "lists-only"])
def test_many_array_rows_round_trip_exactly(project_db_url, db, tmp_path, monkeypatch, copy_format, with_overflow):
    from supabackup_pipeline.core import copy_read

    monkeypatch.setattr(copy_read, "CHUNK_BYTES", 64 << 10)  # many chunks, so decoding and conversions meet their edges
    db.execute("""
        CREATE TABLE public.arrays (id int PRIMARY KEY, a_i2 smallint[], a_i4 int[], a_i8 bigint[], a_f4 real[],
                                    a_f8 float8[], a_bool bool[], a_txt text[], a_vc varchar(40)[], a_bp char(3)[])
    """)
    rows = _random_arrays(random.Random(7), 4000)
    with db.cursor() as cur:
        cur.executemany("INSERT INTO public.arrays VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)", rows)
    # values no list column holds go to the overflow column, mixed in among ordinary rows
    overflow = {
        "a_i4": "'{{1,2},{3,4}}'", "a_f8": "'{NaN,1,-0}'", "a_f4": "'{1,-Infinity}'",
        "a_txt": "'[0:1]={a,\"b,c\"}'", "a_bool": "'{{{t}}}'", "a_i8": "'[2:2]={-9223372036854775808}'",
    } if with_overflow else {}
    for column, literal in overflow.items():
        db.execute(f"UPDATE public.arrays SET {column} = {literal} WHERE id % 97 = 3")

    _, table = dump_and_reload(project_db_url, db, tmp_path, "arrays")

    assert table.num_rows == len(rows)
    assert rows_as_text(db, "arrays_copy") == rows_as_text(db, "arrays")
    # a value in an overflow column has no binary form here: that table loads as CSV
    assert copy_format.used == ["csv" if with_overflow else copy_format.name]
    bits = "SELECT id, array_send(a_f4), array_send(a_f8) FROM public.{} ORDER BY id"
    assert db.execute(bits.format("arrays_copy")).fetchall() == db.execute(bits.format("arrays")).fetchall()

    types = {f.name: f.type for f in table.schema}
    assert types["a_i2"] == pa.list_(pa.int16()) and types["a_i8"] == pa.list_(pa.int64())
    assert types["a_f4"] == pa.list_(pa.float32()) and types["a_f8"] == pa.list_(pa.float64())
    assert types["a_bool"] == pa.list_(pa.bool_()) and types["a_bp"] == pa.list_(pa.string())
    # exactly the arrays no list holds are in the overflow columns, and NULL in the typed ones
    for column in [f.name for f in table.schema if f.name.startswith("a_")]:
        overflow_column = "__pgtext__" + column
        got = table.select(["id", column, overflow_column]).to_pylist()
        expected = {r["id"] for r in got if r["id"] % 97 == 3} if column in overflow else set()
        assert {r["id"] for r in got if r[overflow_column] is not None} == expected, column
        assert all(r[column] is None for r in got if r[overflow_column] is not None), column
    # the typed columns hold the very values inserted (bit for bit for floats, -0 included)
    by_id = {r[0]: r for r in rows}
    names = ["id", "a_i2", "a_i4", "a_i8", "a_f4", "a_f8", "a_bool", "a_txt", "a_vc"]
    for got in table.select(names).to_pylist():
        if got["id"] % 97 == 3:
            continue
        expected = dict(zip(names, by_id[got["id"]]))
        for name in ("a_f4", "a_f8"):
            assert _float_bits(got.pop(name)) == _float_bits(expected.pop(name)), (got["id"], name)
        assert got == expected


def test_numbers_json_and_text_keep_their_exact_form(project_db_url, db, tmp_path, copy_format):
    """numeric scale and digits (up to 20,000 of them), NaN/±Infinity, jsonb and json text, bytea,
    edge dates and times."""
    db.execute("""
        CREATE TABLE public.exact (id int PRIMARY KEY, n numeric, n2 numeric(12,2), n0 numeric(30,0), j jsonb,
                                   js json, tx varchar(20), bp char(4), b bytea, d date, t time, ts timestamp,
                                   tstz timestamptz, u uuid, ok bool)
    """)
    rng = random.Random(3)
    numerics = ["0", "0.000", "-0.5", "1.50", "NaN", "Infinity", "-Infinity", "123456789012345678901234567890.123456789",
                "0.00000000000000000001", "-99999999999999999999.99990", "10000", "1e-3", "7"]
    with db.cursor() as cur:
        cur.executemany(
            "INSERT INTO public.exact VALUES (%s, %s::numeric, %s::numeric, %s::numeric, %s::jsonb, %s::json, %s, %s,"
            " %s, %s::date, %s::time, %s::timestamp, %s::timestamptz, %s::uuid, %s)",
            [(i, rng.choice(numerics + [str(rng.randint(-10**25, 10**25)) + "." + str(rng.randint(0, 999))]),
              f"{rng.randint(-10**9, 10**9)}.{rng.randint(0, 99):02d}", str(rng.randint(-10**29, 10**29)),
              rng.choice(['{"b": [1, 2.50, null], "a": "ü"}', "[]", '"x"', "1e400"]),
              rng.choice(['{"b":1,  "a":2}', "[ ]", "null"]), rng.choice(["", "a\tb", "🎉", "x" * 20]),
              rng.choice(["ab", "abcd", ""]), rng.randbytes(rng.randrange(0, 40)),
              rng.choice(["0001-01-01", "9999-12-31", "2000-01-01", "1999-12-31", "2024-02-29"]),
              rng.choice(["00:00", "23:59:59.999999", "12:00:00.000001"]),
              rng.choice(["0001-01-01 00:00", "9999-12-31 23:59:59.999999", "1970-01-01", "2000-01-01 00:00:00.5"]),
              rng.choice(["0001-01-01 00:00+00", "9999-12-31 23:59:59.999999+00", "2026-11-27 17:43:02.123456+05:30"]),
              str(uuid.UUID(int=rng.getrandbits(128))), rng.choice([True, False]))
             for i in range(2000)] + [(5000,) + (None,) * 14]
            + [(6000 + i, v, None, None, None, None, None, None, None, None, None, None, None, None, None)
               for i, v in enumerate(["9" * 20000 + "." + "1" * 1000, "-0." + "0" * 16000 + "1"])])
    dump_and_reload(project_db_url, db, tmp_path, "exact")
    assert rows_as_text(db, "exact_copy") == rows_as_text(db, "exact")
    assert copy_format.used == [copy_format.name]


def test_batches_bounded_by_bytes_keep_a_blob_table_lossless(project_db_url, db, tmp_path, copy_format, monkeypatch):
    """Blobs of 1-200 KB next to a range (CSV) or plain (binary) column: each load batch holds
    about BATCH_BYTES, so a wide table goes a few rows at a time, and every byte still comes back."""
    monkeypatch.setattr(table_load, "BATCH_BYTES", 256 << 10)
    monkeypatch.setattr(table_load, "IN_FLIGHT_BYTES", 1)  # every batch is larger: each waits alone
    db.execute("""
        CREATE TABLE public.blobs (id int PRIMARY KEY, note text, blob bytea, p int4range);
        INSERT INTO public.blobs SELECT g, 'row ' || g,
               CASE WHEN g % 9 = 0 THEN NULL ELSE decode(repeat(md5(g::text), 1 + (g * 7919) % 6250), 'hex') END,
               CASE WHEN g % 2 = 0 THEN int4range(g, g + 10, '[]') END
        FROM generate_series(1, 120) g;
        CREATE TABLE public.plain AS SELECT id, note, blob FROM public.blobs;
    """)
    for table in ("blobs", "plain"):
        original = db.execute(f"SELECT md5(string_agg(t::text, '|' ORDER BY id)) FROM public.{table} t").fetchone()[0]
        (tmp_path / table).mkdir()
        _, parquet = dump_and_reload(project_db_url, db, tmp_path / table, table)
        per_batch = table_load.batch_rows(pq.ParquetFile(tmp_path / table / f"public.{table}.parquet"),
                                          parquet.column_names)
        assert 1 <= per_batch < 30  # ~100 KB a row on average: a handful of rows per batch, not 64k
        copied = db.execute(f"SELECT md5(string_agg(t::text, '|' ORDER BY id)) FROM public.{table}_copy t").fetchone()[0]
        assert copied == original
    assert copy_format.used == ["csv", copy_format.name]


def test_a_load_the_server_rejects_midway_raises_and_leaves_no_row_and_no_thread(project_db_url, db, tmp_path,
                                                                              monkeypatch):
    """The writer thread's error (here a CHECK failing in a late batch) reaches the caller, the
    transaction rolls back whole, and the writer thread is gone."""
    monkeypatch.setattr(table_load, "MAX_BATCH_ROWS", 500)
    db.execute("CREATE TABLE public.items (id int, name text); INSERT INTO public.items"
               " SELECT g, 'n' || g FROM generate_series(1, 20000) g")
    with open_snapshot(project_db_url) as snap, snap.worker() as conn:
        dump = dump_table(snap, conn, TableRef("public", "items"), tmp_path)
    sidecar = json.loads((tmp_path / dump.sidecar_file).read_text())
    db.execute("CREATE TABLE public.items_copy (id int CHECK (id <> 19000), name text)")
    threads = threading.active_count()
    with pytest.raises(psycopg.errors.CheckViolation):
        with connect(project_db_url) as conn, conn.transaction():
            load_table(conn, tmp_path / dump.parquet_file, sidecar, TableRef("public", "items_copy"))
    assert db.execute("SELECT count(*) FROM public.items_copy").fetchone()[0] == 0
    assert threading.active_count() == threads


def test_a_damaged_dump_of_the_next_table_fails_the_load_and_leaves_no_thread(project_db_url, db, tmp_path):
    """The next table is read while this one's COPY runs: an error there (a damaged Parquet file)
    reaches the caller as that table's, after the tables before it, and no reading thread is left."""
    jobs = []
    for name in ("first", "second"):
        db.execute(f"CREATE TABLE public.{name} (id int, name text); INSERT INTO public.{name}"
                   " SELECT g, 'n' || g FROM generate_series(1, 5000) g")
        with open_snapshot(project_db_url) as snap, snap.worker() as conn:
            dump = dump_table(snap, conn, TableRef("public", name), tmp_path)
        db.execute(f"CREATE TABLE public.{name}_copy (LIKE public.{name})")
        sidecar = json.loads((tmp_path / dump.sidecar_file).read_text())
        jobs.append(table_load.LoadJob(tmp_path / dump.parquet_file, sidecar, TableRef("public", f"{name}_copy")))
    damaged = jobs[1].parquet_path.read_bytes()
    jobs[1].parquet_path.write_bytes(damaged[: len(damaged) // 2])
    threads = threading.active_count()
    loaded = []
    with pytest.raises(pa.ArrowInvalid):
        with connect(project_db_url) as conn, conn.transaction():
            for rows in table_load.load_tables(conn, jobs):
                loaded.append(rows)
    assert loaded == [5000]
    assert threading.active_count() == threads


def test_the_reader_gets_at_most_in_flight_bytes_ahead_and_stops_when_the_load_does():
    """The reading thread prepares COPY data ahead of the sender, bounded in bytes (memory stays
    flat): it waits once IN_FLIGHT_BYTES are waiting, a batch larger than that still goes (alone),
    and a reader waiting for room gives up when the load stops (done or failed)."""
    handover = table_load._Handover(limit=10)
    handed = []

    def produce():
        try:
            for size in (4, 4, 4, 30, 1):
                handover.put(("data", (b"x" * size, 1)))
                handed.append(size)
            handover.put(("data", (b"x" * 20, 1)))
            handed.append(20)
        except table_load._Stopped:
            handed.append("stopped")

    reader = threading.Thread(target=produce, daemon=True)
    reader.start()
    reader.join(0.3)
    assert handed == [4, 4]  # 8 bytes wait; 4 more would pass 10
    assert handover.get()[1][0] == b"x" * 4
    reader.join(0.3)
    assert handed == [4, 4, 4]  # room for one more, not for the 30-byte batch
    assert [len(handover.get()[1][0]) for _ in range(2)] == [4, 4]
    reader.join(0.3)
    assert handed == [4, 4, 4, 30]  # alone, it goes; then even 1 byte waits for it
    assert len(handover.get()[1][0]) == 30
    reader.join(0.3)
    assert handed == [4, 4, 4, 30, 1]  # the 20 bytes do not fit beside the 1 waiting
    handover.stop()
    reader.join(5)
    assert not reader.is_alive() and handed[-1] == "stopped"


def test_enum_inet_interval_and_timetz_columns_load_as_binary_and_come_back_exactly(project_db_url, db, tmp_path,
                                                                                    copy_format):
    """Their binary fields are made from the text the dump holds (core/copy_binary_text.py): every
    form interval_out, timetz_out and network_show print, enum labels with odd characters, enum
    arrays, a domain over an enum, next to the native types whose text parsing binary COPY spares
    the server."""
    db.execute("""
        CREATE TYPE public.kind AS ENUM ('page_view', 'a "quoted", label', 'ünï ✓', '', 'NULL', '{x}');
        CREATE DOMAIN public.kind_d AS public.kind;
        CREATE TABLE public.textforms (id int PRIMARY KEY, k public.kind, kd public.kind_d, ip inet, net cidr,
                                       iv interval, tz timetz, ks public.kind[], at timestamptz, u uuid)
    """)
    rng = random.Random(7)
    intervals = ["0", "1 year 2 mons -3 days 04:05:06.789", "-178000000 years", "-1 days +02:03:00", "1 day -00:00:01",
                 "-00:00:00.000001", "100:00:00", "1 mon", "-2 years -3 mons", "2562047788:00:54.775807",
                 "-2562047788:00:54.775807", "3 days", "-1 years +2 mons", "00:00:00.5", "178000000 years"]
    networks = ["1.2.3.4", "0.0.0.0/0", "255.255.255.255", "10.1.2.3/8", "::1", "::", "2001:db8::1/64",
                "::ffff:1.2.3.4", "fe80::1:2:3:4/10", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"]
    cidrs = ["10.0.0.0/8", "0.0.0.0/0", "192.168.1.128/25", "2001:db8::/32", "::/0", "1.2.3.4/32"]
    times = ["04:05:06+02", "23:59:59.999999-05:30", "24:00:00+00", "00:00:00+15:59", "12:00:00.5-00:00:30",
             "08:00:00+05:45", "00:00:00-15:59:59"]
    kinds = ["page_view", 'a "quoted", label', "ünï ✓", "", "NULL", "{x}"]
    arrays = ["{}", "{page_view}", '{"a \\"quoted\\", label",NULL,"","NULL","{x}"}', "{ünï ✓,page_view}"]
    with db.cursor() as cur:
        cur.executemany(
            "INSERT INTO public.textforms VALUES (%s, %s, %s, %s::inet, %s::cidr, %s::interval, %s::timetz,"
            " %s::public.kind[], %s, %s)",
            [(i, rng.choice(kinds), rng.choice(kinds), rng.choice(networks), rng.choice(cidrs), rng.choice(intervals),
              rng.choice(times), rng.choice(arrays), datetime(2026, 1, 1, tzinfo=timezone.utc),
              uuid.UUID(int=rng.getrandbits(128))) for i in range(3000)]
            + [(5000,) + (None,) * 9])
    dump_and_reload(project_db_url, db, tmp_path, "textforms")
    assert rows_as_text(db, "textforms_copy") == rows_as_text(db, "textforms")
    assert copy_format.used == [copy_format.name]


def test_composite_money_and_mac_address_columns_load_as_binary_and_come_back_exactly(project_db_url, db, tmp_path,
                                                                                      copy_format):
    """Made from the dump's text too (core/copy_binary_text.py): a composite's attributes cut out of
    record_out's text (quotes, backslashes, commas, parentheses, white space, empty text against
    NULL, a domain attribute), money in this server's smallest unit, macaddr and macaddr8."""
    db.execute("""
        CREATE TYPE public.grade AS ENUM ('a', 'b c');
        CREATE DOMAIN public.code AS varchar(5);
        CREATE TYPE public.place AS (street text, n int, zip public.code, country char(2), amount numeric(8,2),
                                     big bigint, small smallint, ok boolean, g public.grade, ip inet);
        CREATE TABLE public.composed (id int PRIMARY KEY, home public.place, price money, mac macaddr,
                                      mac8 macaddr8, at timestamptz)
    """)
    rng = random.Random(11)
    streets = ["Main St", 'a "quoted", (b)', "back\\slash", "", None, "ünï ✓", " lead", "tab\there", "x,y", "()",
               "NULL", "plain", 'end\\"', "line\nbreak"]
    places = [(rng.choice(streets), rng.choice([0, -1, 2147483647, -2147483648, None]),
               rng.choice(["12345", "", None, "a b"]), rng.choice(["DE", "a ", None]),
               rng.choice(["0", "-1.5", "123456.78", "NaN", None]),
               rng.choice([-9223372036854775808, 9223372036854775807, None]), rng.choice([-32768, 32767, None]),
               rng.choice([True, False, None]), rng.choice(["a", "b c", None]), rng.choice(["1.2.3.4/8", "::1", None]))
              for _ in range(2000)]
    prices = ["0", "-0.01", "92233720368547758.07", "-92233720368547758.08", "1234.5", "12", None]
    macs = ["08:00:2b:01:02:03", "ff:ff:ff:ff:ff:ff", "00:00:00:00:00:00", "0a:1b:2c:3d:4e:5f", None]
    macs8 = ["08:00:2b:01:02:03:04:05", "ff:ff:ff:ff:ff:ff:ff:ff", "00:00:00:00:00:00:00:00", None]
    with db.cursor() as cur:
        cur.executemany(
            "INSERT INTO public.composed VALUES (%s, ROW(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)::public.place,"
            " %s::numeric::money, %s::macaddr, %s::macaddr8, %s)",
            [(i, *place, rng.choice(prices), rng.choice(macs), rng.choice(macs8),
              datetime(2026, 1, 1, tzinfo=timezone.utc)) for i, place in enumerate(places)])
        cur.execute("INSERT INTO public.composed (id) VALUES (5000)")  # the composite itself NULL
    texts = [r[0] for r in db.execute("SELECT home::text FROM public.composed") if r[0] is not None]
    assert any("\\\\" in t and '""' in t for t in texts) and any(",," in t for t in texts)  # escapes, NULL attributes
    dump_and_reload(project_db_url, db, tmp_path, "composed")
    assert rows_as_text(db, "composed_copy") == rows_as_text(db, "composed")
    assert copy_format.used == [copy_format.name]


@pytest.mark.parametrize("case", ["money decimals", "composite attribute"])
def test_money_or_a_composite_without_an_exact_binary_form_sends_the_table_as_csv(project_db_url, db, tmp_path, case,
                                                                                 monkeypatch):
    """Money with more decimals than this server's money has (a backup from a server with another
    lc_monetary: cash_in rounds them, as it always did), and a composite with an attribute whose
    text is not parsed here (a date), go as CSV: never guessed."""
    db.execute("CREATE TYPE public.dated AS (at date, note text);"
               "CREATE TABLE public.priced (id int, price money, d public.dated)")
    db.execute("INSERT INTO public.priced VALUES (1, 1.25, ROW('2026-01-02', 'x')), (2, NULL, NULL)")
    with open_snapshot(project_db_url) as snap, snap.worker() as conn:
        dump = dump_table(snap, conn, TableRef("public", "priced"), tmp_path)
    sidecar = json.loads((tmp_path / dump.sidecar_file).read_text())
    path = tmp_path / dump.parquet_file
    if case == "money decimals":
        table = pq.read_table(path).drop_columns(["d"])
        pq.write_table(table.set_column(1, "price", pa.array(["1.234", None])), path)
        sidecar["columns"] = [c for c in sidecar["columns"] if c["name"] != "d"]
        db.execute("ALTER TABLE public.priced DROP COLUMN d")
    else:
        db.execute("ALTER TABLE public.priced DROP COLUMN price")
        table = pq.read_table(path).drop_columns(["price"])
        pq.write_table(table, path)
        sidecar["columns"] = [c for c in sidecar["columns"] if c["name"] != "price"]
    db.execute("CREATE TABLE public.priced_copy (LIKE public.priced)")
    assert load_choosing_format(project_db_url, path, sidecar, "priced_copy", monkeypatch) == [None]
    got = db.execute("SELECT * FROM public.priced_copy ORDER BY id").fetchall()
    if case == "money decimals":
        assert [r[1] for r in got] == ["$1.23", None]  # cash_in's rounding, as the CSV path always had
    else:
        assert got == db.execute("SELECT * FROM public.priced ORDER BY id").fetchall()


@pytest.mark.parametrize("case", ["interval form", "array shape"])
def test_a_text_form_value_without_an_exact_binary_form_sends_the_table_as_csv(project_db_url, db, tmp_path, case,
                                                                               monkeypatch):
    """Never guessed at: an interval the encoder does not recognise (`1 hour`: valid input that
    interval_out never prints, as an older or newer server's form would be), or an enum array
    that is not 1-D from 1, sends the whole table as CSV, and the server parses it."""
    db.execute("CREATE TYPE public.level AS ENUM ('low', 'high');"
               "CREATE TABLE public.spans (id int, iv interval, ip inet, levels public.level[])")
    db.execute("INSERT INTO public.spans VALUES (1, '1 day', '1.2.3.4', '{low}'), (2, '-00:00:01', '::1', %s)",
               ("[0:1]={low,high}" if case == "array shape" else "{high,low}",))
    with open_snapshot(project_db_url) as snap, snap.worker() as conn:
        dump = dump_table(snap, conn, TableRef("public", "spans"), tmp_path)
    sidecar = json.loads((tmp_path / dump.sidecar_file).read_text())
    path = tmp_path / dump.parquet_file
    if case == "interval form":
        table = pq.read_table(path)
        pq.write_table(table.set_column(1, "iv", pa.array(["1 hour", "-00:00:01"])), path)
    db.execute("CREATE TABLE public.spans_copy (LIKE public.spans)")
    assert load_choosing_format(project_db_url, path, sidecar, "spans_copy", monkeypatch) == [None]
    expected = db.execute("SELECT id, iv, ip, levels::text FROM public.spans ORDER BY id").fetchall()
    if case == "interval form":
        expected[0] = (1, timedelta(hours=1), *expected[0][2:])
    assert db.execute("SELECT id, iv, ip, levels::text FROM public.spans_copy ORDER BY id").fetchall() == expected


def test_dates_and_times_outside_arrow_keep_the_servers_exact_text(project_db_url, db, tmp_path, copy_format):
    """The dump reads dates and times as they are and makes the overflow text of those Arrow cannot
    hold on the client (core/pg_datetime.py): it must be the server's own text, character for
    character (a restore's value-by-value comparison relies on it), at the ends of every range."""
    db.execute("CREATE TABLE public.extremes (id int PRIMARY KEY, d date, ts timestamp, tstz timestamptz, t time)")
    dates = ["4713-11-24 BC", "0001-01-01 BC", "0001-12-31 BC", "0005-02-29 BC", "0001-01-01", "9999-12-31",
             "10000-01-01", "5874897-12-31", "infinity", "-infinity", "2000-01-01", "1999-12-31"]
    stamps = ["4713-11-24 00:00:00 BC", "0044-03-15 12:34:56.5 BC", "0001-12-31 23:59:59.999999 BC", "0001-01-01 00:00:00",
              "9999-12-31 23:59:59.999999", "10000-01-01 00:00:00.000001", "294276-12-31 23:59:59.999999",
              "infinity", "-infinity", "1970-01-01 00:00:00", "2000-02-29 12:00:00.1"]
    times = ["00:00:00", "23:59:59.999999", "24:00:00", "12:00:00.000001"]
    with db.cursor() as cur:
        cur.executemany("INSERT INTO public.extremes VALUES (%s, %s::date, %s::timestamp, %s::timestamptz, %s::time)",
                        [(i, dates[i % len(dates)], stamps[i % len(stamps)], stamps[(i + 3) % len(stamps)],
                          times[i % len(times)]) for i in range(len(dates) * len(stamps))] + [(999, None, None, None, None)])
    _, table = dump_and_reload(project_db_url, db, tmp_path, "extremes")
    server = {r[0]: r[1:] for r in db.execute("SELECT id, d::text, ts::text, tstz::text, t::text FROM public.extremes")}
    got = table.to_pylist()
    outside = 0
    for row in got:
        for k, name in enumerate(("d", "ts", "tstz", "t")):
            text = server[row["id"]][k]
            if row[f"__pgtext__{name}"] is not None:
                outside += 1
                assert row[name] is None and row[f"__pgtext__{name}"] == text
            elif text is None:
                assert row[name] is None
            else:
                assert row[name] is not None
    assert outside > 100
    assert rows_as_text(db, "extremes_copy") == rows_as_text(db, "extremes")


def test_infinite_dates_and_times_load_as_binary_and_come_back_exactly(project_db_url, db, tmp_path, copy_format):
    """±infinity ("never expires") and 24:00:00 sit in overflow columns, yet have a plain binary
    form: such tables still load as binary COPY, the overflow merged back in."""
    db.execute("CREATE TABLE public.forever (id int PRIMARY KEY, d date, ts timestamp, tstz timestamptz, t time)")
    db.execute("""
        INSERT INTO public.forever SELECT g,
            CASE g % 4 WHEN 0 THEN 'infinity' WHEN 1 THEN '-infinity' WHEN 2 THEN NULL ELSE date '2026-01-01' + g END,
            CASE g % 3 WHEN 0 THEN 'infinity' WHEN 1 THEN timestamp '1999-12-31 23:59:59.999999' + g * interval '1 s' END,
            CASE g % 5 WHEN 0 THEN '-infinity' WHEN 1 THEN NULL ELSE timestamptz '0001-01-01 00:00:00+00' + g * interval '1 day' END,
            CASE g % 2 WHEN 0 THEN time '24:00:00' ELSE time '00:00:00' + g * interval '1 ms' END
        FROM generate_series(1, 3000) g
    """)
    dump_and_reload(project_db_url, db, tmp_path, "forever")
    assert rows_as_text(db, "forever_copy") == rows_as_text(db, "forever")
    assert copy_format.used == [copy_format.name]


def test_array_columns_whose_batch_holds_no_element_load_exactly(project_db_url, db, tmp_path, copy_format,
                                                                 monkeypatch):
    """`tags int[] DEFAULT '{}'` never filled: a load batch of only empty arrays and NULLs (here the
    first of three, then one with elements) has no element to encode, and loads as any other."""
    monkeypatch.setattr(table_load, "MAX_BATCH_ROWS", 40)
    db.execute("""
        CREATE TABLE public.tagged (id int PRIMARY KEY, i int[], b bigint[], f float8[], ok bool[], t text[],
                                    v varchar[], s smallint[], r real[]);
        INSERT INTO public.tagged
        SELECT g, c.i, c.i::bigint[], c.i::float8[], CASE WHEN g > 80 THEN '{t,NULL}'::bool[] ELSE c.e::bool[] END,
               c.i::text[], c.i::varchar[], c.i::smallint[], c.i::real[]
        FROM generate_series(1, 100) g
        CROSS JOIN LATERAL (SELECT CASE WHEN g > 80 THEN ARRAY[g, NULL] WHEN g % 2 = 0 THEN '{}'::int[] END AS i,
                                   CASE WHEN g % 2 = 0 THEN '{}' END AS e) c
    """)
    dump_and_reload(project_db_url, db, tmp_path, "tagged")
    assert rows_as_text(db, "tagged_copy") == rows_as_text(db, "tagged")
    assert copy_format.used == [copy_format.name]


def test_a_column_named_like_an_overflow_column_is_refused_before_any_wrong_value(project_db_url, db, tmp_path):
    """The dump keeps the exact text of values outside Arrow's range in a column `__pgtext__<name>`;
    a user column of that name would have been read as it (values silently replaced on restore), so
    the table is refused by name and nothing is written for it."""
    from supabackup_pipeline.core.errors import SupabackupError

    db.execute('CREATE TABLE public.clash (id int, d date, "__pgtext__d" text);'
               " INSERT INTO public.clash VALUES (1, '2026-01-01', 'hello')")
    with pytest.raises(SupabackupError, match="table public.clash cannot be backed up: its column __pgtext__d has the"
                       " name of the column in which supabackup keeps the exact text of column d's values"):
        with open_snapshot(project_db_url) as snap, snap.worker() as conn:
            dump_table(snap, conn, TableRef("public", "clash"), tmp_path)
    assert not list(tmp_path.glob("public.clash.*"))
