"""Kubernetes resource quantities: `500m`, `1`, `1.5`, `1Gi`, `700Mi`, `1e3`, `2k`.

Parsing follows `k8s.io/apimachinery/pkg/api/resource`: a signed decimal number followed by a
binary suffix (Ki Mi Gi Ti Pi Ei), a decimal suffix (n u m "" k M G T P E) or a decimal
exponent (e3, E-2). Values are exact `Decimal`s, never floats, so `0.1` CPU is exactly 100m.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
}
_QUANTITY = re.compile(
    r"^(?P<number>[+-]?(?:\d+\.?\d*|\.\d+))"
    r"(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?\d+)?$"
)


class QuantityError(ValueError):
    """A string that is not a Kubernetes quantity."""


def parse_quantity(value: str | int | float | Decimal) -> Decimal:
    """The exact value of a quantity: `parse_quantity("500m") == Decimal("0.5")`."""
    if isinstance(value, bool):
        raise QuantityError(f"{value!r} is not a quantity")
    if isinstance(value, int | Decimal):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value))
    text = value.strip()
    match = _QUANTITY.match(text)
    if not match:
        raise QuantityError(
            f"{value!r} is not a quantity; use a number with an optional suffix, "
            "such as 500m or 1 for CPU, 512Mi or 1Gi for memory"
        )
    try:
        number = Decimal(match["number"])
    except InvalidOperation as error:  # pragma: no cover - the regex admits only decimals
        raise QuantityError(f"{value!r} is not a quantity") from error
    suffix = match["suffix"] or ""
    if suffix in _BINARY:
        return number * _BINARY[suffix]
    if suffix in _DECIMAL:
        return number * _DECIMAL[suffix]
    return number.scaleb(int(suffix[1:]))


def format_cpu(cores: Decimal | float) -> str:
    """CPU as `kubectl top` prints it: whole millicores, `300m`."""
    millicores = int((Decimal(str(cores)) * 1000).to_integral_value())
    return f"{millicores}m"


def format_memory(size: Decimal | int | float) -> str:
    """Memory as `kubectl top` prints it: whole mebibytes, `700Mi`."""
    mebibytes = int((Decimal(str(size)) / _BINARY["Mi"]).to_integral_value())
    return f"{mebibytes}Mi"


def canonical(value: Decimal) -> str:
    """The shortest exact spelling, as Kubernetes canonicalizes: `0.5` -> `500m`, 2**30 -> `1Gi`."""
    if value == 0:
        return "0"
    if value == value.to_integral_value():
        whole = int(value)
        for suffix in ("Ei", "Pi", "Ti", "Gi", "Mi", "Ki"):
            if whole % _BINARY[suffix] == 0 and abs(whole) >= _BINARY[suffix]:
                return f"{whole // _BINARY[suffix]}{suffix}"
        for suffix in ("E", "P", "T", "G", "M", "k"):
            scale = int(_DECIMAL[suffix])
            if whole % scale == 0:
                return f"{whole // scale}{suffix}"
        return str(whole)
    for suffix in ("m", "u", "n"):
        scaled = value / _DECIMAL[suffix]
        if scaled == scaled.to_integral_value():
            return f"{int(scaled)}{suffix}"
    # Finer than a nanounit: Kubernetes rounds up to the nearest nanounit.
    return f"{int((value / _DECIMAL['n']).to_integral_value(rounding='ROUND_CEILING'))}n"
