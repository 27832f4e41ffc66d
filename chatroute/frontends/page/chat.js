// The chatroute chat page: the line protocol of docs/protocol.md over a WebSocket at /ws,
// one line per text frame. No framework and no build step; what the server sends is only
// ever put on the page as text (textContent), never as HTML.

const NICK = "[A-Za-z][A-Za-z0-9_-]{0,31}";
const ROOM = `#${NICK}`;
const ROOM_LINE = new RegExp(`^(${ROOM}) <(${NICK})> ([^]*)$`);
const ROOM_ACTION = new RegExp(`^(${ROOM}) \\* (${NICK}) ([^]*)$`);
const DIRECT_LINE = new RegExp(`^<(${NICK})> ([^]*)$`);
const DIRECT_ACTION = new RegExp(`^<(${NICK})> \\* ([^]*)$`);
// A line the page sends for an action to one person (what the server does not echo).
const SENT_DIRECT_ACTION = new RegExp(`^/me\\s+(${NICK})\\s+([^]+)$`, "i");
const PAST_LINE = /^\[([^\]]+)\] ([^]*)$/;
// Fields the page does not know may follow, should the server add some.
const LIMITS_LINE =
  /^\* limits: flood-rate=([0-9.]+) flood-burst=([0-9]+) max-line-length=([0-9]+) idle-timeout=([0-9.]+)/;
const LIMITS_UNKNOWN = "! unknown command: /limits (try /help)";
const JOINED = new RegExp(`^\\* (${NICK}) joined (${ROOM})$`);
const LEFT = new RegExp(
  `^\\* (${NICK}) (?:left (${ROOM})( \\(disconnected\\))?|was kicked from (${ROOM}) by ${NICK}(?:: [^]*)?)$`,
);
const MEMBERS = new RegExp(`^\\* (${ROOM}) \\((\\d+)\\): ?(.*)$`);
const MEMBER = /^([@+]?)(.*)$/; // one name of a member list: @ an operator, + a voice
const MADE_OPERATOR = new RegExp(`^\\* ${NICK} made (${NICK}) an operator of (${ROOM})$`);
const TOOK_OPERATOR = new RegExp(`^\\* ${NICK} took operator status in (${ROOM}) from (${NICK})$`);
const GAVE_VOICE = new RegExp(`^\\* ${NICK} gave (${NICK}) a voice in (${ROOM})$`);
const TOOK_VOICE = new RegExp(`^\\* ${NICK} took (${NICK})'s voice in (${ROOM})$`);
// The topic, answering /topic (and after the member list on /join), or changed by someone.
const TOPIC = new RegExp(`^\\* topic of (${ROOM}): ([^]*)$`);
const NO_TOPIC = new RegExp(`^\\* (${ROOM}) has no topic$`);
const TOPIC_SET = new RegExp(`^\\* ${NICK} set the topic of (${ROOM}): ([^]*)$`);
const TOPIC_CLEARED = new RegExp(`^\\* ${NICK} cleared the topic of (${ROOM})$`);
const HISTORY = new RegExp(`^\\* history of (${ROOM}): (\\d+) messages? follows?$`);
const RENAMED = new RegExp(`^\\* (${NICK}) is now (${NICK})$`);
const REGISTERED = new RegExp(`^\\* registered as (${NICK})$`);
const LOGGED_IN = new RegExp(`^\\* logged in as (${NICK})(?:; (\\d+) waiting)?`);
const NOW_ACCOUNT = new RegExp(`^\\* (${NICK}) is now a registered account`);
const STORED = new RegExp(`^\\* (${NICK}) is offline; message stored`);
const CLOSING = /^\* (.*); closing$/;
// A line of the server's answer to /help: a command (or nothing, where a row goes on), then
// at least two spaces, then what it does (docs/protocol.md).
const HELP_LINE = /^\* (?:[/#@]\S*(?: \S+)*)? {2,}\S/;
// A line that carries a password, as (the line up to it)(the password): the server's own rule
// (split_password in chatroute/frontends/syntax.py).
const PASSWORD_LINE = /^(\s*(?:#\S+|\/login\s+\S+|\/register|\/password|\/pass)\s+)(\S[^]*)$/i;
const PASSWORD_MASK = "********";
// /password's two passwords: each a word not starting with ", or double-quoted with \" and \\.
const ONE_PASSWORD = '(?:"((?:[^"\\\\]|\\\\.)*)"|([^\\s"]\\S*))';
const TWO_PASSWORDS = new RegExp(`^${ONE_PASSWORD}\\s+${ONE_PASSWORD}$`);

// The server's defaults, for a server that does not answer /limits.
const DEFAULT_RATE = 10;
const DEFAULT_BURST = 20;
// Keep to 90% of the rate and half the burst, as the terminal client does, so that lines
// the network bunches together still find tokens at the server.
const SAFETY = 0.9;
const KEEPALIVE_SECONDS = 240;
// Within this many pixels of its end, a conversation counts as read to the end: new
// entries then scroll it on, so that the newest stays in view.
const NEAR_THE_END = 48;
// Seconds before each reconnection attempt, then the last one again; each is randomised
// by ±25% so that many pages do not come back at the same instant after a restart.
const RECONNECT_DELAYS = [1, 2, 4, 8, 16, 30];
const SERVER = "";
// Above the server's answer to /help, how the page maps onto the line protocol it lists.
const PAGE_HELP = [
  "On this page, what you type goes to the conversation on screen, and /me action acts in it.",
  "Sign in, or change your name, with Nickname and Password; join rooms and talk to people " +
    "from the sidebar (or with /join #room).",
  "The server's commands follow: a /command works here as typed; #name, @name:message and " +
    "@#room:message are what the page sends for you.",
];

const $ = (id) => document.getElementById(id);

/** Send lines no faster than the server's flood limit: held until the limits are known. */
class Pacer {
  constructor(write) {
    this.write = write;
    this.queue = [];
    this.held = true;
    this.rate = 0;
    this.burst = 1;
    this.tokens = 0;
    this.stamp = 0;
    this.timer = null;
  }

  pace(rate, burst) {
    this.held = false;
    this.rate = rate * SAFETY;
    this.burst = Math.max(1, Math.floor(burst / 2));
    this.tokens = this.burst;
    this.stamp = performance.now();
    this.flush();
  }

  send(line) {
    this.queue.push(line);
    if (this.timer === null) this.flush();
  }

  stop() {
    clearTimeout(this.timer);
    this.timer = null;
    this.queue = [];
    this.held = true;
  }

  flush() {
    this.timer = null;
    if (this.held) return;
    while (this.queue.length) {
      if (this.rate > 0) {
        const now = performance.now();
        this.tokens = Math.min(this.burst, this.tokens + ((now - this.stamp) / 1000) * this.rate);
        this.stamp = now;
        if (this.tokens < 1) {
          const wait = ((1 - this.tokens) / this.rate) * 1000 + 1;
          this.timer = setTimeout(() => this.flush(), wait);
          return;
        }
        this.tokens -= 1;
      }
      this.write(this.queue.shift());
    }
  }
}

/** One conversation: the server's notices, a room, or a direct conversation with one person. */
class Conversation {
  constructor(kind, name) {
    this.kind = kind; // "server", "room" or "person"
    this.name = name;
    this.unread = 0;
    this.members = new Map(); // lower-case nick -> {nick, operator, voice}, for rooms
    this.topic = null; // a room's topic, if it has one
    this.said = []; // [nick, text, action] of the messages shown, for matching history on a rejoin
    this.log = document.createElement("ol");
    this.log.className = "log";
    this.log.setAttribute("role", "log");
    this.log.setAttribute("aria-live", "polite");
    this.log.tabIndex = 0; // so that it scrolls from the keyboard
    this.log.setAttribute("aria-label", this.title());
    this.log.hidden = true;
    // Whether the newest entry is in view, as the user left it: kept while the log's size
    // changes (an error shown or closed above the message field, a topic in the heading, a
    // resized window), which moves no scrollbar, so that it follows the newest still.
    this.atEnd = true;
    this.log.addEventListener("scroll", () => {
      if (!this.log.hidden) this.atEnd = this.distanceFromEnd() < NEAR_THE_END;
    });
    new ResizeObserver(() => this.keepAtEnd()).observe(this.log);
    $("logs").append(this.log);
  }

  distanceFromEnd() {
    return this.log.scrollHeight - this.log.scrollTop - this.log.clientHeight;
  }

  /** Add an entry; if the user was at the end, the newest stays in view. */
  append(item) {
    this.log.append(item);
    this.keepAtEnd();
  }

  keepAtEnd() {
    if (this.atEnd && !this.log.hidden) this.log.scrollTop = this.log.scrollHeight;
  }

  /** Show from the end, as when the conversation is opened. */
  toEnd() {
    this.atEnd = true;
    this.keepAtEnd();
  }

  title() {
    return this.kind === "server" ? "Server" : this.name;
  }
}

const state = {
  socket: null,
  pacer: null,
  connected: false, // the WebSocket is open
  wanted: false, // the user asked to be connected
  nick: null, // the nickname the server confirmed
  password: null, // kept in this page's memory only, to log in again after a reconnect
  candidate: null, // the password of the last login or /register sent, until confirmed
  rejoin: false, // rooms to join again once the nickname is confirmed
  attempt: 0,
  retryTimer: null,
  retryAt: 0, // when (performance.now()) the next attempt is made
  countdownTimer: null,
  keepaliveTimer: null,
  sentLately: false,
  pongsOwed: 0,
  limitsOwed: false,
  maxLineLength: 4096,
  conversations: new Map(), // key (lower case) -> Conversation
  current: SERVER,
  switchTo: new Set(), // rooms the user asked to join, to show once joined
  membersOwed: new Set(), // rooms just joined: their member list goes to the heading, not the log
  history: null, // {room, left, lines, said}: history lines being gathered on a rejoin
  justJoined: null, // the room whose member list came last: its topic may follow, for it
  helpsOwed: [], // the conversation each /help sent was typed in, until its answer comes
  help: null, // {target, table, first}: the answer to /help being shown
  closingReason: null, // why the server said it was closing the connection
};

const keyOf = (name) => name.toLowerCase();
const isMe = (nick) => state.nick !== null && keyOf(nick) === keyOf(state.nick);

function conversation(kind, name) {
  const key = kind === "server" ? SERVER : keyOf(name);
  let found = state.conversations.get(key);
  if (!found) {
    found = new Conversation(kind, name);
    state.conversations.set(key, found);
    renderLists();
  }
  return found;
}

function current() {
  return state.conversations.get(state.current);
}

// ---- Showing lines

function formatTime(date) {
  return date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

function nickColour(nick) {
  let hash = 0;
  for (const c of nick.toLowerCase()) hash = (hash * 31 + c.codePointAt(0)) >>> 0;
  return `${hash % 360}`;
}

/**
 * Add one entry to a conversation.
 * kind: "message", "notice", "command" or "history"; nick and text are the server's, shown as text.
 * An action (/me) reads as the line protocol shows it: "* alice waves".
 */
function show(target, { kind, nick = null, text, action = false, when = null, past = false }) {
  const item = entry(`${kind}${action ? " action" : ""}${past ? " past" : ""}`, when, past);
  if (nick !== null) {
    const who = document.createElement("span");
    who.className = "nick" + (isMe(nick) ? " me" : "");
    who.style.setProperty("--hue", nickColour(nick));
    who.textContent = nick;
    const body = document.createElement("span");
    body.className = "text";
    body.textContent = text;
    if (action) {
      const mark = document.createElement("span");
      mark.className = "action-mark";
      mark.textContent = "*";
      item.append(mark, " ");
    }
    item.append(who, " ", body);
    target.said.push([nick, text, action]);
  } else {
    const body = document.createElement("span");
    body.className = "text";
    body.textContent = text;
    item.append(body);
  }
  target.append(item);
  if (kind === "message" && target !== current() && target.kind !== "server") {
    target.unread += 1;
    renderLists();
  }
}

/** A new entry of the given classes, with its time. */
function entry(classes, when = null, past = false) {
  const item = document.createElement("li");
  item.className = `entry ${classes}`;
  const time = document.createElement("time");
  const date = when ?? new Date();
  time.dateTime = date.toISOString();
  time.title = date.toLocaleString();
  time.textContent = past && !sameDay(date) ? date.toLocaleDateString() + " " + formatTime(date)
    : formatTime(date);
  item.append(time, " ");
  return item;
}

function sameDay(date) {
  return date.toDateString() === new Date().toDateString();
}

function notice(text, target = current()) {
  show(target, { kind: "notice", text });
}

function showError(text) {
  const box = $("errors");
  box.replaceChildren();
  const message = document.createElement("span");
  message.textContent = text;
  const dismiss = document.createElement("button");
  dismiss.type = "button";
  dismiss.className = "dismiss";
  dismiss.setAttribute("aria-label", "Dismiss the error");
  dismiss.textContent = "×";
  dismiss.addEventListener("click", () => {
    clearError();
    $("message").focus();
  });
  box.append(message, dismiss);
}

function clearError() {
  $("errors").replaceChildren();
}

function setStatus(text, kind) {
  const status = $("status");
  status.textContent = text;
  status.dataset.state = kind;
  $("reconnect-now").hidden = kind !== "waiting";
  $("connect").textContent = state.connected ? "Change" : "Connect";
}

/**
 * Say how long until the next attempt to reconnect, counting down each second. The status is
 * read out when it says so first; the seconds then change in a part that is not (aria-live
 * "off"), so that a screen reader does not read out every one.
 */
function countDown() {
  const left = (state.retryAt - performance.now()) / 1000;
  const shown = Math.max(1, Math.ceil(left));
  let seconds = $("status").querySelector(".seconds");
  if (!seconds || $("status").dataset.state !== "waiting") {
    setStatus("", "waiting");
    seconds = document.createElement("span");
    seconds.className = "seconds";
    seconds.setAttribute("aria-live", "off");
    $("status").append("Disconnected — reconnecting in ", seconds, " s…");
  }
  seconds.textContent = String(shown);
  // Again when the number changes; state.retryTimer makes the attempt itself.
  if (shown > 1) state.countdownTimer = setTimeout(countDown, (left - (shown - 1)) * 1000);
}

// ---- The lists of rooms and people, with unread counts

function renderLists() {
  const rooms = [];
  const people = [];
  for (const [key, conv] of state.conversations) {
    if (conv.kind === "room") rooms.push([key, conv]);
    if (conv.kind === "person") people.push([key, conv]);
  }
  const byName = (a, b) => a[0].localeCompare(b[0]);
  $("home").replaceChildren(listItem(SERVER, state.conversations.get(SERVER)));
  $("rooms").replaceChildren(...rooms.sort(byName).map(([key, conv]) => listItem(key, conv)));
  $("people").replaceChildren(...people.sort(byName).map(([key, conv]) => listItem(key, conv)));
  let unread = 0;
  for (const conv of state.conversations.values()) unread += conv.unread;
  document.title = unread ? `(${unread}) chatroute` : "chatroute";
}

function listItem(key, conv) {
  const item = document.createElement("li");
  item.className = "conversation-item";
  const open = document.createElement("button");
  open.type = "button";
  open.className = "open";
  open.dataset.key = key;
  if (key === state.current) open.setAttribute("aria-current", "true");
  const name = document.createElement("span");
  name.className = "name";
  name.textContent = conv.title();
  open.append(name);
  if (conv.unread) {
    const badge = document.createElement("span");
    badge.className = "unread";
    badge.textContent = String(conv.unread);
    const words = document.createElement("span");
    words.className = "visually-hidden";
    words.textContent = " unread";
    badge.append(words);
    open.append(" ", badge);
  }
  open.addEventListener("click", () => {
    select(key);
    $("message").focus();
  });
  item.append(open);
  if (conv.kind === "server") return item;
  const close = document.createElement("button");
  close.type = "button";
  close.className = "close";
  close.textContent = "×";
  if (conv.kind === "room") {
    close.setAttribute("aria-label", `Leave ${conv.name}`);
    close.title = `Leave ${conv.name}`;
    close.addEventListener("click", () => sendLine(`/leave ${conv.name}`));
  } else {
    close.setAttribute("aria-label", `Close the conversation with ${conv.name}`);
    close.title = "Close";
    close.addEventListener("click", () => forget(key));
  }
  item.append(close);
  return item;
}

function select(key) {
  const target = state.conversations.get(key) ?? state.conversations.get(SERVER);
  const previous = current();
  if (previous) previous.log.hidden = true;
  state.current = state.conversations.has(key) ? key : SERVER;
  target.log.hidden = false;
  target.unread = 0;
  target.toEnd();
  $("conversation-title").textContent = target.title();
  renderDetail();
  renderLists();
}

function renderDetail() {
  const target = current();
  let detail = "";
  const topic = $("conversation-topic");
  topic.textContent = target.kind === "room" && target.topic !== null ? target.topic : "";
  topic.title = topic.textContent;
  topic.hidden = !topic.textContent;
  if (target.kind === "room") {
    // As the server lists them: sorted ignoring case, operators marked @, voiced members +.
    const names = [...target.members.values()]
      .sort((a, b) => keyOf(a.nick).localeCompare(keyOf(b.nick)))
      .map(({ nick, operator, voice }) => (operator ? "@" : voice ? "+" : "") + nick);
    detail = names.length ? `${names.length} here: ${names.join(", ")}` : "";
  } else if (target.kind === "person") {
    detail = "Direct messages";
  } else {
    detail = "Notices from the server, and answers to your /commands";
  }
  $("conversation-detail").textContent = detail;
}

function forget(key) {
  const conv = state.conversations.get(key);
  if (!conv || conv.kind === "server") return;
  state.conversations.delete(key);
  conv.log.remove();
  if (state.current === key) select(SERVER);
  else renderLists();
}

// ---- Lines from the server

function received(line) {
  if (line === "* pong" && state.pongsOwed > 0) {
    state.pongsOwed -= 1;
    return;
  }
  if (state.limitsOwed) {
    const limits = LIMITS_LINE.exec(line);
    if (limits || line === LIMITS_UNKNOWN) {
      takeLimits(limits);
      return;
    }
  }
  if (state.history && gatherHistory(line)) return;
  if ((state.help || state.helpsOwed.length) && helpLine(line)) return;
  const past = PAST_LINE.exec(line);
  if (past) {
    const when = new Date(past[1]);
    message(past[2], Number.isNaN(when.getTime()) ? null : when, true, line);
    return;
  }
  if (line.startsWith("! ")) {
    showError(line.slice(2));
    return;
  }
  if (line.startsWith("* ")) {
    serverNotice(line);
    return;
  }
  message(line, null, false, line);
}

/** A room or direct message, live or from the past; anything else is shown as it came. */
function message(text, when, past, whole) {
  const inRoom = ROOM_LINE.exec(text);
  if (inRoom) {
    const room = conversation("room", inRoom[1]);
    show(room, { kind: "message", nick: inRoom[2], text: inRoom[3], when, past });
    return;
  }
  const action = ROOM_ACTION.exec(text);
  if (action) {
    const room = conversation("room", action[1]);
    show(room, { kind: "message", nick: action[2], text: action[3], action: true, when, past });
    return;
  }
  // An action to one person comes as a direct message starting "* " (docs/protocol.md).
  const directAction = DIRECT_ACTION.exec(text);
  if (directAction) {
    const [, nick, did] = directAction;
    const person = conversation("person", nick);
    show(person, { kind: "message", nick, text: did, action: true, when, past });
    return;
  }
  const direct = DIRECT_LINE.exec(text);
  if (direct) {
    const person = conversation("person", direct[1]);
    show(person, { kind: "message", nick: direct[1], text: direct[2], when, past });
    return;
  }
  notice(whole);
}

function serverNotice(line) {
  const text = line.slice(2);
  const justJoined = state.justJoined;
  state.justJoined = null;
  let found;
  if ((found = REGISTERED.exec(line))) {
    nicknameConfirmed(found[1], null);
    notice(text, conversation("server"));
  } else if ((found = LOGGED_IN.exec(line))) {
    nicknameConfirmed(found[1], state.candidate);
    notice(text, conversation("server"));
  } else if ((found = NOW_ACCOUNT.exec(line))) {
    state.password = state.candidate;
    notice(text);
  } else if (line === "* password changed") {
    state.password = state.candidate;
    notice(text);
  } else if ((found = JOINED.exec(line))) {
    const room = conversation("room", found[2]);
    if (isMe(found[1])) {
      room.name = found[2];
      room.members.clear();
      // The topic, if there is one, comes after the member list.
      room.topic = null;
      state.membersOwed.add(keyOf(found[2]));
      if (state.switchTo.delete(keyOf(found[2]))) select(keyOf(found[2]));
    }
    room.members.set(keyOf(found[1]), { nick: found[1], operator: false, voice: false });
    notice(`${found[1]} joined ${found[2]}`, room);
    if (room === current()) renderDetail();
  } else if ((found = LEFT.exec(line))) {
    const key = keyOf(found[2] || found[4]);
    const room = state.conversations.get(key);
    if (isMe(found[1])) {
      forget(key);
      notice(text);
    } else if (room) {
      room.members.delete(keyOf(found[1]));
      notice(text, room);
      if (room === current()) renderDetail();
    } else {
      notice(text);
    }
  } else if ((found = MEMBERS.exec(line))) {
    const room = state.conversations.get(keyOf(found[1]));
    if (room) {
      room.members.clear();
      // Operators are marked with @, voiced members with +, which no nickname has.
      for (const shown of found[3].split(", ").filter(Boolean)) {
        const [, mark, nick] = MEMBER.exec(shown);
        room.members.set(keyOf(nick), { nick, operator: mark === "@", voice: mark === "+" });
      }
      if (room === current()) renderDetail();
      if (state.membersOwed.delete(keyOf(found[1]))) state.justJoined = room;
      else notice(text, room);
    } else {
      notice(text);
    }
  } else if ((found = MADE_OPERATOR.exec(line))) {
    memberChanged(found[2], found[1], { operator: true }, text);
  } else if ((found = TOOK_OPERATOR.exec(line))) {
    memberChanged(found[1], found[2], { operator: false }, text);
  } else if ((found = GAVE_VOICE.exec(line))) {
    memberChanged(found[2], found[1], { voice: true }, text);
  } else if ((found = TOOK_VOICE.exec(line))) {
    memberChanged(found[2], found[1], { voice: false }, text);
  } else if ((found = TOPIC.exec(line))) {
    // After a join (a rejoin too, whatever is on screen) it is the room's; else an answer.
    const joined = justJoined && keyOf(justJoined.name) === keyOf(found[1]);
    topicKnown(found[1], found[2], text, joined ? justJoined : current());
  } else if ((found = NO_TOPIC.exec(line))) {
    topicKnown(found[1], null, text, current());
  } else if ((found = TOPIC_SET.exec(line))) {
    topicKnown(found[1], found[2], text);
  } else if ((found = TOPIC_CLEARED.exec(line))) {
    topicKnown(found[1], null, text);
  } else if ((found = HISTORY.exec(line))) {
    const room = conversation("room", found[1]);
    const count = Number(found[2]);
    // On a rejoin, the history repeats what was seen before the connection was lost: gather
    // it, and show only what is new (see gatherHistory).
    if (room.said.length && count) {
      state.history = { room, left: count, lines: [], said: room.said.slice() };
    } else {
      notice(text, room);
    }
  } else if ((found = RENAMED.exec(line))) {
    renamed(found[1], found[2], text);
  } else if ((found = STORED.exec(line))) {
    notice(text, conversation("person", found[1]));
  } else if ((found = CLOSING.exec(line))) {
    state.closingReason = found[1];
    notice(text, conversation("server"));
  } else if (line === "* bye") {
    state.wanted = false;
    notice(text, conversation("server"));
  } else if (line.startsWith("* connected from ")) {
    notice(text, conversation("server"));
  } else {
    notice(text);
  }
}

/** A member of a room became (or stopped being) an operator, or got (or lost) a voice. */
function memberChanged(name, nick, change, text) {
  const room = state.conversations.get(keyOf(name));
  const member = room?.members.get(keyOf(nick));
  if (member) Object.assign(member, change);
  notice(text, room ?? current());
  if (room && room === current()) renderDetail();
}

/**
 * A room's topic (null: none), for its heading. The notice goes to where (an answer to
 * /topic where it was asked), by default the room's conversation.
 */
function topicKnown(name, topic, text, where = null) {
  const known = state.conversations.get(keyOf(name));
  const room = known && known.kind === "room" ? known : null;
  if (room) room.topic = topic;
  notice(text, where ?? room ?? current());
  if (room && room === current()) renderDetail();
}

function nicknameConfirmed(nick, password) {
  const first = state.nick === null;
  state.nick = nick;
  state.password = password;
  $("nick").value = nick;
  // The password stays in this page's memory (state.password) for reconnecting, not on screen.
  if (password !== null) $("password").value = "";
  setStatus(`Connected as ${nick}`, "online");
  if (state.rejoin) {
    state.rejoin = false;
    for (const conv of state.conversations.values()) {
      if (conv.kind === "room") sendLine(`/join ${conv.name}`, { quiet: true });
    }
  }
  if (first && $("login").contains(document.activeElement)) $("message").focus();
}

function renamed(from, to, text) {
  let shown = false;
  for (const conv of state.conversations.values()) {
    if (conv.kind === "room" && conv.members.has(keyOf(from))) {
      // A renamed operator stays one, and a voiced member keeps the voice.
      const member = conv.members.get(keyOf(from));
      conv.members.delete(keyOf(from));
      conv.members.set(keyOf(to), { ...member, nick: to });
      notice(text, conv);
      shown = true;
    }
  }
  const person = state.conversations.get(keyOf(from));
  if (person && person.kind === "person" && !state.conversations.has(keyOf(to))) {
    state.conversations.delete(keyOf(from));
    person.name = to;
    person.log.setAttribute("aria-label", to);
    state.conversations.set(keyOf(to), person);
    if (state.current === keyOf(from)) state.current = keyOf(to);
    notice(text, person);
    shown = true;
    select(state.current);
  }
  if (!shown) notice(text);
  renderDetail();
}

/**
 * Take one line of history being gathered after a rejoin; false if it is not one.
 * Once all have come, show those after the last message seen before the connection was lost.
 */
function gatherHistory(line) {
  const gathering = state.history;
  const past = PAST_LINE.exec(line);
  const message = past && ROOM_LINE.exec(past[2]);
  const action = past && !message && ROOM_ACTION.exec(past[2]);
  const inRoom = message || action;
  if (!inRoom || keyOf(inRoom[1]) !== keyOf(gathering.room.name)) return false;
  const when = new Date(past[1]);
  gathering.lines.push({ nick: inRoom[2], text: inRoom[3], action: Boolean(action), when });
  gathering.left -= 1;
  if (gathering.left > 0) return true;
  state.history = null;
  const { lines, said, room } = gathering;
  const same = (entry, seen) =>
    entry.nick === seen[0] && entry.text === seen[1] && entry.action === seen[2];
  // The longest start of the history that ends with the messages last seen.
  let skip = 0;
  for (let end = lines.length; end > 0 && skip === 0; end -= 1) {
    let matches = true;
    for (let back = 1; back <= Math.min(end, said.length); back += 1) {
      if (!same(lines[end - back], said[said.length - back])) {
        matches = false;
        break;
      }
    }
    if (matches) skip = end;
  }
  const missed = lines.slice(skip);
  if (missed.length) {
    notice(`${missed.length} message${missed.length === 1 ? "" : "s"} while you were away`, room);
    for (const entry of missed) show(room, { kind: "message", ...entry, past: true });
  }
  return true;
}

/**
 * Take one line of an answer to /help; false if it is not one, which ends the answer. Its
 * lines come together (the server writes them at once), and go together in one block, in
 * the conversation where /help was typed, below a note on how the page maps onto them.
 */
function helpLine(line) {
  if (!HELP_LINE.test(line)) {
    state.help = null;
    return false;
  }
  const text = line.slice(2);
  const help = state.help;
  if (help !== null && (text !== help.first || !state.helpsOwed.length)) {
    help.table.append(`\n${text}`);
    help.target.keepAtEnd();
    return true;
  }
  const asked = state.helpsOwed.shift();
  const target = [...state.conversations.values()].includes(asked) ? asked : current();
  const item = entry("help");
  const body = document.createElement("div");
  body.className = "text help-text";
  for (const words of PAGE_HELP) {
    const note = document.createElement("p");
    note.className = "help-note";
    note.textContent = words;
    body.append(note);
  }
  const table = document.createElement("pre");
  table.className = "help-table";
  table.textContent = text;
  body.append(table);
  item.append(body);
  target.append(item);
  state.help = { target, table, first: text };
  return true;
}

function takeLimits(found) {
  state.limitsOwed = false;
  let rate = DEFAULT_RATE;
  let burst = DEFAULT_BURST;
  let idle = 0;
  if (found) {
    rate = Number(found[1]);
    burst = Number(found[2]);
    state.maxLineLength = Number(found[3]) || Infinity;
    idle = Number(found[4]);
  }
  const interval = idle > 0 ? Math.min(KEEPALIVE_SECONDS, idle / 3) : KEEPALIVE_SECONDS;
  clearInterval(state.keepaliveTimer);
  state.keepaliveTimer = setInterval(keepAlive, interval * 1000);
  state.pacer.pace(rate, burst);
}

function keepAlive() {
  if (!state.sentLately && state.connected) {
    state.pongsOwed += 1;
    state.pacer.send("/ping");
  }
  state.sentLately = false;
}

// ---- Lines to the server

/**
 * Send one line, paced; false if not connected. Passwords in it are remembered (in this
 * page's memory only) until the server confirms them, to log in again after a reconnect.
 */
function sendLine(line, { quiet = false } = {}) {
  if (!state.connected || !state.pacer) return false;
  const words = line.trim().split(/\s+/);
  const command = words[0].toLowerCase();
  const candidate = newPassword(line);
  if (candidate !== null) state.candidate = candidate;
  if (command === "/join" && words.length === 2 && !quiet) state.switchTo.add(keyOf(words[1]));
  if (command === "/help" && words.length === 1) state.helpsOwed.push(current());
  if (command === "/quit") state.wanted = false;
  state.sentLately = true;
  state.pacer.send(line);
  return true;
}

/**
 * The password that a /register, /login or /password line would make the account's, read as
 * the server reads it (docs/protocol.md: the rest of the line, or /password's second); null
 * for any other line.
 */
function newPassword(line) {
  const [, command = "", argument = ""] = /^\s*(\S*)\s*([^]*?)\s*$/.exec(line);
  switch (command.toLowerCase()) {
    case "/register":
      return argument || null;
    case "/login": {
      const login = /^\S+\s+(\S[^]*)$/.exec(argument);
      return login ? login[1] : null;
    }
    case "/password": {
      const change = TWO_PASSWORDS.exec(argument);
      if (!change) return null;
      return change[3] === undefined ? change[4] : change[3].replace(/\\([\\"])/g, "$1");
    }
    default:
      return null;
  }
}

/** The line as shown: the password it carries, if any, as one mask, whatever its words. */
function masked(line) {
  const found = PASSWORD_LINE.exec(line);
  return found ? found[1] + PASSWORD_MASK : line;
}

/**
 * The line to send for /me: an action in the conversation on screen, unless the first word
 * names a room (#room) or someone the page knows of (a member of a room, or a direct
 * conversation) and something follows, as the server takes it; null (the line goes as it
 * is) for those, and in the Server conversation.
 */
function actionHere(text, target) {
  const found = /^\/me(?:\s+(\S+)(\s+\S[^]*)?)?$/i.exec(text);
  if (!found || target.kind === "server" || !found[1]) return null;
  const [, first, rest] = found;
  if (first.startsWith("#") || (rest !== undefined && knows(first))) return null;
  return `/me ${target.name} ${text.replace(/^\/me\s+/i, "")}`;
}

function knows(nick) {
  const key = keyOf(nick);
  for (const conv of state.conversations.values()) {
    if (conv.kind === "person" && keyOf(conv.name) === key) return true;
    if (conv.kind === "room" && conv.members.has(key)) return true;
  }
  return false;
}

function submitMessage(event) {
  event.preventDefault();
  const field = $("message");
  const text = field.value.trim();
  if (!text) return;
  if (!state.connected) {
    showError("Not connected; the message was not sent.");
    return;
  }
  const target = current();
  // "/me waves" acts in the conversation on screen, as a message would go to it.
  const acted = actionHere(text, target);
  let line;
  if (acted !== null) {
    line = acted;
  } else if (text.startsWith("/")) {
    line = text;
  } else if (target.kind === "room" || target.kind === "person") {
    line = `@${target.name}:${text}`;
  } else {
    showError("Join a room or open a conversation with someone first (or type a /command).");
    return;
  }
  if (new TextEncoder().encode(line).length > state.maxLineLength) {
    showError(`That is too long for the server (at most ${state.maxLineLength} bytes).`);
    return;
  }
  clearError();
  sendLine(line);
  field.value = "";
  if (!line.startsWith("/")) {
    // The server does not echo direct messages to their sender.
    if (target.kind === "person" && state.nick !== null) {
      show(target, { kind: "message", nick: state.nick, text });
    }
  } else if (acted === null) {
    // An action typed as "/me waves" shows as the action (the room's echo, or below) only.
    show(target, { kind: "command", text: masked(line) });
  }
  const directAction = SENT_DIRECT_ACTION.exec(line);
  if (directAction && state.nick !== null) {
    // Nor actions to one person: show it in the conversation with them, as they see it.
    const person = conversation("person", directAction[1]);
    show(person, { kind: "message", nick: state.nick, text: directAction[2], action: true });
  }
}

// ---- The connection

function socketUrl() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/ws`;
}

function connect() {
  clearTimeout(state.retryTimer);
  clearTimeout(state.countdownTimer);
  state.retryTimer = null;
  state.countdownTimer = null;
  if (state.socket) return;
  setStatus(state.attempt ? "Reconnecting…" : "Connecting…", "connecting");
  const socket = new WebSocket(socketUrl());
  state.socket = socket;
  state.closingReason = null;
  socket.addEventListener("open", () => {
    // An error on screen answered a line of the connection before: it is over.
    clearError();
    state.connected = true;
    state.attempt = 0;
    state.pongsOwed = 0;
    state.pacer = new Pacer((line) => socket.send(line));
    // /limits goes first, alone; everything else waits, paced, for its answer.
    state.limitsOwed = true;
    socket.send("/limits");
    setStatus("Connected", "connecting");
    register();
  });
  socket.addEventListener("message", (event) => {
    if (typeof event.data === "string") received(event.data);
  });
  socket.addEventListener("close", () => disconnected(socket));
}

function register() {
  const nick = $("nick").value.trim().replace(/^#/, "");
  const password = $("password").value;
  if (!nick) return;
  if (password) {
    state.candidate = password;
    state.pacer.send(`#${nick} ${password}`);
  } else if (state.password && state.nick !== null && keyOf(state.nick) === keyOf(nick)) {
    // Logged in before the connection was lost (with /register or /login): log in again.
    state.candidate = state.password;
    state.pacer.send(`#${nick} ${state.password}`);
  } else {
    state.pacer.send(`#${nick}`);
  }
  state.sentLately = true;
}

function disconnected(socket) {
  if (state.socket !== socket) return;
  state.socket = null;
  state.connected = false;
  state.pacer?.stop();
  state.history = null;
  state.justJoined = null;
  state.helpsOwed = [];
  state.help = null;
  state.membersOwed.clear();
  clearInterval(state.keepaliveTimer);
  const reason = state.closingReason;
  for (const conv of state.conversations.values()) conv.members.clear();
  renderDetail();
  if (reason === "logged in from another connection") state.wanted = false;
  if (!state.wanted) {
    setStatus(reason ? `Disconnected: ${reason}` : "Disconnected", "offline");
    return;
  }
  const base = RECONNECT_DELAYS[Math.min(state.attempt, RECONNECT_DELAYS.length - 1)];
  const delay = Math.max(1, Math.round(base * (0.75 + 0.5 * Math.random())));
  state.attempt += 1;
  state.rejoin = true;
  state.retryAt = performance.now() + delay * 1000;
  state.retryTimer = setTimeout(connect, delay * 1000);
  countDown();
}

function submitLogin(event) {
  event.preventDefault();
  const nick = $("nick").value.trim().replace(/^#/, "");
  if (!nick) return;
  clearError();
  state.wanted = true;
  if (state.connected) register();
  else if (!state.socket) connect();
}

function submitJoin(event) {
  event.preventDefault();
  const field = $("join-room");
  let room = field.value.trim();
  if (!room) return;
  if (!room.startsWith("#")) room = `#${room}`;
  const existing = state.conversations.get(keyOf(room));
  if (existing && existing.kind === "room" && existing.members.size) {
    select(keyOf(room));
  } else if (!sendLine(`/join ${room}`)) {
    showError("Not connected; connect first to join a room.");
    return;
  }
  field.value = "";
  $("message").focus();
}

function submitTalk(event) {
  event.preventDefault();
  const field = $("talk-to");
  const nick = field.value.trim().replace(/^@/, "");
  if (!new RegExp(`^${NICK}$`).test(nick)) {
    showError(`Not a nickname: ${nick}`);
    return;
  }
  conversation("person", nick);
  select(keyOf(nick));
  field.value = "";
  $("message").focus();
}

function start() {
  conversation("server", "Server");
  select(SERVER);
  $("login").addEventListener("submit", submitLogin);
  $("compose").addEventListener("submit", submitMessage);
  $("join").addEventListener("submit", submitJoin);
  $("talk").addEventListener("submit", submitTalk);
  $("reconnect-now").addEventListener("click", () => {
    if (state.wanted) connect();
  });
  notice("Choose a nickname (and, for an account, its password), then press Enter.");
  $("nick").focus();
}

start();
