-- atomflow shared prelude.
--
-- The loader (src/redis/functions.ts) places this file after line 1 of every library in lua/, so
-- each library gets the same validation, error and workflow-core helpers without hand-kept copies
-- (Redis libraries cannot share code, and one function cannot FCALL another).
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

local MAX_METADATA_BYTES = 16384
local MAX_MONEY_CENTS = 10000000000000   -- 10^13: cjson keeps 14 significant digits
local MAX_INT32 = 2147483647
local MAX_STATES = 64
local MAX_TRANSITIONS = 256
local ORDER_MACHINE = 'order'

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

-- Ids: ^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$ ; names: ^[A-Za-z][A-Za-z0-9_-]{0,63}$
local function is_id(s)
  return type(s) == 'string' and #s >= 1 and #s <= 128 and s:find('^[A-Za-z0-9][A-Za-z0-9_.%-]*$') ~= nil
end

local function is_name(s)
  return type(s) == 'string' and #s >= 1 and #s <= 64 and s:find('^[A-Za-z][A-Za-z0-9_%-]*$') ~= nil
end

local function check_id(s, what)
  if not is_id(s) then reject('BAD_USER_INPUT', what .. ' must match ^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$') end
  return s
end

local function check_name(s, what)
  if not is_name(s) then reject('BAD_USER_INPUT', what .. ' must match ^[A-Za-z][A-Za-z0-9_-]{0,63}$') end
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

local ORDER_DEFINITION = {
  initialState = 'pending',
  states = { 'pending', 'processing', 'shipped', 'delivered', 'cancelled', 'returned' },
  transitions = {
    { from = 'pending', to = { 'processing', 'cancelled' } },
    { from = 'processing', to = { 'shipped', 'cancelled' } },
    { from = 'shipped', to = { 'delivered', 'returned' } },
    { from = 'delivered', to = { 'returned' } },
  },
  terminalStates = { 'cancelled', 'returned' },
}

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

-- Writes version 1 of the built-in order machine when it is absent. Returns true if it wrote.
local function ensure_order_machine(machine_key, machines_key)
  if redis.call('HEXISTS', machine_key, 'current') == 1 then return false end
  local definition = {
    name = ORDER_MACHINE, version = 1, initialState = ORDER_DEFINITION.initialState,
    states = ORDER_DEFINITION.states, transitions = ORDER_DEFINITION.transitions,
    terminalStates = ORDER_DEFINITION.terminalStates, builtin = true,
  }
  redis.call('HSET', machine_key, 'current', 1, 'v1', cjson.encode(definition))
  redis.call('SADD', machines_key, ORDER_MACHINE)
  return true
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

local function event_context(args)
  return {
    workflow_channel = args[1], orders_channel = args[2],
    maxlen = check_int(args[3], 'stream MAXLEN', 1, 1000000000),
    terminal_retention = check_int(args[4], 'terminal retention', 0, 315360000000),
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

-- An account's orders are a sorted set of score 0 read in lexicographic order, newest first:
-- members '<inverted sequence>:<orderId>', the sequence counting the account's orders (field
-- orderSeq of its balance hash, kept as accountSeq on the order), so orders placed in the same
-- millisecond keep their order.
local function account_order_member(seq, id)
  return string.format('%013d', 9999999999999 - seq) .. ':' .. id
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

-- Appends one event to the tenant's stream and PUBLISHes it, with its stream id, on `channel`.
-- `body` is the event as a JSON object text; the published message is the same object with
-- "eventId" first.
local function emit_event(k, ctx, channel, event_type, body)
  local id = redis.call('XADD', k.events, 'MAXLEN', '~', ctx.maxlen, '*', 'type', event_type, 'data', body)
  redis.call('PUBLISH', channel, '{"eventId":' .. cjson.encode(id) .. ',' .. body:sub(2))
  return id
end

local function json_or_null(v)
  if v == nil then return 'null' end
  return cjson.encode(v)
end

local function emit_workflow_event(k, ctx, wf, from, meta_text)
  local body = '{"type":"WORKFLOW_TRANSITION","workflowId":' .. cjson.encode(wf.id)
    .. ',"machine":' .. cjson.encode(wf.machine) .. ',"from":' .. json_or_null(from)
    .. ',"to":' .. cjson.encode(wf.state) .. ',"version":' .. wf.version
    .. ',"at":' .. wf.updatedAt .. ',"metadata":' .. meta_text .. '}'
  return emit_event(k, ctx, ctx.workflow_channel, 'WORKFLOW_TRANSITION', body)
end

local function emit_order_event(k, ctx, event_type, wf)
  local body = '{"type":' .. cjson.encode(event_type) .. ',"orderId":' .. cjson.encode(wf.id)
    .. ',"userId":' .. cjson.encode(wf.userId) .. ',"state":' .. cjson.encode(wf.state)
    .. ',"totalCents":' .. wf.totalCents .. ',"at":' .. wf.updatedAt .. '}'
  return emit_event(k, ctx, ctx.orders_channel, event_type, body)
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
  if wf.kind == 'order' and (wf.userId ~= routing.userId or wf.productId ~= routing.productId
      or k.stock == nil or k.balance == nil or k.account_orders == nil) then
    reject('STALE_KEYS', 'order ' .. id .. ' needs its product and account keys')
  end
  if wf.kind == 'order' then
    check_owner(redis.call('HGET', k.stock, 'id'), wf.productId, 'product stock')
    check_owner(redis.call('HGET', k.balance, 'id'), wf.userId, 'account balance')
  end
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
  if wf.kind == 'order' and (opts.to == 'cancelled' or opts.to == 'returned') then
    local balance = tonumber(redis.call('HGET', k.balance, 'balanceCents') or '0')
    local stock = tonumber(redis.call('HGET', k.stock, 'stock') or '0')
    if balance + tonumber(wf.totalCents) > MAX_MONEY_CENTS then
      reject('BAD_USER_INPUT', 'refund would take account ' .. wf.userId .. ' above ' .. fmt_int(MAX_MONEY_CENTS) .. ' cents')
    end
    if stock + tonumber(wf.quantity) > MAX_INT32 then
      reject('BAD_USER_INPUT', 'restock would take product ' .. wf.productId .. ' above ' .. MAX_INT32)
    end
    plan.refund = true
  end
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
  if plan.refund then
    redis.call('HINCRBY', k.balance, 'balanceCents', wf.totalCents)
    redis.call('HSET', k.balance, 'id', wf.userId)
    redis.call('HINCRBY', k.stock, 'stock', wf.quantity)
    redis.call('HSET', k.stock, 'id', wf.productId)
  end
  if wf.kind == 'order' then emit_order_event(k, ctx, 'ORDER_' .. string.upper(wf.state), wf) end
  return wf
end
