#!lua name=atomflow_workflows
-- include: core, orders, workflow
-- State machines and workflows. The loader inserts the parts named above (lua/include/) after line
-- 1; see lua/include/workflow.lua for the workflow key block and lua/include/core.lua for the event
-- ARGV block.

local LIBRARY_VERSION = '4'
local MAX_MACHINES = 1000   -- per tenant, the built-in order machine included

local function same_list(a, b)
  if type(a) ~= 'table' or type(b) ~= 'table' or #a ~= #b then return false end
  for i = 1, #a do if a[i] ~= b[i] then return false end end
  return true
end

-- Two definitions are the same when initial state, states, rules (merged, in order) and terminal
-- states are.
local function same_definition(a, b)
  if a.initialState ~= b.initialState or not same_list(a.states, b.states)
      or not same_list(a.terminalStates, b.terminalStates) or #a.transitions ~= #b.transitions then
    return false
  end
  for i, rule in ipairs(a.transitions) do
    if rule.from ~= b.transitions[i].from or not same_list(rule.to, b.transitions[i].to) then return false end
  end
  return true
end

--[[ machine_define: define a machine, or a new version of it.
  KEYS[1] machine hash   KEYS[2] machine name set
  ARGV[1] name   ARGV[2] definition JSON {initialState, states, transitions:[{from,to:[...]}],
          terminalStates (optional: default, the states with no outgoing transition)}
  Reply: the stored definition {name, version, initialState, states, transitions, terminalStates};
  a definition identical to the current version (after merging rules and defaulting terminal
  states) adds no version: the reply is the current one
  Errors: BAD_USER_INPUT (invalid definition, the built-in 'order' machine, or a new machine beyond
          MAX_MACHINES: machine_names reads the whole name set, so it stays one page), STALE_KEYS
          (KEYS[1] holds another machine)
]]
register('machine_define', function(keys, args)
  local name = check_name(args[1], 'machine name')
  if name == ORDER_MACHINE then reject('BAD_USER_INPUT', 'the built-in order machine cannot be redefined') end
  local input = decode_json(args[2], 'definition')
  if type(input) ~= 'table' then reject('BAD_USER_INPUT', 'definition must be a JSON object') end
  if type(input.states) ~= 'table' or #input.states == 0 then reject('BAD_USER_INPUT', 'states must list at least one state') end
  if #input.states > MAX_STATES then reject('BAD_USER_INPUT', 'a machine has at most ' .. MAX_STATES .. ' states') end
  local known = {}
  for _, s in ipairs(input.states) do
    check_name(s, 'state name')
    if known[s] then reject('BAD_USER_INPUT', 'state ' .. s .. ' is listed twice') end
    known[s] = true
  end
  check_name(input.initialState, 'initialState')
  if not known[input.initialState] then reject('BAD_USER_INPUT', 'initialState ' .. input.initialState .. ' is not one of the states') end
  if type(input.transitions) ~= 'table' then reject('BAD_USER_INPUT', 'transitions must be a list') end
  -- rules merged by source state, targets in first-seen order
  local rules, rule_of, count = {}, {}, 0
  for _, rule in ipairs(input.transitions) do
    if type(rule) ~= 'table' or type(rule.to) ~= 'table' then reject('BAD_USER_INPUT', 'each transition needs from and to') end
    check_name(rule.from, 'transition from')
    if not known[rule.from] then reject('BAD_USER_INPUT', 'transition from unknown state ' .. rule.from) end
    local target = rule_of[rule.from]
    if not target then target = { from = rule.from, to = {} }; rules[#rules + 1] = target; rule_of[rule.from] = target end
    for _, to in ipairs(rule.to) do
      check_name(to, 'transition to')
      if not known[to] then reject('BAD_USER_INPUT', 'transition to unknown state ' .. to) end
      if not contains(target.to, to) then
        target.to[#target.to + 1] = to
        count = count + 1
      end
    end
  end
  if count > MAX_TRANSITIONS then reject('BAD_USER_INPUT', 'a machine has at most ' .. MAX_TRANSITIONS .. ' transitions') end
  local outgoing = {}
  local kept = {}
  for _, rule in ipairs(rules) do
    if #rule.to > 0 then outgoing[rule.from] = true; kept[#kept + 1] = rule end
  end
  local terminal = {}
  if input.terminalStates ~= nil and input.terminalStates ~= cjson.null then
    if type(input.terminalStates) ~= 'table' then reject('BAD_USER_INPUT', 'terminalStates must be a list') end
    for _, s in ipairs(input.terminalStates) do
      check_name(s, 'terminal state')
      if not known[s] then reject('BAD_USER_INPUT', 'terminal state ' .. s .. ' is not one of the states') end
      if outgoing[s] then reject('BAD_USER_INPUT', 'terminal state ' .. s .. ' has outgoing transitions') end
      if not contains(terminal, s) then terminal[#terminal + 1] = s end
    end
  else
    for _, s in ipairs(input.states) do
      if not outgoing[s] then terminal[#terminal + 1] = s end
    end
  end

  local current = load_machine(keys[1])
  if current then check_owner(current.name, name, 'machine') end
  if redis.call('SISMEMBER', keys[2], name) == 0 and redis.call('SCARD', keys[2]) >= MAX_MACHINES then
    reject('BAD_USER_INPUT', 'a tenant has at most ' .. MAX_MACHINES .. ' machines')
  end

  local version = tonumber(redis.call('HGET', keys[1], 'current') or '0') + 1
  local definition = {
    name = name, version = version, initialState = input.initialState, states = input.states,
    transitions = kept, terminalStates = terminal,
  }
  if current and same_definition(current, definition) then
    return redis.call('HGET', keys[1], 'v' .. fmt_int(current.version))
  end
  local text = cjson.encode(definition)
  store_machine_version(keys[1], definition, text)
  redis.call('SADD', keys[2], name)
  return text
end)

--[[ machine_ensure_order: create the built-in order machine when it is absent.
  KEYS[1] the order machine hash   KEYS[2] machine name set
  Reply: {"created": true|false}
]]
register('machine_ensure_order', function(keys, args)
  local current = load_machine(keys[1])
  if current then check_owner(current.name, ORDER_MACHINE, 'machine') end
  return cjson.encode({ created = ensure_order_machine(keys[1], keys[2]) })
end)

--[[ machine_get (no-writes): one version of a machine.
  KEYS[1] machine hash   ARGV[1] version, or '' for the current one
  Reply: the definition JSON, or null when absent
]]
register('machine_get', function(keys, args)
  local version = nil
  if args[1] ~= nil and args[1] ~= '' then version = fmt_int(check_int(args[1], 'version', 1, MAX_INT32)) end
  local v = version or redis.call('HGET', keys[1], 'current')
  if not v then return 'null' end
  return redis.call('HGET', keys[1], 'v' .. v) or 'null'
end, true)

--[[ machine_names (no-writes): every machine name of the tenant, sorted.
  KEYS[1] machine name set   Reply: JSON list of names
]]
register('machine_names', function(keys, args)
  local names = redis.call('SMEMBERS', keys[1])
  table.sort(names)
  if #names == 0 then return '[]' end
  return cjson.encode(names)
end, true)

--[[ wf_start: start a workflow in its machine's initial state.
  KEYS[1..8] the workflow key block (see lua/include/workflow.lua)
  ARGV[1..4] the event block   ARGV[5] workflow id   ARGV[6] machine name
  ARGV[7] metadata as JSON [[keyJson, valueJson], ...]
  Reply: the workflow. Events: WORKFLOW_TRANSITION {from: null, to: initial}
  Errors: BAD_USER_INPUT, NOT_FOUND (machine), ALREADY_EXISTS (id), STALE_KEYS (a key of the block
          belongs to another workflow or machine: nothing is written)
]]
register('wf_start', function(keys, args)
  local k = workflow_keys(keys, 1)
  local ctx = event_context(args)
  local id = check_id(args[5], 'workflow id')
  local machine_name = check_name(args[6], 'machine')
  if machine_name == ORDER_MACHINE then reject('BAD_USER_INPUT', 'orders are created by processOrder, not started directly') end
  local meta_pairs = parse_metadata_pairs(args[7])
  check_metadata_size(meta_pairs, 'metadata')
  local machine = machine_current(k.machine)
  if not machine then reject('NOT_FOUND', 'machine ' .. machine_name .. ' not found') end
  if redis.call('EXISTS', k.workflow) == 1 then
    check_owner(redis.call('HGET', k.workflow, 'id'), id, 'workflow')
    reject('ALREADY_EXISTS', 'workflow ' .. id .. ' already exists')
  end
  check_new_workflow_keys(k, id, machine_name, machine)
  local wf = create_workflow(k, ctx, id, machine_name, machine, 'workflow', meta_pairs, {}, now_ms())
  return workflow_reply(wf, entry_targets(machine.entry))
end)

--[[ wf_transition: move a workflow (or an order) to another state.
  KEYS[1..8] the workflow key block; KEYS[9] product stock, KEYS[10] account balance, KEYS[11]
  account order index for orders
  ARGV[1..4] the event block   ARGV[5] workflow id   ARGV[6] machine (routing)
  ARGV[7] order userId (routing, '' otherwise)   ARGV[8] order productId (routing, '' otherwise)
  ARGV[9] target state   ARGV[10] expected current state or ''   ARGV[11] expected version or ''
  ARGV[12] metadata pairs JSON (merged key by key)
  Reply: the workflow. Events: WORKFLOW_TRANSITION; for orders also ORDER_<STATE> on the orders
  channel; moving an order to cancelled or returned refunds totalCents and restocks its quantity.
  With a terminal retention (event block), a workflow reaching a terminal state leaves the listings
  (an order also its account's orders) and expires after it.
  Errors: BAD_USER_INPUT, NOT_FOUND, INVALID_TRANSITION, STATE_CONFLICT, VERSION_CONFLICT, STALE_KEYS
          (routing changed, or a key of the block belongs to another workflow, machine, product or
          account: nothing is written)
]]
register('wf_transition', function(keys, args)
  local k = workflow_keys(keys, 1)
  local ctx = event_context(args)
  local id = check_id(args[5], 'workflow id')
  local routing = { machine = args[6], userId = args[7], productId = args[8] }
  local to = check_name(args[9], 'target state')
  local expected_from, expected_version = nil, nil
  if args[10] ~= '' then expected_from = check_name(args[10], 'expected state') end
  if args[11] ~= '' then expected_version = check_int(args[11], 'expected version', 1, MAX_INT32) end
  local meta_pairs = parse_metadata_pairs(args[12])
  local wf = load_routed_workflow(k, id, routing)
  local plan = plan_transition(k, wf, { to = to, expected_from = expected_from, expected_version = expected_version, meta_pairs = meta_pairs })
  local _, allowed = apply_transition(k, ctx, plan, now_ms())
  return workflow_reply(wf, allowed)
end)

--[[ wf_get (no-writes): a workflow with its allowed next states.
  KEYS[1] workflow hash   KEYS[2] its machine hash   ARGV[1] machine name (routing)
  Reply: the workflow, or null. Errors: STALE_KEYS (the workflow belongs to another machine)
]]
register('wf_get', function(keys, args)
  local wf = hgetall_table(keys[1])
  if wf.id == nil then return 'null' end
  if wf.machine ~= args[1] then reject('STALE_KEYS', 'workflow ' .. wf.id .. ' belongs to machine ' .. wf.machine) end
  return stored_workflow_reply(wf, keys[2])
end, true)

--[[ wf_route (no-writes): the fields that never change and from which callers build KEYS.
  KEYS[1] workflow hash   Reply: {machine, kind, userId, productId} or null
]]
register('wf_route', function(keys, args)
  local r = redis.call('HMGET', keys[1], 'machine', 'kind', 'userId', 'productId')
  if not r[1] then return 'null' end
  return cjson.encode({ machine = r[1], kind = r[2], userId = r[3] or '', productId = r[4] or '' })
end, true)

--[[ wf_history (no-writes): a page of a workflow's history, oldest first.
  KEYS[1] history list   ARGV[1] the version of the last entry already seen (0: from the start;
  entry N holds version N, so this is a keyset position, stable as entries are appended)
  ARGV[2] page size
  Reply: {"entries": [{workflowId, from, to, at, version, metadata}, ...], "next": the last version
  of the page, or null on the last page
]]
register('wf_history', function(keys, args)
  local entries, next_offset = list_page(keys[1], args[1], args[2])
  return '{"entries":[' .. table.concat(entries, ',') .. '],"next":' .. next_offset .. '}'
end, true)

--[[ wf_list (no-writes): a page of workflow ids, most recently updated first.
  KEYS[1] one of the four indexes (all, all by state, machine, machine by state)
  ARGV[1] state prefix for the by-state indexes, or ''   ARGV[2] page size
  ARGV[3] cursor (the last member of the previous page) or ''
  Reply: {"items": [[id, machine], ...], "next": member or null}
]]
register('wf_list', function(keys, args)
  local prefix = ''
  if args[1] ~= '' then prefix = check_name(args[1], 'state') .. ':' end
  local size = check_int(args[2], 'page size', 1, 1000)
  local min = '[' .. prefix
  if args[3] ~= '' then
    local position = args[3]
    if position:sub(1, #prefix) ~= prefix or not position:sub(#prefix + 1):find('^%d%d%d%d%d%d%d%d%d%d%d%d%d:[^:]+:[^:]+$') then
      reject('BAD_USER_INPUT', 'cursor does not belong to this listing')
    end
    min = '(' .. position
  end
  local max = '+'
  if prefix ~= '' then max = '(' .. prefix:sub(1, -2) .. ';' end   -- ';' sorts right after ':'
  local members = redis.call('ZRANGEBYLEX', keys[1], min, max, 'LIMIT', 0, size + 1)
  local items, next_member = {}, nil
  for i = 1, math.min(#members, size) do
    local _, id, machine = members[i]:sub(#prefix + 1):match('^(%d+):([^:]+):([^:]+)$')
    items[#items + 1] = '[' .. cjson.encode(id) .. ',' .. cjson.encode(machine) .. ']'
  end
  if #members > size then next_member = members[size] end
  return '{"items":[' .. table.concat(items, ',') .. '],"next":' .. json_or_null(next_member) .. '}'
end, true)

register('workflows_version', function() return cjson.encode({ library = 'atomflow_workflows', version = LIBRARY_VERSION }) end, true)
