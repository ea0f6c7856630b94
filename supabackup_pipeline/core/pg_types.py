"""How each PostgreSQL column type is stored in Parquet without losing a single value.

The data path is `COPY (SELECT <expressions>) TO STDOUT (FORMAT csv)` parsed by pyarrow's CSV
reader: columnar C++ end to end, and every value arrives in its exact Postgres text form. Each
column gets a *codec*:

- `native`: an Arrow type that holds every value exactly (integers, floats, bool, text, bytea,
  uuid, dates, times, timestamps, 1-D arrays of simple types).
- `text`: no exact Arrow type exists (numeric, interval, ranges, composites, geometric types, ...):
  the Postgres text form is stored and the type is recorded in the sidecar.

Some native types have values no Arrow type can hold (`infinity` dates and timestamps, years
outside 1..9999, `24:00:00`, multi-dimensional arrays, arrays with non-default lower bounds,
NaN inside float arrays). Those values are stored as NULL in the typed column and in their text
form in an *overflow* column beside it; a restore takes the overflow value where it is set.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pyarrow as pa

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
    """How one column travels: SQL expressions for COPY, the CSV parse type, the Parquet type."""

    kind: str  # "native" or "text"
    arrow_type: pa.DataType
    csv_type: pa.DataType
    select_sql: str  # {c} is the quoted column name
    overflow_sql: str | None = None
    convert: Callable[[pa.Array], pa.Array] | None = None


# ------------------------------------------------------------------ vectorized conversions
_HEX = np.full(256, 255, dtype=np.uint8)
for _i, _ch in enumerate(b"0123456789abcdef"):
    _HEX[_ch] = _i
for _i, _ch in enumerate(b"ABCDEF"):
    _HEX[_ch] = 10 + _i


def _plain(arr: pa.Array) -> pa.Array:
    """A copy with offset 0, so buffers can be read directly."""
    return pa.concat_arrays([arr]) if arr.offset else arr


def _decode_hex_buffer(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(decoded bytes, int32 offsets into them) of a string array of hex digits."""
    arr = _plain(arr)
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int32, count=len(arr) + 1)
    data = arr.buffers()[2]
    hexchars = np.frombuffer(data, dtype=np.uint8)[offsets[0]:offsets[-1]] if data is not None else np.empty(0, np.uint8)
    nibbles = _HEX[hexchars]
    if len(nibbles) % 2 or (nibbles == 255).any():
        raise ValueError("malformed hex data from the server")
    decoded = (nibbles[0::2] << 4) | nibbles[1::2]
    return decoded.astype(np.uint8), ((offsets - offsets[0]) // 2).astype(np.int32)


def hex_to_binary(arr: pa.Array) -> pa.Array:
    """`encode(bytea, 'hex')` text → binary, without a Python loop per value."""
    decoded, offsets = _decode_hex_buffer(arr)
    arr = _plain(arr)
    return pa.Array.from_buffers(
        pa.binary(), len(arr), [arr.buffers()[0], pa.py_buffer(offsets), pa.py_buffer(decoded)], arr.null_count
    )


def hex_to_uuid(arr: pa.Array) -> pa.Array:
    """`encode(uuid_send(u), 'hex')` text → Arrow's uuid type (Parquet UUID logical type)."""
    decoded, offsets = _decode_hex_buffer(arr)
    arr = _plain(arr)
    lengths = np.diff(offsets)
    out = np.zeros((len(arr), 16), dtype=np.uint8)
    valid = lengths == 16
    out[valid] = decoded.reshape(-1, 16)
    storage = pa.Array.from_buffers(pa.binary(16), len(arr), [arr.buffers()[0], pa.py_buffer(out.tobytes())], arr.null_count)
    return pa.ExtensionArray.from_storage(pa.uuid(), storage)


def _json_list(value_type: pa.DataType) -> Callable[[pa.Array], pa.Array]:
    # parse_int=float keeps -0 in float arrays (json.loads("-0") is the integer 0)
    parse_int = float if pa.types.is_floating(value_type) else int

    def convert(arr: pa.Array) -> pa.Array:
        values = [None if s is None else json.loads(s, parse_int=parse_int) for s in arr.to_pylist()]
        return pa.array(values, type=pa.list_(value_type))

    return convert


def _to_float32(arr: pa.Array) -> pa.Array:
    return arr.cast(pa.float32())


# ------------------------------------------------------------------ codec table
_TEXT = Codec("text", pa.string(), pa.string(), "{c}::text")

_SIMPLE = {
    "int2": Codec("native", pa.int16(), pa.int16(), "{c}"),
    "int4": Codec("native", pa.int32(), pa.int32(), "{c}"),
    "int8": Codec("native", pa.int64(), pa.int64(), "{c}"),
    # float4 → float8 is exact; parsing float8 text then narrowing avoids double rounding.
    "float4": Codec("native", pa.float32(), pa.float64(), "{c}::float8", convert=_to_float32),
    "float8": Codec("native", pa.float64(), pa.float64(), "{c}"),
    "bool": Codec("native", pa.bool_(), pa.bool_(), "{c}"),
    "text": Codec("native", pa.string(), pa.string(), "{c}"),
    "varchar": Codec("native", pa.string(), pa.string(), "{c}"),
    "bpchar": Codec("native", pa.string(), pa.string(), "{c}"),
    "name": Codec("native", pa.string(), pa.string(), "{c}::text"),
    "bytea": Codec("native", pa.binary(), pa.string(), "encode({c}, 'hex')", convert=hex_to_binary),
    "uuid": Codec("native", pa.uuid(), pa.string(), "encode(uuid_send({c}), 'hex')", convert=hex_to_uuid),
    # money's text form depends on lc_monetary; its numeric form does not.
    "money": Codec("text", pa.string(), pa.string(), "{c}::numeric::text"),
}


def _ranged(arrow_type: pa.DataType, in_range: str) -> Codec:
    return Codec(
        "native", arrow_type, arrow_type,
        f"CASE WHEN {in_range} THEN {{c}} END",
        overflow_sql=f"CASE WHEN NOT ({in_range}) THEN {{c}}::text END",
    )


# Arrow's CSV parser reads years 0001..9999; BC, later years and ±infinity go to overflow.
_RANGED = {
    "date": _ranged(pa.date32(), "{c} BETWEEN '0001-01-01'::date AND '9999-12-31'::date"),
    "timestamp": _ranged(
        pa.timestamp("us"),
        "{c} BETWEEN '0001-01-01 00:00:00'::timestamp AND '9999-12-31 23:59:59.999999'::timestamp",
    ),
    "timestamptz": _ranged(
        pa.timestamp("us", tz="UTC"),
        "{c} BETWEEN '0001-01-01 00:00:00+00'::timestamptz AND '9999-12-31 23:59:59.999999+00'::timestamptz",
    ),
    "time": _ranged(pa.time64("us"), "{c} < '24:00:00'::time"),
}

_LIST_ELEMENTS = {
    "int2": pa.int16(), "int4": pa.int32(), "int8": pa.int64(),
    "float4": pa.float32(), "float8": pa.float64(), "bool": pa.bool_(),
    "text": pa.string(), "varchar": pa.string(), "bpchar": pa.string(),
}


def _list_codec(element: str) -> Codec:
    value_type = _LIST_ELEMENTS[element]
    plain = "(array_ndims({c}) IS NULL OR (array_ndims({c}) = 1 AND array_lower({c}, 1) = 1))"
    if element in ("float4", "float8"):
        # JSON has no NaN/Infinity: such arrays keep their text form.
        plain += " AND NOT ({c}::float8[] && ARRAY['NaN', 'Infinity', '-Infinity']::float8[])"
    return Codec(
        "native", pa.list_(value_type), pa.string(),
        f"CASE WHEN {plain} THEN array_to_json({{c}})::text END",
        overflow_sql=f"CASE WHEN NOT ({plain}) THEN {{c}}::text END",
        convert=_json_list(value_type),
    )


def codec_for(column: Column) -> Codec:
    if column.base_type in _SIMPLE:
        return _SIMPLE[column.base_type]
    if column.base_type in _RANGED:
        return _RANGED[column.base_type]
    if column.element_type in _LIST_ELEMENTS:
        return _list_codec(column.element_type)
    return _TEXT


def select_expressions(columns: list[Column]) -> tuple[list[str], list[tuple[str, pa.DataType]]]:
    """SQL select-list items and the (parquet name, CSV type) of each CSV field, in order.

    Overflow columns come right after their column, named OVERFLOW_PREFIX + column name.
    """
    exprs, fields = [], []
    for column in columns:
        codec = codec_for(column)
        c = quote_ident(column.name)
        exprs.append(codec.select_sql.format(c=c))
        fields.append((column.name, codec.csv_type))
        if codec.overflow_sql:
            exprs.append(codec.overflow_sql.format(c=c))
            fields.append((OVERFLOW_PREFIX + column.name, pa.string()))
    return exprs, fields
