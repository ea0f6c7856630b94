"""Binary COPY fields for types a dump keeps in their text form: enums (and their arrays),
inet/cidr, interval, timetz.

A table loads as binary COPY only when every column has a binary form (table_load), and one enum
or inet column used to send the whole table as CSV, so the server parsed every timestamp, uuid
and number of it as text. These types' binary forms are cheap to make from the text the server
printed, on the client's core, while the server's core is the restore's bottleneck.

Which encoder applies is decided by the live column's receive function (an enum's type name is
the app's own, so the sidecar's type name cannot say). The text is parsed strictly: a value that
does not have the exact form the server prints raises `ValueError`, and table_load then sends the
table as CSV (it tries every value before the COPY starts), so nothing is ever guessed.
"""

from __future__ import annotations

import ipaddress

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from supabackup_pipeline.core.copy_binary import (
    Encoder, array_encoder, big_endian, fixed_fields, rows_of, valid_mask, var_fields,
)
from supabackup_pipeline.core.pg_types import pg_array_list

_PGSQL_AF_INET, _PGSQL_AF_INET6 = 2, 3  # network_send's family byte: AF_INET + 0, AF_INET + 1

# interval_out with IntervalStyle postgres (the dump's session setting): `1 year 2 mons -3 days
# -04:05:06.789`; each part only when not zero, the time part also when all are zero (`00:00:00`).
# Hours are unbounded; the sign before the time applies to hours, minutes and seconds alike.
_INTERVAL = (r"^(?:\+?(?P<years>-?\d+) years? ?)?(?:\+?(?P<mons>-?\d+) mons? ?)?(?:\+?(?P<days>-?\d+) days? ?)?"
             r"(?:(?P<sign>[+-]?)(?P<hours>\d+):(?P<minutes>\d\d):(?P<seconds>\d\d)(?:\.(?P<micros>\d{1,6}))?)?$")


# timetz_out: `HH:MM:SS[.ffffff]` and the UTC offset as `+HH[:MM[:SS]]`
_TIMETZ = (r"^(?P<hours>\d\d):(?P<minutes>\d\d):(?P<seconds>\d\d)(?:\.(?P<micros>\d{1,6}))?"
           r"(?P<sign>[+-])(?P<zone_hours>\d\d)(?::(?P<zone_minutes>\d\d))?(?::(?P<zone_seconds>\d\d))?$")


def _parts(arr: pa.Array, pattern: str, placeholder: str) -> pa.StructArray:
    """The regex groups of every value (NULL read as `placeholder`); ValueError if one does not match."""
    text = pc.fill_null(arr, placeholder)
    parts = pc.extract_regex(text, pattern)
    if parts.null_count or pc.any(pc.equal(text, "")).as_py():
        raise ValueError("a value not in the form the server prints")
    return parts


def _micros(parts: pa.StructArray) -> np.ndarray:
    """hours:minutes:seconds.fraction as microseconds."""
    fraction = pc.utf8_rpad(parts.field("micros"), 6, "0").cast(pa.int64()).to_numpy()
    return _seconds(parts, "hours", "minutes", "seconds") * 1_000_000 + fraction


def _seconds(parts: pa.StructArray, hours: str, minutes: str, seconds: str) -> np.ndarray:
    return (_integers(parts, hours) * 60 + _integers(parts, minutes)) * 60 + _integers(parts, seconds)


def _negative(parts: pa.StructArray) -> np.ndarray:
    return pc.equal(parts.field("sign"), "-").to_numpy(zero_copy_only=False)


def _integers(parts: pa.StructArray, name: str) -> np.ndarray:
    """A group as int64 (an absent group is 0)."""
    text = parts.field(name)
    return pc.if_else(pc.equal(text, ""), "0", text).cast(pa.int64()).to_numpy()


def interval_fields(arr: pa.Array) -> pa.Array:
    """interval_send: microseconds (int64), days (int32), months (int32)."""
    parts = _parts(arr, _INTERVAL, "00:00:00")
    months = _integers(parts, "years") * 12 + _integers(parts, "mons")
    days = _integers(parts, "days")
    time = np.where(_negative(parts), -1, 1) * _micros(parts)
    if (np.abs(months) >= 1 << 31).any() or (np.abs(days) >= 1 << 31).any():
        raise ValueError("interval out of range")
    payload = np.hstack([big_endian(time, ">i8"), big_endian(days, ">i4"), big_endian(months, ">i4")])
    return fixed_fields(payload, valid_mask(arr))


def timetz_fields(arr: pa.Array) -> pa.Array:
    """timetz_send: microseconds since midnight (int64), then the zone in seconds west of UTC (int32)."""
    parts = _parts(arr, _TIMETZ, "00:00:00+00")
    offset = _seconds(parts, "zone_hours", "zone_minutes", "zone_seconds")
    zone = np.where(_negative(parts), offset, -offset)
    return fixed_fields(np.hstack([big_endian(_micros(parts), ">i8"), big_endian(zone, ">i4")]), valid_mask(arr))


def _enum_array(element_oid: int) -> Encoder:
    """An enum array's text form (`{todo,"in review"}`) → array_send with the enum's OID, for
    1-D arrays with lower bound 1; any other shape raises (the table then goes as CSV)."""
    split, encode = pg_array_list(pa.string()), array_encoder(var_fields, element_oid)

    def encoder(arr: pa.Array) -> pa.Array:
        lists = split(arr)
        if lists.null_count != arr.null_count:
            raise ValueError("an array of more than one dimension or another lower bound")
        return encode(lists)

    return encoder


def _network(cidr: bool) -> Encoder:
    """network_send: family, mask bits, is_cidr, address length, address bytes. The dump holds
    `inet::text` (network_show: always `address/bits`). IPv4 is parsed with Arrow; IPv6, rarer,
    by Python's ipaddress, value by value."""

    def encode(arr: pa.Array) -> pa.Array:
        n = len(arr)
        halves = pc.split_pattern(pc.fill_null(arr, "0.0.0.0/0"), "/")
        if n and not pc.all(pc.equal(pc.list_value_length(halves), 2)).as_py():
            raise ValueError("a network address without its mask length")
        address, bits = pc.list_element(halves, 0), pc.list_element(halves, 1).cast(pa.int64()).to_numpy()
        six = pc.match_substring(address, ":").to_numpy(zero_copy_only=False)
        packed = np.zeros((n, 16), np.uint8)
        if (~six).any():
            quads = pc.split_pattern(address.filter(pa.array(~six)), ".")
            if not pc.all(pc.equal(pc.list_value_length(quads), 4)).as_py():
                raise ValueError("not an IPv4 address")
            packed[~six, :4] = quads.flatten().cast(pa.uint8()).to_numpy().reshape(-1, 4)
        if pc.any(pc.match_substring(address, "%")).as_py():
            raise ValueError("an IPv6 zone, which the server never prints")
        for row in np.flatnonzero(six):
            packed[row] = np.frombuffer(ipaddress.IPv6Address(address[row].as_py()).packed, np.uint8)
        size = np.where(six, 16, 4)
        if (bits < 0).any() or (bits > size * 8).any():
            raise ValueError("mask length out of range")
        head = np.stack([np.where(six, _PGSQL_AF_INET6, _PGSQL_AF_INET), bits, np.full(n, int(cidr)), size], axis=1)
        valid = valid_mask(arr)
        length = np.where(valid, 4 + size, -1)
        matrix = np.hstack([big_endian(length, ">i4"), head.astype(np.uint8), packed])
        return rows_of(matrix, np.where(valid, 8 + size, 4))

    return encode


_BY_RECEIVE: dict[str, Encoder] = {
    "enum_recv": var_fields,  # enum_send: the label's bytes
    "interval_recv": interval_fields,
    "timetz_recv": timetz_fields,
    "inet_recv": _network(cidr=False),
    "cidr_recv": _network(cidr=True),
}


def text_form_encoder(receive: str | None, element_receive: str | None = None, element_oid: int = 0) -> Encoder | None:
    """The encoder for a column whose (base) type reads binary with `receive` (for an array:
    `array_recv`, and its element type's receive function and OID), or None."""
    if receive == "array_recv" and element_receive == "enum_recv":
        return _enum_array(element_oid)
    return _BY_RECEIVE.get(receive or "")
