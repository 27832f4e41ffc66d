"""
Terminal emulation for the tests: pyte, plus the resize it does not do.

pyte, like xterm, cuts its rows when the window narrows. Most terminals (tmux,
VTE, kitty, iTerm2) rewrap them instead; L{reflow} does that to a pyte screen.
"""

import pyte
from wcwidth import wcwidth


def _width(text: str) -> int:
    return sum(max(wcwidth(character), 0) for character in text)


def _rewrap(text: str, columns: int) -> list[str]:
    """C{text} cut into rows C{columns} wide; a wide character does not straddle the edge."""
    rows, row = [], ""
    for character in text:
        if _width(row + character) > columns:
            rows.append(row)
            row = ""
        row += character
    return [*rows, row]


def reflow(screen: pyte.Screen, columns: int, lines: int) -> None:
    """
    Resize C{screen} to C{columns} and C{lines} as a reflowing terminal does.

    Each row is rewrapped at the new width, the cursor moving with the text it
    is on; rows that no longer fit above the cursor scroll off the top (into
    the history of a C{pyte.HistoryScreen}). pyte does not record where a row
    wrapped, so each row is taken as a line of its own.
    """
    rows: list[str] = []
    cursor = (0, 0)
    for y, text in enumerate(screen.display):
        pieces = _rewrap(text.rstrip(), columns)
        if y == screen.cursor.y:
            consumed = 0
            for index, piece in enumerate(pieces):
                if screen.cursor.x < consumed + _width(piece) or index == len(pieces) - 1:
                    extra, column = divmod(screen.cursor.x - consumed, columns)
                    cursor = (len(rows) + index + extra, column)
                    break
                consumed += _width(piece)
        rows += pieces
    while len(rows) > cursor[0] + 1 and not rows[-1]:
        rows.pop()
    rows += [""] * (cursor[0] + 1 - len(rows))
    scrolled = max(len(rows) - lines, 0)
    screen.resize(lines, columns)
    pyte.Stream(screen).feed(
        "\x1b[H\x1b[2J" + "\r\n".join(rows) + f"\x1b[{cursor[0] - scrolled + 1};{cursor[1] + 1}H"
    )
