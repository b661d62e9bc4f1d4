#!lua name=atomflow_sagas
-- include: core
-- Sagas: a list of steps over the tenant's saga data keys (hashes and sets) that either all take
-- effect, or, when one step fails, leave every data key exactly as it was before the saga. The
-- loader inserts lua/include/core.lua after line 1.
--
-- Steps travel as JSON, one object per step with the full Redis key name of its data key:
--   {"op":"HSET","key":K,"field":F,"value":V}     {"op":"HDEL","key":K,"field":F}
--   {"op":"HINCRBY","key":K,"field":F,"amount":N[,"min":N][,"max":N]}
--   {"op":"SADD","key":K,"member":M}               {"op":"SREM","key":K,"member":M}
-- A saga record (hash) keeps the outcome: id, status (COMPLETED | ROLLED_BACK), stepsCompleted,
-- failedStep and error (only when rolled back), steps (the ARGV text it ran), createdAt.

local LIBRARY_VERSION = '2'

-- The operands each op takes: name -> required (true) or optional (false).
local SAGA_OPS = {
  HSET = { field = true, value = true },
  HDEL = { field = true },
  HINCRBY = { field = true, amount = true, min = false, max = false },
  SADD = { member = true },
  SREM = { member = true },
}

local function is_list(t)
  if type(t) ~= 'table' then return false end
  local count = 0
  for _ in pairs(t) do count = count + 1 end
  return count == #t
end

-- The same integer syntax Redis accepts for HINCRBY's stored value (no sign '+', no leading zeros).
local function is_redis_int(s)
  return #s <= 20 and (s == '0' or s:find('^%-?[1-9]%d*$') ~= nil)
end

local function check_text(v, what, min_bytes, max_bytes)
  if type(v) ~= 'string' then reject('BAD_USER_INPUT', what .. ' must be a string') end
  if #v < min_bytes or #v > max_bytes then
    reject('BAD_USER_INPUT', what .. ' must be ' .. min_bytes .. ' to ' .. max_bytes .. ' bytes long')
  end
  return v
end

local function check_step_int(v, what)
  if type(v) ~= 'number' or v ~= v or v ~= math.floor(v) or v < -MAX_INT32 or v > MAX_INT32 then
    reject('BAD_USER_INPUT', what .. ' must be an integer from ' .. -MAX_INT32 .. ' to ' .. MAX_INT32)
  end
  return v
end

-- Decodes and validates ARGV[2] against KEYS; writes nothing. Returns the list of steps.
local function parse_steps(keys, text)
  local input = decode_json(text, 'steps')
  if not is_list(input) or #input == 0 then reject('BAD_USER_INPUT', 'steps must be a non-empty JSON list') end
  if #input > MAX_SAGA_STEPS then reject('BAD_USER_INPUT', 'a saga has at most ' .. MAX_SAGA_STEPS .. ' steps') end
  local data_keys = {}
  for i = 2, #keys do data_keys[keys[i]] = true end
  local steps = {}
  for i, raw in ipairs(input) do
    local what = 'step ' .. i
    if type(raw) ~= 'table' or is_list(raw) then reject('BAD_USER_INPUT', what .. ' must be a JSON object') end
    local operands = SAGA_OPS[raw.op]
    if type(raw.op) ~= 'string' or not operands then
      reject('BAD_USER_INPUT', what .. ': op must be one of HSET, HDEL, HINCRBY, SADD, SREM')
    end
    local step = { op = raw.op }
    for name, value in pairs(raw) do
      if name ~= 'op' and name ~= 'key' and value ~= cjson.null then
        if operands[name] == nil then reject('BAD_USER_INPUT', what .. ': ' .. raw.op .. ' takes no ' .. tostring(name)) end
        step[name] = value
      end
    end
    for name, required in pairs(operands) do
      if required and step[name] == nil then reject('BAD_USER_INPUT', what .. ': ' .. raw.op .. ' needs ' .. name) end
    end
    if type(raw.key) ~= 'string' or not data_keys[raw.key] or raw.key == keys[1] then
      reject('BAD_USER_INPUT', what .. ': key must be one of the data keys passed in KEYS[2..]')
    end
    step.key = raw.key
    if step.field ~= nil then check_text(step.field, what .. ' field', 1, MAX_SAGA_FIELD_BYTES) end
    if step.member ~= nil then check_text(step.member, what .. ' member', 1, MAX_SAGA_FIELD_BYTES) end
    if step.value ~= nil then check_text(step.value, what .. ' value', 0, MAX_SAGA_VALUE_BYTES) end
    if step.amount ~= nil then check_step_int(step.amount, what .. ' amount') end
    if step.min ~= nil then check_step_int(step.min, what .. ' min') end
    if step.max ~= nil then check_step_int(step.max, what .. ' max') end
    if step.min ~= nil and step.max ~= nil and step.min > step.max then
      reject('BAD_USER_INPUT', what .. ': min must not be greater than max')
    end
    steps[i] = step
  end
  return steps
end

local function redis_error(reply)
  if type(reply) == 'table' and reply.err then return reply.err end
  return nil
end

-- Runs one step. Returns true and what undoes it, or false and the reason it failed (a failing
-- step changes nothing: bounds and stored values are checked before its one write).
local function run_step(step)
  if step.op == 'SADD' or step.op == 'SREM' then
    local was = redis.pcall('SISMEMBER', step.key, step.member)
    if redis_error(was) then return false, redis_error(was) end
    local reply = redis.pcall(step.op, step.key, step.member)
    if redis_error(reply) then return false, redis_error(reply) end
    return true, { op = step.op, key = step.key, member = step.member, was_member = (was == 1) }
  end
  local prev = redis.pcall('HGET', step.key, step.field)
  if redis_error(prev) then return false, redis_error(prev) end
  local reply
  if step.op == 'HSET' then
    reply = redis.pcall('HSET', step.key, step.field, step.value)
  elseif step.op == 'HDEL' then
    reply = redis.pcall('HDEL', step.key, step.field)
  else
    local current = 0
    if prev then
      if not is_redis_int(prev) then return false, 'the field does not hold an integer' end
      current = tonumber(prev)
    end
    local result = current + step.amount
    local holds = 'the field holds ' .. (prev or '0 (absent)') .. ' and adding ' .. fmt_int(step.amount)
    if step.min ~= nil and result < step.min then
      return false, holds .. ' would go below min ' .. fmt_int(step.min)
    end
    if step.max ~= nil and result > step.max then
      return false, holds .. ' would go above max ' .. fmt_int(step.max)
    end
    reply = redis.pcall('HINCRBY', step.key, step.field, fmt_int(step.amount))
  end
  if redis_error(reply) then return false, redis_error(reply) end
  return true, { op = step.op, key = step.key, field = step.field, prev = prev }
end

-- Restores the state from before one completed step.
local function undo_step(undo)
  if undo.op == 'SADD' then
    if not undo.was_member then redis.call('SREM', undo.key, undo.member) end
  elseif undo.op == 'SREM' then
    if undo.was_member then redis.call('SADD', undo.key, undo.member) end
  elseif undo.prev then
    redis.call('HSET', undo.key, undo.field, undo.prev)
  else
    redis.call('HDEL', undo.key, undo.field)
  end
end

local function describe_step(step, i)
  local target
  if step.member ~= nil then target = 'member ' .. step.member else target = 'field ' .. step.field end
  if step.op == 'HINCRBY' then target = target .. ' by ' .. fmt_int(step.amount) end
  return 'step ' .. i .. ' (' .. step.op .. ' ' .. target .. ')'
end

local function outcome_reply(record)
  local failed, err = cjson.null, cjson.null
  if record.failedStep then failed = tonumber(record.failedStep) end
  if record.error then err = record.error end
  return cjson.encode({
    id = record.id, status = record.status, stepsCompleted = tonumber(record.stepsCompleted),
    failedStep = failed, error = err, createdAt = tonumber(record.createdAt),
  })
end

--[[ saga_execute: run a saga's steps in order; on the first failing step, undo the completed ones
  in reverse order, restoring the exact previous state (a field that did not exist is removed
  again, a member that was already present stays, a member SREM removed comes back).
  KEYS[1] saga record hash   KEYS[2..n] the distinct data keys the steps touch
  ARGV[1] saga id   ARGV[2] steps JSON (see the top of this file; each key one of KEYS[2..n])
  ARGV[3] retention of the saga record, ms (1..10 years): the record expires that long after it ran
  A step fails when HINCRBY would leave [min, max] or the stored value is not an integer, or when
  Redis refuses it (a key of another type, an overflow); the saga is then ROLLED_BACK.
  Idempotent by saga id: the same ARGV[2] text again returns the stored outcome and runs nothing.
  Reply: {id, status: COMPLETED|ROLLED_BACK, stepsCompleted (steps run before the failure, all when
          completed), failedStep (1-based) or null, error (names step, op and reason) or null, createdAt}
  Errors: BAD_USER_INPUT (id, empty list, more than 64 steps, unknown op, missing, extra or mistyped
          operands, min > max, a key not in KEYS[2..n], a field or member over 1024 bytes, a value
          over 16 KiB), IDEMPOTENCY_CONFLICT (the id already ran other steps)
]]
register('saga_execute', function(keys, args)
  local id = check_id(args[1], 'saga id')
  local text = args[2]
  if type(text) ~= 'string' then reject('BAD_USER_INPUT', 'steps must be a non-empty JSON list') end
  local steps = parse_steps(keys, text)
  local retention = check_int(args[3], 'retention', 1, MAX_RETENTION_MS)

  local stored = hgetall_table(keys[1])
  if stored.status then
    if stored.id ~= id then reject('BAD_USER_INPUT', 'KEYS[1] holds saga ' .. tostring(stored.id) .. ', not ' .. id) end
    if stored.steps ~= text then
      reject('IDEMPOTENCY_CONFLICT', 'saga ' .. id .. ' already ran with other steps')
    end
    return outcome_reply(stored)
  end

  local done = {}
  local failed_step, failure = nil, nil
  for i, step in ipairs(steps) do
    local ok, result = run_step(step)
    if not ok then
      failed_step, failure = i, describe_step(step, i) .. ' failed: ' .. result
      break
    end
    done[i] = result
  end
  if failed_step then
    for i = #done, 1, -1 do undo_step(done[i]) end
  end

  local record = {
    id = id, status = 'COMPLETED', stepsCompleted = fmt_int(#done), steps = text, createdAt = fmt_int(now_ms()),
  }
  if failed_step then
    record.status = 'ROLLED_BACK'
    record.failedStep = fmt_int(failed_step)
    record.error = failure
  end
  local flat = {}
  for field, value in pairs(record) do flat[#flat + 1] = field; flat[#flat + 1] = value end
  redis.call('HSET', keys[1], unpack(flat))
  redis.call('PEXPIRE', keys[1], retention)
  return outcome_reply(record)
end)

--[[ saga_get (no-writes): a saga's stored outcome.
  KEYS[1] saga record hash
  Reply: {id, status, stepsCompleted, failedStep, error, createdAt}, or null when unknown
]]
register('saga_get', function(keys, args)
  local stored = hgetall_table(keys[1])
  if not stored.status then return 'null' end
  return outcome_reply(stored)
end, true)

local function data_key_type(key, wanted)
  local t = redis.call('TYPE', key)['ok']
  if t ~= 'none' and t ~= wanted then
    reject('BAD_USER_INPUT', 'data key holds a ' .. t .. ', not a ' .. wanted)
  end
  return t
end

-- One page of a data key with HSCAN/SSCAN: ARGV[1] scan cursor ('0' first), ARGV[2] count (1 to 100).
local function scan_args(args)
  local cursor = args[1]
  if type(cursor) ~= 'string' or not cursor:find('^%d+$') or #cursor > 20 then reject('BAD_USER_INPUT', 'after is not a valid cursor') end
  local count = tonumber(args[2])
  if not count or count < 1 or count > 100 or count % 1 ~= 0 then reject('BAD_USER_INPUT', 'first must be an integer from 1 to 100') end
  return cursor, count
end

local function next_cursor(cursor)
  if cursor == '0' then return cjson.null end
  return cursor
end

--[[ data_hash (no-writes): one page of a saga data hash (HSCAN; never the whole key).
  KEYS[1] data key   ARGV[1] cursor ('0' for the first page)   ARGV[2] count (1 to 100)
  Reply: JSON {"fields": {field: value}, "next": cursor or null}. About `count` fields a page (Redis
  may return a few more, and every field of a small hash at once); a field present during the whole
  walk is returned at least once. {"fields": {}, "next": null} when the key does not exist.
  Errors: BAD_USER_INPUT (the key holds another type, a bad cursor or count)
]]
register('data_hash', function(keys, args)
  local cursor, count = scan_args(args)
  if data_key_type(keys[1], 'hash') == 'none' then return '{"fields":{},"next":null}' end
  local reply = redis.call('HSCAN', keys[1], cursor, 'COUNT', count)
  local fields = {}
  local flat = reply[2]
  for i = 1, #flat, 2 do fields[flat[i]] = flat[i + 1] end
  return cjson.encode({ fields = fields, next = next_cursor(reply[1]) })
end, true)

--[[ data_set (no-writes): one page of a saga data set (SSCAN; never the whole key).
  KEYS[1] data key   ARGV[1] cursor ('0' for the first page)   ARGV[2] count (1 to 100)
  Reply: JSON {"members": [...], "next": cursor or null}: the page's members sorted bytewise (no
  order across pages); paging as for data_hash. {"members": [], "next": null} when absent.
  Errors: BAD_USER_INPUT (the key holds another type, a bad cursor or count)
]]
register('data_set', function(keys, args)
  local cursor, count = scan_args(args)
  if data_key_type(keys[1], 'set') == 'none' then return '{"members":[],"next":null}' end
  local reply = redis.call('SSCAN', keys[1], cursor, 'COUNT', count)
  local members = reply[2]
  if #members == 0 then return cjson.encode({ next = next_cursor(reply[1]) }) end
  table.sort(members)
  return cjson.encode({ members = members, next = next_cursor(reply[1]) })
end, true)

register('sagas_version', function() return cjson.encode({ library = 'atomflow_sagas', version = LIBRARY_VERSION }) end, true)
