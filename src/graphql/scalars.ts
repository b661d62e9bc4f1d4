/**
 * The API's custom scalars (public contract): DateTime (ISO-8601, UTC), JSON (a JSON object only),
 * SafeInt (53-bit integers: every amount of money, in cents).
 */
import { GraphQLError, GraphQLScalarType } from 'graphql';
import { DateTimeResolver, JSONObjectResolver, SafeIntResolver } from 'graphql-scalars';

export const DateTimeScalar = new GraphQLScalarType({
  ...DateTimeResolver.toConfig(),
  name: 'DateTime',
  description: 'An ISO-8601 date-time in UTC, e.g. 2026-11-28T09:30:00.000Z.',
  // Always answer in UTC with milliseconds, whatever offset the client sent.
  serialize(value) {
    const date = value instanceof Date ? value : new Date(DateTimeResolver.serialize(value) as unknown as Date);
    return date.toISOString();
  },
});

/** Runs a graphql-scalars parser, naming this scalar (JSON) in its error rather than JSONObject. */
function asJsonObject<A extends unknown[]>(parse: (...args: A) => unknown): (...args: A) => unknown {
  return (...args: A) => {
    try {
      return parse(...args);
    } catch {
      throw new GraphQLError('JSON must be a JSON object (not an array, string, number or null)');
    }
  };
}

/** graphql-scalars' JSON accepts any value; atomflow's metadata is always a JSON object. */
const jsonObjectConfig = JSONObjectResolver.toConfig();
export const JSONScalar = new GraphQLScalarType({
  ...jsonObjectConfig,
  name: 'JSON',
  description: 'A JSON object (not an array, string or number).',
  parseValue: asJsonObject(jsonObjectConfig.parseValue!),
  parseLiteral: asJsonObject(jsonObjectConfig.parseLiteral!),
});

export const SafeIntScalar = SafeIntResolver;
