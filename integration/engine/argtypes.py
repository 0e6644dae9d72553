"""argparse value types for the tool commands' own options (`bot serve`, `emulator serve`): a
port, a whole number or a number within bounds, each refused with the value quoted and escaped."""
from __future__ import annotations

import argparse
import math
from typing import Callable

from .untrusted import quote


def whole_number(low: int, high: int | None = None, what: str = "a whole number") -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not {what}: {quote(text)}") from None
        if v < low or (high is not None and v > high):
            bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise argparse.ArgumentTypeError(f"must be {bounds}: {quote(text)}")
        return v
    return parse


port = whole_number(0, 65535, "a port number")


def positive_number(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {quote(text)}") from None
    if not (v > 0 and math.isfinite(v)):
        raise argparse.ArgumentTypeError(f"must be greater than 0: {quote(text)}")
    return v
