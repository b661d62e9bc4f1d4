#!lua name=atomflow_scheduler
-- include: core, orders, workflow
-- Scheduled transitions. The loader inserts the parts named above (lua/include/) after line 1; see
-- lua/include/workflow.lua for the workflow key block and lua/include/core.lua for the event ARGV
-- block.
--
-- An entry is a hash {id, workflowId, machine, to, runAt, metadata (pairs JSON), status, createdAt,
-- updatedAt (its last status change), attempts, and later error, executedAt or cancelledAt}. The due
-- set holds every PENDING entry, scored with the time (ms) from which it may be claimed: its runAt,
-- then, once claimed, the end of the claim's lease. An entry leaves the due set when it becomes DONE,
-- FAILED or CANCELLED, all in the call that changes its status, so it takes effect exactly once
-- however many workers claim it.
--
-- Every function that writes an entry receives the same first four KEYS: [1] entry hash, [2] due
-- set, [3] listing index, [4] listing index by status. The indexes are sorted sets of score 0 read
-- in lexicographic order, newest first: members '<inverted updatedAt>:<id>', and in the by-status
-- index '<STATUS>:<inverted updatedAt>:<id>'.
--
-- Retention: a settled (DONE, FAILED, CANCELLED) entry expires RETENTION_SETTLED ms after it
-- settled (PEXPIRE in the call that settles it), and that call also removes from both indexes up to
-- PRUNE_BATCH members of the same status that settled longer ago than that: the indexes hold no
-- more than the entries alive plus what the next settlements remove. Nothing scans.

local LIBRARY_VERSION = '3'
local PRUNE_BATCH = 32

local function sched_keys(keys)
  return { entry = keys[1], due = keys[2], idx = keys[3], idx_status = keys[4] }
end

local function inverted(ms)
  return string.format('%013d', 9999999999999 - ms)
end

local function sched_index_add(sk, e)
  local member = inverted(tonumber(e.updatedAt)) .. ':' .. e.id
  redis.call('ZADD', sk.idx, 0, member)
  redis.call('ZADD', sk.idx_status, 0, e.status .. ':' .. member)
end

local function sched_index_remove(sk, e)
  local member = inverted(tonumber(e.updatedAt or e.createdAt)) .. ':' .. e.id
  redis.call('ZREM', sk.idx, member)
  redis.call('ZREM', sk.idx_status, e.status .. ':' .. member)
end

-- Removes from both indexes up to PRUNE_BATCH members of `status` whose entries settled before
-- `cutoff` (their hashes have expired).
local function prune_settled(sk, status, cutoff)
  if cutoff < 0 then return end
  local members = redis.call('ZRANGEBYLEX', sk.idx_status, '(' .. status .. ':' .. inverted(cutoff) .. ';',
    '(' .. status .. ';', 'LIMIT', 0, PRUNE_BATCH)
  for _, member in ipairs(members) do
    redis.call('ZREM', sk.idx_status, member)
    redis.call('ZREM', sk.idx, member:sub(#status + 2))
  end
end

-- The reply shape of every function that answers with an entry. Times are written from their
-- stored decimal text: cjson keeps only 14 significant digits.
local function entry_reply(e)
  local err = 'null'
  if e.error then err = cjson.encode(e.error) end
  return '{"id":' .. cjson.encode(e.id) .. ',"workflowId":' .. cjson.encode(e.workflowId)
    .. ',"machine":' .. cjson.encode(e.machine) .. ',"to":' .. cjson.encode(e.to)
    .. ',"runAt":' .. e.runAt .. ',"status":' .. cjson.encode(e.status) .. ',"error":' .. err
    .. ',"executedAt":' .. (e.executedAt or 'null') .. ',"createdAt":' .. e.createdAt
    .. ',"attempts":' .. (e.attempts or '0') .. '}'
end

-- Metadata pairs as one text, sorted by key: the same object whatever order its keys came in.
local function canonical_pairs(pairs_list)
  local sorted = {}
  for i, pair in ipairs(pairs_list) do sorted[i] = pair end
  table.sort(sorted, function(a, b) return a[1] < b[1] end)
  return metadata_text(sorted)
end

local function load_entry(sk, id)
  local e = hgetall_table(sk.entry)
  if e.id == nil then reject('NOT_FOUND', 'scheduled transition ' .. id .. ' not found') end
  check_owner(e.id, id, 'scheduled transition')
  return e
end

-- Settles a PENDING entry as DONE, FAILED or CANCELLED: status, times, error (DONE clears the error
-- of failed attempts), out of the due set, re-indexed, expiring after `retention` ms.
local function settle(sk, e, status, error_text, now, retention)
  sched_index_remove(sk, e)
  e.status = status
  e.updatedAt = fmt_int(now)
  local flat = { 'status', status, 'updatedAt', e.updatedAt }
  if status == 'CANCELLED' then
    flat[#flat + 1] = 'cancelledAt'; flat[#flat + 1] = e.updatedAt
  else
    e.executedAt = e.updatedAt
    flat[#flat + 1] = 'executedAt'; flat[#flat + 1] = e.executedAt
  end
  e.error = error_text
  if error_text then
    flat[#flat + 1] = 'error'; flat[#flat + 1] = error_text
  else
    redis.call('HDEL', sk.entry, 'error')
  end
  redis.call('HSET', sk.entry, unpack(flat))
  redis.call('ZREM', sk.due, e.id)
  sched_index_add(sk, e)
  redis.call('PEXPIRE', sk.entry, retention)
  prune_settled(sk, status, now - retention)
end

-- One failed attempt without an atomflow code (a Redis or script error): counted, with its reason
-- in `error`; the entry stays PENDING (claimable again when its lease ends) until the attempts
-- reach `max_attempts`, then it is FAILED with ATTEMPTS_EXHAUSTED.
local function record_attempt(sk, e, reason, max_attempts, now, retention)
  local attempts = tonumber(e.attempts or '0') + 1
  e.attempts = fmt_int(attempts)
  redis.call('HSET', sk.entry, 'attempts', e.attempts)
  if attempts >= max_attempts then
    settle(sk, e, 'FAILED', 'ATTEMPTS_EXHAUSTED ' .. e.attempts .. ' attempts failed, the last with: ' .. reason, now, retention)
  else
    e.error = reason
    redis.call('HSET', sk.entry, 'error', reason)
  end
end

local function error_text(err)
  if type(err) == 'table' and err.err then return tostring(err.err) end
  if type(err) == 'table' and err.atomflow_code then return err.atomflow_code .. ' ' .. err.message end
  return tostring(err)
end

--[[ sched_create: schedule a transition of a workflow at a time.
  KEYS[1] entry hash   KEYS[2] due set   KEYS[3] index   KEYS[4] index by status
  KEYS[5] the workflow hash   KEYS[6] its machine hash
  ARGV[1] entry id   ARGV[2] workflow id   ARGV[3] machine (routing)   ARGV[4] target state
  ARGV[5] runAt (ms, integer 0..8640000000000000)   ARGV[6] metadata pairs JSON [[keyJson, valueJson], ...]
  Reply: the entry {id, workflowId, machine, to, runAt, status: PENDING, error: null, executedAt: null,
  createdAt, attempts: 0}.
  Idempotent by entry id: an entry with this id and the same workflowId, to, runAt and metadata
  (compared key by key) is answered as it is now, and nothing is written.
  Errors: BAD_USER_INPUT (arguments; a target that is not a state of the workflow's machine version),
          NOT_FOUND (workflow), IDEMPOTENCY_CONFLICT (the entry id is taken by other parameters), STALE_KEYS
          (the workflow has another machine, or a key belongs to another entry, workflow or machine)
  A target not allowed from the current state is accepted: the workflow may move first; it is decided
  when the entry runs.
]]
register('sched_create', function(keys, args)
  local sk = sched_keys(keys)
  local id = check_id(args[1], 'schedule entry id')
  local workflow_id = check_id(args[2], 'workflow id')
  local machine = check_name(args[3], 'machine')
  local to = check_name(args[4], 'target state')
  local run_at = check_int(args[5], 'runAt', 0, MAX_RUN_AT_MS)
  local meta_pairs = parse_metadata_pairs(args[6])
  check_metadata_size(meta_pairs, 'metadata')
  local existing = hgetall_table(sk.entry)
  if existing.id then
    check_owner(existing.id, id, 'scheduled transition')
    if existing.workflowId ~= workflow_id or existing.to ~= to or existing.runAt ~= fmt_int(run_at)
        or canonical_pairs(parse_metadata_pairs(existing.metadata)) ~= canonical_pairs(meta_pairs) then
      reject('IDEMPOTENCY_CONFLICT', 'scheduled transition ' .. id .. ' already exists with other parameters')
    end
    return entry_reply(existing)
  end
  local wf = redis.call('HMGET', keys[5], 'id', 'machine', 'machineVersion')
  if not wf[1] then reject('NOT_FOUND', 'workflow ' .. workflow_id .. ' not found') end
  check_owner(wf[1], workflow_id, 'workflow')
  if wf[2] ~= machine then reject('STALE_KEYS', 'workflow ' .. workflow_id .. ' belongs to machine ' .. wf[2]) end
  local definition = load_machine(keys[6], wf[3])
  if not definition then reject('NOT_FOUND', 'machine ' .. machine .. ' version ' .. wf[3] .. ' not found') end
  check_owner(definition.name, machine, 'machine')
  if not contains(definition.states, to) then
    reject('BAD_USER_INPUT', 'state ' .. to .. ' is not a state of machine ' .. machine .. ' version ' .. wf[3])
  end

  local now = fmt_int(now_ms())
  local e = {
    id = id, workflowId = workflow_id, machine = machine, to = to, runAt = fmt_int(run_at),
    metadata = args[6], status = 'PENDING', createdAt = now, updatedAt = now, attempts = '0',
  }
  redis.call('HSET', sk.entry, 'id', e.id, 'workflowId', e.workflowId, 'machine', e.machine, 'to', e.to,
    'runAt', e.runAt, 'metadata', e.metadata, 'status', e.status, 'createdAt', e.createdAt,
    'updatedAt', e.updatedAt, 'attempts', e.attempts)
  redis.call('ZADD', sk.due, e.runAt, id)
  sched_index_add(sk, e)
  return entry_reply(e)
end)

--[[ sched_cancel: cancel a pending entry.
  KEYS[1] entry hash   KEYS[2] due set   KEYS[3] index   KEYS[4] index by status
  ARGV[1] entry id   ARGV[2] retention of settled entries, ms (1..10 years)
  Reply: the entry, status CANCELLED (the hash also keeps cancelledAt); it expires after the retention
  Errors: BAD_USER_INPUT (arguments), NOT_FOUND (entry), STATE_CONFLICT (no longer PENDING), STALE_KEYS
          (KEYS[1] holds another entry)
]]
register('sched_cancel', function(keys, args)
  local sk = sched_keys(keys)
  local id = check_id(args[1], 'schedule entry id')
  local retention = check_int(args[2], 'retention', 1, MAX_RETENTION_MS)
  local e = load_entry(sk, id)
  if e.status ~= 'PENDING' then
    reject('STATE_CONFLICT', 'scheduled transition ' .. id .. ' is ' .. e.status .. ', only a PENDING one can be cancelled')
  end
  settle(sk, e, 'CANCELLED', nil, now_ms(), retention)
  return entry_reply(e)
end)

--[[ sched_get (no-writes): one entry.
  KEYS[1] entry hash   Reply: the entry, or null
]]
register('sched_get', function(keys, args)
  local e = hgetall_table(keys[1])
  if e.id == nil then return 'null' end
  return entry_reply(e)
end, true)

--[[ sched_claim: claim due entries with a lease.
  KEYS[1] due set   ARGV[1] how many at most (1..1000)   ARGV[2] lease in ms (1..2147483647)
  Takes the entries whose score is <= now (TIME), earliest first, and moves each one's score to
  now + lease: nobody else claims it meanwhile, and if its claimant dies before applying it, it
  becomes claimable again when the lease runs out.
  Reply: JSON list of entry ids (possibly [])
  Errors: BAD_USER_INPUT
]]
register('sched_claim', function(keys, args)
  local count = check_int(args[1], 'claim count', 1, MAX_CLAIM)
  local lease = check_int(args[2], 'lease', 1, MAX_INT32)
  local now = now_ms()
  local ids = redis.call('ZRANGE', keys[1], '-inf', fmt_int(now), 'BYSCORE', 'LIMIT', 0, count)
  if #ids == 0 then return '[]' end
  local until_ms = fmt_int(now + lease)
  local flat = {}
  for _, id in ipairs(ids) do flat[#flat + 1] = until_ms; flat[#flat + 1] = id end
  redis.call('ZADD', keys[1], unpack(flat))
  return cjson.encode(ids)
end)

--[[ sched_list (no-writes): a page of entry ids, newest first (by their last status change).
  KEYS[1] the index, or the index by status   ARGV[1] status for the by-status index, or ''
  ARGV[2] page size (1..1000)   ARGV[3] cursor (the last member of the previous page) or ''
  Reply: {"ids": [id, ...], "next": member or null}. Entries that expired since are listed until the
  next settlement of their status prunes them; callers skip ids whose entry is gone.
  Errors: BAD_USER_INPUT (status, size, or a cursor of another listing)
]]
register('sched_list', function(keys, args)
  local prefix = ''
  if args[1] ~= '' then
    if not contains({ 'PENDING', 'DONE', 'FAILED', 'CANCELLED' }, args[1]) then reject('BAD_USER_INPUT', 'unknown status') end
    prefix = args[1] .. ':'
  end
  local size = check_int(args[2], 'page size', 1, 1000)
  local min = '[' .. prefix
  if args[3] ~= '' then
    local position = args[3]
    if position:sub(1, #prefix) ~= prefix or not position:sub(#prefix + 1):find('^%d%d%d%d%d%d%d%d%d%d%d%d%d:[^:]+$') then
      reject('BAD_USER_INPUT', 'cursor does not belong to this listing')
    end
    min = '(' .. position
  end
  local max = '+'
  if prefix ~= '' then max = '(' .. prefix:sub(1, -2) .. ';' end
  local members = redis.call('ZRANGEBYLEX', keys[1], min, max, 'LIMIT', 0, size + 1)
  local ids = {}
  for i = 1, math.min(#members, size) do
    ids[#ids + 1] = cjson.encode(members[i]:sub(#prefix + 15))
  end
  local next_member = nil
  if #members > size then next_member = members[size] end
  return '{"ids":[' .. table.concat(ids, ',') .. '],"next":' .. json_or_null(next_member) .. '}'
end, true)

--[[ sched_apply: run a claimed entry's transition, once.
  KEYS[1..4] entry hash, due set, index, index by status
  KEYS[5..12] the workflow key block of the entry's workflow; KEYS[13] product stock, KEYS[14]
  account balance and KEYS[15] account order index when the workflow is an order (see lua/include/workflow.lua)
  ARGV[1..4] the event block   ARGV[5] entry id   ARGV[6] workflow id   ARGV[7] machine (routing)
  ARGV[8] order userId (routing, '' otherwise)   ARGV[9] order productId (routing, '' otherwise)
  ARGV[10] max attempts (1..1000)   ARGV[11] retention of settled entries, ms
  An entry that is not PENDING: nothing changes, the reply is the entry as it is. Otherwise, in this
  one call: the transition as wf_transition runs it (state, version, history, indexes, events, an
  order's refund), the entry DONE with executedAt; or, when the transition is refused, the entry
  FAILED with error 'CODE message' (NOT_FOUND when the workflow is gone; INVALID_TRANSITION when it
  moved on; BAD_USER_INPUT, for example merged metadata too large) and executedAt, the workflow
  untouched. Either way the entry leaves the due set and expires after the retention. When checking
  the transition fails with an error that has no atomflow code (a Redis error such as WRONGTYPE), the
  attempt is counted (attempts, error) and the entry stays PENDING; at max attempts it is FAILED with
  'ATTEMPTS_EXHAUSTED ...'.
  Reply: the entry. Events: those of the transition (WORKFLOW_TRANSITION; ORDER_<STATE> for orders)
  Errors: BAD_USER_INPUT (arguments), NOT_FOUND (entry), STALE_KEYS (KEYS built from an outdated
  route, or a key that belongs to another entry, workflow, machine, product or account: nothing is
  written, the caller re-reads the route and retries)
]]
register('sched_apply', function(keys, args)
  local sk = sched_keys(keys)
  local k = workflow_keys(keys, 5)
  local ctx = event_context(args)
  local id = check_id(args[5], 'schedule entry id')
  local workflow_id = check_id(args[6], 'workflow id')
  local routing = { machine = args[7], userId = args[8], productId = args[9] }
  local max_attempts = check_int(args[10], 'max attempts', 1, 1000)
  local retention = check_int(args[11], 'retention', 1, MAX_RETENTION_MS)
  local e = load_entry(sk, id)
  if e.workflowId ~= workflow_id then
    reject('STALE_KEYS', 'scheduled transition ' .. id .. ' belongs to workflow ' .. e.workflowId)
  end
  if e.status ~= 'PENDING' then return entry_reply(e) end

  local ok, result = pcall(function()
    local wf = load_routed_workflow(k, workflow_id, routing)
    return plan_transition(k, wf, { to = e.to, meta_pairs = parse_metadata_pairs(e.metadata) })
  end)
  local now = now_ms()
  if ok then
    apply_transition(k, ctx, result, now)
    settle(sk, e, 'DONE', nil, now, retention)
  elseif type(result) == 'table' and result.atomflow_code == 'STALE_KEYS' then
    error(result, 0)   -- register turns it into an error reply; nothing was written
  elseif type(result) == 'table' and result.atomflow_code then
    settle(sk, e, 'FAILED', result.atomflow_code .. ' ' .. result.message, now, retention)
  else
    record_attempt(sk, e, error_text(result), max_attempts, now, retention)
  end
  return entry_reply(e)
end)

--[[ sched_attempt_failed: count a failed attempt that sched_apply could not count itself (its call
  failed with a Redis or script error after the transition checks, or the caller could not build it).
  KEYS[1..4] entry hash, due set, index, index by status
  ARGV[1] entry id   ARGV[2] reason (text, at most 4096 bytes kept)   ARGV[3] max attempts (1..1000)
  ARGV[4] retention of settled entries, ms
  An entry that is not PENDING: nothing changes. Otherwise attempts + 1 and error = reason; at max
  attempts the entry is FAILED with 'ATTEMPTS_EXHAUSTED ...', leaves the due set and expires after
  the retention.
  Reply: the entry. Errors: BAD_USER_INPUT (arguments), NOT_FOUND (entry), STALE_KEYS (KEYS[1] holds
  another entry)
]]
register('sched_attempt_failed', function(keys, args)
  local sk = sched_keys(keys)
  local id = check_id(args[1], 'schedule entry id')
  if type(args[2]) ~= 'string' or args[2] == '' then reject('BAD_USER_INPUT', 'reason must be a text') end
  local reason = args[2]:sub(1, 4096)
  local max_attempts = check_int(args[3], 'max attempts', 1, 1000)
  local retention = check_int(args[4], 'retention', 1, MAX_RETENTION_MS)
  local e = load_entry(sk, id)
  if e.status ~= 'PENDING' then return entry_reply(e) end
  record_attempt(sk, e, reason, max_attempts, now_ms(), retention)
  return entry_reply(e)
end)

register('scheduler_version', function() return cjson.encode({ library = 'atomflow_scheduler', version = LIBRARY_VERSION }) end, true)
