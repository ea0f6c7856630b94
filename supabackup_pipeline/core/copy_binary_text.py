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
import struct

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from supabackup_pipeline.core.copy_binary import (
    Encoder, array_encoder, big_endian, fixed_fields, numeric_fields, rows_of, valid_mask, var_fields,
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


def _network(cidr: bool, full_mask_left_out: bool = False) -> Encoder:
    """network_send: family, mask bits, is_cidr, address length, address bytes. The dump holds
    `inet::text` (network_show: always `address/bits`); inside a composite's text an inet is
    inet_out's, which leaves out `/32` and `/128` (`full_mask_left_out`). IPv4 is parsed with
    Arrow; IPv6, rarer, by Python's ipaddress, value by value."""

    def encode(arr: pa.Array) -> pa.Array:
        n = len(arr)
        text = pc.fill_null(arr, "0.0.0.0/0")
        if full_mask_left_out:
            full = pc.if_else(pc.match_substring(text, ":"), "/128", "/32")
            text = pc.if_else(pc.match_substring(text, "/"), text, pc.binary_join_element_wise(text, full, ""))
        halves = pc.split_pattern(text, "/")
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


def _macaddr(width: int) -> Encoder:
    """macaddr_send / macaddr8_send: the address's bytes. macaddr_out prints lower-case hex pairs
    joined by colons."""
    pattern = "^[0-9a-f]{2}(?::[0-9a-f]{2}){%d}$" % (width - 1)

    def encode(arr: pa.Array) -> pa.Array:
        text = pc.fill_null(arr, ":".join(["00"] * width))
        if not pc.all(pc.match_substring_regex(text, pattern)).as_py():
            raise ValueError("a MAC address not in the form the server prints")
        digits = pc.replace_substring(text, ":", "").cast(pa.large_string())
        offsets = np.frombuffer(digits.buffers()[1], dtype=np.int64, count=len(digits) + 1)
        chars = np.frombuffer(digits.buffers()[2], dtype=np.uint8)[offsets[0]:offsets[-1]].reshape(-1, 2 * width)
        nibbles = np.where(chars >= ord("a"), chars - (ord("a") - 10), chars - ord("0")).astype(np.uint8)
        return fixed_fields(nibbles[:, 0::2] * 16 + nibbles[:, 1::2], valid_mask(arr))

    return encode


def _money(scale: int) -> Encoder:
    """cash_send: the amount in the currency's smallest unit (int64). The dump holds money::numeric
    (its scale is the backing-up server's lc_monetary's); `scale` is the restoring session's, the
    one cash_in would read CSV's text with. A value with more decimals than that is rounded by
    cash_in, so it raises here: the table goes as CSV, as before."""

    def encode(arr: pa.Array) -> pa.Array:
        parts = _parts(arr, r"^(?P<sign>-?)(?P<units>\d+)(?:\.(?P<cents>\d+))?$", "0")
        cents = parts.field("cents")
        if (pc.max(pc.utf8_length(cents)).as_py() or 0) > scale:
            raise ValueError("more decimals than this server's money has")
        digits = pc.binary_join_element_wise(parts.field("sign"), parts.field("units"),
                                             pc.utf8_rpad(cents, scale, "0"), "")
        return fixed_fields(big_endian(digits.cast(pa.int64()).to_numpy(), ">i8"), valid_mask(arr))

    return encode


def _integer(dtype: str) -> Encoder:
    """int2/int4/int8 from their text (a composite's attribute)."""
    bits = 8 * np.dtype(dtype).itemsize

    def encode(arr: pa.Array) -> pa.Array:
        parts = _parts(arr, r"^(?P<value>-?\d+)$", "0")
        values = _integers(parts, "value")
        if (values < -(1 << (bits - 1))).any() or (values >= 1 << (bits - 1)).any():
            raise ValueError("an integer out of its type's range")
        return fixed_fields(big_endian(values, dtype), valid_mask(arr))

    return encode


def _numeric_text(arr: pa.Array) -> pa.Array:
    """numeric from numeric_out's text (a composite's attribute), checked to be that form."""
    if not pc.all(pc.match_substring_regex(pc.fill_null(arr, "0"), r"^(?:NaN|-?Infinity|-?\d+(?:\.\d+)?)$")).as_py():
        raise ValueError("a numeric not in the form the server prints")
    return numeric_fields(arr)


def _bool(arr: pa.Array) -> pa.Array:
    text = pc.fill_null(arr, "f")
    if not pc.all(pc.is_in(text, pa.array(["t", "f"]))).as_py():
        raise ValueError("a boolean not in the form the server prints")
    return fixed_fields(pc.equal(text, "t").to_numpy(zero_copy_only=False).astype(np.uint8)[:, None], valid_mask(arr))


def _record_field(index: int) -> str:
    """One attribute in record_out's text: quoted (`"..."`, `"` and `\\` doubled inside) when it is
    empty or holds a quote, backslash, parenthesis, comma or white space; bare otherwise; nothing
    for NULL."""
    return (rf'(?:(?P<q{index}>"(?:[^"\\]|""|\\\\)*")|(?P<u{index}>[^"\\(),\s\v]*))')


def _record(attributes: list[tuple[int, Encoder]]) -> Encoder:
    """record_send: the attribute count, then each attribute's type OID and field. The dump holds
    the composite's text (record_out); each attribute is cut out of it and encoded from its own text."""
    pattern = r"^\(" + ",".join(_record_field(i) for i in range(len(attributes))) + r"\)$"
    count = pa.scalar(struct.pack(">i", len(attributes)), pa.large_binary())
    oids = [pa.scalar(struct.pack(">I", oid), pa.large_binary()) for oid, _ in attributes]
    no_text = pa.scalar(None, pa.string())

    def encode(arr: pa.Array) -> pa.Array:
        parts = pc.extract_regex(pc.fill_null(arr, "(" + "," * (len(attributes) - 1) + ")"), pattern)
        if parts.null_count:
            raise ValueError("a composite value not in the form the server prints")
        pieces = [count]
        for i, (oid, (_, encode_attribute)) in enumerate(zip(oids, attributes)):
            quoted, bare = parts.field(f"q{i}"), parts.field(f"u{i}")
            inner = pc.replace_substring(pc.replace_substring(pc.utf8_slice_codeunits(quoted, 1, -1), '""', '"'),
                                         "\\\\", "\\")
            text = pc.if_else(pc.not_equal(quoted, ""), inner, pc.if_else(pc.equal(bare, ""), no_text, bare))
            pieces += [oid, encode_attribute(text)]
        payload = pc.binary_join_element_wise(*pieces, pa.scalar(b"", pa.large_binary()))
        return var_fields(pc.if_else(arr.is_valid(), payload, pa.scalar(None, pa.large_binary())))

    return encode


_BY_RECEIVE: dict[str, Encoder] = {
    "enum_recv": var_fields,  # enum_send: the label's bytes
    "interval_recv": interval_fields,
    "timetz_recv": timetz_fields,
    "inet_recv": _network(cidr=False),
    "cidr_recv": _network(cidr=True),
    "macaddr_recv": _macaddr(6),
    "macaddr8_recv": _macaddr(8),
}

# A composite's attributes arrive as text, whatever their type; these types read it exactly here.
_ATTRIBUTE_BY_RECEIVE: dict[str, Encoder] = {
    **_BY_RECEIVE,
    "inet_recv": _network(cidr=False, full_mask_left_out=True),
    **{receive: var_fields for receive in ("textrecv", "varcharrecv", "bpcharrecv")},
    "int2recv": _integer(">i2"), "int4recv": _integer(">i4"), "int8recv": _integer(">i8"),
    "numeric_recv": _numeric_text, "boolrecv": _bool,
}


def text_form_encoder(receive: str | None, element_receive: str | None = None, element_oid: int = 0,
                      detail: object = None) -> Encoder | None:
    """The encoder for a column whose (base) type reads binary with `receive` (for an array:
    `array_recv`, and its element type's receive function and OID), or None. `detail`: for money,
    the restoring session's scale; for a composite, its attributes' [type OID, receive function]."""
    if receive == "array_recv" and element_receive == "enum_recv":
        return _enum_array(element_oid)
    if receive == "cash_recv" and isinstance(detail, int):
        return _money(detail)
    if receive == "record_recv" and detail:
        attributes = [(oid, _ATTRIBUTE_BY_RECEIVE.get(attribute_receive)) for oid, attribute_receive in detail]
        return _record(attributes) if all(encode for _, encode in attributes) else None
    return _BY_RECEIVE.get(receive or "")
