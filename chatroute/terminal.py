"""
The client's terminal screen: messages scroll up while an editable prompt line stays put.

Built on Twisted's own line editor (L{HistoricRecvLine}: its line buffer,
key dispatch and history), with the drawing redone so a typed line that wraps
over several rows stays whole while messages arrive above it.
"""

from collections.abc import Callable
from typing import Any

from twisted.conch.recvline import HistoricRecvLine
from twisted.internet.defer import Deferred
from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure

_TAB_WIDTH = 4


class TerminalScreen(HistoricRecvLine):
    """
    A terminal: messages scroll above a C{> } prompt line that keeps what is being typed.

    Keys: the usual editing keys (left, right, home, end, backspace, delete,
    insert), up and down for history, Enter to send, Ctrl-C, or Ctrl-D on an
    empty line, to quit. The screen tracks which row of a wrapped input line
    the cursor is on, and redraws the whole input line after each edit.
    """

    ps = (b"> ", b"> ")

    def __init__(
        self,
        send: Callable[[bytes], None],
        quit: Callable[[], None],
        columns: Callable[[], int] | None = None,
        conceal: Callable[[bytes], bytes] = lambda line: line,
    ) -> None:
        """
        @param send: called with each line the user enters.
        @param quit: called when the user asks to quit.
        @param conceal: the line as it may stay on screen and in the history
            (passwords hidden).
        @param columns: returns the terminal's width now; by default the
            width L{HistoricRecvLine} assumes.
        """
        self._send = send
        self._quit = quit
        self._columns = columns or (lambda: self.width)
        self._conceal = conceal
        self._pending = b""
        self._cursor_row = 0
        self.closed: Deferred[None] = Deferred()

    def connectionMade(self) -> None:
        """Set up the line editor and the quit keys."""
        super().connectionMade()
        self.keyHandlers[b"\x03"] = self._quit
        self.keyHandlers[b"\x04"] = self._end_of_input

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
        Leave the cursor on a fresh line and close standard output.

        It closes the transport under the terminal wrapper, as closing the
        wrapper itself would reset the terminal and wipe the conversation.
        """
        self.terminal.write(b"\r\n")
        self.terminal.transport.loseConnection()
        return self.closed

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """Output is flushed."""
        self.closed.callback(None)

    def keystrokeReceived(self, keyID: Any, modifier: Any) -> None:
        """Take multi-byte UTF-8 characters whole, so each edits as one character."""
        if isinstance(keyID, bytes) and keyID >= b"\x80":
            self._pending += keyID
            try:
                self._pending.decode()
            except UnicodeDecodeError:
                if len(self._pending) >= 4:
                    self._pending = b""
                return
            keyID, self._pending = self._pending, b""
            self.characterReceived(keyID, False)
            return
        super().keystrokeReceived(keyID, modifier)

    def characterReceived(self, ch: bytes, moreCharactersComing: bool) -> None:
        """Insert or overwrite one character at the cursor."""
        index = self.lineBufferIndex
        if self.mode == "insert":
            self.lineBuffer.insert(index, ch)
        else:
            self.lineBuffer[index : index + 1] = [ch]
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
        if self.lineBufferIndex > 0:
            self.lineBufferIndex -= 1
            del self.lineBuffer[self.lineBufferIndex]
            self._redraw()

    def handle_DELETE(self) -> None:
        """Delete the character under the cursor."""
        if self.lineBufferIndex < len(self.lineBuffer):
            del self.lineBuffer[self.lineBufferIndex]
            self._redraw()

    def handle_UP(self) -> None:
        """Show the previous line of history."""
        super().handle_UP()
        self._redraw()

    def handle_DOWN(self) -> None:
        """Show the next line of history."""
        super().handle_DOWN()
        self.lineBufferIndex = len(self.lineBuffer)
        self._redraw()

    def handle_RETURN(self) -> None:
        """
        Send the line and start a fresh prompt below it.

        The line stays on screen, and in the history, with any password in
        it hidden.
        """
        line = b"".join(self.lineBuffer)
        shown = self._conceal(line)
        if shown != line:
            self.lineBuffer = [bytes([byte]) for byte in shown]
            self.lineBufferIndex = len(self.lineBuffer)
            self._redraw()
        self._move_to(len(self.lineBuffer))
        self.lineBuffer = []
        self.lineBufferIndex = 0
        if shown:
            self.historyLines.append(shown)
        self.historyPosition = len(self.historyLines)
        self.terminal.nextLine()
        self.lineReceived(line)

    def lineReceived(self, line: bytes) -> None:
        """Send the line just entered and draw a fresh prompt."""
        self._cursor_row = 0
        self._send(line)
        self._draw()

    def _end_of_input(self) -> None:
        if not self.lineBuffer:
            self._quit()

    def _position(self, index: int) -> tuple[int, int]:
        """The row (from the prompt's row) and column of the character at C{index}."""
        columns = max(self._columns(), 1)
        return divmod(len(self.ps[self.pn]) + index, columns)

    def _to_input_start(self) -> None:
        """Move to the prompt's first column and clear everything from there down."""
        self.terminal.write(b"\r")
        if self._cursor_row:
            self.terminal.cursorUp(self._cursor_row)
        self.terminal.eraseToDisplayEnd()
        self._cursor_row = 0

    def _draw(self) -> None:
        """Draw prompt and line from the prompt's first column, then place the cursor."""
        self.terminal.write(self.ps[self.pn] + b"".join(self.lineBuffer))
        end_row, end_column = self._position(len(self.lineBuffer))
        if end_column == 0:
            # Terminals hold the cursor in the last column until more is
            # written; make the wrap real so rows can be counted.
            self.terminal.write(b"\r\n")
        self._cursor_row = end_row
        self._move_to(self.lineBufferIndex)

    def _redraw(self) -> None:
        self._to_input_start()
        self._draw()

    def _move_to(self, index: int) -> None:
        """Put the cursor on the character at C{index} (kept within the line)."""
        index = max(0, min(index, len(self.lineBuffer)))
        self.lineBufferIndex = index
        row, column = self._position(index)
        if row < self._cursor_row:
            self.terminal.cursorUp(self._cursor_row - row)
        elif row > self._cursor_row:
            self.terminal.cursorDown(row - self._cursor_row)
        self._cursor_row = row
        self.terminal.write(b"\r")
        if column:
            self.terminal.cursorForward(column)
