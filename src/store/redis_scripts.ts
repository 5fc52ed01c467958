// The Redis store's routing rules as one Lua script: Redis runs a script alone, so routing a
// batch, binding a follower and numbering an agent's log are one decision for every instance.
// It applies src/core/model.ts's rules with the protocol's own constants and notice texts,
// written into the script from TypeScript so no rule is restated here; redis_store.ts calls it.

import { SAME_PLACE_M } from "../core/location.ts";
import { codeOf, SYSTEM_CONTACT, SYSTEM_NAME } from "../protocol/envelope.ts";
import { NOTICE_TEXTS } from "../protocol/notices.ts";
import {
  EVENT_QUOTA,
  EVENT_WINDOW_MS,
  MESSAGE_QUOTA,
  MESSAGE_WINDOW_MS,
} from "../protocol/window.ts";

/** A Lua string literal for `text` (UTF-8 passes through as is). */
function luaString(text: string): string {
  return `"${text.replace(/[\\"]/g, (c) => `\\${c}`).replace(/\n/g, "\\n")}"`;
}

/** The protocol's constants and texts as Lua locals, the script's first lines. */
const PROTOCOL_LUA = [
  `local MESSAGE_WINDOW_MS = ${MESSAGE_WINDOW_MS}`,
  `local MESSAGE_QUOTA = ${MESSAGE_QUOTA}`,
  `local EVENT_WINDOW_MS = ${EVENT_WINDOW_MS}`,
  `local EVENT_QUOTA = ${EVENT_QUOTA}`,
  `local SYSTEM_CODE = ${codeOf("system")}`,
  `local SYS_NAME = ${luaString(SYSTEM_NAME)}`,
  `local SYS_CONTACT = ${luaString(SYSTEM_CONTACT)}`,
  `local T = {`,
  ...Object.entries(NOTICE_TEXTS).map(([kind, text]) => `  ${kind} = ${luaString(text)},`),
  `}`,
  // Fills `{slot}`s from a table, as noticeText() does; a table replacement is taken literally.
  `local function notice(kind, slots)`,
  `  return (string.gsub(T[kind], '{(%w+)}', function(k) return slots[k] or '' end))`,
  `end`,
].join("\n");

/** The ARGV every call starts with, in this order; the operation's own arguments follow. */
export const HEADER = [
  "prefix",
  "now",
  "idBase",
  "companyId",
  "instanceId",
  "logMax",
  "logRetentionMs",
  "historyMax",
  "historyRetentionMs",
  "presenceTtlMs",
  "op",
  "generation",
] as const;

/** Fields per inbound item after the header and the dedup TTL: follower, name, to, kind,
 * dedup key, event, the envelope's data as JSON without its `{` and seq, its result as JSON,
 * msg_type, preview, received at, and '1' when it comes off the follower's media queue. The
 * script makes the log tail and the history item from the data, so it crosses the wire once. */
export const INBOUND_FIELDS = 12;

/** How many of those fields a media queue entry keeps (all but the from-the-queue flag): a JSON
 * array of them, then, for an entry the intake pushed, the base of its media URLs. */
export const QUEUED_FIELDS = 11;

/** How long an operation's answer is kept for a call ioredis sends again after a dropped
 * connection: longer than its retries take (maxRetriesPerRequest reconnections, 2 s apart at
 * most). */
export const ONCE_TTL_MS = 60_000;

/** Errors the script raises for a refused command start with this word (then StoreError). */
export const STORE_ERROR = "STORE";

/** A command on a follower another agent serves: the error carries the JSON
 * `{follower_id, agent_id}` of who serves it (then ServedByOtherError). */
export const SERVED_BY_OTHER = "SERVED";

/** The script found another generation than the caller's, or none: Redis lost the bridge's
 * state (a restart without persistence, a failover to an empty replica). Then the generation
 * found, or nothing. */
export const STATE_LOST = "LOST";

/** A reply WeChat would refuse: the error carries the contact's JSON, whose reply state
 * window.ts reads for the reason (then ReplyRefusedError). */
export const REPLY_REFUSED = "NOREPLY";

/**
 * Key names (all under the prefix): `agents` set of known agents; `agent:<id>` hash (seq,
 * cursor, load, capacity); `log:<id>` sorted set scored by seq, members `<ms>|<envelope>`;
 * `contacts` hash follower -> contact JSON; `served:<agent>` sorted set of the followers whose
 * last agent it is, scored by last message time; `waiting` sorted set (FIFO by `waitseq`);
 * `queued:<follower>` list of envelope tails; `queued_count`; `hist:<follower>` hash n -> item;
 * `forget_cut:<follower>` hash agent -> its log's seq when the follower was last forgotten;
 * `dedup:<key>`; `mediaq:<follower>` list of the follower's messages waiting behind its media
 * (JSON arrays of the inbound fields), `mediaq_followers` set of the followers with one,
 * `mediaq_lease:<follower>` the instance working that list; `generation` hash (id: whose state this is, see STATE_LOST); `instances` set, `instance:<id>` heartbeat key, `online:<id>` set of agents
 * with a socket there. Log entries are published on `deliver:<instance>` to each instance with
 * their agent online there.
 */
export const ROUTING_LUA = `
${PROTOCOL_LUA}
local P = ARGV[1]
local NOW = tonumber(ARGV[2])
local NOW_S = ARGV[2]
local ID_BASE = ARGV[3]
local COMPANY = ARGV[4]
local IID = ARGV[5]
local LOG_MAX = tonumber(ARGV[6])
-- Numbers handed to redis.call are formatted with snprintf, which costs Redis more than many
-- commands: what arrives as text is passed on as text (the _S locals, '1', '0').
local LOG_TTL_S = ARGV[7]
local LOG_TTL = tonumber(LOG_TTL_S)
local HIST_MAX = tonumber(ARGV[8])
local HIST_TTL_S = ARGV[9]
local PRESENCE_TTL = tonumber(ARGV[10])
local OP = ARGV[11]
local GENERATION = ARGV[12]
local A0 = ${HEADER.length + 1}
local NULL = cjson.null

-- Operations run once however often ioredis sends them (see once_key below).
local ONCE_OPS = {
  reply = true, transfer = true, claim = true, note = true, close = true, closewindow = true,
  returnreply = true, forget = true, rename = true, labels = true, capacity = true, read = true,
  append = true, mqpush = true, mqpop = true,
}

local ids = 0
local entries = {}
local published = {}
local touched = {}
local contacts = {}
local prev_agent = {}
local dirty = {}
local dirty_order = {}
local online_cache = nil
-- agent -> the seq of its last entry in this run.
local last_seq = {}
-- follower -> when its message window closes, for the \`windows\` index, written at the end.
local closing = {}
-- follower -> its last_message_at as the text it came as, for the \`served\` index's score.
local stamps = {}

-- Runs \`command key\` with the (field, value) pairs of \`list\`, a few hundred at a time (Lua
-- passes at most a few thousand arguments to a call).
local function call_pairs(command, key, list)
  for from = 1, #list, 500 do
    redis.call(command, key, unpack(list, from, math.min(from + 499, #list)))
  end
end

local function k_agent(a) return P .. 'agent:' .. a end

local function new_id()
  ids = ids + 1
  return ID_BASE .. '-' .. ids
end

-- Whether an agent exists, asked once per run (a batch's messages to the account ask once):
-- no operation removes an agent, and one added in this run is noted by ensure_agent.
local known = {}

local function is_agent(a)
  if known[a] == nil then known[a] = redis.call('SISMEMBER', P .. 'agents', a) == 1 end
  return known[a]
end

local function ensure_agent(a)
  if known[a] then return end
  if redis.call('SADD', P .. 'agents', a) == 1 then
    redis.call('HSET', k_agent(a), 'seq', 0, 'cursor', 0, 'load', 0)
  end
  known[a] = true
end

-- An envelope is stored as '{"data":{"seq":' .. seq .. tail: the tail is the JSON of the rest.
local function tail_of(data, result)
  local d = cjson.encode(data)
  local rest = '}'
  if d ~= '{}' then rest = ',' .. string.sub(d, 2) end
  return rest .. ',"result":' .. cjson.encode(result) .. '}'
end

-- \`item\`: the number of the caller's inbound item whose tail this is; the caller has the
-- tail, so the entry comes back as that number instead of its JSON.
local function append(a, tail, item)
  ensure_agent(a)
  local seq = redis.call('HINCRBY', k_agent(a), 'seq', '1')
  last_seq[a] = seq
  local seq_s = tostring(seq)
  local json = '{"data":{"seq":' .. seq_s .. tail
  redis.call('ZADD', P .. 'log:' .. a, seq_s, NOW_S .. '|' .. json)
  entries[#entries + 1] = a
  entries[#entries + 1] = seq
  entries[#entries + 1] = item or json
  local list = published[a]
  if not list then
    list = {}
    published[a] = list
    touched[#touched + 1] = a
  end
  list[#list + 1] = json
  return json
end

local function system(a, msg)
  local data = {
    id = new_id(), name = SYS_NAME, avatar = '', msg_type = 'system',
    contact_id = SYS_CONTACT, company_id = COMPANY, send_time = math.floor(NOW / 1000), msg = msg,
  }
  return append(a, tail_of(data, { code = SYSTEM_CODE, message = 'common' }))
end

-- Followers read and found absent in this run (a batch reads all of its own in one HMGET).
local absent = {}

local function found_contact(fid, raw)
  if not raw then
    absent[fid] = true
    return nil
  end
  local c = cjson.decode(raw)
  contacts[fid] = c
  -- A follower's agent exists: binding made it known, and no agent is removed.
  if c.agent_id ~= NULL then known[c.agent_id] = true end
  prev_agent[fid] = c.last_agent_id
  return c
end

local function get_contact(fid)
  local c = contacts[fid]
  if c then return c end
  if absent[fid] then return nil end
  return found_contact(fid, redis.call('HGET', P .. 'contacts', fid))
end

-- Reads the contacts of \`fids\` not read yet, in one command.
local function read_contacts(fids)
  local want, seen = {}, {}
  for _, fid in ipairs(fids) do
    if not contacts[fid] and not absent[fid] and not seen[fid] then
      seen[fid] = true
      want[#want + 1] = fid
    end
  end
  if #want == 0 then return end
  local raws = redis.call('HMGET', P .. 'contacts', unpack(want))
  for j, fid in ipairs(want) do found_contact(fid, raws[j] or nil) end
end

local function new_contact(fid, at)
  local c = {
    follower_id = fid, name = fid, avatar = '', agent_id = NULL, last_agent_id = NULL,
    status = 'waiting', last_inbound_at = 0, last_inbound_kind = 'message',
    replies_since_inbound = 0, last_message = NULL, last_message_at = at, unread = 0,
    waiting_since = NULL, history_seq = 0, subscribed = true,
  }
  contacts[fid] = c
  absent[fid] = nil
  prev_agent[fid] = NULL
  return c
end

local function touch(c)
  local fid = c.follower_id
  if not dirty[fid] then
    dirty[fid] = true
    dirty_order[#dirty_order + 1] = fid
  end
end

-- Conversations whose history grew in this run: each gets its expiry renewed once, at the end.
local grown = {}

local function history(c, json)
  c.history_seq = c.history_seq + 1
  local key = P .. 'hist:' .. c.follower_id
  redis.call('HSET', key, c.history_seq, json)
  if c.history_seq > HIST_MAX then redis.call('HDEL', key, c.history_seq - HIST_MAX) end
  grown[c.follower_id] = key
  return c.history_seq
end

local function add_load(a, delta)
  ensure_agent(a)
  local load = tonumber(redis.call('HGET', k_agent(a), 'load') or '0') + delta
  if load < 0 then load = 0 end
  redis.call('HSET', k_agent(a), 'load', load)
end

-- Whether the agent takes one more follower, and its load.
local function fits(a)
  local v = redis.call('HMGET', k_agent(a), 'capacity', 'load')
  local load = tonumber(v[2] or '0') or 0
  if not v[1] or v[1] == '' then return true, load end
  return load < tonumber(v[1]), load
end

-- Agents with a socket on any live instance; a dead instance's set is removed on the way.
local function online_agents()
  if online_cache then return online_cache end
  local seen = {}
  local list = {}
  for _, iid in ipairs(redis.call('SMEMBERS', P .. 'instances')) do
    if redis.call('EXISTS', P .. 'instance:' .. iid) == 1 then
      for _, a in ipairs(redis.call('SMEMBERS', P .. 'online:' .. iid)) do
        if not seen[a] then
          seen[a] = true
          list[#list + 1] = a
        end
      end
    else
      redis.call('SREM', P .. 'instances', iid)
      redis.call('DEL', P .. 'online:' .. iid)
    end
  end
  online_cache = list
  return list
end

-- src/store/assignment.ts chooseAgent, over the agents online anywhere.
local function choose(last)
  local best = nil
  local best_load = math.huge
  for _, a in ipairs(online_agents()) do
    local ok, load = fits(a)
    if ok then
      if a == last then return a end
      if load < best_load or (load == best_load and best ~= nil and a < best) then
        best = a
        best_load = load
      end
    end
  end
  return best
end

local function fail(message)
  return { err = '${STORE_ERROR} ' .. message }
end

-- model.ts ServedByOtherError: refused because another agent serves the follower, naming whom.
local function fail_served(c)
  return { err = '${SERVED_BY_OTHER} ' .. cjson.encode({
    follower_id = c.follower_id, agent_id = c.agent_id,
  }) }
end

-- model.ts #tellTeam: a notice to every agent of \`among\` (default: every known one) but
-- \`except\`, so the team's waiting lists stay live.
local function tell_team(except, msg, among)
  for _, a in ipairs(among or redis.call('SMEMBERS', P .. 'agents')) do
    if a ~= except then system(a, msg) end
  end
end

local function preview_of(c)
  if c.last_message ~= NULL and c.last_message then return c.last_message.preview end
  return ''
end

local function bind(c, a, event, text)
  local was_unserved = c.agent_id == NULL and event == 'claimed'
  if c.agent_id ~= NULL and c.agent_id ~= a and is_agent(c.agent_id) then
    add_load(c.agent_id, -1)
  end
  if c.agent_id ~= a then add_load(a, 1) end
  c.agent_id = a
  c.last_agent_id = a
  c.status = 'open'
  c.waiting_since = NULL
  touch(c)
  system(a, { event = event, follower_id = c.follower_id, follower_name = c.name, text = text })
  local qkey = P .. 'queued:' .. c.follower_id
  local queued = redis.call('LRANGE', qkey, 0, -1)
  redis.call('ZREM', P .. 'waiting', c.follower_id)
  if #queued > 0 then
    redis.call('DEL', qkey)
    redis.call('DECRBY', P .. 'queued_count', #queued)
    for _, tail in ipairs(queued) do append(a, tail) end
  end
  if was_unserved then
    tell_team(a, {
      event = 'claimed', follower_id = c.follower_id, follower_name = c.name, agent_id = a,
      text = notice('claimedBy', { name = c.name, agent = a }),
    })
  end
end

-- model.ts #claim: a follower nobody serves becomes a's; one another agent serves is refused.
local function claim(c, a)
  if c.agent_id == a then return nil end
  if c.agent_id ~= NULL then
    return fail_served(c)
  end
  bind(c, a, 'claimed', notice('claimed', { name = c.name }))
  return nil
end

-- model.ts #note: a private note into the history, echoed to the agents named.
local function note(c, hist, tail, to)
  local n = history(c, hist)
  for _, a in ipairs(to) do append(a, tail) end
  return n
end

local function register_instance()
  redis.call('SET', P .. 'instance:' .. IID, '1', 'PX', PRESENCE_TTL)
  redis.call('SADD', P .. 'instances', IID)
end

-- Only the operation called is made into a function: the script runs whole at every call, and
-- making a closure costs Redis more than most commands do.
local ops = {}

if OP == 'inbound' then
  function ops.inbound()
    local dedup_ttl = ARGV[A0]
    local out = {}
    local fids = {}
    for j = A0 + 1, #ARGV, ${INBOUND_FIELDS} do fids[#fids + 1] = ARGV[j] end
    read_contacts(fids)
    local i = A0 + 1
    while i <= #ARGV do
      local fid, name, to, kind = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
      local dedup, event, data, result = ARGV[i + 4], ARGV[i + 5], ARGV[i + 6], ARGV[i + 7]
      local msg_type, preview, at_s = ARGV[i + 8], ARGV[i + 9], ARGV[i + 10]
      -- Taken off the media queue: the entry it was, as the queue holds it.
      local entry = ARGV[i + 11]
      local from_queue = entry ~= ''
      local at = tonumber(at_s)
      local item = #out
      i = i + ${INBOUND_FIELDS}
      -- A follower with media still being fetched (on any instance): this message waits behind
      -- it, in the order WeChat posted them, and is deduplicated when it comes off the queue.
      local queue = P .. 'mediaq:' .. fid
      if not from_queue and redis.call('EXISTS', queue) == 1 then
        redis.call('RPUSH', queue, cjson.encode({
          fid, name, to, kind, dedup, event, data, result, msg_type, preview, at_s,
        }))
        out[#out + 1] = 'queued'
      elseif from_queue and redis.call('LINDEX', queue, 0) ~= entry then
        -- No longer the head: the follower was forgotten meanwhile (its data must not come
        -- back), or an instance that took the queue over stored it. Nothing to store.
        out[#out + 1] = 'duplicate'
      else
        -- The head is popped in the step that stores it: an instance that dies right after
        -- leaves nothing to store again, whatever became of the dedup key (it lapses, and is
        -- all an event without a MsgId has). The last one ends the queue, as mqpop does.
        if from_queue then
          redis.call('LPOP', queue)
          if redis.call('LLEN', queue) == 0 then
            redis.call('SREM', P .. 'mediaq_followers', fid)
            local lease = P .. 'mediaq_lease:' .. fid
            if redis.call('GET', lease) == IID then redis.call('DEL', lease) end
          end
        end
        -- data is ',"id":…}' (the JSON after '{"data":{"seq":N'), so both are two concatenations.
        local tail = data .. ',"result":' .. result .. '}'
        local hist = '{' .. string.sub(data, 2, -2) .. ',"direction":"in"}'
        local fresh = true
        if dedup ~= '' then
          fresh = redis.call('SET', P .. 'dedup:' .. string.sub(dedup, 2), '1', 'NX', 'PX', dedup_ttl)
        end
        if not fresh then
          out[#out + 1] = 'duplicate'
        else
          local c = get_contact(fid) or new_contact(fid, at)
          touch(c)
          if name ~= '' then c.name = name end
          -- As window.ts noteInbound: an event keeps an open message window that has replies left.
          -- ... unless WeChat closed it (45015, 45047): then the event opens its own.
          local closed = c.window_closed_by ~= nil and c.window_closed_by ~= NULL
          local keeps = kind == 'event' and c.last_inbound_kind == 'message' and not closed
            and at < c.last_inbound_at + MESSAGE_WINDOW_MS and c.replies_since_inbound < MESSAGE_QUOTA
          if kind ~= 'none' and not keeps and at >= c.last_inbound_at then
            c.last_inbound_at = at
            c.last_inbound_kind = kind
            c.replies_since_inbound = 0
            c.window_closed_by = nil
            -- The history number history() gives this message below: the window's replies follow.
            c.window_opened_n = c.history_seq + 1
            c.window_returned_n = nil
          end
          if kind == 'message' then
            c.window_notice = nil
            closing[fid] = c.last_inbound_at + MESSAGE_WINDOW_MS
          end
          c.subscribed = event ~= 'unsubscribe'
          c.last_message = { msg_type = msg_type, preview = preview, direction = 'in' }
          c.last_message_at = at
          stamps[fid] = at_s
          c.unread = c.unread + 1
          history(c, hist)
          local target = nil
          if to ~= '' and is_agent(to) then target = to end
          if target ~= nil and c.agent_id ~= target then
            bind(c, target, 'assigned', notice('assigned', { name = c.name }))
          elseif c.agent_id == NULL then
            local chosen = choose(c.last_agent_id)
            if chosen ~= nil then bind(c, chosen, 'assigned', notice('assigned', { name = c.name })) end
          end
          if c.agent_id == NULL then
            c.status = 'waiting'
            if c.waiting_since == NULL then
              c.waiting_since = at
              tell_team(nil, {
                event = 'waiting', follower_id = fid, follower_name = c.name, preview = preview,
                since = math.floor(at / 1000), text = notice('waiting', { name = c.name }),
              }, online_agents())
            end
            if not redis.call('ZSCORE', P .. 'waiting', fid) then
              redis.call('ZADD', P .. 'waiting', redis.call('INCR', P .. 'waitseq'), fid)
            end
            redis.call('RPUSH', P .. 'queued:' .. fid, tail)
            redis.call('INCR', P .. 'queued_count')
            out[#out + 1] = 'waiting'
          else
            append(c.agent_id, tail, item)
            out[#out + 1] = 'delivered'
          end
        end
      end
    end
    return out
  end
end

-- A follower's media message, before WeChat is answered: it starts (or joins) the follower's
-- queue, which any instance may then work.
if OP == 'mqpush' then
  function ops.mqpush()
    local fid = ARGV[A0]
    redis.call('RPUSH', P .. 'mediaq:' .. fid, ARGV[A0 + 1])
    redis.call('SADD', P .. 'mediaq_followers', fid)
    return 0
  end
end

-- Takes the follower's queue for this instance unless another holds it, or ('renew') extends
-- this instance's lease, which a renewal must not make again once the last pop ended it: 1 if
-- this instance holds it now.
if OP == 'mqlease' then
  function ops.mqlease()
    local lease = P .. 'mediaq_lease:' .. ARGV[A0]
    local holder = redis.call('GET', lease)
    if holder ~= IID and (holder or ARGV[A0 + 2] == 'renew') then return 0 end
    redis.call('SET', lease, IID, 'PX', ARGV[A0 + 1])
    return 1
  end
end

-- The head of the follower's queue and whether it is already stored (its dedup key is there:
-- a WeChat retry queued behind the first copy); an empty table when there is no queue, whose
-- lease this instance then lets go, or when another instance holds the queue now.
if OP == 'mqhead' then
  function ops.mqhead()
    local fid = ARGV[A0]
    local head = redis.call('LINDEX', P .. 'mediaq:' .. fid, 0)
    local lease = P .. 'mediaq_lease:' .. fid
    if not head then
      redis.call('SREM', P .. 'mediaq_followers', fid)
      -- Ended between a sweep and its lease: a lease kept here would hold the follower's next
      -- queue back from the instance that starts it until the lease lapsed.
      if redis.call('GET', lease) == IID then redis.call('DEL', lease) end
      return {}
    end
    if redis.call('GET', lease) ~= IID then return {} end
    local dedup = cjson.decode(head)[5]
    local stored = dedup ~= '' and redis.call('EXISTS', P .. 'dedup:' .. string.sub(dedup, 2)) == 1
    return { head, stored and 1 or 0 }
  end
end

-- Removes the head, if this instance still holds the queue: once it is stored ('pop', if it is
-- still the head it read), or unread onto the follower's aside list ('aside': an entry no instance can read
-- or store would hold every later message of the follower back for ever). What is left, or -1
-- when another took the queue over. The last one ends the queue in the same step, so a message
-- that came meanwhile is either behind the head (and worked next) or stored directly after.
if OP == 'mqpop' then
  function ops.mqpop()
    local fid, head, mode = ARGV[A0], ARGV[A0 + 1], ARGV[A0 + 2]
    local queue, lease = P .. 'mediaq:' .. fid, P .. 'mediaq_lease:' .. fid
    if redis.call('GET', lease) ~= IID then return -1 end
    if mode == 'aside' then
      local taken = redis.call('LPOP', queue)
      if taken then redis.call('RPUSH', P .. 'mediaq_aside:' .. fid, taken) end
    elseif redis.call('LINDEX', queue, 0) == head then
      redis.call('LPOP', queue)
    end
    local left = redis.call('LLEN', queue)
    if left == 0 then
      redis.call('SREM', P .. 'mediaq_followers', fid)
      redis.call('DEL', lease)
    end
    return left
  end
end

-- Lets go of the follower's queue (this instance stops) so another takes it at its next sweep.
if OP == 'mqrelease' then
  function ops.mqrelease()
    local lease = P .. 'mediaq_lease:' .. ARGV[A0]
    if redis.call('GET', lease) == IID then redis.call('DEL', lease) end
    return 0
  end
end

if OP == 'append' then
  function ops.append()
    local i = A0
    while i <= #ARGV do
      append(ARGV[i], ARGV[i + 1])
      i = i + 2
    end
    return 0
  end
end

if OP == 'online' then
  function ops.online()
    local a = ARGV[A0]
    ensure_agent(a)
    local before = tonumber(redis.call('HGET', k_agent(a), 'seq'))
    -- A lapsed presence (this instance stalled past its TTL) is the caller's to heal: it
    -- rewrites its whole online set and reads what others committed meanwhile.
    local lapsed = redis.call('EXISTS', P .. 'instance:' .. IID) == 0 and 1 or 0
    register_instance()
    redis.call('SADD', P .. 'online:' .. IID, a)
    redis.call('PEXPIRE', P .. 'online:' .. IID, PRESENCE_TTL)
    local taken = {}
    for _, fid in ipairs(redis.call('ZRANGE', P .. 'waiting', 0, -1)) do
      if not fits(a) then break end
      local c = get_contact(fid)
      if c then
        bind(c, a, 'assigned', notice('assignedFromWaiting', { name = c.name }))
        taken[#taken + 1] = fid
      end
    end
    -- model.ts agentOnline: one notice for the backlog, to the other agents online.
    if #taken > 0 then
      tell_team(a, {
        event = 'waiting_taken', agent_id = a, follower_ids = taken,
        text = notice('waitingTaken', { agent = a, count = tostring(#taken) }),
      }, online_agents())
    end
    return { before or 0, lapsed }
  end
end

if OP == 'reply' then
  function ops.reply()
    local a, fid, tail, hist = ARGV[A0], ARGV[A0 + 1], ARGV[A0 + 2], ARGV[A0 + 3]
    local c = get_contact(fid)
    if not c then return nil, fail('unknown contact ' .. fid) end
    -- Another agent's follower is refused before anything changes (model.ts reply).
    if c.agent_id ~= NULL and c.agent_id ~= a then
      return nil, fail_served(c)
    end
    -- window.ts checkReplyAllowed, in the step that counts the reply (atomic under concurrency).
    local span, quota = MESSAGE_WINDOW_MS, MESSAGE_QUOTA
    if c.last_inbound_kind ~= 'message' then span, quota = EVENT_WINDOW_MS, EVENT_QUOTA end
    local closed = c.window_closed_by ~= nil and c.window_closed_by ~= NULL
      and c.window_closed_by ~= 0
    if closed or c.last_inbound_at == 0 or NOW >= c.last_inbound_at + span
      or c.replies_since_inbound >= quota then
      return nil, { err = '${REPLY_REFUSED} ' .. cjson.encode(c) }
    end
    local refused = claim(c, a)
    if refused then return nil, refused end
    touch(c)
    c.replies_since_inbound = c.replies_since_inbound + 1
    c.unread = 0
    c.last_message = {
      msg_type = ARGV[A0 + 4], preview = ARGV[A0 + 5], direction = 'out', agent_id = a,
    }
    c.last_message_at = NOW
    stamps[fid] = NOW_S
    local n = history(c, hist)
    -- Until its outcome: a bridge stopped before WeChat answered left it "sending" for good.
    redis.call('ZADD', P .. 'unanswered', math.floor(NOW / 1000), n .. ':' .. fid)
    append(a, tail)
    return n
  end
end

if OP == 'transfer' then
  function ops.transfer()
    local fid, from, to = ARGV[A0], ARGV[A0 + 1], ARGV[A0 + 2]
    local c = get_contact(fid)
    if not c then return nil, fail('unknown contact ' .. fid) end
    if c.agent_id ~= from then return nil, fail('contact ' .. fid .. ' is not served by ' .. from) end
    if not is_agent(to) then return nil, fail('unknown agent ' .. to) end
    if to == from then return nil, fail('cannot transfer a contact to yourself') end
    bind(c, to, 'transferred_in', notice('transferredIn', { name = c.name, from = from }))
    if ARGV[A0 + 3] ~= '' then note(c, ARGV[A0 + 3], ARGV[A0 + 4], { to, from }) end
    system(from, {
      event = 'transferred_out', follower_id = fid, follower_name = c.name, to = to,
      text = notice('transferredOut', { name = c.name, to = to }),
    })
    return 0
  end
end

if OP == 'claim' then
  function ops.claim()
    local fid, a = ARGV[A0], ARGV[A0 + 1]
    local c = get_contact(fid)
    if not c then return nil, fail('unknown contact ' .. fid) end
    local refused = claim(c, a)
    if refused then return nil, refused end
    return 0
  end
end

if OP == 'note' then
  function ops.note()
    local a, fid = ARGV[A0], ARGV[A0 + 1]
    local c = get_contact(fid)
    if not c then return nil, fail('unknown contact ' .. fid) end
    if c.agent_id ~= a and c.last_agent_id ~= a then
      return nil, fail('contact ' .. fid .. ' is not served by ' .. a)
    end
    touch(c)
    return note(c, ARGV[A0 + 2], ARGV[A0 + 3], { a })
  end
end

if OP == 'close' then
  function ops.close()
    local fid, a = ARGV[A0], ARGV[A0 + 1]
    local c = get_contact(fid)
    if not c then return nil, fail('unknown contact ' .. fid) end
    if c.agent_id ~= a then return nil, fail('contact ' .. fid .. ' is not served by ' .. a) end
    add_load(a, -1)
    c.agent_id = NULL
    c.status = 'closed'
    c.unread = 0
    touch(c)
    system(a, {
      event = 'closed', follower_id = fid, follower_name = c.name,
      text = notice('closed', { name = c.name }),
    })
    return 0
  end
end

-- model.ts closeWindow (window.ts noteWindowClosed): WeChat answered 45015 or 45047 to a reply
-- counted in the window opened at counted_in; that one, if still open, closed until the
-- follower acts again. Not one opened since (a follower forgotten and writing again, too).
if OP == 'closewindow' then
  function ops.closewindow()
    local fid, code, counted_in = ARGV[A0], tonumber(ARGV[A0 + 1]), tonumber(ARGV[A0 + 2])
    local c = get_contact(fid)
    if not c or c.last_inbound_at == 0 then return 0 end
    if c.last_inbound_at ~= counted_in then return 0 end
    c.window_closed_by = code
    touch(c)
    return 0
  end
end

-- model.ts returnReply (window.ts noteReplyRefused): WeChat refused reply n and delivered
-- nothing; counted in the window still open, it is given back. The count after, or -1.
if OP == 'returnreply' then
  function ops.returnreply()
    local fid, n, counted_in = ARGV[A0], tonumber(ARGV[A0 + 1]), tonumber(ARGV[A0 + 2])
    local c = get_contact(fid)
    if not c or c.last_inbound_at == 0 then return -1 end
    -- Counted in another window: one a follower forgotten and writing again opened (a new
    -- contact, its history numbers started over), or any since.
    if c.last_inbound_at ~= counted_in then return -1 end
    -- Given back once: a script resent after a reconnection (ioredis resends what got no
    -- answer) finds its reply at or before window_returned_n.
    local opened = math.max(tonumber(c.window_opened_n) or 0, tonumber(c.window_returned_n) or 0)
    if n <= opened or c.replies_since_inbound == 0 then return -1 end
    c.replies_since_inbound = c.replies_since_inbound - 1
    c.window_returned_n = n
    touch(c)
    return c.replies_since_inbound
  end
end

-- model.ts forget: the contact, its history and queue go; its agent gets the notice (ARGV tail).
-- So do its messages waiting behind media, and any set aside: an instance working them stores
-- nothing more of them (the routing script finds its head gone), whether or not a contact was
-- made yet (a first message that was media).
if OP == 'forget' then
  function ops.forget()
    local fid, tail = ARGV[A0], ARGV[A0 + 1]
    local media = redis.call('DEL', P .. 'mediaq:' .. fid, P .. 'mediaq_aside:' .. fid)
    redis.call('SREM', P .. 'mediaq_followers', fid)
    redis.call('DEL', P .. 'mediaq_lease:' .. fid)
    -- The auto-reply's cooldown names the OpenID too (redis_store.ts firstAutoReply).
    redis.call('DEL', P .. 'auto_reply:' .. fid)
    local c = get_contact(fid)
    if not c then return media > 0 and 1 or 0 end
    if c.agent_id ~= NULL then add_load(c.agent_id, -1) end
    local qkey = P .. 'queued:' .. fid
    local queued = redis.call('LLEN', qkey)
    if queued > 0 then
      redis.call('DEL', qkey)
      redis.call('DECRBY', P .. 'queued_count', queued)
    end
    redis.call('ZREM', P .. 'waiting', fid)
    redis.call('ZREM', P .. 'windows', fid)
    redis.call('DEL', P .. 'hist:' .. fid)
    redis.call('HDEL', P .. 'contacts', fid)
    if c.last_agent_id ~= NULL then redis.call('ZREM', P .. 'served:' .. c.last_agent_id, fid) end
    -- The cut (model.ts ForgetCut), before the notice is logged: every agent's last seq now. An
    -- idle log outlives its last entry by LOG_TTL, so entries live up to twice that (and an
    -- hour for instances' clocks); kept longer, a cut hides nothing given out after it.
    local cut = {}
    for _, agent in ipairs(redis.call('SMEMBERS', P .. 'agents')) do
      local seq = redis.call('HGET', k_agent(agent), 'seq')
      if seq and seq ~= '0' then
        cut[#cut + 1] = agent
        cut[#cut + 1] = seq
      end
    end
    local cut_key = P .. 'forget_cut:' .. fid
    redis.call('DEL', cut_key)
    if #cut > 0 then
      call_pairs('HSET', cut_key, cut)
      redis.call('PEXPIRE', cut_key, tostring(2 * LOG_TTL + 3600000))
    end
    local a = c.agent_id
    if a == NULL then a = c.last_agent_id end
    if a ~= NULL then append(a, tail) end
    return 1
  end
end

-- A reply's outcome, written only on the history item it was read from (\`expected\`): the
-- number may be another conversation's by now (a forget, and the follower writing again).
if OP == 'outcome' then
  function ops.outcome()
    local key, n, expected, item = P .. 'hist:' .. ARGV[A0], ARGV[A0 + 1], ARGV[A0 + 2], ARGV[A0 + 3]
    if redis.call('HGET', key, n) ~= expected then return 0 end
    redis.call('HSET', key, n, item)
    redis.call('ZREM', P .. 'unanswered', n .. ':' .. ARGV[A0])
    return 1
  end
end

if OP == 'capacity' then
  function ops.capacity()
    local a, cap = ARGV[A0], ARGV[A0 + 1]
    ensure_agent(a)
    if cap == '' then
      redis.call('HDEL', k_agent(a), 'capacity')
    else
      redis.call('HSET', k_agent(a), 'capacity', cap)
    end
    return 0
  end
end

if OP == 'rename' then
  function ops.rename()
    local a, fid, name = ARGV[A0], ARGV[A0 + 1], ARGV[A0 + 2]
    local c = get_contact(fid)
    if not c then return nil, fail('unknown contact ' .. fid) end
    if c.agent_id ~= a and c.last_agent_id ~= a then
      return nil, fail('contact ' .. fid .. ' is not served by ' .. a)
    end
    c.name = name
    touch(c)
    return 0
  end
end

-- model.ts location: the contact keeps a new place (src/core/location.ts samePlace: within
-- SAME_PLACE_M of the last is the same), in its history and to its agent; nobody is bound.
if OP == 'location' then
  function ops.location()
    local fid, data, result = ARGV[A0], ARGV[A0 + 1], ARGV[A0 + 2]
    local lat, lon = tonumber(ARGV[A0 + 3]), tonumber(ARGV[A0 + 4])
    local at = tonumber(ARGV[A0 + 6])
    local dedup, dedup_ttl = ARGV[A0 + 7], ARGV[A0 + 8]
    -- As inbound: a retry after a newer report must not take the contact back to the old place.
    if dedup ~= '' and not redis.call('SET', P .. 'dedup:' .. string.sub(dedup, 2), '1', 'NX', 'PX', dedup_ttl) then
      return 'same'
    end
    local c = get_contact(fid)
    if not c then
      -- As model.ts: kept for the conversation to come, in no list until the follower writes.
      c = new_contact(fid, at)
      c.status = 'closed'
    end
    local last = c.location
    -- No place (coordinates that are not numbers): kept in the history, the place left as it was.
    if lat == nil then
    elseif last and last ~= NULL then
      local dy = (last.latitude - lat) * 111320
      local dlon = math.abs(last.longitude - lon) % 360
      if dlon > 180 then dlon = 360 - dlon end
      local dx = dlon * 111320 * math.cos(last.latitude * math.pi / 180)
      if dx * dx + dy * dy <= ${SAME_PLACE_M * SAME_PLACE_M} then return 'same' end
    end
    if lat ~= nil then
      c.location = {
        latitude = lat, longitude = lon, precision = tonumber(ARGV[A0 + 5]), at = at,
      }
    end
    touch(c)
    history(c, '{' .. string.sub(data, 2, -2) .. ',"direction":"in"}')
    if c.agent_id ~= NULL then append(c.agent_id, data .. ',"result":' .. result .. '}') end
    return 'new'
  end
end

-- model.ts setLabels; an empty list removes the field (cjson would write {} for it).
if OP == 'labels' then
  function ops.labels()
    local a, fid, raw = ARGV[A0], ARGV[A0 + 1], ARGV[A0 + 2]
    local c = get_contact(fid)
    if not c then return nil, fail('unknown contact ' .. fid) end
    if c.agent_id ~= a and c.last_agent_id ~= a then
      return nil, fail('contact ' .. fid .. ' is not served by ' .. a)
    end
    local labels = cjson.decode(raw)
    if #labels == 0 then c.labels = nil else c.labels = labels end
    touch(c)
    return 0
  end
end

if OP == 'read' then
  function ops.read()
    local a, fid = ARGV[A0], ARGV[A0 + 1]
    local c = get_contact(fid)
    if not c or (c.agent_id ~= a and c.last_agent_id ~= a) or c.unread == 0 then return 0 end
    c.unread = 0
    touch(c)
    return 0
  end
end

-- Notices for 48-hour windows closing within WARN ms or closed, once each (model.ts sweepWindows).
if OP == 'windows' then
  function ops.windows()
    local warn = tonumber(ARGV[A0])
    local count = 0
    for _, fid in ipairs(redis.call('ZRANGEBYSCORE', P .. 'windows', '-inf', NOW + warn)) do
      local c = get_contact(fid)
      local closes = c and (c.last_inbound_at + MESSAGE_WINDOW_MS) or 0
      if not c or c.last_inbound_kind ~= 'message' then
        redis.call('ZREM', P .. 'windows', fid)
      elseif c.agent_id ~= NULL then
        local due = nil
        if NOW >= closes then due = 'expired' elseif NOW >= closes - warn then due = 'closing' end
        if due and c.window_notice ~= due then
          c.window_notice = due
          touch(c)
          local t = math.floor((closes / 1000 + 8 * 3600) % 86400)
          local hhmm = string.format('%02d:%02d', math.floor(t / 3600), math.floor((t % 3600) / 60))
          local text = notice('windowClosing', { name = c.name, time = hhmm })
          if due == 'expired' then text = notice('windowExpired', { name = c.name }) end
          system(c.agent_id, {
            event = due == 'expired' and 'window_expired' or 'window_closing',
            follower_id = fid, follower_name = c.name, closes_at = math.floor(closes / 1000),
            text = text,
          })
          count = count + 1
        end
        if due == 'expired' then redis.call('ZREM', P .. 'windows', fid) end
      elseif NOW >= closes then
        redis.call('ZREM', P .. 'windows', fid)
      end
    end
    return count
  end
end

-- The generation this keyspace belongs to, made with the caller's candidate id when there is
-- none (a new Redis, or one that came back empty). Runs without the generation check.
if OP == 'generation' then
  function ops.generation()
    local id = redis.call('HGET', P .. 'generation', 'id')
    if id then return id end
    redis.call('HSET', P .. 'generation', 'id', ARGV[A0])
    return ARGV[A0]
  end
end

-- After a loss: agents' seqs go on from the highest the caller handed out (pairs agent, seq).
if OP == 'raise' then
  function ops.raise()
    local i = A0
    while i <= #ARGV do
      local a, seq = ARGV[i], tonumber(ARGV[i + 1])
      ensure_agent(a)
      if seq > tonumber(redis.call('HGET', k_agent(a), 'seq')) then
        redis.call('HSET', k_agent(a), 'seq', seq)
      end
      i = i + 2
    end
    return 0
  end
end

if OP == 'cursor' then
  function ops.cursor()
    local i = A0
    while i <= #ARGV do
      local a, seq = ARGV[i], tonumber(ARGV[i + 1])
      if is_agent(a) and seq > tonumber(redis.call('HGET', k_agent(a), 'cursor') or '0') then
        redis.call('HSET', k_agent(a), 'cursor', seq)
      end
      i = i + 2
    end
    return 0
  end
end

-- Every operation but 'generation' runs only on the state the caller knows: on an emptied
-- Redis it would route as if nobody had ever written, and seqs would start again at 1.
if OP ~= 'generation' then
  local found = redis.call('HGET', P .. 'generation', 'id')
  if found ~= GENERATION then return { err = '${STATE_LOST} ' .. (found or '') } end
end

-- ioredis sends a call again when the connection dropped before its answer came, and the call
-- may have run: a reply would count twice against WeChat's 5 and be written twice, a transfer
-- answer "not served by" though it moved the follower. The answer of an operation that is not
-- its own dedup (inbound has WeChat's MsgId) is kept a while under the call's ID_BASE, new for
-- each call and the same when sent again, and a second run gets it unchanged.
local once_key = nil
if ONCE_OPS[OP] then
  once_key = P .. 'once:' .. ID_BASE
  local prior = redis.call('GET', once_key)
  if prior then return cjson.decode(prior) end
end

local value, failure = ops[OP]()
if failure then return failure end

for _, key in pairs(grown) do redis.call('PEXPIRE', key, HIST_TTL_S) end

local windows = {}
for fid, at in pairs(closing) do
  windows[#windows + 1] = at
  windows[#windows + 1] = fid
end
if #windows > 0 then call_pairs('ZADD', P .. 'windows', windows) end

local changed = {}
for _, fid in ipairs(dirty_order) do
  changed[#changed + 1] = fid
  changed[#changed + 1] = cjson.encode(contacts[fid])
end
if #changed > 0 then call_pairs('HSET', P .. 'contacts', changed) end

for _, fid in ipairs(dirty_order) do
  local c = contacts[fid]
  local prev, last = prev_agent[fid], c.last_agent_id
  if prev ~= NULL and prev ~= last then redis.call('ZREM', P .. 'served:' .. prev, fid) end
  if last ~= NULL then
    redis.call('ZADD', P .. 'served:' .. last, stamps[fid] or c.last_message_at, fid)
  end
end

-- Logs are kept for LOG_TTL and at most LOG_MAX entries; an idle log expires whole.
local cutoff = NOW - LOG_TTL
for _, a in ipairs(touched) do
  local key = P .. 'log:' .. a
  -- Scores are seqs, one entry each, and age takes the oldest first: the log holds a run of
  -- seqs ending at the last, so keeping the newest LOG_MAX is keeping seqs above last - LOG_MAX.
  local last = last_seq[a]
  if last > LOG_MAX then redis.call('ZREMRANGEBYSCORE', key, '-inf', tostring(last - LOG_MAX)) end
  local head = redis.call('ZRANGE', key, '0', '0')[1]
  if head and tonumber(string.match(head, '^(%d+)|')) < cutoff then
    -- Every entry past its time goes, however many (a few probes, halving: the oldest come
    -- first): a revoke's cut (forget_cut:) lasts twice LOG_TTL, which covers what it hides
    -- only if no entry outlives LOG_TTL past the log's next append.
    local old, young = 1, redis.call('ZCARD', key)
    while old < young do
      local mid = math.floor((old + young) / 2)
      local m = redis.call('ZRANGE', key, tostring(mid), tostring(mid))[1]
      if tonumber(string.match(m, '^(%d+)|')) < cutoff then old = mid + 1 else young = mid end
    end
    redis.call('ZREMRANGEBYRANK', key, 0, old - 1)
  end
  redis.call('PEXPIRE', key, LOG_TTL_S)
end

-- One publication per other instance that has one of these agents online, with every entry
-- for them in commit order: lines agent, envelope JSON, agent, … (JSON holds no raw newline).
-- The caller pushes its own; an instance that comes online after this reads them by replay.
if #touched > 0 then
  for _, iid in ipairs(redis.call('SMEMBERS', P .. 'instances')) do
    if iid ~= IID then
      local lines = {}
      for _, a in ipairs(touched) do
        if redis.call('SISMEMBER', P .. 'online:' .. iid, a) == 1 then
          for _, json in ipairs(published[a]) do
            lines[#lines + 1] = a
            lines[#lines + 1] = json
          end
        end
      end
      if #lines > 0 then
        redis.call('PUBLISH', P .. 'deliver:' .. iid, table.concat(lines, '\\n'))
      end
    end
  end
end

if once_key then
  redis.call('SET', once_key, cjson.encode({ value, entries }), 'PX', '${ONCE_TTL_MS}')
end
return { value, entries }
`;
