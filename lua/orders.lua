#!lua name=atomflow_orders
-- include: core, orders, workflow
-- Inventory, balances and orders. The loader inserts the parts named above (lua/include/) after
-- line 1; see lua/include/workflow.lua for the workflow key block and lua/include/core.lua for the
-- event ARGV block.
--
-- Stock is a hash per product {id, stock} (a count within 2^31 - 1), a balance a hash per account
-- {id, balanceCents} (integer cents within 10^13); the stored id proves a key belongs to its id. An order is a workflow of the built-in 'order' machine whose hash
-- also holds userId, productId, quantity, unitPriceCents and totalCents; its transitions (and the
-- refund on cancelled/returned, lua/include/orders.lua) go through wf_transition in lua/workflows.lua.

local LIBRARY_VERSION = '3'

-- Idempotent requests (depositFunds, restockProduct with a requestId): a request hash
-- {id, request, reply} keeps what was asked (function and arguments) and the first reply, for the
-- TTL the caller passes. The same request again answers that reply and applies nothing; another
-- request under the same id is IDEMPOTENCY_CONFLICT. Returns the stored reply, or nil.

local function request_args(keys, args, first_arg)
  local request_id = args[first_arg]
  if request_id == nil or request_id == '' then
    if keys[2] ~= nil then reject('BAD_USER_INPUT', 'a request key needs a requestId') end
    return nil
  end
  check_id(request_id, 'requestId')
  if keys[2] == nil then reject('BAD_USER_INPUT', 'a requestId needs its request key') end
  return { key = keys[2], id = request_id, ttl = check_int(args[first_arg + 1], 'request TTL', 1, MAX_RETENTION_MS) }
end

local function replay_request(req, request_text)
  if not req then return nil end
  local stored = redis.call('HMGET', req.key, 'id', 'request', 'reply')
  if not stored[1] then return nil end
  check_owner(stored[1], req.id, 'request')
  if stored[2] ~= request_text then
    reject('IDEMPOTENCY_CONFLICT', 'requestId ' .. req.id .. ' was already used for another request')
  end
  return stored[3]
end

local function remember_request(req, request_text, reply)
  if not req then return end
  redis.call('HSET', req.key, 'id', req.id, 'request', request_text, 'reply', reply)
  redis.call('PEXPIRE', req.key, req.ttl)
end

--[[ product_restock: add units to a product's stock (creating the product when it has none).
  KEYS[1] product stock   KEYS[2] request hash (only with a requestId)
  ARGV[1] product id   ARGV[2] quantity (integer 1..2^31-1)
  ARGV[3] requestId or '' (optional)   ARGV[4] how long the request is remembered, in ms
  Reply: {id, stock}; with a requestId seen before for the same product and quantity, the first
  reply, and nothing is added
  Errors: BAD_USER_INPUT (bad id or quantity, or the resulting stock would exceed 2^31-1),
          IDEMPOTENCY_CONFLICT (the requestId was used for another request), STALE_KEYS (KEYS[1]
          belongs to another product, KEYS[2] to another requestId)
]]
register('product_restock', function(keys, args)
  local id = check_id(args[1], 'product id')
  local quantity = check_int(args[2], 'quantity', 1, MAX_INT32)
  local req = request_args(keys, args, 3)
  local request_text = 'product_restock ' .. id .. ' ' .. fmt_int(quantity)
  local replayed = replay_request(req, request_text)
  if replayed then return replayed end
  local stored = redis.call('HMGET', keys[1], 'id', 'stock')
  check_owner(stored[1], id, 'product stock')
  local stock = tonumber(stored[2] or '0')
  if stock + quantity > MAX_INT32 then
    reject('BAD_USER_INPUT', 'restocking ' .. fmt_int(quantity) .. ' would take product ' .. id .. ' above ' .. fmt_int(MAX_INT32) .. ' units (stock is ' .. fmt_int(stock) .. ')')
  end
  local new_stock = redis.call('HINCRBY', keys[1], 'stock', fmt_int(quantity))
  redis.call('HSET', keys[1], 'id', id)
  local reply = '{"id":' .. cjson.encode(id) .. ',"stock":' .. fmt_int(new_stock) .. '}'
  remember_request(req, request_text, reply)
  return reply
end)

--[[ account_deposit: add money to an account's balance (creating the account when it has none).
  KEYS[1] account balance   KEYS[2] request hash (only with a requestId)
  ARGV[1] account id   ARGV[2] amount in cents (integer 1..10^13)
  ARGV[3] requestId or '' (optional)   ARGV[4] how long the request is remembered, in ms
  Reply: {id, balanceCents}; with a requestId seen before for the same account and amount, the first
  reply, and nothing is added
  Errors: BAD_USER_INPUT (bad id or amount, or the resulting balance would exceed 10^13 cents),
          IDEMPOTENCY_CONFLICT (the requestId was used for another request), STALE_KEYS (KEYS[1]
          belongs to another account, KEYS[2] to another requestId)
]]
register('account_deposit', function(keys, args)
  local id = check_id(args[1], 'account id')
  local amount = check_int(args[2], 'amountCents', 1, MAX_MONEY_CENTS)
  local req = request_args(keys, args, 3)
  local request_text = 'account_deposit ' .. id .. ' ' .. fmt_int(amount)
  local replayed = replay_request(req, request_text)
  if replayed then return replayed end
  local stored = redis.call('HMGET', keys[1], 'id', 'balanceCents')
  check_owner(stored[1], id, 'account balance')
  local balance = tonumber(stored[2] or '0')
  if balance + amount > MAX_MONEY_CENTS then
    reject('BAD_USER_INPUT', 'depositing ' .. fmt_int(amount) .. ' cents would take account ' .. id .. ' above ' .. fmt_int(MAX_MONEY_CENTS) .. ' cents (balance is ' .. fmt_int(balance) .. ')')
  end
  local new_balance = redis.call('HINCRBY', keys[1], 'balanceCents', fmt_int(amount))
  redis.call('HSET', keys[1], 'id', id)
  local reply = '{"id":' .. cjson.encode(id) .. ',"balanceCents":' .. fmt_int(new_balance) .. '}'
  remember_request(req, request_text, reply)
  return reply
end)

--[[ product_get (no-writes): a product's stock.
  KEYS[1] product stock   ARGV[1] product id
  Reply: {id, stock}, or null when the product was never stocked
  Errors: BAD_USER_INPUT (bad id)
]]
register('product_get', function(keys, args)
  local id = check_id(args[1], 'product id')
  local stored = redis.call('HMGET', keys[1], 'id', 'stock')
  check_owner(stored[1], id, 'product stock')
  local stock = stored[2]
  if not stock then return 'null' end
  return '{"id":' .. cjson.encode(id) .. ',"stock":' .. stock .. '}'
end, true)

--[[ account_get (no-writes): an account's balance.
  KEYS[1] account balance   ARGV[1] account id
  Reply: {id, balanceCents}, or null when the account was never funded
  Errors: BAD_USER_INPUT (bad id)
]]
register('account_get', function(keys, args)
  local id = check_id(args[1], 'account id')
  local stored = redis.call('HMGET', keys[1], 'id', 'balanceCents')
  check_owner(stored[1], id, 'account balance')
  local balance = stored[2]
  if not balance then return 'null' end
  return '{"id":' .. cjson.encode(id) .. ',"balanceCents":' .. balance .. '}'
end, true)

--[[ order_process: place an order, idempotent by order id.
  KEYS[1..11] the workflow key block of the order (see lua/include/workflow.lua), machine = 'order',
              KEYS[9] product stock, KEYS[10] account balance, KEYS[11] the account's order index
  KEYS[12] machine name set
  ARGV[1..4] the event block   ARGV[5] order id   ARGV[6] user (account) id   ARGV[7] product id
  ARGV[8] quantity (integer 1..2^31-1)   ARGV[9] unit price in cents (integer 0..10^13)
  Checks, in this order and before any write: arguments (total = quantity * unitPriceCents at most
  10^13); an existing workflow with that id (not an order: ALREADY_EXISTS; an order with the same
  userId, productId, quantity and unitPriceCents: answered as it is now, nothing charged; other
  parameters: IDEMPOTENCY_CONFLICT); product and account known; stock; balance.
  Writes: the order machine when absent, stock - quantity, balance - total, the order workflow in
  state pending, the order in the account's order index (member '<inverted sequence>:<orderId>').
  Reply: the order's workflow (with its order fields and allowed transitions).
  Events: WORKFLOW_TRANSITION {from: null, to: pending} on the workflow channel, then
  ORDER_CONFIRMED {state: pending} on the orders channel (both appended to the event stream).
  Errors: BAD_USER_INPUT, ALREADY_EXISTS, IDEMPOTENCY_CONFLICT, NOT_FOUND (product or account),
  OUT_OF_STOCK, INSUFFICIENT_FUNDS, STALE_KEYS (a key belongs to another order, product, account or
  machine, or the history key is not empty: nothing is written)
]]
register('order_process', function(keys, args)
  local k = workflow_keys(keys, 1)
  local orders_key, machines_key = keys[11], keys[12]
  if k.stock == nil or k.balance == nil or orders_key == nil or machines_key == nil then
    reject('BAD_USER_INPUT', 'order_process needs 12 keys')
  end
  local ctx = event_context(args)
  local id = check_id(args[5], 'order id')
  local user_id = check_id(args[6], 'userId')
  local product_id = check_id(args[7], 'productId')
  local quantity = check_int(args[8], 'quantity', 1, MAX_INT32)
  local unit_price = check_int(args[9], 'unitPriceCents', 0, MAX_MONEY_CENTS)
  local total = quantity * unit_price
  if total > MAX_MONEY_CENTS then
    reject('BAD_USER_INPUT', 'order total would exceed ' .. fmt_int(MAX_MONEY_CENTS) .. ' cents')
  end

  local existing = hgetall_table(k.workflow)
  if existing.id ~= nil then
    check_owner(existing.id, id, 'workflow')
    if existing.kind ~= 'order' then
      reject('ALREADY_EXISTS', 'workflow ' .. id .. ' already exists and is not an order')
    end
    if existing.userId ~= user_id or existing.productId ~= product_id
        or existing.quantity ~= fmt_int(quantity) or existing.unitPriceCents ~= fmt_int(unit_price) then
      reject('IDEMPOTENCY_CONFLICT', 'order ' .. id .. ' already exists with different parameters')
    end
    return stored_workflow_reply(existing, k.machine)
  end
  -- a hash without an id is not a workflow atomflow wrote: not this order's key
  if next(existing) ~= nil then reject('STALE_KEYS', 'workflow ' .. id .. ' changed') end

  local machine = machine_current(k.machine)
  check_new_workflow_keys(k, id, ORDER_MACHINE, machine)
  local stock_hash = redis.call('HMGET', k.stock, 'id', 'stock')
  check_owner(stock_hash[1], product_id, 'product stock')
  local stock = stock_hash[2]
  if not stock then reject('NOT_FOUND', 'product ' .. product_id .. ' not found') end
  local balance_hash = redis.call('HMGET', k.balance, 'id', 'balanceCents', 'orderSeq')
  check_owner(balance_hash[1], user_id, 'account balance')
  local balance = balance_hash[2]
  if not balance then reject('NOT_FOUND', 'account ' .. user_id .. ' not found') end
  if tonumber(stock) < quantity then
    reject('OUT_OF_STOCK', 'product ' .. product_id .. ' has ' .. stock .. ' in stock, ' .. fmt_int(quantity) .. ' requested')
  end
  if tonumber(balance) < total then
    reject('INSUFFICIENT_FUNDS', 'account ' .. user_id .. ' has ' .. balance .. ' cents, the order costs ' .. fmt_int(total))
  end
  -- the account's order count: the order's place in the account's order index
  local seq = tonumber(balance_hash[3] or '0') + 1

  if not machine then
    ensure_order_machine(k.machine, machines_key)
    machine = machine_current(k.machine)
    if not machine then reject('NOT_FOUND', 'the order machine has no definition of its current version') end
  end
  redis.call('HINCRBY', k.stock, 'stock', fmt_int(-quantity))
  -- one HSET for the new balance and count (the script is atomic: same as two HINCRBYs)
  redis.call('HSET', k.balance, 'balanceCents', fmt_int(tonumber(balance) - total), 'orderSeq', fmt_int(seq))
  local extra = {
    'userId', user_id, 'productId', product_id, 'quantity', fmt_int(quantity),
    'unitPriceCents', fmt_int(unit_price), 'totalCents', fmt_int(total), 'accountSeq', fmt_int(seq),
  }
  local wf = create_workflow(k, ctx, id, ORDER_MACHINE, machine, 'order', {}, extra, now_ms())
  redis.call('ZADD', orders_key, '0', account_order_member(seq, id))
  emit_order_event(k, ctx, 'ORDER_CONFIRMED', wf)
  return workflow_reply(wf, entry_targets(machine.entry))
end)

--[[ account_orders (no-writes): a page of an account's order ids, newest first.
  KEYS[1] the account's order index   ARGV[1] cursor (the last member of the previous page) or ''
  ARGV[2] page size (1..1000)
  Reply: {"ids": [orderId, ...], "next": member or null}. The cursor is a position in the order of
  the index, not an offset: orders placed meanwhile go before the first page and never shift a page.
  Errors: BAD_USER_INPUT (cursor or page size)
]]
register('account_orders', function(keys, args)
  local size = check_int(args[2], 'page size', 1, 1000)
  local min = '-'
  if args[1] ~= '' then
    if not args[1]:find('^%d%d%d%d%d%d%d%d%d%d%d%d%d:[^:]+$') then reject('BAD_USER_INPUT', 'cursor does not belong to this listing') end
    min = '(' .. args[1]
  end
  local members = redis.call('ZRANGEBYLEX', keys[1], min, '+', 'LIMIT', 0, size + 1)
  local parts = {}
  for i = 1, math.min(#members, size) do parts[i] = cjson.encode(members[i]:sub(15)) end
  local next_member = nil
  if #members > size then next_member = members[size] end
  return '{"ids":[' .. table.concat(parts, ',') .. '],"next":' .. json_or_null(next_member) .. '}'
end, true)

register('orders_version', function() return cjson.encode({ library = 'atomflow_orders', version = LIBRARY_VERSION }) end, true)
