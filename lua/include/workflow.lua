-- atomflow workflow core: metadata, state machines, the workflow key block, indexes, history, and
-- creating and moving a workflow (orders included: their refund and events come from
-- lua/include/orders.lua, which the libraries include before this part).

-- Metadata travels as a JSON array of [keyJsonText, valueJsonText] pairs, so client JSON keeps the
-- exact text it arrived with (cjson would turn [] into {} and round long numbers). A workflow keeps
-- each top-level entry as hash field 'm:' .. keyJsonText.
local function parse_metadata_pairs(text)
  if text == '[]' then return {} end   -- most calls: no metadata, nothing to decode
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
  if #pairs_list == 0 then return '{}' end
  local parts = {}
  for i, pair in ipairs(pairs_list) do parts[i] = pair[1] .. ':' .. pair[2] end
  return '{' .. table.concat(parts, ',') .. '}'
end

local function check_metadata_size(pairs_list, what)
  if metadata_size(pairs_list) > MAX_METADATA_BYTES then
    reject('BAD_USER_INPUT', what .. ' exceeds ' .. MAX_METADATA_BYTES .. ' bytes of JSON')
  end
end

local function pair_key_less(a, b) return a[1] < b[1] end

local function stored_metadata(wf)
  local list = {}
  for field, value in pairs(wf) do
    -- 'm:' compared by bytes: a substring per field would be a string to allocate and collect
    if field:byte(1) == 109 and field:byte(2) == 58 then list[#list + 1] = { field:sub(3), value } end
  end
  if #list > 1 then table.sort(list, pair_key_less) end
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
--
-- Beside each 'v<N>' the hash holds that version compiled, so that starting, moving and reading a
-- workflow decode no JSON: one field 's<N>:<state>' = <entry> per state, where an entry is 'T'
-- (terminal) or '-', then the JSON list of the states it may move to; 'name' (the machine's name);
-- and 'start' ('<N> <initialState> <entry>') for the current version N, so that one HMGET of
-- 'current', 'name' and 'start' is all a start reads. A version stored without them (by an atomflow
-- before these fields; its 'start' then names another version than 'current') is compiled from its
-- JSON when read; the write functions then store its fields.

local function load_machine(machine_key, version)
  local v = version or redis.call('HGET', machine_key, 'current')
  if not v then return nil end
  local text = redis.call('HGET', machine_key, 'v' .. v)
  if not text then return nil end
  return cjson.decode(text)
end

-- A JSON list of names: names match NAME_LUA_PATTERN, so they need no escaping.
local function name_list_json(names)
  if #names == 0 then return '[]' end
  return '["' .. table.concat(names, '","') .. '"]'
end

-- { name, version (text), initial, entries = { [state] = entry } } of a decoded definition.
local function compile_machine(definition)
  local terminal, targets = {}, {}
  for _, s in ipairs(definition.terminalStates or {}) do terminal[s] = true end
  for _, rule in ipairs(definition.transitions) do
    if not targets[rule.from] then targets[rule.from] = rule.to end
  end
  local entries = {}
  for _, s in ipairs(definition.states) do
    entries[s] = (terminal[s] and 'T' or '-') .. name_list_json(targets[s] or {})
  end
  return { name = definition.name, version = fmt_int(definition.version), initial = definition.initialState, entries = entries }
end

-- HSET arguments storing a compiled version (and 'start' when `current`: the version is the current one).
local function compiled_fields(compiled, current)
  local v = compiled.version
  local flat = { 'name', compiled.name }
  if current then
    flat[3] = 'start'; flat[4] = v .. ' ' .. compiled.initial .. ' ' .. (compiled.entries[compiled.initial] or '-[]')
  end
  for state, entry in pairs(compiled.entries) do
    flat[#flat + 1] = 's' .. v .. ':' .. state; flat[#flat + 1] = entry
  end
  return flat
end

local function entry_is_terminal(entry) return entry:byte(1) == 84 end   -- 'T'
local function entry_targets(entry) return entry:sub(2) end
local function entry_allows(entry, to) return entry:find('"' .. to .. '"', 2, true) ~= nil end

-- Version `v` of a machine as a transition or a reply needs it: { name, from, to (the entries of
-- states `from` and `to`, nil for a state the version does not have), fields (set when compiled here
-- from JSON: the caller may store them) }. nil when there is no such version.
local function machine_version(machine_key, v, from, to)
  to = to or from
  local r = redis.call('HMGET', machine_key, 'name', 's' .. v .. ':' .. from, 's' .. v .. ':' .. to)
  if r[2] then return { name = r[1], from = r[2], to = r[3] or nil } end
  local definition = load_machine(machine_key, v)
  if not definition then return nil end
  local compiled = compile_machine(definition)
  return { name = definition.name, from = compiled.entries[from], to = compiled.entries[to], fields = compiled_fields(compiled, false) }
end

-- The current version of a machine, to start a workflow in: { name, version, initial, entry, fields
-- (as in machine_version) }. nil when the machine does not exist.
local function machine_current(machine_key)
  local r = redis.call('HMGET', machine_key, 'current', 'name', 'start')
  if not r[1] then return nil end
  if r[3] then
    local version, initial, entry = r[3]:match('^(%d+) (%S+) (.+)$')
    if version == r[1] then return { name = r[2], version = version, initial = initial, entry = entry } end
  end
  local definition = load_machine(machine_key, r[1])
  if not definition then return nil end
  local compiled = compile_machine(definition)
  return {
    name = definition.name, version = compiled.version, initial = compiled.initial,
    entry = compiled.entries[compiled.initial] or '-[]', fields = compiled_fields(compiled, true),
  }
end

-- Stores a new version of a machine: its JSON `text` and its compiled fields; `definition` is `text`
-- decoded.
local function store_machine_version(machine_key, definition, text)
  redis.call('HSET', machine_key, 'current', definition.version, 'v' .. definition.version, text,
    unpack(compiled_fields(compile_machine(definition), true)))
end

-- Writes version 1 of the built-in order machine (lua/include/orders.lua) when it is absent.
-- Returns true if it wrote.
local function ensure_order_machine(machine_key, machines_key)
  if redis.call('HEXISTS', machine_key, 'current') == 1 then return false end
  local definition = {
    name = ORDER_MACHINE, version = 1, initialState = ORDER_DEFINITION.initialState,
    states = ORDER_DEFINITION.states, transitions = ORDER_DEFINITION.transitions,
    terminalStates = ORDER_DEFINITION.terminalStates, builtin = true,
  }
  store_machine_version(machine_key, definition, cjson.encode(definition))
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
local function retire_if_terminal(k, ctx, wf, terminal)
  if ctx.terminal_retention == 0 or not terminal then return false end
  redis.call('PEXPIRE', k.workflow, ctx.terminal_retention)
  redis.call('PEXPIRE', k.history, ctx.terminal_retention)
  if wf.kind == 'order' and wf.accountSeq and k.account_orders then
    redis.call('ZREM', k.account_orders, account_order_member(tonumber(wf.accountSeq), wf.id))
  end
  return true
end

local function index_add(k, wf)
  local member = index_member(tonumber(wf.updatedAt), wf.id, wf.machine)
  redis.call('ZADD', k.idx_all, '0', member)
  redis.call('ZADD', k.idx_machine, '0', member)
  redis.call('ZADD', k.idx_all_state, '0', wf.state .. ':' .. member)
  redis.call('ZADD', k.idx_machine_state, '0', wf.state .. ':' .. member)
end

-- Event, history and reply texts are concatenated rather than cjson-encoded (the encoder costs more
-- than the rest of a call): ids, machine and state names were checked against ID_LUA_PATTERN and
-- NAME_LUA_PATTERN on their way in, so they are quoted as they are; numbers are stored as decimal
-- text; metadata is JSON text already.

local function quoted_or_null(name)
  if name == nil then return 'null' end
  return '"' .. name .. '"'
end

local function emit_workflow_event(k, ctx, wf, from, meta_text)
  local body = '{"type":"WORKFLOW_TRANSITION","workflowId":"' .. wf.id
    .. '","machine":"' .. wf.machine .. '","from":' .. quoted_or_null(from)
    .. ',"to":"' .. wf.state .. '","version":' .. wf.version
    .. ',"at":' .. wf.updatedAt .. ',"metadata":' .. meta_text .. '}'
  return emit_event(k, ctx, ctx.workflow_channel, 'WORKFLOW_TRANSITION', body)
end

-- Each history entry starts with its workflow's id, so a history key proves whose it is.
local function history_prefix(id)
  return '{"workflowId":"' .. id .. '",'
end

local function append_history(k, wf, from, meta_text)
  redis.call('RPUSH', k.history, history_prefix(wf.id) .. '"from":' .. quoted_or_null(from) .. ',"to":"' .. wf.state
    .. '","at":' .. wf.updatedAt .. ',"version":' .. wf.version .. ',"metadata":' .. meta_text .. '}')
end

-- Metadata pairs (stored_metadata) as the JSON list of [keyJsonText, valueJsonText] replies carry.
local function metadata_pairs_json(pairs_list)
  if #pairs_list == 0 then return '[]' end
  local parts = {}
  for i, pair in ipairs(pairs_list) do parts[i] = '[' .. cjson.encode(pair[1]) .. ',' .. cjson.encode(pair[2]) .. ']' end
  return '[' .. table.concat(parts, ',') .. ']'
end

-- The reply of every function that answers with a workflow, as JSON text. `allowed`: the JSON list
-- of the states it may move to (an entry's targets), or nil when its machine version is missing.
local function workflow_reply(wf, allowed)
  local tail = '}'
  if wf.kind == 'order' then
    tail = ',"order":{"userId":"' .. wf.userId .. '","productId":"' .. wf.productId .. '","quantity":' .. wf.quantity
      .. ',"unitPriceCents":' .. wf.unitPriceCents .. ',"totalCents":' .. wf.totalCents .. '}}'
  end
  if allowed then tail = ',"allowedTransitions":' .. allowed .. tail end
  return '{"id":"' .. wf.id .. '","machine":"' .. wf.machine .. '","machineVersion":' .. wf.machineVersion
    .. ',"state":"' .. wf.state .. '","version":' .. wf.version .. ',"createdAt":' .. wf.createdAt
    .. ',"updatedAt":' .. wf.updatedAt .. ',"kind":"' .. wf.kind .. '","metadata":'
    .. metadata_pairs_json(stored_metadata(wf)) .. tail
end

-- The reply for a stored workflow, its allowed transitions read from its machine hash.
local function stored_workflow_reply(wf, machine_key)
  local machine = machine_version(machine_key, wf.machineVersion, wf.state)
  return workflow_reply(wf, machine and machine.from and entry_targets(machine.from))
end

-- Checks, before any write, that a new workflow's keys other than its hash are its own: an empty
-- history, and a machine hash holding `machine_name` (`machine`: machine_current, nil when absent).
-- The caller has checked that the workflow hash is absent.
local function check_new_workflow_keys(k, id, machine_name, machine)
  if redis.call('EXISTS', k.history) == 1 then reject('STALE_KEYS', 'history key does not belong to new workflow ' .. id) end
  if machine then check_owner(machine.name, machine_name, 'machine') end
end

-- Creates a workflow in its machine's initial state: hash, first history entry, indexes, and the
-- creation event. The caller has validated everything (ids, machine, metadata, absence); `machine`
-- is machine_current of its machine (whose compiled fields are stored here when they were not).
-- `extra` holds additional hash fields (the order's) as a flat list. Returns the workflow table.
local function create_workflow(k, ctx, id, machine_name, machine, kind, meta_pairs, extra, now)
  if machine.fields then redis.call('HSET', k.machine, unpack(machine.fields)) end
  local at = fmt_int(now)
  local wf = {
    id = id, machine = machine_name, machineVersion = machine.version,
    state = machine.initial, version = '1', createdAt = at, updatedAt = at, kind = kind,
  }
  local flat = {
    'id', id, 'machine', machine_name, 'machineVersion', machine.version, 'state', machine.initial,
    'version', '1', 'createdAt', at, 'updatedAt', at, 'kind', kind,
  }
  for i = 1, #extra, 2 do
    wf[extra[i]] = extra[i + 1]
    flat[#flat + 1] = extra[i]; flat[#flat + 1] = extra[i + 1]
  end
  for _, pair in ipairs(meta_pairs) do
    flat[#flat + 1] = 'm:' .. pair[1]; flat[#flat + 1] = pair[2]
    wf['m:' .. pair[1]] = pair[2]
  end
  redis.call('HSET', k.workflow, unpack(flat))
  local meta_text = metadata_text(meta_pairs)
  append_history(k, wf, nil, meta_text)
  if not retire_if_terminal(k, ctx, wf, entry_is_terminal(machine.entry)) then index_add(k, wf) end
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
  local machine = machine_version(k.machine, wf.machineVersion, wf.state, opts.to)
  if not machine then reject('NOT_FOUND', 'machine ' .. wf.machine .. ' version ' .. wf.machineVersion .. ' not found') end
  check_owner(machine.name, wf.machine, 'machine')
  if opts.expected_from and opts.expected_from ~= wf.state then
    reject('STATE_CONFLICT', 'workflow ' .. wf.id .. ' is in state ' .. wf.state .. ', not ' .. opts.expected_from)
  end
  if opts.expected_version and opts.expected_version ~= tonumber(wf.version) then
    reject('VERSION_CONFLICT', 'workflow ' .. wf.id .. ' is at version ' .. wf.version .. ', not ' .. fmt_int(opts.expected_version))
  end
  if not machine.to then
    reject('INVALID_TRANSITION', 'state ' .. opts.to .. ' is not a state of machine ' .. wf.machine)
  end
  if not (machine.from and entry_allows(machine.from, opts.to)) then
    reject('INVALID_TRANSITION', 'cannot move workflow ' .. wf.id .. ' from ' .. wf.state .. ' to ' .. opts.to)
  end
  if #opts.meta_pairs > 0 then
    check_metadata_size(opts.meta_pairs, 'transition metadata')
    check_metadata_size(merged_metadata(wf, opts.meta_pairs), 'merged metadata')
  end
  local plan = { wf = wf, to = opts.to, entry = machine.to, machine_fields = machine.fields, meta_pairs = opts.meta_pairs }
  if wf.kind == 'order' then plan.refund = plan_refund(k, wf, opts.to) end
  return plan
end

-- Applies a validated plan: state, version, updatedAt, merged metadata, history, indexes, the
-- workflow event, and for orders the refund and the ORDER_<STATE> event. Returns the workflow and
-- the JSON list of the states it may move to next.
local function apply_transition(k, ctx, plan, now)
  if plan.machine_fields then redis.call('HSET', k.machine, unpack(plan.machine_fields)) end
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
  if not retire_if_terminal(k, ctx, wf, entry_is_terminal(plan.entry)) then index_add(k, wf) end
  emit_workflow_event(k, ctx, wf, from, meta_text)
  if plan.refund then apply_refund(k, wf) end
  if wf.kind == 'order' then emit_order_event(k, ctx, 'ORDER_' .. string.upper(wf.state), wf) end
  return wf, entry_targets(plan.entry)
end
