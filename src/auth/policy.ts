/**
 * Authorization, decided here and nowhere else: one rule per root field (query, mutation,
 * subscription), keyed `Type.field`. applyPolicy wraps every root field of the built schema so the
 * rule runs before its resolver (or, for a subscription, before it subscribes), and writes the rule
 * into the field's description, so the schema says which roles each operation needs.
 *
 * Roles: `admin` everything in its tenant; `service` everything except defineStateMachine; `user`
 * (sub = account id) only what names its own account, as each rule's `user` check says. A root
 * field without a rule is for admin and service (fail closed for users).
 *
 * Nested fields need no rule: a user only ever reaches its own account and orders, and the tenant
 * comes from the token (src/graphql/context.ts), so nothing can leave it.
 */
import { GraphQLError, type GraphQLField, type GraphQLSchema } from 'graphql';
import type { GraphQLContext } from '../graphql/context.js';
import type { Role } from './tokens.js';

interface UserScope {
  /** Shown in the schema: what a user may do with this field. */
  describe: string;
  /** True when the user's call is within scope; may fill in an omitted argument (orderEvents). */
  allows(args: Record<string, any>, ctx: GraphQLContext): boolean | Promise<boolean>;
}

export interface Rule {
  roles: readonly Role[];
  /** Required when `roles` includes `user`. */
  user?: UserScope;
}

const STAFF: Rule = { roles: ['admin', 'service'] };

/** A workflow that is an order of this user's account (route: the workflow's never-changing fields). */
async function ownOrder(ctx: GraphQLContext, id: unknown, allowMissing: boolean): Promise<boolean> {
  if (typeof id !== 'string') return false;
  const route = await ctx.engine.context.route(ctx.tenant, id);
  if (!route) return allowMissing;
  return route.kind === 'order' && route.userId === ctx.principal.sub;
}

export const POLICY: Record<string, Rule> = {
  'Query.account': {
    roles: ['admin', 'service', 'user'],
    user: { describe: 'its own account (id = sub)', allows: (args, ctx) => args.id === ctx.principal.sub },
  },
  'Query.order': {
    roles: ['admin', 'service', 'user'],
    user: { describe: 'its own orders', allows: (args, ctx) => ownOrder(ctx, args.id, true) },
  },
  'Query.product': STAFF,
  'Query.stateMachine': STAFF,
  'Query.stateMachines': STAFF,
  'Query.workflow': STAFF,
  'Query.workflows': STAFF,
  'Query.saga': STAFF,
  'Query.dataHash': STAFF,
  'Query.dataSet': STAFF,
  'Query.scheduledTransition': STAFF,
  'Query.scheduledTransitions': STAFF,

  'Mutation.defineStateMachine': { roles: ['admin'] },
  'Mutation.startWorkflow': STAFF,
  'Mutation.transitionWorkflow': {
    roles: ['admin', 'service', 'user'],
    user: {
      describe: 'cancelling its own orders (to: "cancelled")',
      allows: (args, ctx) => args.input?.to === 'cancelled' && ownOrder(ctx, args.input?.id, false),
    },
  },
  'Mutation.restockProduct': STAFF,
  'Mutation.depositFunds': STAFF,
  'Mutation.processOrder': {
    roles: ['admin', 'service', 'user'],
    user: { describe: 'its own account (userId = sub)', allows: (args, ctx) => args.input?.userId === ctx.principal.sub },
  },
  'Mutation.executeSaga': STAFF,
  'Mutation.scheduleTransition': STAFF,
  'Mutation.cancelScheduledTransition': STAFF,

  'Subscription.orderEvents': {
    roles: ['admin', 'service', 'user'],
    user: {
      describe: 'its own account (userId = sub, or omitted)',
      allows: (args, ctx) => {
        args.userId ??= ctx.principal.sub;
        return args.userId === ctx.principal.sub;
      },
    },
  },
  'Subscription.workflowEvents': STAFF,
};

export function ruleFor(type: string, field: string): Rule {
  return POLICY[`${type}.${field}`] ?? STAFF;
}

function describeRule(rule: Rule): string {
  const staff = rule.roles.filter((r) => r !== 'user').join(', ');
  return rule.roles.includes('user') && rule.user ? `Roles: ${staff}; user: ${rule.user.describe}.` : `Roles: ${staff}.`;
}

/** Throws FORBIDDEN unless the principal's role and (for a user) the arguments satisfy the rule. */
export async function authorize(rule: Rule, name: string, args: Record<string, any>, ctx: GraphQLContext): Promise<void> {
  const { role } = ctx.principal;
  if (!rule.roles.includes(role)) {
    throw new GraphQLError(`role ${role} may not use ${name}`, { extensions: { code: 'FORBIDDEN' } });
  }
  if (role === 'user' && !(rule.user && (await rule.user.allows(args, ctx)))) {
    throw new GraphQLError(`role user may use ${name} only for ${rule.user?.describe ?? 'nothing'}`, { extensions: { code: 'FORBIDDEN' } });
  }
}

/** Wraps every root field with its rule and documents the rule in the field's description. */
export function applyPolicy(schema: GraphQLSchema): GraphQLSchema {
  for (const type of [schema.getQueryType(), schema.getMutationType(), schema.getSubscriptionType()]) {
    if (!type) continue;
    for (const field of Object.values(type.getFields()) as GraphQLField<unknown, GraphQLContext>[]) {
      const rule = ruleFor(type.name, field.name);
      const name = `${type.name}.${field.name}`;
      field.description = field.description ? `${field.description}\n${describeRule(rule)}` : describeRule(rule);
      if (type === schema.getSubscriptionType()) {
        const subscribe = field.subscribe;
        if (!subscribe) throw new Error(`${name} has no subscribe to guard`);
        field.subscribe = async (source, args, ctx, info) => {
          await authorize(rule, name, args, ctx);
          return subscribe(source, args, ctx, info);
        };
      } else {
        const resolve = field.resolve;
        if (!resolve) throw new Error(`${name} has no resolver to guard`);
        field.resolve = async (source, args, ctx, info) => {
          await authorize(rule, name, args, ctx);
          return resolve(source, args, ctx, info);
        };
      }
    }
  }
  return schema;
}
