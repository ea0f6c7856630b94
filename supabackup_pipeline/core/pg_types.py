"""How each PostgreSQL column type is stored in Parquet without losing a single value.

The data path is `COPY (SELECT <expressions>) TO STDOUT (FORMAT binary)` decoded by
`copy_read` (vectorized, never a Python call per value). Each column gets a *codec*:

- `native`: an Arrow type that holds every value exactly (integers, floats, bool, text, bytea,
  uuid, dates, times, timestamps, 1-D arrays of simple types). Arrays travel as their text form,
  which `pg_array_list` splits into lists with numpy.
- `text`: no exact Arrow type exists (numeric, interval, ranges, composites, geometric types, ...):
  the Postgres text form is stored and the type is recorded in the sidecar.

Some native types have values no Arrow type can hold (`infinity` dates and timestamps, years
outside 1..9999, `24:00:00`, multi-dimensional arrays, arrays with non-default lower bounds,
NaN inside float arrays). Those values are stored as NULL in the typed column and in their text
form in an *overflow* column beside it; a restore takes the overflow value where it is set.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from supabackup_pipeline.core import pg_datetime

# Session settings that pin every text form we read (and later write back).
SESSION_SETTINGS = {
    "DateStyle": "ISO, YMD",
    "IntervalStyle": "postgres",
    "TimeZone": "UTC",
    "extra_float_digits": "1",  # shortest text that reads back to the same float
    "bytea_output": "hex",
    "client_encoding": "UTF8",
    # as pg_dump does: catalog functions then schema-qualify every non-catalog name
    "search_path": "pg_catalog",
    # as pg_dump does: a read that row-level security would cut short fails instead
    "row_security": "off",
    # as pg_dump does: a role's or database's timeouts (Supabase sets them for its API roles) must
    # not cancel a long COPY, nor end the snapshot's transaction while the workers read
    "statement_timeout": "0",
    "idle_in_transaction_session_timeout": "0",
}

OVERFLOW_PREFIX = "__pgtext__"


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True)
class Column:
    """One table column as the catalog describes it."""

    name: str
    pg_type: str  # format_type(): the exact declared type, e.g. numeric(12,2), public.mood[]
    base_type: str  # pg_catalog typname after resolving domains, e.g. int4, _int4, numeric
    element_type: str | None  # for arrays: the element's base typname
    not_null: bool = False
    default: str | None = None
    identity: str = ""  # '', 'a' (always) or 'd' (by default)
    generated: str = ""  # '' or 's' (stored)


@dataclass(frozen=True)
class Codec:
    """How one column travels: SQL expressions for COPY and the Parquet type.

    A dump reads binary COPY (`binary_sql`, decoded by `copy_read`); `select_sql` is the CSV form
    format-1 backups read and recorded the digest of (a restore reads them back with it). A codec
    with `split` is read as the column itself from format 3 on (`sent_type`), and `split` makes
    the Parquet column and its overflow column of it on the client (pg_datetime).
    """

    kind: str  # "native" or "text"
    arrow_type: pa.DataType
    select_sql: str  # {c} is the quoted column name
    overflow_sql: str | None = None
    convert: Callable[[pa.Array], pa.Array] | None = None  # from the decoded field (arrays' text → lists)
    binary_sql: str | None = None  # None: the same as select_sql
    sent_type: pa.DataType | None = None
    split: Callable[[pa.Array], list[pa.Array]] | None = None

    @property
    def wire_type(self) -> pa.DataType:
        """The Arrow type binary COPY's field decodes to: arrays travel as their text form."""
        return pa.string() if pa.types.is_list(self.arrow_type) else self.arrow_type


# ------------------------------------------------------------------ vectorized conversions
def _plain(arr: pa.Array) -> pa.Array:
    """A copy with offset 0, so buffers can be read directly."""
    return pa.concat_arrays([arr]) if arr.offset else arr


_BACKSLASH, _QUOTE, _COMMA, _OPEN, _CLOSE = (ord(ch) for ch in '\\",{}')
_NULL = np.frombuffer(b"NULL", dtype=np.uint8)


def unpack_bits(buffer: pa.Buffer | None, offset: int, n: int, default: bool) -> np.ndarray:
    """An Arrow bitmap (validity or boolean values) as a numpy bool array; `default` if absent."""
    if buffer is None:
        return np.full(n, default)
    bits = np.unpackbits(np.frombuffer(buffer, dtype=np.uint8), bitorder="little")
    return bits[offset:offset + n].astype(bool)


def _mask(arr: pa.Array) -> np.ndarray:
    """A boolean array as numpy, NULL as False (BooleanArray.to_numpy would import pandas)."""
    validity, values = arr.buffers()
    return unpack_bits(values, arr.offset, len(arr), False) & unpack_bits(validity, arr.offset, len(arr), True)


def validity_bitmap(mask: np.ndarray) -> pa.Buffer | None:
    return None if mask.all() else pa.py_buffer(np.packbits(mask, bitorder="little"))


def _array_elements(arr: pa.Array, rows: np.ndarray) -> tuple[pa.Array, np.ndarray]:
    """Split Postgres 1-D array literals (`{1,NULL,"a \\"b\\""}`) into their elements, vectorized.

    `rows` selects the rows to split (the others become NULL lists). Returns the elements as a
    string array (NULL elements null, quotes and escapes removed) and int32 list offsets.

    array_out quotes an element that is empty, is `NULL` in any case, or holds `"`, `\\`, `{`, `}`,
    `,` or white space, and escapes only `"` and `\\` inside quotes. So outside quotes, `,` always
    separates elements, and a backslash always escapes the next byte. These are ASCII bytes, never
    part of a multi-byte UTF-8 sequence, so the work is on the bytes of the whole column at once:
    a few element-wise passes, and the rest on the (far fewer) positions of quotes, commas and
    backslashes.
    """
    n = len(arr)
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int32, count=n + 1)
    data_buffer = arr.buffers()[2]
    data = np.frombuffer(data_buffer, dtype=np.uint8) if data_buffer is not None else np.empty(0, np.uint8)
    starts, ends = offsets[:-1], offsets[1:]  # ends: one past each literal's closing brace
    filled = rows & (ends - starts > 2)  # rows with at least one element ({} is the empty array)
    list_offsets = np.zeros(n + 1, dtype=np.int32)
    if not filled.any():
        return pa.nulls(0, pa.string()), list_offsets
    region = np.zeros(len(data), bool)  # the bytes of the literals to split
    region[offsets[0]:offsets[-1]] = np.repeat(filled, ends - starts)
    opens, closes = starts[filled], ends[filled] - 1
    escaping = _escaping_backslashes(data, region)
    separator = _separators(data, region, escaping, opens, closes)
    positions = np.flatnonzero(separator)
    is_close = np.zeros(len(data), bool)
    is_close[closes] = True
    is_close = is_close[positions]
    is_open = np.zeros(len(data), bool)
    is_open[opens] = True
    counts = np.zeros(n, dtype=np.int32)  # elements of a row: its separators but the closing brace
    counts[filled] = np.flatnonzero(is_close) - np.flatnonzero(is_open[positions])
    opens_element = ~is_close[:-1]
    e_start = positions[:-1][opens_element] + 1
    e_end = positions[1:][opens_element]
    values = _element_values(data, region & ~separator, escaping, e_start, e_end)
    np.cumsum(counts, out=list_offsets[1:])
    return values, list_offsets


def _escaping_backslashes(data: np.ndarray, region: np.ndarray) -> np.ndarray:
    """Positions of the backslashes that escape the byte after them: in each run of backslashes,
    the 1st, 3rd, ... (a run never crosses a literal's start, which is `{`)."""
    backslashes = np.flatnonzero((data == _BACKSLASH) & region)
    if not len(backslashes):
        return backslashes
    index = np.arange(len(backslashes))
    run_start = np.ones(len(backslashes), bool)
    run_start[1:] = backslashes[1:] != backslashes[:-1] + 1
    first_of_run = np.maximum.accumulate(np.where(run_start, index, 0))
    return backslashes[(index - first_of_run) % 2 == 0]


def _separators(data: np.ndarray, region: np.ndarray, escaping: np.ndarray, opens, closes) -> np.ndarray:
    """A mask of the bytes that bound elements: each literal's braces, and the commas outside quotes
    (an even number of unescaped quotes before them)."""
    quote = (data == _QUOTE) & region
    quote[escaping + 1] = False
    quotes = np.flatnonzero(quote)
    commas = np.flatnonzero((data == _COMMA) & region)
    if len(quotes) and len(commas):
        commas = commas[np.searchsorted(quotes, commas) % 2 == 0]
    separator = np.zeros(len(data), bool)
    separator[opens] = separator[commas] = separator[closes] = True
    return separator


def _element_values(data: np.ndarray, keep: np.ndarray, escaping: np.ndarray, e_start, e_end) -> pa.Array:
    """The elements between `e_start` and `e_end` as strings: quotes and escaping backslashes
    removed, an unquoted `NULL` null. `keep` marks the bytes inside literals that are not
    separators; it is changed in place."""
    length = e_end - e_start
    if (length <= 0).any():
        raise ValueError("malformed array from the server")
    quoted = data[e_start] == _QUOTE
    if (length[quoted] < 2).any() or (data[e_end[quoted] - 1] != _QUOTE).any():
        raise ValueError("malformed array from the server")
    is_null = ~quoted & (length == 4)
    if is_null.any():
        candidates = e_start[is_null]
        is_null[is_null] = (data[candidates[:, None] + np.arange(4)] == _NULL).all(axis=1)
    keep[escaping] = False
    keep[e_start[quoted]] = False
    keep[e_end[quoted] - 1] = False
    kept = length - 2 * quoted
    if len(escaping):
        kept -= np.searchsorted(escaping, e_end) - np.searchsorted(escaping, e_start)
    if is_null.any():
        keep[(e_start[is_null][:, None] + np.arange(4)).ravel()] = False
        kept[is_null] = 0
    value_offsets = np.zeros(len(e_start) + 1, dtype=np.int32)
    np.cumsum(kept, out=value_offsets[1:])
    chars = data[keep]
    if len(chars) != value_offsets[-1]:
        raise ValueError("malformed array from the server")
    return pa.Array.from_buffers(
        pa.string(), len(e_start), [validity_bitmap(~is_null), pa.py_buffer(value_offsets), pa.py_buffer(chars)]
    )


def _typed_elements(values: pa.Array, value_type: pa.DataType) -> pa.Array:
    if pa.types.is_string(value_type):
        return values
    if pa.types.is_boolean(value_type):
        typed = pc.equal(values, "t")
        if pc.any(pc.and_(pc.invert(typed), pc.not_equal(values, "f"))).as_py():
            raise ValueError("malformed boolean array from the server")
        return typed
    return values.cast(value_type)  # raises on anything but a number of that type


def pg_array_list(value_type: pa.DataType) -> Callable[[pa.Array], pa.Array]:
    """Postgres text form of a 1-D array (`{c}` as COPY writes it) → list<value_type>.

    The text form costs the server far less than array_to_json. Arrays no list holds are NULL here
    and in the overflow column in their text form (see `_list_codec`, whose SQL picks out the same
    arrays): multi-dimensional (`{{...}}`), non-default lower bounds (`[0:1]={...}`), float arrays
    holding NaN or ±Infinity. Numbers are converted from their text by Arrow (correctly rounded:
    `-0` stays -0.0, float4 digits are rounded once, to float32).
    """
    list_type = pa.list_(value_type)
    floating = pa.types.is_floating(value_type)

    def convert(arr: pa.Array) -> pa.Array:
        arr = _plain(arr)
        n = len(arr)
        if n == 0:
            return pa.nulls(0, list_type)
        offsets = np.frombuffer(arr.buffers()[1], dtype=np.int32, count=n + 1)
        data_buffer = arr.buffers()[2]
        data = np.frombuffer(data_buffer, dtype=np.uint8) if data_buffer is not None else np.empty(0, np.uint8)
        valid = unpack_bits(arr.buffers()[0], arr.offset, n, True)
        starts, lengths = offsets[:-1], np.diff(offsets)
        if (lengths[valid] < 2).any():
            raise ValueError("malformed array from the server")
        first = np.zeros(n, np.uint8)
        second = np.zeros(n, np.uint8)
        last = np.zeros(n, np.uint8)
        first[valid], second[valid], last[valid] = data[starts[valid]], data[starts[valid] + 1], data[offsets[1:][valid] - 1]
        # `[lower:upper]=...` or an array of arrays (a text element starting with { is quoted)
        other = valid & ((first != _OPEN) | (second == _OPEN))
        if (last[valid & ~other] != _CLOSE).any():
            raise ValueError("malformed array from the server")
        rows = valid & ~other
        values, list_offsets = _array_elements(arr, rows)
        typed_values = _typed_elements(values, value_type)
        if floating and len(typed_values):
            special = _mask(pc.or_(pc.is_nan(typed_values), pc.is_inf(typed_values)))
            if special.any():
                owner = np.repeat(np.arange(n), np.diff(list_offsets))
                rows &= np.bincount(owner[special], minlength=n) == 0
                values, list_offsets = _array_elements(arr, rows)
                typed_values = _typed_elements(values, value_type)
        return pa.Array.from_buffers(list_type, n, [validity_bitmap(rows), pa.py_buffer(list_offsets)], children=[typed_values])

    return convert


# ------------------------------------------------------------------ codec table
_TEXT = Codec("text", pa.string(), "{c}::text")
# Built-in types whose `::text` is their output function (an I/O conversion cast, no cast function):
# selecting the column itself gives the same text without the extra textin per value (measured:
# jsonb::text costs the server ~20% more per value than jsonb). Types with a cast function to text (inet, cidr, "char",
# an extension's type) keep `::text`, so fingerprints of earlier backups stay comparable.
_TEXT_OUTPUT = Codec("text", pa.string(), "{c}", binary_sql="{c}::text")
_OUTPUT_IS_TEXT = {
    "numeric", "json", "jsonb", "interval", "timetz", "tsvector", "tsquery", "bit", "varbit",
    "macaddr", "macaddr8", "point", "line", "lseg", "box", "path", "polygon", "circle",
    "int4range", "int8range", "numrange", "daterange", "tsrange", "tstzrange",
    "int4multirange", "int8multirange", "nummultirange", "datemultirange", "tsmultirange", "tstzmultirange",
}

_SIMPLE = {
    "int2": Codec("native", pa.int16(), "{c}"),
    "int4": Codec("native", pa.int32(), "{c}"),
    "int8": Codec("native", pa.int64(), "{c}"),
    # float4 travels as its 4 bytes (format 1 read its float8 text: float4 → float8 is exact)
    "float4": Codec("native", pa.float32(), "{c}::float8", binary_sql="{c}"),
    "float8": Codec("native", pa.float64(), "{c}"),
    "bool": Codec("native", pa.bool_(), "{c}"),
    "text": Codec("native", pa.string(), "{c}"),
    "varchar": Codec("native", pa.string(), "{c}"),
    "bpchar": Codec("native", pa.string(), "{c}"),
    "name": Codec("native", pa.string(), "{c}::text"),
    "bytea": Codec("native", pa.binary(), "encode({c}, 'hex')", binary_sql="{c}"),
    "uuid": Codec("native", pa.uuid(), "encode(uuid_send({c}), 'hex')", binary_sql="{c}"),
    # money's text form depends on lc_monetary; its numeric form does not.
    "money": Codec("text", pa.string(), "{c}::numeric::text"),
}


def _ranged(arrow_type: pa.DataType, in_range: str, sent_type: pa.DataType, split) -> Codec:
    return Codec(
        "native", arrow_type,
        f"CASE WHEN {in_range} THEN {{c}} END",
        overflow_sql=f"CASE WHEN NOT ({in_range}) THEN {{c}}::text END",
        sent_type=sent_type, split=split,
    )


# Arrow's CSV parser reads years 0001..9999; BC, later years and ±infinity go to overflow.
_RANGED = {
    "date": _ranged(pa.date32(), "{c} BETWEEN '0001-01-01'::date AND '9999-12-31'::date", pa.int32(),
                    pg_datetime.split_dates),
    "timestamp": _ranged(
        pa.timestamp("us"),
        "{c} BETWEEN '0001-01-01 00:00:00'::timestamp AND '9999-12-31 23:59:59.999999'::timestamp",
        pa.int64(), pg_datetime.split_timestamps(pa.timestamp("us")),
    ),
    "timestamptz": _ranged(
        pa.timestamp("us", tz="UTC"),
        "{c} BETWEEN '0001-01-01 00:00:00+00'::timestamptz AND '9999-12-31 23:59:59.999999+00'::timestamptz",
        pa.int64(), pg_datetime.split_timestamps(pa.timestamp("us", tz="UTC")),
    ),
    "time": _ranged(pa.time64("us"), "{c} < '24:00:00'::time", pa.int64(), pg_datetime.split_times),
}

_LIST_ELEMENTS = {
    "int2": pa.int16(), "int4": pa.int32(), "int8": pa.int64(),
    "float4": pa.float32(), "float8": pa.float64(), "bool": pa.bool_(),
    "text": pa.string(), "varchar": pa.string(), "bpchar": pa.string(),
}


def _list_codec(element: str) -> Codec:
    value_type = _LIST_ELEMENTS[element]
    # The arrays whose text form is not a plain `{...}` list (the converter makes them NULL).
    other = "array_ndims({c}) > 1 OR array_lower({c}, 1) <> 1"
    if element in ("float4", "float8"):
        other += " OR {c}::float8[] && ARRAY['NaN', 'Infinity', '-Infinity']::float8[]"
    return Codec(
        "native", pa.list_(value_type), "{c}",
        overflow_sql=f"CASE WHEN {other} THEN {{c}}::text END",
        convert=pg_array_list(value_type), binary_sql="{c}::text",
    )


def codec_for(column: Column) -> Codec:
    if column.base_type in _SIMPLE:
        return _SIMPLE[column.base_type]
    if column.base_type in _RANGED:
        return _RANGED[column.base_type]
    if column.element_type in _LIST_ELEMENTS:
        return _list_codec(column.element_type)
    if column.base_type in _OUTPUT_IS_TEXT:
        return _TEXT_OUTPUT
    return _TEXT


def select_expressions(columns: list[Column], version: int = 3) -> tuple[list[str], list[tuple[str, pa.DataType]]]:
    """SQL select-list items and the (parquet name, binary COPY wire type) of each field, in order,
    for the COPY of a dump of format `version` (1: the CSV text forms; 2: binary COPY; 3: binary
    COPY, dates and times as they are, split on the client).

    Overflow columns come right after their column, named OVERFLOW_PREFIX + column name (up to
    format 2 as fields of their own; from 3 on, dates and times make theirs on the client).
    """
    exprs, fields = [], []
    for column in columns:
        codec = codec_for(column)
        c = quote_ident(column.name)
        if version >= 3 and codec.split:
            exprs.append(c)
            fields.append((column.name, codec.sent_type))
            continue
        exprs.append(((version >= 2 and codec.binary_sql) or codec.select_sql).format(c=c))
        fields.append((column.name, codec.wire_type))
        if codec.overflow_sql:
            exprs.append(codec.overflow_sql.format(c=c))
            fields.append((OVERFLOW_PREFIX + column.name, pa.string()))
    return exprs, fields


def convert_batch(columns: list[Column], fields: list[pa.Array]) -> list[pa.Array]:
    """The decoded fields `select_expressions(columns)` lists (the latest format) → the Parquet
    columns, in the same order (each column, then its overflow column if it has one), conversions applied."""
    out, i = [], 0
    for column in columns:
        codec = codec_for(column)
        value = fields[i]
        i += 1
        if codec.split:
            out.extend(codec.split(value))
            continue
        out.append(codec.convert(value) if codec.convert else value)
        if codec.overflow_sql:
            out.append(fields[i])
            i += 1
    return out
