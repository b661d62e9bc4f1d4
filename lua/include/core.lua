-- atomflow core: validation, errors, registration and the event block. Every library includes it
-- (line 2 of lua/<area>.lua: `-- include: core, ...`); the loader (src/redis/functions.ts) places
-- the included parts after line 1, after the limits it writes from src/limits.ts (MAX_*, ID_* and
-- NAME_* constants), so every library has the same helpers without hand-kept copies (Redis libraries
-- cannot share code, and one function cannot FCALL another).
--
-- Conventions every function follows:
--   * every key it reads or writes arrives in KEYS; no key name is built here;
--   * everything is validated before the first write (Redis does not roll back a half-run script);
--   * success returns a JSON string; expected failures return redis.error_reply('CODE message').
--
-- Error codes: BAD_USER_INPUT, NOT_FOUND, ALREADY_EXISTS, INVALID_TRANSITION, STATE_CONFLICT,
-- VERSION_CONFLICT, OUT_OF_STOCK, INSUFFICIENT_FUNDS, IDEMPOTENCY_CONFLICT, and the internal
-- STALE_KEYS (the caller built its KEYS from routing data that no longer matches: it re-reads and
-- retries; clients never see it).

-- Raising a table keeps its fields through pcall; register() turns it into an error reply.
local function reject(code, message)
  error({ atomflow_code = code, message = message }, 0)
end

-- Redis function names are global: every function is registered as 'atomflow_' .. name, so a shared
-- Redis may hold other applications' libraries (the engine calls it by name, src/redis/replies.ts).
local FUNCTION_PREFIX = 'atomflow_'

local function register(name, callback, read_only)
  local guarded = function(keys, args)
    local ok, result = pcall(callback, keys, args)
    if ok then return result end
    if type(result) == 'table' and result.atomflow_code then
      return redis.error_reply(result.atomflow_code .. ' ' .. result.message)
    end
    error(result, 0)
  end
  local flags = {}
  if read_only then flags = { 'no-writes' } end
  redis.register_function({ function_name = FUNCTION_PREFIX .. name, callback = guarded, flags = flags })
end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Ids and names: the syntax of src/limits.ts (ID_PATTERN_TEXT, NAME_PATTERN_TEXT in messages).
local function is_id(s)
  return type(s) == 'string' and #s >= 1 and #s <= ID_MAX_LENGTH and s:find(ID_LUA_PATTERN) ~= nil
end

local function is_name(s)
  return type(s) == 'string' and #s >= 1 and #s <= NAME_MAX_LENGTH and s:find(NAME_LUA_PATTERN) ~= nil
end

local function check_id(s, what)
  if not is_id(s) then reject('BAD_USER_INPUT', what .. ' must match ' .. ID_PATTERN_TEXT) end
  return s
end

local function check_name(s, what)
  if not is_name(s) then reject('BAD_USER_INPUT', what .. ' must match ' .. NAME_PATTERN_TEXT) end
  return s
end

-- A decimal integer argument within [min, max]; returns a Lua number (exact below 2^53).
local function check_int(s, what, min, max)
  if type(s) ~= 'string' or not s:find('^%-?%d+$') or #s > 16 then
    reject('BAD_USER_INPUT', what .. ' must be an integer')
  end
  local n = tonumber(s)
  if n < min or n > max then
    reject('BAD_USER_INPUT', what .. ' must be between ' .. string.format('%d', min) .. ' and ' .. string.format('%d', max))
  end
  return n
end

local function decode_json(text, what)
  local ok, value = pcall(cjson.decode, text)
  if not ok then reject('BAD_USER_INPUT', what .. ' is not valid JSON') end
  return value
end

local function fmt_int(n)
  return string.format('%d', n)
end

local function hgetall_table(key)
  local flat = redis.call('HGETALL', key)
  local t = {}
  for i = 1, #flat, 2 do t[flat[i]] = flat[i + 1] end
  return t
end

-- Identity: KEYS must belong to the id in ARGV. A key that holds another id (a caller's bug, or
-- KEYS built from outdated routing) is refused with STALE_KEYS before anything is written; the engine
-- re-reads the route and retries. `stored` is the key's stored id (nil or false when absent).
local function check_owner(stored, id, what)
  if stored and stored ~= id then
    reject('STALE_KEYS', what .. ' key holds ' .. tostring(stored) .. ', not ' .. tostring(id))
  end
end

local function contains(list, value)
  for _, v in ipairs(list) do if v == value then return true end end
  return false
end

-- A page of a list read by offset: ARGV-style offset and page size, validated. Returns the page's
-- items and the next offset as JSON text ('null' on the last page).
local function list_page(key, offset_arg, size_arg)
  local offset = check_int(offset_arg, 'offset', 0, MAX_INT32)
  local size = check_int(size_arg, 'page size', 1, 1000)
  local items = redis.call('LRANGE', key, offset, offset + size)
  if #items > size then
    items[#items] = nil
    return items, fmt_int(offset + size)
  end
  return items, 'null'
end

----------------------------------------------------------------------------------------------------
-- The event block: every function that writes a workflow starts its ARGV with [1] workflow channel,
-- [2] orders channel, [3] event stream MAXLEN (approximate trimming), [4] terminal retention in ms
-- (0: off, see lua/include/workflow.lua).

local function event_context(args)
  return {
    workflow_channel = args[1], orders_channel = args[2],
    maxlen = check_int(args[3], 'stream MAXLEN', 1, 1000000000),
    terminal_retention = check_int(args[4], 'terminal retention', 0, MAX_RETENTION_MS),
  }
end

-- Appends one event to the tenant's stream and publishes it, with its stream id, on `channel`.
-- `body` is the event as a JSON object text; the published message is the same object with
-- "eventId" first. A channel given as `sharded:<name>` (Redis Cluster) is published with SPUBLISH:
-- <name> carries the tenant's hash tag, so only the shard owning the tenant's slot carries it.
local function emit_event(k, ctx, channel, event_type, body)
  local id = redis.call('XADD', k.events, 'MAXLEN', '~', ctx.maxlen, '*', 'type', event_type, 'data', body)
  local message = '{"eventId":' .. cjson.encode(id) .. ',' .. body:sub(2)
  if channel:sub(1, 8) == 'sharded:' then
    redis.call('SPUBLISH', channel:sub(9), message)
  else
    redis.call('PUBLISH', channel, message)
  end
  return id
end

local function json_or_null(v)
  if v == nil then return 'null' end
  return cjson.encode(v)
end
