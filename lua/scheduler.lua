#!lua name=atomflow_scheduler
-- Scheduled transitions. The shared prelude (lua/include/prelude.lua) is inserted after line 1 by
-- the loader; see it for the workflow key block and the event ARGV block.
--
-- An entry is a hash {id, workflowId, machine, to, runAt, metadata (pairs JSON), status, createdAt,
-- and later error, executedAt or cancelledAt}. The due set holds every PENDING entry, scored with
-- the time (ms) from which it may be claimed: its runAt, then, once claimed, the end of the claim's
-- lease. An entry leaves the due set when it becomes DONE, FAILED or CANCELLED, all in the call that
-- changes its status, so it takes effect exactly once however many workers claim it.

local LIBRARY_VERSION = '2'
local MAX_RUN_AT = 8640000000000000   -- the largest JavaScript Date, in ms
local MAX_CLAIM = 1000

-- The reply shape of every function that answers with an entry. Times are written from their
-- stored decimal text: cjson keeps only 14 significant digits.
local function entry_reply(e)
  local err = 'null'
  if e.error then err = cjson.encode(e.error) end
  return '{"id":' .. cjson.encode(e.id) .. ',"workflowId":' .. cjson.encode(e.workflowId)
    .. ',"machine":' .. cjson.encode(e.machine) .. ',"to":' .. cjson.encode(e.to)
    .. ',"runAt":' .. e.runAt .. ',"status":' .. cjson.encode(e.status) .. ',"error":' .. err
    .. ',"executedAt":' .. (e.executedAt or 'null') .. '}'
end

-- Metadata pairs as one text, sorted by key: the same object whatever order its keys came in.
local function canonical_pairs(pairs_list)
  local sorted = {}
  for i, pair in ipairs(pairs_list) do sorted[i] = pair end
  table.sort(sorted, function(a, b) return a[1] < b[1] end)
  return metadata_text(sorted)
end

-- Marks a PENDING entry DONE or FAILED and takes it out of the due set.
local function settle(entry_key, due_key, e, status, error_text, now)
  e.status = status
  e.executedAt = fmt_int(now)
  local flat = { 'status', status, 'executedAt', e.executedAt }
  if error_text then
    e.error = error_text
    flat[#flat + 1] = 'error'; flat[#flat + 1] = error_text
  end
  redis.call('HSET', entry_key, unpack(flat))
  redis.call('ZREM', due_key, e.id)
end

--[[ sched_create: schedule a transition of a workflow at a time.
  KEYS[1] entry hash   KEYS[2] due set   KEYS[3] the workflow hash   KEYS[4] its machine hash
  ARGV[1] entry id   ARGV[2] workflow id   ARGV[3] machine (routing)   ARGV[4] target state
  ARGV[5] runAt (ms, integer 0..8640000000000000)   ARGV[6] metadata pairs JSON [[keyJson, valueJson], ...]
  Reply: the entry {id, workflowId, machine, to, runAt, status: PENDING, error: null, executedAt: null}.
  Idempotent by entry id: an entry with this id and the same workflowId, to, runAt and metadata
  (compared key by key) is answered as it is now, and nothing is written.
  Errors: BAD_USER_INPUT (arguments; a target that is not a state of the workflow's machine version),
          NOT_FOUND (workflow), IDEMPOTENCY_CONFLICT (the entry id is taken by other parameters), STALE_KEYS (the workflow has another machine,
          or a key belongs to another entry, workflow or machine)
  A target not allowed from the current state is accepted: the workflow may move first; it is decided
  when the entry runs.
]]
register('sched_create', function(keys, args)
  local id = check_id(args[1], 'schedule entry id')
  local workflow_id = check_id(args[2], 'workflow id')
  local machine = check_name(args[3], 'machine')
  local to = check_name(args[4], 'target state')
  local run_at = check_int(args[5], 'runAt', 0, MAX_RUN_AT)
  local meta_pairs = parse_metadata_pairs(args[6])
  check_metadata_size(meta_pairs, 'metadata')
  local existing = hgetall_table(keys[1])
  if existing.id then
    check_owner(existing.id, id, 'scheduled transition')
    if existing.workflowId ~= workflow_id or existing.to ~= to or existing.runAt ~= fmt_int(run_at)
        or canonical_pairs(parse_metadata_pairs(existing.metadata)) ~= canonical_pairs(meta_pairs) then
      reject('IDEMPOTENCY_CONFLICT', 'scheduled transition ' .. id .. ' already exists with other parameters')
    end
    return entry_reply(existing)
  end
  local wf = redis.call('HMGET', keys[3], 'id', 'machine', 'machineVersion')
  if not wf[1] then reject('NOT_FOUND', 'workflow ' .. workflow_id .. ' not found') end
  check_owner(wf[1], workflow_id, 'workflow')
  if wf[2] ~= machine then reject('STALE_KEYS', 'workflow ' .. workflow_id .. ' belongs to machine ' .. wf[2]) end
  local definition = load_machine(keys[4], wf[3])
  if not definition then reject('NOT_FOUND', 'machine ' .. machine .. ' version ' .. wf[3] .. ' not found') end
  check_owner(definition.name, machine, 'machine')
  if not contains(definition.states, to) then
    reject('BAD_USER_INPUT', 'state ' .. to .. ' is not a state of machine ' .. machine .. ' version ' .. wf[3])
  end

  local e = {
    id = id, workflowId = workflow_id, machine = machine, to = to, runAt = fmt_int(run_at),
    metadata = args[6], status = 'PENDING', createdAt = fmt_int(now_ms()),
  }
  redis.call('HSET', keys[1], 'id', e.id, 'workflowId', e.workflowId, 'machine', e.machine, 'to', e.to,
    'runAt', e.runAt, 'metadata', e.metadata, 'status', e.status, 'createdAt', e.createdAt)
  redis.call('ZADD', keys[2], e.runAt, id)
  return entry_reply(e)
end)

--[[ sched_cancel: cancel a pending entry.
  KEYS[1] entry hash   KEYS[2] due set   ARGV[1] entry id
  Reply: the entry, status CANCELLED (the hash also keeps cancelledAt)
  Errors: BAD_USER_INPUT (id), NOT_FOUND (entry), STATE_CONFLICT (no longer PENDING), STALE_KEYS
          (KEYS[1] holds another entry)
]]
register('sched_cancel', function(keys, args)
  local id = check_id(args[1], 'schedule entry id')
  local e = hgetall_table(keys[1])
  if e.id == nil then reject('NOT_FOUND', 'scheduled transition ' .. id .. ' not found') end
  check_owner(e.id, id, 'scheduled transition')
  if e.status ~= 'PENDING' then
    reject('STATE_CONFLICT', 'scheduled transition ' .. id .. ' is ' .. e.status .. ', only a PENDING one can be cancelled')
  end
  e.status = 'CANCELLED'
  redis.call('HSET', keys[1], 'status', e.status, 'cancelledAt', fmt_int(now_ms()))
  redis.call('ZREM', keys[2], id)
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

--[[ sched_apply: run a claimed entry's transition, once.
  KEYS[1] entry hash   KEYS[2] due set
  KEYS[3..10] the workflow key block of the entry's workflow; KEYS[11] product stock and KEYS[12]
  account balance when the workflow is an order (see the prelude)
  ARGV[1..3] the event block   ARGV[4] entry id   ARGV[5] workflow id   ARGV[6] machine (routing)
  ARGV[7] order userId (routing, '' otherwise)   ARGV[8] order productId (routing, '' otherwise)
  An entry that is not PENDING: nothing changes, the reply is the entry as it is. Otherwise, in this
  one call: the transition as wf_transition runs it (state, version, history, indexes, events, an
  order's refund), the entry DONE with executedAt; or, when the transition is refused, the entry
  FAILED with error 'CODE message' (NOT_FOUND when the workflow is gone; INVALID_TRANSITION when it
  moved on; BAD_USER_INPUT, for example merged metadata too large) and executedAt, the workflow
  untouched. Either way the entry leaves the due set.
  Reply: the entry. Events: those of the transition (WORKFLOW_TRANSITION; ORDER_<STATE> for orders)
  Errors: BAD_USER_INPUT (arguments), NOT_FOUND (entry), STALE_KEYS (KEYS built from an outdated
  route, or a key that belongs to another entry, workflow, machine, product or account: nothing is
  written, the caller re-reads the route and retries)
]]
register('sched_apply', function(keys, args)
  local k = workflow_keys(keys, 3)
  local ctx = event_context(args)
  local id = check_id(args[4], 'schedule entry id')
  local workflow_id = check_id(args[5], 'workflow id')
  local routing = { machine = args[6], userId = args[7], productId = args[8] }
  local e = hgetall_table(keys[1])
  if e.id == nil then reject('NOT_FOUND', 'scheduled transition ' .. id .. ' not found') end
  check_owner(e.id, id, 'scheduled transition')
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
    settle(keys[1], keys[2], e, 'DONE', nil, now)
  elseif type(result) == 'table' and result.atomflow_code and result.atomflow_code ~= 'STALE_KEYS' then
    settle(keys[1], keys[2], e, 'FAILED', result.atomflow_code .. ' ' .. result.message, now)
  else
    error(result, 0)   -- STALE_KEYS (register turns it into an error reply) or a Redis error
  end
  return entry_reply(e)
end)

register('scheduler_version', function() return cjson.encode({ library = 'atomflow_scheduler', version = LIBRARY_VERSION }) end, true)
