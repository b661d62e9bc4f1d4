/** The board's GraphQL documents: only the public API. */

export const MACHINES = /* GraphQL */ `
  query BoardMachines {
    stateMachines { name version states terminalStates }
  }
`;

/** Ids only, to count a machine's workflows in one state page by page. */
export const COUNT_PAGE = /* GraphQL */ `
  query BoardCount($machine: String!, $state: String!, $after: String) {
    workflows(machine: $machine, state: $state, first: 100, after: $after) { items { id } nextCursor }
  }
`;

export const WORKFLOW_PAGE = /* GraphQL */ `
  query BoardWorkflows($machine: String, $state: String, $after: String) {
    workflows(machine: $machine, state: $state, first: 20, after: $after) {
      items { id machine state version updatedAt }
      nextCursor
    }
  }
`;

export const WORKFLOW_HISTORY = /* GraphQL */ `
  query BoardHistory($id: ID!, $after: String) {
    workflow(id: $id) {
      id machine state version metadata createdAt updatedAt allowedTransitions
      history(first: 50, after: $after) { entries { from to at version metadata } nextCursor }
    }
  }
`;

const ORDER_FIELDS = 'id userId productId quantity unitPriceCents totalCents state createdAt workflow { updatedAt allowedTransitions }';

export const ORDER = /* GraphQL */ `
  query BoardOrder($id: ID!) { order(id: $id) { ${ORDER_FIELDS} } }
`;

/** The newest orders: the `order` machine's workflows, most recently updated first. */
export const RECENT_ORDER_IDS = /* GraphQL */ `
  query BoardRecentOrders { workflows(machine: "order", first: 20) { items { id } } }
`;

export function ordersByIds(ids: string[]): string {
  return `query BoardOrders { ${ids.map((id, i) => `o${i}: order(id: ${JSON.stringify(id)}) { ${ORDER_FIELDS} }`).join('\n')} }`;
}

export const MOVE_ORDER = /* GraphQL */ `
  mutation BoardMoveOrder($id: ID!, $to: String!) {
    transitionWorkflow(input: { id: $id, to: $to, metadata: { by: "board" } }) { id state }
  }
`;

/** Offered by servers that list scheduled transitions; the panel says so when this one does not. */
export const SCHEDULED_BY_STATUS = /* GraphQL */ `
  query BoardScheduled($status: ScheduleStatus!) {
    scheduledTransitions(status: $status, first: 20) { items { id workflowId to runAt status error executedAt } nextCursor }
  }
`;

export const SCHEDULED_ONE = /* GraphQL */ `
  query BoardScheduledOne($id: ID!) { scheduledTransition(id: $id) { id workflowId to runAt status error executedAt } }
`;

/** Offered by servers that list sagas; otherwise the panel looks sagas up by id. */
export const SAGAS = /* GraphQL */ `
  query BoardSagas { sagas(first: 20) { items { id status stepsCompleted failedStep error } nextCursor } }
`;

export const SAGA_ONE = /* GraphQL */ `
  query BoardSaga($id: ID!) { saga(id: $id) { id status stepsCompleted failedStep error } }
`;

export const WORKFLOW_EVENTS = /* GraphQL */ `
  subscription BoardWorkflowEvents($after: String) { workflowEvents(after: $after) { eventId workflowId machine from to version at } }
`;

export const ORDER_EVENTS = /* GraphQL */ `
  subscription BoardOrderEvents($after: String) { orderEvents(after: $after) { eventId type orderId userId state totalCents at } }
`;

export const QUERY_FIELDS = /* GraphQL */ `
  query BoardQueryFields { __type(name: "Query") { fields { name } } }
`;
