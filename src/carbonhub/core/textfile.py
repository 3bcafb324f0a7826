"""Text of uploaded files: UTF-8 (with or without the BOM Excel writes) or GBK, which Chinese
spreadsheets save CSV in by default. Anything else is refused, never guessed."""

from __future__ import annotations

from carbonhub.core.errors import InvalidInput


def decode_text(data: bytes, code: str) -> tuple[str, str]:
    """(text, "utf-8" or "gbk"); `code` names the refusal in the caller's terms."""
    for encoding, name in (("utf-8-sig", "utf-8"), ("gbk", "gbk")):
        try:
            return data.decode(encoding), name
        except UnicodeDecodeError:
            continue
    raise InvalidInput(
        code,
        "the file is neither UTF-8 nor GBK text; save it as CSV UTF-8 or GBK",
        "文件编码须为 UTF-8 或 GBK",
    )
