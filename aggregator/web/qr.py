"""QR images of pass tokens and check-in URLs (segno), for screens and for paper.

Error correction M (15 % of the code may be lost: a scratched screen, a
folded paper) and a 4-module quiet zone as the standard asks; a pass token is
base45 text, so segno picks the alphanumeric mode and the code stays at
version 5 or below. PNG for phones and downloads, SVG for printing at any size.
"""

from __future__ import annotations

import io

import segno

ERROR = "m"
QUIET_ZONE = 4


def make_qr(text: str) -> segno.QRCode:
    """The QR code holding ``text`` (ECC M; segno chooses the smallest version)."""
    return segno.make_qr(text, error=ERROR, boost_error=False)


def qr_png(text: str, *, scale: int = 10) -> bytes:
    """A black-on-white PNG, ``scale`` pixels per module."""
    out = io.BytesIO()
    make_qr(text).save(out, kind="png", scale=scale, border=QUIET_ZONE)
    return out.getvalue()


def qr_svg(text: str, *, scale: int = 10) -> bytes:
    """An SVG (vector: prints sharp at any size), ``scale`` units per module."""
    out = io.BytesIO()
    make_qr(text).save(out, kind="svg", scale=scale, border=QUIET_ZONE, xmldecl=False)
    return out.getvalue()
