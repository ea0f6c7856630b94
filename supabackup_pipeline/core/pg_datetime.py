"""Dates and times as format-3 dumps read them: the column itself, in binary COPY, split here into
its Arrow value and, for what Arrow's types leave out (±infinity, BC, years after 9999,
`24:00:00`), the overflow text.

Format 2 had the server do this split with two CASE expressions per column (~10% of the server's
time in a backup, and again in every restore's read-back). The text is made exactly as the server
prints it (DateStyle ISO, TimeZone UTC: the dump's session settings), so a format-3 Parquet file
holds the same values as a format-2 one; these values are rare, so they are formatted one by one.
"""

from __future__ import annotations

from datetime import date
from typing import Callable

import numpy as np
import pyarrow as pa

_PG_EPOCH = date(2000, 1, 1)
_PG_EPOCH_DAYS = 10_957  # 2000-01-01 in days since 1970-01-01
_PG_EPOCH_JULIAN_DAY = 2_451_545
_US_PER_DAY = 86_400_000_000
# Arrow's (and format 2's) range, 0001-01-01 to 9999-12-31, in days since 2000-01-01
_FIRST_DAY = (date(1, 1, 1) - _PG_EPOCH).days
_LAST_DAY = (date(9999, 12, 31) - _PG_EPOCH).days
_INFINITY = {np.dtype(np.int32): (-(1 << 31), (1 << 31) - 1), np.dtype(np.int64): (-(1 << 63), (1 << 63) - 1)}


def _ymd(days: int) -> tuple[int, int, int]:
    """Days since 2000-01-01 → (year, month, day): the server's own j2date (year 0 is 1 BC)."""
    julian = days + _PG_EPOCH_JULIAN_DAY + 32044
    quad = julian // 146097
    extra = (julian - quad * 146097) * 4 + 3
    julian += 60 + quad * 3 + extra // 146097
    quad = julian // 1461
    julian -= quad * 1461
    y = julian * 4 // 1461
    julian = ((julian + 305) % 365 if y != 0 else (julian + 306) % 366) + 123
    y += quad * 4
    quad = julian * 2141 // 65536
    return y - 4800, (quad + 10) % 12 + 1, julian - 7834 * quad // 256


def _date_text(days: int) -> tuple[str, str]:
    """(`YYYY-MM-DD`, ` BC` or ``) as EncodeDateOnly prints it."""
    year, month, day = _ymd(days)
    return f"{year if year > 0 else 1 - year:04d}-{month:02d}-{day:02d}", "" if year > 0 else " BC"


def _time_text(micros: int) -> str:
    """`HH:MM:SS[.ffffff]`, trailing zeros of the fraction dropped, as AppendSeconds prints it."""
    seconds, fraction = divmod(micros, 1_000_000)
    text = f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
    return text + f".{fraction:06d}".rstrip("0") if fraction else text


def date_text(days: int) -> str:
    ymd, era = _date_text(days)
    return ymd + era


def _timestamp_text(micros: int, zone: str) -> str:
    days, time = divmod(micros, _US_PER_DAY)
    ymd, era = _date_text(days)
    return f"{ymd} {_time_text(time)}{zone}{era}"


def _split(arrow_type: pa.DataType, low: int, high: int, shift: int, text: Callable[[int], str],
           infinite: bool = True) -> Callable[[pa.Array], list[pa.Array]]:
    """A splitter of raw server values (an int array: days or microseconds since 2000-01-01, or
    since midnight) into [Arrow value within low..high, overflow text outside it]; `infinite`: the
    type's extreme values are ±infinity."""

    def split(raw: pa.Array) -> list[pa.Array]:
        n = len(raw)
        values = raw.fill_null(0).to_numpy(zero_copy_only=False)
        valid = raw.is_valid().to_numpy(zero_copy_only=False)
        inside = valid & (values >= low) & (values <= high)
        stored = (np.where(inside, values, 0).astype(np.int64) + shift).astype(values.dtype)
        bitmap = None if inside.all() else pa.py_buffer(np.packbits(inside, bitorder="little"))
        typed = pa.Array.from_buffers(arrow_type, n, [bitmap, pa.py_buffer(stored)])
        outside = valid & ~inside
        if not outside.any():
            return [typed, pa.nulls(n, pa.string())]
        texts = np.full(n, None, dtype=object)
        if infinite:  # "never expires" may be in every row: no Python call per value for those
            low_infinity, high_infinity = _INFINITY[values.dtype]
            texts[outside & (values == high_infinity)] = "infinity"
            texts[outside & (values == low_infinity)] = "-infinity"
            outside &= (values != low_infinity) & (values != high_infinity)
        for row in np.flatnonzero(outside):  # BC, after 9999, 24:00:00: rare
            texts[row] = text(int(values[row]))
        return [typed, pa.array(texts, pa.string())]

    return split


split_dates = _split(pa.date32(), _FIRST_DAY, _LAST_DAY, _PG_EPOCH_DAYS, date_text)
split_times = _split(pa.time64("us"), 0, _US_PER_DAY - 1, 0, _time_text, infinite=False)


def split_timestamps(arrow_type: pa.DataType) -> Callable[[pa.Array], list[pa.Array]]:
    zone = "+00" if arrow_type.tz else ""  # timestamptz in the session's TimeZone, UTC
    return _split(arrow_type, _FIRST_DAY * _US_PER_DAY, (_LAST_DAY + 1) * _US_PER_DAY - 1,
                  _PG_EPOCH_DAYS * _US_PER_DAY, lambda micros: _timestamp_text(micros, zone))
