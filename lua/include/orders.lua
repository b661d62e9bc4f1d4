-- atomflow order core: the built-in order machine, an account's order index, order events, and the
-- refund and restock an order gets when it is cancelled or returned. Included by the libraries that
-- move orders (workflows, orders, scheduler), after core and before workflow: lua/include/workflow.lua
-- calls these from its transition.

local ORDER_MACHINE = 'order'

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

-- An account's orders are a sorted set of score 0 read in lexicographic order, newest first:
-- members '<inverted sequence>:<orderId>', the sequence counting the account's orders (field
-- orderSeq of its balance hash, kept as accountSeq on the order), so orders placed in the same
-- millisecond keep their order.
local function account_order_member(seq, id)
  return string.format('%013d', 9999999999999 - seq) .. ':' .. id
end

-- Concatenated like the workflow event (lua/include/workflow.lua): ids and states need no escaping.
local function emit_order_event(k, ctx, event_type, wf)
  local body = '{"type":"' .. event_type .. '","orderId":"' .. wf.id
    .. '","userId":"' .. wf.userId .. '","state":"' .. wf.state
    .. '","totalCents":' .. wf.totalCents .. ',"at":' .. wf.updatedAt .. '}'
  return emit_event(k, ctx, ctx.orders_channel, event_type, body)
end

-- An order's keys (product stock, account balance, account order index) must be in the block and
-- belong to it, and the caller's routing (from which it built them) must match what is stored.
local function check_order_route(k, wf, routing)
  if wf.userId ~= routing.userId or wf.productId ~= routing.productId
      or k.stock == nil or k.balance == nil or k.account_orders == nil then
    reject('STALE_KEYS', 'order ' .. wf.id .. ' needs its product and account keys')
  end
  check_owner(redis.call('HGET', k.stock, 'id'), wf.productId, 'product stock')
  check_owner(redis.call('HGET', k.balance, 'id'), wf.userId, 'account balance')
end

-- Whether moving an order to `to` refunds it (cancelled, returned); checks, without writing, that
-- balance and stock stay within their limits.
local function plan_refund(k, wf, to)
  if to ~= 'cancelled' and to ~= 'returned' then return false end
  local balance = tonumber(redis.call('HGET', k.balance, 'balanceCents') or '0')
  local stock = tonumber(redis.call('HGET', k.stock, 'stock') or '0')
  if balance + tonumber(wf.totalCents) > MAX_MONEY_CENTS then
    reject('BAD_USER_INPUT', 'refund would take account ' .. wf.userId .. ' above ' .. fmt_int(MAX_MONEY_CENTS) .. ' cents')
  end
  if stock + tonumber(wf.quantity) > MAX_INT32 then
    reject('BAD_USER_INPUT', 'restock would take product ' .. wf.productId .. ' above ' .. MAX_INT32)
  end
  return true
end

-- The refund planned by plan_refund: totalCents back to the balance, quantity back in stock.
local function apply_refund(k, wf)
  redis.call('HINCRBY', k.balance, 'balanceCents', wf.totalCents)
  redis.call('HSET', k.balance, 'id', wf.userId)
  redis.call('HINCRBY', k.stock, 'stock', wf.quantity)
  redis.call('HSET', k.stock, 'id', wf.productId)
end
