"""Text from peers, made safe to print on a terminal.

A leaf module (it imports nothing from wool), shared by every command-line tool. A worker's
id, host, endpoint and tags come from discovery records and pongs that any peer (or any
host on the LAN) can write; printed raw, an escape sequence in them could move the cursor,
rewrite earlier lines or retitle the terminal, and a newline could forge a row. So every
string a CLI prints that it did not write itself goes through `printable`.
"""

from __future__ import annotations


def printable(text: object) -> str:
    """`text` as a string, unchanged when every character is printable, else its `repr`
    (control characters, newlines and bidirectional overrides escaped, quotes added so an
    escaped value is visibly not what it claims)."""
    shown = str(text)
    return shown if shown.isprintable() else repr(shown)
