"""
The client's terminal screen: messages scroll up while an editable prompt line stays put.

Built on Twisted's own line editor (L{HistoricRecvLine}: its line buffer,
key dispatch and history), with the drawing redone so a typed line that wraps
over several rows stays whole while messages arrive above it.
"""

import codecs
import unicodedata
from collections.abc import Callable
from typing import Any

from twisted.conch.insults.insults import ServerProtocol
from twisted.conch.recvline import HistoricRecvLine
from twisted.internet.defer import Deferred
from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure
from wcwidth import wcwidth

_TAB_WIDTH = 4


class Secret(bytes):
    """
    A password as one piece of the line being edited: sent as it is, shown
    as L{PASSWORD_MASK}, so neither it nor its length ever reaches the
    screen, and deleted whole.
    """


PASSWORD_MASK = b"********"


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
    """

    ps = (b"> ", b"> ")

    def __init__(
        self,
        send: Callable[[bytes], bool],
        quit: Callable[[], None],
        columns: Callable[[], int] | None = None,
        split_password: Callable[[bytes], tuple[bytes, bytes] | None] = lambda line: None,
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
        """
        self._send = send
        self._quit = quit
        self._columns = columns or (lambda: self.width)
        self._split_password = split_password
        self._asking: Callable[[bytes], None] | None = None
        self._set_aside: tuple[list[bytes], int] = ([], 0)
        # Keys arrive a byte at a time; this puts multi-byte characters together.
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="ignore")
        self._cursor_row = 0
        self._undrawn = False
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
        self.terminal.write(self.ps[self.pn])
        self.setInsertMode()

    def setInsertMode(self) -> None:
        """Insert typed characters (the line is redrawn, so the terminal's mode is left alone)."""
        self.mode = "insert"

    def setTypeoverMode(self) -> None:
        """Overwrite with typed characters."""
        self.mode = "typeover"

    def show(self, text: str) -> None:
        """Print a line above the prompt, keeping the typed line and the cursor where they were."""
        self._to_input_start()
        self.terminal.write(text.encode() + b"\n")
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
        gives it to C{answer}.
        """
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
            self.lineBuffer = [*self._characters(before), Secret(password)]
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

    def _characters(self, text: bytes) -> list[bytes]:
        """C{text} as pieces of the line buffer: characters, combining marks with their base."""
        self.lineBuffer, self.lineBufferIndex = [], 0
        for character in text.decode(errors="replace"):
            self.characterReceived(character.encode(), True)
        return self.lineBuffer

    def _positions(self) -> list[tuple[int, int]]:
        """
        Where each character of the line goes, then where the cursor goes after
        the last: (row from the prompt's row, column).

        A wide character that would straddle the right edge goes to the next
        row, leaving the last column empty, as terminals do; after a full row
        the next position is the start of the next row.
        """
        columns = max(self._columns(), 2)
        row, column = divmod(len(self.ps[self.pn]), columns)
        positions = []
        for character in self.lineBuffer:
            width = display_width(self._shown(character))
            if column + width > columns:
                row, column = row + 1, 0
            positions.append((row, column))
            row, column = divmod(row * columns + column + width, columns)
        positions.append((row, column))
        return positions

    def _to_input_start(self) -> None:
        """Move to the prompt's first column and clear everything from there down."""
        self.terminal.write(b"\r")
        if self._cursor_row:
            self.terminal.cursorUp(self._cursor_row)
        self.terminal.eraseToDisplayEnd()
        self._cursor_row = 0

    def _draw(self) -> None:
        """
        Draw prompt and line from the prompt's first column, then place the cursor.

        Rows are ended explicitly rather than left to the terminal's wrapping,
        which differs between terminals at the right edge.
        """
        self._undrawn = False
        positions = self._positions()
        parts = [self.ps[self.pn]]
        row = 0
        for character, (at_row, _) in zip([*self.lineBuffer, b""], positions, strict=True):
            parts += [b"\r\n" * (at_row - row), self._shown(character)]
            row = at_row
        self.terminal.write(b"".join(parts))
        self._cursor_row = row
        self._move_to(self.lineBufferIndex)

    def _redraw(self) -> None:
        self._to_input_start()
        self._draw()

    def _move_to(self, index: int) -> None:
        """Put the cursor on the character at C{index} (kept within the line)."""
        index = max(0, min(index, len(self.lineBuffer)))
        self.lineBufferIndex = index
        row, column = self._positions()[index]
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
