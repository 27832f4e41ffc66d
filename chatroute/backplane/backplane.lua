-- The shared state of a chatroute network, and the one order of its events.
--
-- Every change runs here, atomically: it is checked against the shared
-- state, applied to it, numbered (seq) and published on the events channel,
-- so every node sees every change once, in one order, already checked.
-- Nodes apply the events to their own copy of the state as they come.
--
-- ARGV[1] is the key prefix, ARGV[2] the operation, the rest its arguments.
-- Keys (under the prefix):
--   seq               the number of the last event published
--   nodes             zset: node id -> its lease's end, in ms of Redis's clock
--   users             hash: nickname key -> user (json: nick, node, sid, account,
--                     user, real_name, away, rooms: {room key: true})
--   node-users:<id>   set: the nickname keys a node holds
--   rooms             hash: room key -> room (json: name, topic, topic_by, topic_at,
--                     created_at, members: {key: nick}, ops: {key: true},
--                     voiced: {key: true}, bans: {key: shown}, modes: {mode: true})
--   events            the channel of events; node:<id> a node's inbox
-- Replies are json: {"seq": n} once published, {"error": code, ...} when refused.

local prefix = ARGV[1]
local op = ARGV[2]
local K_SEQ, K_NODES, K_USERS, K_ROOMS = prefix .. "seq", prefix .. "nodes",
  prefix .. "users", prefix .. "rooms"
local CHANNEL = prefix .. "events"

local function now_ms()
  local t = redis.call("TIME")
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function node_users(node) return prefix .. "node-users:" .. node end

local function publish(event)
  event.seq = redis.call("INCR", K_SEQ)
  redis.call("PUBLISH", CHANNEL, cjson.encode(event))
  return event.seq
end

local function get_json(hash, field)
  local raw = redis.call("HGET", hash, field)
  if not raw then return nil end
  return cjson.decode(raw)
end

-- A room's modes, as the router names them; topic-lock is on in a new room.
local MODES = {moderated = true, secret = true, ["topic-lock"] = true}

local function get_room(room_key)
  local room = get_json(K_ROOMS, room_key)
  if room then
    -- A room written before voices and modes were shared has neither.
    room.voiced = room.voiced or {}
    room.modes = room.modes or {["topic-lock"] = true}
  end
  return room
end

local function put_user(key, user)
  redis.call("HSET", K_USERS, key, cjson.encode(user))
  redis.call("SADD", node_users(user.node), key)
end

local function put_room(key, room)
  if next(room.members) == nil then
    redis.call("HDEL", K_ROOMS, key)
  else
    redis.call("HSET", K_ROOMS, key, cjson.encode(room))
  end
end

local function alive(node, now)
  local until_ms = redis.call("ZSCORE", K_NODES, node)
  return until_ms and tonumber(until_ms) >= now
end

local function ok(seq) return cjson.encode({seq = seq}) end
local function refuse(code, extra)
  extra = extra or {}
  extra.error = code
  return cjson.encode(extra)
end

-- Take a user off the network: out of its rooms, its nickname freed; publish it.
local function remove_user(key, user, reason, replaced)
  for room_key, _ in pairs(user.rooms or {}) do
    local room = get_room(room_key)
    if room then
      room.members[key] = nil
      room.ops[key] = nil
      room.voiced[key] = nil
      put_room(room_key, room)
    end
  end
  redis.call("HDEL", K_USERS, key)
  redis.call("SREM", node_users(user.node), key)
  return publish({op = "gone", key = key, sid = user.sid, reason = reason, replaced = replaced})
end

local function reap(node)
  for _, key in ipairs(redis.call("SMEMBERS", node_users(node))) do
    local user = get_json(K_USERS, key)
    if user and user.node == node then remove_user(key, user, cjson.null, false) end
  end
  redis.call("DEL", node_users(node))
  redis.call("ZREM", K_NODES, node)
end

local function reap_dead(now)
  for _, node in ipairs(redis.call("ZRANGEBYSCORE", K_NODES, "-inf", "(" .. now)) do
    reap(node)
  end
end

-- The room an operator acts in, checked: the room, or nil and a refusal. With
-- needed_for, a room mode, any member may act while that mode is off.
local function operator_room(room_key, key, needed_for)
  local room = get_room(room_key)
  if not room then return nil, refuse("no_room") end
  if not room.members[key] then return nil, refuse("not_in_room", {room = room.name}) end
  if not room.ops[key] and (needed_for == nil or room.modes[needed_for]) then
    return nil, refuse("not_operator", {room = room.name})
  end
  return room
end

local function member_of(room, target)
  if not room.members[target] then
    if redis.call("HEXISTS", K_USERS, target) == 0 then return refuse("no_user") end
    return refuse("no_member", {room = room.name})
  end
  return nil
end

local function leave(room_key, room, key, event)
  room.members[key] = nil
  room.ops[key] = nil
  room.voiced[key] = nil
  put_room(room_key, room)
  local user = get_json(K_USERS, key)
  if user then
    user.rooms[room_key] = nil
    put_user(key, user)
  end
  return publish(event)
end

-- The operations that give a member of a room a flag or take it away (ARGV:
-- key, room key, target key, on (0/1)), as an operator of the room asks:
-- flags names the room's set ("ops", "voiced"); a change that changes
-- nothing is refused with the code already (on) or not_set (off).
local function set_member_flag(flags, already, not_set)
  local key, room_key, target, on = ARGV[3], ARGV[4], ARGV[5], ARGV[6] == "1"
  local room, refused = operator_room(room_key, key)
  if not room then return refused end
  local missing = member_of(room, target)
  if missing then return missing end
  if on and room[flags][target] then
    return refuse(already, {room = room.name, nick = room.members[target]})
  end
  if not on and not room[flags][target] then
    return refuse(not_set, {room = room.name, nick = room.members[target]})
  end
  room[flags][target] = on or nil
  put_room(room_key, room)
  return ok(publish({op = op, key = key, room = room.name, target = target, on = on}))
end

if op == "beat" then
  -- ARGV: node, lease ms. Renews the node's lease; reaps nodes whose lease ran out.
  local node, lease = ARGV[3], tonumber(ARGV[4])
  local now = now_ms()
  local was_alive = alive(node, now)
  redis.call("ZADD", K_NODES, now + lease, node)
  reap_dead(now)
  return cjson.encode({alive = was_alive and true or false})

elseif op == "bye" then
  -- ARGV: node. The node stops: its users leave at once.
  reap(ARGV[3])
  return ok(0)

elseif op == "claim" then
  -- ARGV: node, sid, key, nick, account (0/1), takeover (0/1), old key or "", user, real name
  local node, sid, key, nick = ARGV[3], ARGV[4], ARGV[5], ARGV[6]
  local account, takeover, old_key = ARGV[7] == "1", ARGV[8] == "1", ARGV[9]
  local now = now_ms()
  if not alive(node, now) then return refuse("expired") end
  local holder = get_json(K_USERS, key)
  if holder and holder.sid ~= sid then
    if alive(holder.node, now) and not takeover then
      return refuse("taken", {nick = holder.nick})
    end
    remove_user(key, holder, cjson.null, alive(holder.node, now) and true or false)
  end
  local before = nil
  if old_key ~= "" then
    before = get_json(K_USERS, old_key)
    if before and before.sid ~= sid then before = nil end
  end
  local user = {nick = nick, node = node, sid = sid, account = account, rooms = {},
    user = ARGV[10], real_name = ARGV[11], away = cjson.null}
  if before then
    user.rooms, user.away = before.rooms, before.away
    for room_key, _ in pairs(before.rooms) do
      local room = get_room(room_key)
      if room then
        local was_op, was_voiced = room.ops[old_key], room.voiced[old_key]
        room.members[old_key], room.ops[old_key], room.voiced[old_key] = nil, nil, nil
        room.members[key] = nick
        if was_op then room.ops[key] = true end
        if was_voiced then room.voiced[key] = true end
        put_room(room_key, room)
      end
    end
    if old_key ~= key then
      redis.call("HDEL", K_USERS, old_key)
      redis.call("SREM", node_users(node), old_key)
    end
  end
  put_user(key, user)
  return ok(publish({op = "claim", node = node, sid = sid, key = key, nick = nick,
    old = before and old_key or cjson.null, account = account,
    user = ARGV[10], real_name = ARGV[11]}))

elseif op == "gone" then
  -- ARGV: key, sid, reason or "". A user disconnected (only if still that session's).
  local key, sid = ARGV[3], ARGV[4]
  local user = get_json(K_USERS, key)
  if not user or user.sid ~= sid then return ok(0) end
  local reason = ARGV[5] ~= "" and ARGV[5] or cjson.null
  return ok(remove_user(key, user, reason, false))

elseif op == "account" then
  -- ARGV: key, sid. The user's nickname has just been made an account (/register).
  local key, sid = ARGV[3], ARGV[4]
  local user = get_json(K_USERS, key)
  if not user or user.sid ~= sid then return ok(0) end -- renamed or gone: nothing to tell
  user.account = true
  put_user(key, user)
  return ok(publish({op = "account", key = key}))

elseif op == "away" then
  -- ARGV: key, sid, message or "".
  local key, sid = ARGV[3], ARGV[4]
  local user = get_json(K_USERS, key)
  if not user or user.sid ~= sid then return refuse("expired") end
  user.away = ARGV[5] ~= "" and ARGV[5] or cjson.null
  put_user(key, user)
  return ok(publish({op = "away", key = key, message = user.away}))

elseif op == "join" then
  -- ARGV: key, room key, room name, at (the room's creation, if it is new).
  local key, room_key = ARGV[3], ARGV[4]
  local user = get_json(K_USERS, key)
  if not user then return refuse("expired") end
  local room = get_room(room_key)
  local creator = false
  if room then
    if room.members[key] then return refuse("in_room", {room = room.name}) end
    if room.bans[key] then return refuse("banned", {room = room.name}) end
  else
    room = {name = ARGV[5], members = {}, ops = {}, voiced = {}, bans = {},
      modes = {["topic-lock"] = true}, created_at = tonumber(ARGV[6]),
      topic = cjson.null, topic_by = cjson.null, topic_at = cjson.null}
    room.ops[key] = true
    creator = true
  end
  room.members[key] = user.nick
  put_room(room_key, room)
  user.rooms[room_key] = true
  put_user(key, user)
  return ok(publish({op = "join", key = key, room = room.name, creator = creator,
    created_at = room.created_at}))

elseif op == "leave" then
  -- ARGV: key, room key, reason or "".
  local key, room_key = ARGV[3], ARGV[4]
  local room = get_room(room_key)
  if not room then return refuse("no_room") end
  if not room.members[key] then return refuse("not_in_room", {room = room.name}) end
  local reason = ARGV[5] ~= "" and ARGV[5] or cjson.null
  return ok(leave(room_key, room, key, {op = "leave", key = key, room = room.name,
    reason = reason}))

elseif op == "say" then
  -- ARGV: room name, nick, text, action (0/1), notice (0/1). Numbered, not stored.
  return ok(publish({op = "say", room = ARGV[3], nick = ARGV[4], text = ARGV[5],
    action = ARGV[6] == "1", notice = ARGV[7] == "1"}))

elseif op == "topic" then
  -- ARGV: key, room key, topic or "", at.
  local key, room_key = ARGV[3], ARGV[4]
  local room, refused = operator_room(room_key, key, "topic-lock")
  if not room then return refused end
  local topic = ARGV[5] ~= "" and ARGV[5] or cjson.null
  room.topic = topic
  room.topic_by = topic ~= cjson.null and room.members[key] or cjson.null
  room.topic_at = topic ~= cjson.null and tonumber(ARGV[6]) or cjson.null
  put_room(room_key, room)
  return ok(publish({op = "topic", key = key, room = room.name, topic = topic,
    at = room.topic_at}))

elseif op == "operator" then
  -- ARGV: key, room key, target key, on (0/1).
  return set_member_flag("ops", "already_operator", "not_an_operator")

elseif op == "voice" then
  -- ARGV: key, room key, target key, on (0/1).
  return set_member_flag("voiced", "already_voiced", "not_voiced")

elseif op == "mode" then
  -- ARGV: key, room key, mode (of MODES), on (0/1).
  local key, room_key, mode, on = ARGV[3], ARGV[4], ARGV[5], ARGV[6] == "1"
  if not MODES[mode] then return refuse("unknown_mode", {mode = mode}) end
  local room, refused = operator_room(room_key, key)
  if not room then return refused end
  if (room.modes[mode] == true) == on then
    return refuse("mode_unchanged", {room = room.name, mode = mode, on = on})
  end
  room.modes[mode] = on or nil
  put_room(room_key, room)
  return ok(publish({op = "mode", key = key, room = room.name, mode = mode, on = on}))

elseif op == "kick" then
  -- ARGV: key, room key, target key, reason or "".
  local key, room_key, target = ARGV[3], ARGV[4], ARGV[5]
  local room, refused = operator_room(room_key, key)
  if not room then return refused end
  local missing = member_of(room, target)
  if missing then return missing end
  local reason = ARGV[6] ~= "" and ARGV[6] or cjson.null
  return ok(leave(room_key, room, target, {op = "kick", key = key, room = room.name,
    target = target, reason = reason}))

elseif op == "ban" then
  -- ARGV: key, room key, target key, shown, on (0/1).
  local key, room_key, target, shown, on = ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7] == "1"
  local room, refused = operator_room(room_key, key)
  if not room then return refused end
  if not on then
    if not room.bans[target] then return refuse("not_banned", {room = room.name, nick = shown}) end
    shown = room.bans[target]
    room.bans[target] = nil
    put_room(room_key, room)
    return ok(publish({op = "ban", key = key, room = room.name, target = target,
      shown = shown, on = false}))
  end
  if room.bans[target] then
    return refuse("already_banned", {room = room.name, nick = room.bans[target]})
  end
  if room.members[target] then shown = room.members[target] end
  room.bans[target] = shown
  local event = {op = "ban", key = key, room = room.name, target = target, shown = shown,
    on = true}
  if room.members[target] then return ok(leave(room_key, room, target, event)) end
  put_room(room_key, room)
  return ok(publish(event))

elseif op == "snapshot" then
  -- Everything, with the number of the last event it includes.
  return cjson.encode({seq = tonumber(redis.call("GET", K_SEQ) or "0"),
    users = redis.call("HVALS", K_USERS), rooms = redis.call("HVALS", K_ROOMS)})

elseif op == "restore" then
  -- ARGV: node, then a json list of {key, user: {...}, rooms: {room key: room}}: what the
  -- node's users had, asserted again after Redis lost it (a restart) or forgot the node.
  -- A nickname someone else took meanwhile stays theirs. Reply: the keys lost. If anything
  -- changed, the event says what was written (users and rooms, whole, by key), so that nodes
  -- in step apply it in order like any other event; a node that does not read them (an
  -- older one) reads the whole state afresh instead.
  local node = ARGV[3]
  local now = now_ms()
  local lost, changed = {}, false
  local written_users, written_rooms = {}, {}
  for _, entry in ipairs(cjson.decode(ARGV[4])) do
    local key, user = entry.key, entry.user
    local holder = get_json(K_USERS, key)
    if holder and holder.sid ~= user.sid and alive(holder.node, now) then
      table.insert(lost, key)
    else
      if holder and holder.sid ~= user.sid then remove_user(key, holder, cjson.null, false) end
      if not holder or holder.sid ~= user.sid or holder.account ~= user.account then
        changed = true
      end
      user.rooms = user.rooms or {}
      for room_key, wanted in pairs(entry.rooms or {}) do
        local room = get_room(room_key)
        if not room then
          room = wanted
          room.members = {}
          room.voiced = room.voiced or {}
          room.modes = room.modes or {["topic-lock"] = true}
          changed = true
        end
        if not room.members[key] then
          changed = true
          room.members[key] = user.nick
          if wanted.ops[key] then room.ops[key] = true end
          if (wanted.voiced or {})[key] then room.voiced[key] = true end
        end
        put_room(room_key, room)
        written_rooms[room_key] = true
        user.rooms[room_key] = true
      end
      put_user(key, user)
      written_users[key] = true
    end
  end
  if changed then
    -- Read back once all is written: a later entry may have taken a dead holder out of a
    -- room an earlier one wrote.
    local users, rooms = {}, {}
    for key, _ in pairs(written_users) do users[key] = get_json(K_USERS, key) end
    for room_key, _ in pairs(written_rooms) do rooms[room_key] = get_room(room_key) end
    publish({op = "resync", users = users, rooms = rooms})
  end
  return cjson.encode({lost = lost})

elseif op == "lock" then
  -- ARGV: name, token, ms. A short lease on one mailbox's delivery.
  if redis.call("SET", prefix .. "mailbox:" .. ARGV[3], ARGV[4], "NX", "PX", ARGV[5]) then
    return ok(0)
  end
  return refuse("locked")

elseif op == "unlock" then
  -- ARGV: name, token.
  local key = prefix .. "mailbox:" .. ARGV[3]
  if redis.call("GET", key) == ARGV[4] then redis.call("DEL", key) end
  return ok(0)
end

return refuse("unknown_op", {op = op})
