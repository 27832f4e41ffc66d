"""
The client's terminal screen: messages scroll up while an editable prompt line stays put.

Built on Twisted's own line editor (L{HistoricRecvLine}: its line buffer,
key dispatch and history), with the drawing redone so a typed line that wraps
over several rows stays whole while messages arrive above it, whatever the
terminal's size and however often it changes.
"""

import codecs
import unicodedata
from collections import deque
from collections.abc import Callable, Sequence
from itertools import groupby
from typing import Any, NamedTuple

from twisted.conch.insults.insults import ServerProtocol
from twisted.conch.recvline import HistoricRecvLine
from twisted.internet.defer import Deferred
from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure
from wcwidth import wcwidth

from chatroute.frontends import syntax

_TAB_WIDTH = 4
_ERASE_ROW = b"\x1b[2K"
_DOWN_AND_ERASE_ROW = b"\x1b[B\x1b[2K"
_TAB_STOP = 8  # the terminal's, for tabs in messages from the server
_CUT = "\N{HORIZONTAL ELLIPSIS}".encode()
_KEPT_CHARACTERS = 1 << 18
"""How much of the conversation the screen keeps to redraw after a resize (far more than fits)."""

_Cell = tuple[int, bytes]
"""A character drawn on a row, and the column it starts at."""


class Secret(bytes):
    """
    A password as one piece of the line being edited: sent as it is, shown
    as L{PASSWORD_MASK}, so neither it nor its length ever reaches the
    screen, and deleted whole.
    """


PASSWORD_MASK = syntax.PASSWORD_MASK.encode()


def display_width(character: bytes) -> int:
    """
    How many columns of a terminal C{character} (UTF-8) takes.

    2 for wide characters (CJK, most emoji), 0 for combining marks and other
    zero-width ones, 1 for the rest. A character of the line buffer may be a
    base character with the zero-width marks that follow it.
    """
    return sum(max(wcwidth(code_point), 0) for code_point in character.decode())


def _is_control(character: bytes) -> bool:
    return any(unicodedata.category(code_point) == "Cc" for code_point in character.decode())


def _is_space(character: bytes) -> bool:
    return character.decode().isspace()


def _characters(text: str) -> list[bytes]:
    """C{text} as the screen's characters (UTF-8): each with the zero-width marks after it."""
    characters: list[bytes] = []
    for code_point in text:
        encoded = code_point.encode()
        if characters and code_point != "\t" and display_width(encoded) == 0:
            characters[-1] += encoded
        else:
            characters.append(encoded)
    return characters


def _layout(characters: Sequence[bytes], columns: int) -> list[tuple[int, int]]:
    """
    Where each of C{characters} goes when drawn from the start of a row
    C{columns} wide, then where the cursor goes after the last: (row, column).

    A wide character that would straddle the right edge goes to the next
    row, leaving the last column empty, as terminals do; after a full row
    the next position is the start of the next row. A tab reaches the next
    tab stop, or the last column, and never wraps.
    """
    row, column = 0, 0
    positions = []
    for character in characters:
        if character == b"\t":
            width = max(min(column // _TAB_STOP * _TAB_STOP + _TAB_STOP, columns - 1) - column, 0)
        else:
            width = display_width(character)
        if column + width > columns:
            row, column = row + 1, 0
        positions.append((row, column))
        row, column = divmod(row * columns + column + width, columns)
    positions.append((row, column))
    return positions


def _rows(
    characters: Sequence[bytes], positions: Sequence[tuple[int, int]], first: int, count: int
) -> list[list[_Cell]]:
    """The cells of C{count} rows from row C{first} of C{characters} laid out at C{positions}."""
    rows: list[list[_Cell]] = [[] for _ in range(count)]
    for character, (row, column) in zip(characters, positions, strict=False):
        # A tab is drawn as the gap it leaves.
        if first <= row < first + count and character != b"\t":
            rows[row - first].append((column, character))
    return rows


def _render(cells: Sequence[_Cell]) -> bytes:
    """A row's text, spaces filling the gaps between its cells."""
    text, column = b"", 0
    for start, character in cells:
        text += b" " * (start - column) + character
        column = start + display_width(character)
    return text


def _cut_start(cells: Sequence[_Cell]) -> list[_Cell]:
    """C{cells} with a cut mark in the first column, over what was there."""
    return [(0, _CUT), *((column, character) for column, character in cells if column >= 1)]


def _cut_end(cells: Sequence[_Cell], columns: int) -> list[_Cell]:
    """C{cells} with a cut mark in the last of C{columns}, over what was there."""
    kept = [cell for cell in cells if cell[0] + display_width(cell[1]) < columns]
    return [*kept, (columns - 1, _CUT)]


def _width_at(character: bytes, column: int, columns: int) -> int:
    """How many columns C{character} takes drawn at C{column} (a tab: up to its stop)."""
    if character == b"\t":
        return max(min(column // _TAB_STOP * _TAB_STOP + _TAB_STOP, columns - 1) - column, 0)
    return display_width(character)


def _word_rows(characters: Sequence[bytes], columns: int) -> list[list[bytes]]:
    """
    C{characters} cut into rows at most C{columns} wide, between words: a
    word that would cross the right edge starts the next row, and the
    blanks before it are dropped, so no row starts with the space that
    separated it from the last. A word wider than a row is cut where the
    edge falls, as a terminal would.
    """
    rows: list[list[bytes]] = [[]]
    column = 0

    def put(character: bytes) -> None:
        nonlocal column
        width = _width_at(character, column, columns)
        if column + width > columns:
            rows.append([])
            column = 0
            width = _width_at(character, 0, columns)
        rows[-1].append(character)
        column += width

    blanks: list[bytes] = []
    for blank, run in groupby(characters, _is_space):
        if blank:
            blanks = list(run)
            continue
        word = list(run)
        word_width = sum(display_width(character) for character in word)
        after_blanks = column
        for character in blanks:
            after_blanks += _width_at(character, after_blanks, columns)
        if rows[-1] and after_blanks + word_width > columns and word_width <= columns:
            rows.append([])
            column = 0
        else:
            for character in blanks:
                put(character)
        for character in word:
            put(character)
        blanks = []
    for character in blanks:
        if column + _width_at(character, column, columns) <= columns:
            put(character)
    return rows


def _message_rows(text: str, columns: int) -> list[bytes]:
    """The rows C{text} takes on a terminal C{columns} wide, as a shown message does."""
    rows = []
    for row in _word_rows(_characters(text), columns):
        rows.append(_render(_rows(row, _layout(row, columns), 0, 1)[0]))
    return rows


class _InputArea(NamedTuple):
    """
    What of the prompt and typed line to draw, and where.

    @ivar rows: the rows to draw, cut marks included.
    @ivar top: the row of the whole laid-out line that comes first on screen.
    @ivar cursor: the cursor's place (row on screen from the first, column).
    """

    rows: list[bytes]
    top: int
    cursor: tuple[int, int]


class TerminalScreen(HistoricRecvLine):
    """
    A terminal: messages scroll above a C{> } prompt line that keeps what is being typed.

    Keys:
      - Left/Right or Ctrl-B/Ctrl-F: move one character;
        Home/End or Ctrl-A/Ctrl-E: to the start/end of the line.
      - Backspace (or Ctrl-H)/Delete: delete the character before/under the
        cursor; Ctrl-W: the word before the cursor; Ctrl-U: everything before
        the cursor; Ctrl-K: everything from the cursor on.
      - Up/Down or Ctrl-P/Ctrl-N: walk the history; Insert: toggle typeover.
      - Ctrl-L: clear the screen and redraw the prompt line at its top.
      - Enter: send; Ctrl-C, or Ctrl-D on an empty line: quit (on a
        non-empty line Ctrl-D deletes the character under the cursor).

    Other control keys are ignored: no control character ever enters the
    line. Positions are counted in screen columns, so wide characters (CJK,
    emoji) and combining marks are placed right; a combining mark is edited
    together with the character it follows. The screen tracks which row of
    a wrapped input line the cursor is on, and redraws the whole input line
    after each edit; typed characters are drawn once per chunk of input (see
    L{Keyboard}), so a paste is one redraw.

    The input area is never taller than the screen less one row, so the
    cursor can always reach its top to erase it: of a longer line it shows
    the rows around the cursor, with a C{…} where the line is cut. When the
    terminal changes size (L{resized}, or a size found changed at the next
    redraw) nothing on screen can be trusted, as terminals rewrap, cut or
    scroll their rows each their own way: the screen is cleared and the end
    of the conversation redrawn from the lines kept (the messages shown and
    lines sent), then the input area under it.
    """

    ps = (b"> ", b"> ")

    def __init__(
        self,
        send: Callable[[bytes], bool],
        quit: Callable[[], None],
        columns: Callable[[], int] | None = None,
        split_password: Callable[[bytes], tuple[bytes, bytes] | None] = lambda line: None,
        rows: Callable[[], int] | None = None,
    ) -> None:
        """
        @param send: called with each line the user enters; returns whether
            it took the line. A line it did not take stays being edited.
        @param quit: called when the user asks to quit.
        @param columns: returns the terminal's width now; by default the
            width L{HistoricRecvLine} assumes.
        @param split_password: a line cut where the password it carries
            starts, as (before, password); None if it carries none. The
            password stays masked on screen and in the history.
        @param rows: returns the terminal's height now; by default the
            height L{HistoricRecvLine} assumes.
        """
        self._send = send
        self._quit = quit
        self._columns = columns or (lambda: self.width)
        self._split_password = split_password
        self._asking: Callable[[bytes], None] | None = None
        self._set_aside: tuple[list[bytes], int] = ([], 0)
        self._rows = rows or (lambda: self.height)
        # Keys arrive a byte at a time; this puts multi-byte characters together.
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="ignore")
        # The input area on screen: its row the cursor is on, the first row of
        # the laid-out line it shows, and the terminal size it was drawn for.
        self._cursor_row = 0
        self._top = 0
        self._drawn_size = (0, 0)
        self._drawn_rows = 1
        self._undrawn = False
        # The end of the conversation, to redraw after a resize.
        self._conversation: deque[str] = deque()
        self._kept = 0
        self.closed: Deferred[None] = Deferred()

    def connectionMade(self) -> None:
        """Set up the line editor and the control keys."""
        super().connectionMade()
        self.keyHandlers.update(
            {
                b"\x01": self.handle_HOME,  # Ctrl-A
                b"\x02": self.handle_LEFT,  # Ctrl-B
                b"\x03": self._quit,  # Ctrl-C
                b"\x04": self._end_of_input,  # Ctrl-D
                b"\x05": self.handle_END,  # Ctrl-E
                b"\x06": self.handle_RIGHT,  # Ctrl-F
                b"\x08": self.handle_BACKSPACE,  # Ctrl-H
                b"\x0b": self._delete_to_end,  # Ctrl-K
                b"\x0c": self._clear_screen,  # Ctrl-L
                b"\x0e": self.handle_DOWN,  # Ctrl-N
                b"\x10": self.handle_UP,  # Ctrl-P
                b"\x15": self._delete_to_start,  # Ctrl-U
                b"\x17": self._delete_word,  # Ctrl-W
            }
        )

    def initializeScreen(self) -> None:
        """Draw the prompt where the cursor is, without clearing the screen."""
        self._draw()
        self.setInsertMode()

    def setInsertMode(self) -> None:
        """Insert typed characters (the line is redrawn, so the terminal's mode is left alone)."""
        self.mode = "insert"

    def setTypeoverMode(self) -> None:
        """Overwrite with typed characters."""
        self.mode = "typeover"

    def show(self, text: str) -> None:
        """
        Print a line above the prompt, keeping the typed line and the cursor
        where they were. A line wider than the terminal is cut into rows
        between words (see L{_word_rows}).
        """
        self._to_input_start()
        self.terminal.write(b"\n".join(_message_rows(text, self._size()[0])) + b"\n")
        self._remember(text)
        self._draw()

    def resized(self) -> None:
        """
        The terminal changed size: clear it, redraw the end of the
        conversation that fits, and the input area under it.
        """
        self._repaint()
        self._draw()

    def close(self) -> Deferred[None]:
        """
        Erase the input area, leaving the cursor at the start of the line under
        the conversation, and close standard output.

        It closes the transport under the terminal wrapper, as closing the
        wrapper itself would reset the terminal and wipe the conversation.
        """
        self._to_input_start()
        self.terminal.transport.loseConnection()
        return self.closed

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """Output is flushed."""
        self.closed.callback(None)

    def keystrokeReceived(self, keyID: Any, modifier: Any) -> None:
        """
        Run the key's handler, or take a typed character (multi-byte UTF-8
        ones whole), to be drawn by L{draw_typed}.
        """
        handler = self.keyHandlers.get(keyID)
        if handler is not None:
            self.draw_typed()
            handler()
        elif isinstance(keyID, bytes) and len(keyID) == 1:
            for character in self._decoder.decode(keyID):
                self.characterReceived(character.encode(), True)
                self._undrawn = True

    def draw_typed(self) -> None:
        """Draw the characters typed since the line was last drawn."""
        if self._undrawn:
            self._redraw()

    def characterReceived(self, ch: bytes, moreCharactersComing: bool) -> None:
        """Insert or overwrite one character at the cursor; control characters are dropped."""
        if _is_control(ch):
            return
        index = self.lineBufferIndex
        if index and display_width(ch) == 0:
            # A combining mark belongs with the character before it.
            self.lineBuffer[index - 1] += ch
        else:
            replaced = 1 if self.mode == "typeover" else 0
            self.lineBuffer[index : index + replaced] = [ch]
            self.lineBufferIndex += 1
        if not moreCharactersComing:
            self._redraw()

    def handle_TAB(self) -> None:
        """Insert spaces up to the next tab stop."""
        for _ in range(_TAB_WIDTH - self.lineBufferIndex % _TAB_WIDTH):
            self.characterReceived(b" ", True)
        self._redraw()

    def handle_LEFT(self) -> None:
        """Move the cursor one character left."""
        self._move_to(self.lineBufferIndex - 1)

    def handle_RIGHT(self) -> None:
        """Move the cursor one character right."""
        self._move_to(self.lineBufferIndex + 1)

    def handle_HOME(self) -> None:
        """Move the cursor to the start of the line."""
        self._move_to(0)

    def handle_END(self) -> None:
        """Move the cursor to the end of the line."""
        self._move_to(len(self.lineBuffer))

    def handle_BACKSPACE(self) -> None:
        """Delete the character before the cursor."""
        self._delete(max(self.lineBufferIndex - 1, 0), self.lineBufferIndex)

    def handle_DELETE(self) -> None:
        """Delete the character under the cursor."""
        self._delete(self.lineBufferIndex, self.lineBufferIndex + 1)

    def handle_UP(self) -> None:
        """Show the previous line of history."""
        if self._asking is not None:
            return
        if self.lineBuffer and self.historyPosition == len(self.historyLines):
            self.historyLines.append(list(self.lineBuffer))
        if self.historyPosition > 0:
            self.historyPosition -= 1
            self._recall(self.historyLines[self.historyPosition])

    def handle_DOWN(self) -> None:
        """Show the next line of history, or an empty line after the last."""
        if self._asking is not None:
            return
        self.historyPosition = min(self.historyPosition + 1, len(self.historyLines))
        if self.historyPosition < len(self.historyLines):
            self._recall(self.historyLines[self.historyPosition])
        else:
            self._recall([])

    def handle_RETURN(self) -> None:
        """
        Send the line and start a fresh prompt below it.

        A password in the line is masked from then on, on screen and in the
        history, which keeps the line as typed, so that a line recalled
        from it sends the password, not the mask. If the line is not taken
        (the client is not connected), it stays being edited.
        """
        if self._asking is not None:
            self._answer()
            return
        line = b"".join(self.lineBuffer)
        self._mask_password()
        if not self._send(line):
            self._redraw()
            return
        self._move_to(len(self.lineBuffer))
        if self._positions()[-1][1]:
            # Else the line filled its last row and the cursor is on a fresh one.
            self.terminal.nextLine()
        shown = b"".join(map(self._shown, self.lineBuffer))
        self._remember((self.ps[self.pn] + shown).decode(errors="replace"))
        if self.lineBuffer:
            self.historyLines.append(self.lineBuffer)
        self.lineBuffer = []
        self.lineBufferIndex = 0
        self.historyPosition = len(self.historyLines)
        self._cursor_row = 0
        self._draw()

    def ask_secret(self, prompt: str, answer: Callable[[bytes], None]) -> None:
        """
        Ask for a password in place of the line being edited, which is set
        aside and comes back after. What is typed is not shown at all; Enter
        gives it to C{answer}. Asked again while asking, the new C{answer}
        takes the old one's place, and the line set aside stays.
        """
        if self._asking is None:
            self._set_aside = (self.lineBuffer, self.lineBufferIndex)
        self._asking = answer
        self.ps = (prompt.encode(), prompt.encode())
        self.lineBuffer, self.lineBufferIndex = [], 0
        self._redraw()

    def _answer(self) -> None:
        answer, self._asking = self._asking, None
        assert answer is not None
        secret = b"".join(self.lineBuffer)
        self._to_input_start()
        self.ps = type(self).ps
        self.lineBuffer, self.lineBufferIndex = self._set_aside
        self._set_aside = ([], 0)
        self._draw()
        answer(secret)

    def _mask_password(self) -> None:
        """Turn the password in the line, if any, into one L{Secret} piece."""
        parts = self._split_password(b"".join(self.lineBuffer))
        if parts is not None and not isinstance(self.lineBuffer[-1], Secret):
            before, password = parts
            self.lineBuffer = [*_characters(before.decode(errors="replace")), Secret(password)]
            self.lineBufferIndex = len(self.lineBuffer)
            self._redraw()

    def _shown(self, character: bytes) -> bytes:
        """What stands on screen for a piece of the line."""
        if self._asking is not None:
            return b""
        if isinstance(character, Secret):
            return PASSWORD_MASK
        return character

    def _end_of_input(self) -> None:
        if self.lineBuffer:
            self.handle_DELETE()
        else:
            self._quit()

    def _clear_screen(self) -> None:
        self.terminal.eraseDisplay()
        self.terminal.cursorHome()
        self._cursor_row = 0
        self._conversation.clear()
        self._kept = 0
        self._draw()

    def _delete(self, start: int, end: int) -> None:
        """Delete the characters from C{start} up to C{end}; the cursor goes to C{start}."""
        if start < end <= len(self.lineBuffer):
            del self.lineBuffer[start:end]
            self.lineBufferIndex = start
            self._redraw()

    def _delete_to_start(self) -> None:
        self._delete(0, self.lineBufferIndex)

    def _delete_to_end(self) -> None:
        self._delete(self.lineBufferIndex, len(self.lineBuffer))

    def _delete_word(self) -> None:
        """Delete the word before the cursor, with the spaces after it."""
        start = self.lineBufferIndex
        while start and _is_space(self.lineBuffer[start - 1]):
            start -= 1
        while start and not _is_space(self.lineBuffer[start - 1]):
            start -= 1
        self._delete(start, self.lineBufferIndex)

    def _recall(self, pieces: list[bytes]) -> None:
        """Put a line from the history in place of the one being typed, the cursor at its end."""
        self.lineBuffer = list(pieces)
        self.lineBufferIndex = len(pieces)
        self._redraw()

    def _size(self) -> tuple[int, int]:
        """The terminal's size now: (columns, rows)."""
        return max(self._columns(), 2), max(self._rows(), 1)

    def _laid_out(self, columns: int) -> tuple[list[bytes], list[tuple[int, int]]]:
        """The prompt's and the line's characters, and where they go (see L{_layout})."""
        shown = [self._shown(character) for character in self.lineBuffer]
        characters = [*_characters(self.ps[self.pn].decode()), *shown]
        return characters, _layout(characters, columns)

    def _positions(self) -> list[tuple[int, int]]:
        """
        Where each character of the line goes, then where the cursor goes after
        the last: (row from the prompt's row, column); see L{_layout}.
        """
        characters, positions = self._laid_out(self._size()[0])
        return positions[len(characters) - len(self.lineBuffer) :]

    def _input_area(self, columns: int, rows: int) -> _InputArea:
        """
        The rows of the laid-out line to show on a terminal of C{columns} and
        C{rows}, at most its height less one: all, or those around the cursor,
        keeping a row above and below it where the line goes on (if there are
        three rows or more).
        """
        characters, positions = self._laid_out(columns)
        row, column = positions[len(characters) - len(self.lineBuffer) + self.lineBufferIndex]
        total = positions[-1][0] + 1
        count = min(total, max(rows - 1, 1))
        margin = 1 if count >= 3 else 0
        top = max(min(self._top, row - margin), row - count + 1 + margin)
        top = max(0, min(top, total - count))
        cells = _rows(characters, positions, top, count)
        if top:
            cells[0] = _cut_start(cells[0])
        if top + count < total:
            cells[-1] = _cut_end(cells[-1], columns)
        return _InputArea([_render(row_cells) for row_cells in cells], top, (row - top, column))

    def _remember(self, text: str) -> None:
        """Keep C{text}, a line now on screen, dropping the oldest beyond L{_KEPT_CHARACTERS}."""
        text = text[-_KEPT_CHARACTERS:]
        self._conversation.append(text)
        self._kept += len(text) + 1
        while self._kept > _KEPT_CHARACTERS:
            self._kept -= len(self._conversation.popleft()) + 1

    def _repaint(self) -> None:
        """
        Clear the screen and draw the end of the conversation that fits above
        the input area, leaving the cursor where that area starts.
        """
        columns, rows = self._size()
        room = rows - len(self._input_area(columns, rows).rows)
        lines: list[bytes] = []
        for text in reversed(self._conversation):
            if len(lines) >= room:
                break
            lines[:0] = _message_rows(text, columns)
        self.terminal.cursorHome()
        self.terminal.eraseDisplay()
        shown = lines[max(len(lines) - room, 0) :]
        self.terminal.write(b"".join(line + b"\r\n" for line in shown))
        self._cursor_row = 0

    def _to_input_start(self) -> None:
        """
        Move to the prompt's first column and clear everything from there down.

        If the terminal changed size since the input area was drawn, where it
        is now is anyone's guess: the whole screen is redrawn instead.
        """
        if self._drawn_size != self._size():
            self._repaint()
            return
        self.terminal.write(b"\r")
        if self._cursor_row:
            self.terminal.cursorUp(self._cursor_row)
        # Row by row, not "erase to the end of the display": from the top left
        # corner that is a clear, which tmux and others keep in their scrollback.
        rows = max(self._drawn_rows, 1)
        self.terminal.write(_ERASE_ROW + _DOWN_AND_ERASE_ROW * (rows - 1))
        if rows > 1:
            self.terminal.cursorUp(rows - 1)
        self._cursor_row = 0

    def _draw(self) -> None:
        """
        Draw the input area from the prompt's first column, then place the cursor.

        Rows are ended explicitly rather than left to the terminal's wrapping,
        which differs between terminals at the right edge.
        """
        self._undrawn = False
        size = self._size()
        area = self._input_area(*size)
        self.terminal.write(b"\r\n".join(area.rows))
        self._cursor_row = len(area.rows) - 1
        self._drawn_rows = len(area.rows)
        self._top = area.top
        self._drawn_size = size
        self._place_cursor(*area.cursor)

    def _redraw(self) -> None:
        self._to_input_start()
        self._draw()

    def _move_to(self, index: int) -> None:
        """Put the cursor on the character at C{index} (kept within the line)."""
        self.lineBufferIndex = max(0, min(index, len(self.lineBuffer)))
        size = self._size()
        area = self._input_area(*size)
        if area.top != self._top or size != self._drawn_size:
            self._redraw()
        else:
            self._place_cursor(*area.cursor)

    def _place_cursor(self, row: int, column: int) -> None:
        """Move the cursor to C{column} of the input area's C{row}."""
        if row < self._cursor_row:
            self.terminal.cursorUp(self._cursor_row - row)
        elif row > self._cursor_row:
            self.terminal.cursorDown(row - self._cursor_row)
        self._cursor_row = row
        self.terminal.write(b"\r")
        if column:
            self.terminal.cursorForward(column)


class Keyboard(ServerProtocol):
    """
    The terminal under a L{TerminalScreen}: keys in, screen control out.

    The screen draws what was typed once each chunk of input has been read,
    so a paste costs one redraw, not one per character.
    """

    terminalProtocol: TerminalScreen

    def dataReceived(self, data: bytes) -> None:
        """Hand the keys in C{data} to the screen, then let it draw what they typed."""
        super().dataReceived(data)
        self.terminalProtocol.draw_typed()
