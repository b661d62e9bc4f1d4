-- atomflow workflow core: metadata, state machines, the workflow key block, indexes, history, and
-- creating and moving a workflow (orders included: their refund and events come from
-- lua/include/orders.lua, which the libraries include before this part).

-- Metadata travels as a JSON array of [keyJsonText, valueJsonText] pairs, so client JSON keeps the
-- exact text it arrived with (cjson would turn [] into {} and round long numbers). A workflow keeps
-- each top-level entry as hash field 'm:' .. keyJsonText.
local function parse_metadata_pairs(text)
  local pairs_list = decode_json(text, 'metadata')
  if type(pairs_list) ~= 'table' then reject('BAD_USER_INPUT', 'metadata must be a JSON object') end
  local seen = {}
  for _, pair in ipairs(pairs_list) do
    if type(pair) ~= 'table' or type(pair[1]) ~= 'string' or type(pair[2]) ~= 'string' then
      reject('BAD_USER_INPUT', 'metadata must be a JSON object')
    end
    if type(decode_json(pair[1], 'metadata key')) ~= 'string' then reject('BAD_USER_INPUT', 'metadata keys must be strings') end
    decode_json(pair[2], 'metadata value')
    if seen[pair[1]] then reject('BAD_USER_INPUT', 'metadata has a duplicate key') end
    seen[pair[1]] = true
  end
  return pairs_list
end

local function metadata_size(pairs_list)
  local size = 2
  for i, pair in ipairs(pairs_list) do
    size = size + #pair[1] + 1 + #pair[2]
    if i > 1 then size = size + 1 end
  end
  return size
end

local function metadata_text(pairs_list)
  local parts = {}
  for i, pair in ipairs(pairs_list) do parts[i] = pair[1] .. ':' .. pair[2] end
  return '{' .. table.concat(parts, ',') .. '}'
end

local function check_metadata_size(pairs_list, what)
  if metadata_size(pairs_list) > MAX_METADATA_BYTES then
    reject('BAD_USER_INPUT', what .. ' exceeds ' .. MAX_METADATA_BYTES .. ' bytes of JSON')
  end
end

local function stored_metadata(wf)
  local list = {}
  for field, value in pairs(wf) do
    if field:sub(1, 2) == 'm:' then list[#list + 1] = { field:sub(3), value } end
  end
  table.sort(list, function(a, b) return a[1] < b[1] end)
  return list
end

-- Metadata as it would be after merging `changes` key by key into what the workflow holds.
local function merged_metadata(wf, changes)
  local by_key, merged = {}, stored_metadata(wf)
  for i, pair in ipairs(merged) do by_key[pair[1]] = i end
  for _, pair in ipairs(changes) do
    if by_key[pair[1]] then merged[by_key[pair[1]]] = pair else merged[#merged + 1] = pair end
  end
  return merged
end

----------------------------------------------------------------------------------------------------
-- State machines. A machine hash holds 'current' (its latest version) and one field 'v<N>' per
-- version with that version's definition as JSON: a running workflow keeps the version it started
-- with. Definitions: { name, version, initialState, states, transitions = { {from, to = {...}} },
-- terminalStates }.

local function load_machine(machine_key, version)
  local v = version or redis.call('HGET', machine_key, 'current')
  if not v then return nil end
  local text = redis.call('HGET', machine_key, 'v' .. v)
  if not text then return nil end
  return cjson.decode(text)
end

local function allowed_targets(definition, state)
  for _, rule in ipairs(definition.transitions) do
    if rule.from == state then return rule.to end
  end
  return {}
end

----------------------------------------------------------------------------------------------------
-- Workflows. Every write that touches a workflow receives the same block of keys, starting at some
-- offset of KEYS:
--   +0 workflow hash        +1 history list           +2 machine hash
--   +3 index: all           +4 index: all by state    +5 index: machine   +6 index: machine by state
--   +7 the tenant's event stream
--   +8 product stock, +9 account balance, +10 account order index
--      (orders only: the refund on cancelled/returned; retention of terminal orders)
-- and the same block of ARGV at the start: [1] workflow channel, [2] orders channel,
-- [3] event stream MAXLEN (approximate trimming), [4] terminal retention in ms (0: off): a workflow
-- that reaches a terminal state leaves the four indexes (an order also its account's order index)
-- and its hash and history expire after that long.
--
-- The indexes are sorted sets of score 0 read in lexicographic order, so a page is one
-- ZRANGEBYLEX. Members: '<inverted updatedAt>:<id>:<machine>', by-state indexes prefix '<state>:'.

local function workflow_keys(keys, offset)
  return {
    workflow = keys[offset], history = keys[offset + 1], machine = keys[offset + 2],
    idx_all = keys[offset + 3], idx_all_state = keys[offset + 4],
    idx_machine = keys[offset + 5], idx_machine_state = keys[offset + 6],
    events = keys[offset + 7], stock = keys[offset + 8], balance = keys[offset + 9],
    account_orders = keys[offset + 10],
  }
end

local function index_member(updated_at, id, machine)
  return string.format('%013d', 9999999999999 - updated_at) .. ':' .. id .. ':' .. machine
end

local function index_remove(k, wf)
  local member = index_member(tonumber(wf.updatedAt), wf.id, wf.machine)
  redis.call('ZREM', k.idx_all, member)
  redis.call('ZREM', k.idx_machine, member)
  redis.call('ZREM', k.idx_all_state, wf.state .. ':' .. member)
  redis.call('ZREM', k.idx_machine_state, wf.state .. ':' .. member)
end

-- With a terminal retention, a workflow in a terminal state leaves the listings and expires.
-- Returns true when it did (the caller then does not index it).
local function retire_if_terminal(k, ctx, wf, definition)
  if ctx.terminal_retention == 0 or not contains(definition.terminalStates or {}, wf.state) then return false end
  redis.call('PEXPIRE', k.workflow, ctx.terminal_retention)
  redis.call('PEXPIRE', k.history, ctx.terminal_retention)
  if wf.kind == 'order' and wf.accountSeq and k.account_orders then
    redis.call('ZREM', k.account_orders, account_order_member(tonumber(wf.accountSeq), wf.id))
  end
  return true
end

local function index_add(k, wf)
  local member = index_member(tonumber(wf.updatedAt), wf.id, wf.machine)
  redis.call('ZADD', k.idx_all, 0, member)
  redis.call('ZADD', k.idx_machine, 0, member)
  redis.call('ZADD', k.idx_all_state, 0, wf.state .. ':' .. member)
  redis.call('ZADD', k.idx_machine_state, 0, wf.state .. ':' .. member)
end

local function emit_workflow_event(k, ctx, wf, from, meta_text)
  local body = '{"type":"WORKFLOW_TRANSITION","workflowId":' .. cjson.encode(wf.id)
    .. ',"machine":' .. cjson.encode(wf.machine) .. ',"from":' .. json_or_null(from)
    .. ',"to":' .. cjson.encode(wf.state) .. ',"version":' .. wf.version
    .. ',"at":' .. wf.updatedAt .. ',"metadata":' .. meta_text .. '}'
  return emit_event(k, ctx, ctx.workflow_channel, 'WORKFLOW_TRANSITION', body)
end

-- Each history entry starts with its workflow's id, so a history key proves whose it is.
local function history_prefix(id)
  return '{"workflowId":' .. cjson.encode(id) .. ','
end

local function append_history(k, wf, from, meta_text)
  redis.call('RPUSH', k.history, history_prefix(wf.id) .. '"from":' .. json_or_null(from) .. ',"to":' .. cjson.encode(wf.state)
    .. ',"at":' .. wf.updatedAt .. ',"version":' .. wf.version .. ',"metadata":' .. meta_text .. '}')
end

-- The reply shape of every function that answers with a workflow.
local function workflow_reply(wf, definition)
  local reply = {
    id = wf.id, machine = wf.machine, machineVersion = tonumber(wf.machineVersion),
    state = wf.state, version = tonumber(wf.version),
    createdAt = tonumber(wf.createdAt), updatedAt = tonumber(wf.updatedAt),
    kind = wf.kind, metadata = stored_metadata(wf),
  }
  if definition then reply.allowedTransitions = allowed_targets(definition, wf.state) end
  if wf.kind == 'order' then
    reply.order = {
      userId = wf.userId, productId = wf.productId, quantity = tonumber(wf.quantity),
      unitPriceCents = tonumber(wf.unitPriceCents), totalCents = tonumber(wf.totalCents),
    }
  end
  return reply
end

-- Checks, before any write, that a new workflow's keys are its own: no workflow hash yet (else
-- ALREADY_EXISTS), an empty history, and a machine hash holding `machine_name` (when it exists).
local function check_new_workflow(k, id, machine_name)
  if redis.call('EXISTS', k.workflow) == 1 then
    check_owner(redis.call('HGET', k.workflow, 'id'), id, 'workflow')
    return false
  end
  if redis.call('EXISTS', k.history) == 1 then reject('STALE_KEYS', 'history key does not belong to new workflow ' .. id) end
  local current = load_machine(k.machine)
  if current then check_owner(current.name, machine_name, 'machine') end
  return true
end

-- Creates a workflow in its machine's initial state: hash, first history entry, indexes, and the
-- creation event. The caller has validated everything (ids, machine, metadata, absence). `extra`
-- holds additional hash fields (the order's). Returns the workflow table.
local function create_workflow(k, ctx, id, machine_name, definition, kind, meta_pairs, extra, now)
  local wf = {
    id = id, machine = machine_name, machineVersion = fmt_int(definition.version),
    state = definition.initialState, version = '1', createdAt = fmt_int(now), updatedAt = fmt_int(now),
    kind = kind,
  }
  for field, value in pairs(extra or {}) do wf[field] = value end
  local flat = {}
  for field, value in pairs(wf) do flat[#flat + 1] = field; flat[#flat + 1] = value end
  for _, pair in ipairs(meta_pairs) do
    flat[#flat + 1] = 'm:' .. pair[1]; flat[#flat + 1] = pair[2]
    wf['m:' .. pair[1]] = pair[2]
  end
  redis.call('HSET', k.workflow, unpack(flat))
  local meta_text = metadata_text(meta_pairs)
  append_history(k, wf, nil, meta_text)
  if not retire_if_terminal(k, ctx, wf, definition) then index_add(k, wf) end
  emit_workflow_event(k, ctx, wf, nil, meta_text)
  return wf
end

-- Loads a workflow for a transition and checks that the caller's routing (the machine, and for an
-- order its user and product, from which the caller built KEYS) matches what is stored.
-- Every key of the block must be this workflow's: the stored id, a history as long as the version
-- (one entry per version) whose entries carry the id, the machine's name; for an order the stored product and account ids.
local function load_routed_workflow(k, id, routing)
  local wf = hgetall_table(k.workflow)
  if wf.id == nil then reject('NOT_FOUND', 'workflow ' .. id .. ' not found') end
  check_owner(wf.id, id, 'workflow')
  local first = redis.call('LINDEX', k.history, 0)
  local prefix = history_prefix(id)
  if redis.call('LLEN', k.history) ~= tonumber(wf.version) or not first or first:sub(1, #prefix) ~= prefix then
    reject('STALE_KEYS', 'history key does not belong to workflow ' .. id)
  end
  if wf.machine ~= routing.machine then reject('STALE_KEYS', 'workflow ' .. id .. ' routing changed') end
  if wf.kind == 'order' then check_order_route(k, wf, routing) end
  return wf
end

-- Validates a transition of `wf` (loaded with load_routed_workflow) without writing.
-- opts: { to, expected_from (optional), expected_version (optional), meta_pairs }.
-- Returns a plan for apply_transition.
local function plan_transition(k, wf, opts)
  local definition = load_machine(k.machine, wf.machineVersion)
  if not definition then reject('NOT_FOUND', 'machine ' .. wf.machine .. ' version ' .. wf.machineVersion .. ' not found') end
  check_owner(definition.name, wf.machine, 'machine')
  if opts.expected_from and opts.expected_from ~= wf.state then
    reject('STATE_CONFLICT', 'workflow ' .. wf.id .. ' is in state ' .. wf.state .. ', not ' .. opts.expected_from)
  end
  if opts.expected_version and opts.expected_version ~= tonumber(wf.version) then
    reject('VERSION_CONFLICT', 'workflow ' .. wf.id .. ' is at version ' .. wf.version .. ', not ' .. fmt_int(opts.expected_version))
  end
  if not contains(definition.states, opts.to) then
    reject('INVALID_TRANSITION', 'state ' .. opts.to .. ' is not a state of machine ' .. wf.machine)
  end
  if not contains(allowed_targets(definition, wf.state), opts.to) then
    reject('INVALID_TRANSITION', 'cannot move workflow ' .. wf.id .. ' from ' .. wf.state .. ' to ' .. opts.to)
  end
  check_metadata_size(opts.meta_pairs, 'transition metadata')
  check_metadata_size(merged_metadata(wf, opts.meta_pairs), 'merged metadata')
  local plan = { wf = wf, definition = definition, to = opts.to, meta_pairs = opts.meta_pairs }
  if wf.kind == 'order' then plan.refund = plan_refund(k, wf, opts.to) end
  return plan
end

-- Applies a validated plan: state, version, updatedAt, merged metadata, history, indexes, the
-- workflow event, and for orders the refund and the ORDER_<STATE> event. Returns the workflow.
local function apply_transition(k, ctx, plan, now)
  local wf = plan.wf
  local from = wf.state
  index_remove(k, wf)
  wf.state = plan.to
  wf.version = fmt_int(tonumber(wf.version) + 1)
  -- updatedAt never goes backwards, so index order and history stay monotonic
  wf.updatedAt = fmt_int(math.max(now, tonumber(wf.updatedAt)))
  local flat = { 'state', wf.state, 'version', wf.version, 'updatedAt', wf.updatedAt }
  for _, pair in ipairs(plan.meta_pairs) do
    flat[#flat + 1] = 'm:' .. pair[1]; flat[#flat + 1] = pair[2]
    wf['m:' .. pair[1]] = pair[2]
  end
  redis.call('HSET', k.workflow, unpack(flat))
  local meta_text = metadata_text(plan.meta_pairs)
  append_history(k, wf, from, meta_text)
  if not retire_if_terminal(k, ctx, wf, plan.definition) then index_add(k, wf) end
  emit_workflow_event(k, ctx, wf, from, meta_text)
  if plan.refund then apply_refund(k, wf) end
  if wf.kind == 'order' then emit_order_event(k, ctx, 'ORDER_' .. string.upper(wf.state), wf) end
  return wf
end
