/**
 * What one operation may cost, checked before it runs, the same way over HTTP (an Apollo plugin in
 * src/server.ts) and WebSocket (graphql-ws onSubscribe): at most MAX_ROOT_FIELDS root fields (and
 * MAX_MUTATION_FIELDS for a mutation), MAX_ALIASES aliases, MAX_QUERY_DEPTH levels (introspection
 * fields aside, so the playground works), and a cost of at most MAX_QUERY_COST computed by
 * graphql-query-complexity: every object field costs 1 plus its children (scalar fields come with
 * their object), and a field with `first` costs 1 + first x its children (a page of `first` items,
 * each with its selection); `stateMachines` counts as its largest size, 1,000.
 */
import {
  GraphQLError,
  Kind,
  getNamedType,
  getOperationAST,
  isLeafType,
  parse,
  visit,
  type ASTNode,
  type DocumentNode,
  type FragmentDefinitionNode,
  type GraphQLSchema,
  type OperationDefinitionNode,
  type SelectionSetNode,
} from 'graphql';
import { getComplexity, simpleEstimator, type ComplexityEstimator } from 'graphql-query-complexity';
import type { LimitsConfig } from '../config.js';

export type QueryLimits = Pick<LimitsConfig, 'maxCost' | 'maxDepth' | 'maxAliases' | 'maxRootFields' | 'maxMutationFields'>;

/** Nodes graphql-query-complexity evaluates before it gives up (bounds the time the analysis takes). */
const MAX_QUERY_NODES = 10_000;
/** Tokens graphql-js parses before it gives up (parse option maxTokens): bounds parsing and validation. */
export const MAX_QUERY_TOKENS = 20_000;
export const PARSE_OPTIONS = { maxTokens: MAX_QUERY_TOKENS };

function tooComplex(message: string, extensions: Record<string, number> = {}): GraphQLError {
  return new GraphQLError(message, { extensions: { code: 'QUERY_TOO_COMPLEX', ...extensions, http: { status: 400 } } });
}

const ROOT_TYPES = new Set(['Query', 'Mutation', 'Subscription']);

/** Lists without `first`, by their largest size: a tenant has at most 1,000 machines (lua/workflows.lua). */
const UNPAGED_LISTS: Record<string, number> = { 'Query.stateMachines': 1000 };

/**
 * A page: `first` items, each costing its selection; an unpaged list: its largest size; a scalar
 * field below the root: nothing (it comes with its object). Other fields fall through to
 * simpleEstimator: 1 plus their selection.
 */
const pageEstimator: ComplexityEstimator = ({ type, field, args, childComplexity }) => {
  if (typeof args.first === 'number' && args.first > 0) return 1 + args.first * Math.max(childComplexity, 1);
  if (isLeafType(getNamedType(field.type)) && !ROOT_TYPES.has(type.name)) return 0;
  const size = UNPAGED_LISTS[`${type.name}.${field.name}`];
  if (size !== undefined) return 1 + size * Math.max(childComplexity, 1);
  return undefined;
};

interface Shape {
  rootFields: number;
  aliases: number;
  depth: number;
}

/** Root fields, aliases and depth of one operation, following fragments (validation ruled out cycles). */
function shapeOf(operation: OperationDefinitionNode, fragments: Map<string, FragmentDefinitionNode>): Shape {
  const shape: Shape = { rootFields: 0, aliases: 0, depth: 0 };
  const walk = (set: SelectionSetNode, depth: number, root: boolean, seen: ReadonlySet<string>) => {
    for (const selection of set.selections) {
      if (selection.kind === Kind.FIELD) {
        if (selection.name.value.startsWith('__')) continue; // introspection: bounded by the schema itself
        if (root) shape.rootFields++;
        if (selection.alias) shape.aliases++;
        shape.depth = Math.max(shape.depth, depth);
        if (selection.selectionSet) walk(selection.selectionSet, depth + 1, false, seen);
      } else if (selection.kind === Kind.INLINE_FRAGMENT) {
        walk(selection.selectionSet, depth, root, seen);
      } else {
        const name = selection.name.value;
        const fragment = fragments.get(name);
        if (fragment && !seen.has(name)) walk(fragment.selectionSet, depth, root, new Set([...seen, name]));
      }
    }
  };
  walk(operation.selectionSet, 1, true, new Set());
  return shape;
}

/**
 * QUERY_TOO_COMPLEX when the operation has too many root or mutation fields, aliases or levels, else
 * null. Needs no schema: it runs right after parsing, before validation spends time on the document.
 */
export function checkShape(document: DocumentNode, operationName: string | null | undefined, limits: QueryLimits): GraphQLError | null {
  const operation = getOperationAST(document, operationName);
  if (!operation) return null;
  const fragments = new Map<string, FragmentDefinitionNode>();
  for (const definition of document.definitions) {
    if (definition.kind === Kind.FRAGMENT_DEFINITION) fragments.set(definition.name.value, definition);
  }
  const shape = shapeOf(operation, fragments);
  if (operation.operation === 'mutation' && shape.rootFields > limits.maxMutationFields) {
    return tooComplex(`${shape.rootFields} mutation fields exceed the limit of ${limits.maxMutationFields} per operation (MAX_MUTATION_FIELDS)`, {
      limit: limits.maxMutationFields,
    });
  }
  if (shape.rootFields > limits.maxRootFields) {
    return tooComplex(`${shape.rootFields} root fields exceed the limit of ${limits.maxRootFields} (MAX_ROOT_FIELDS)`, { limit: limits.maxRootFields });
  }
  if (shape.aliases > limits.maxAliases) {
    return tooComplex(`${shape.aliases} aliases exceed the limit of ${limits.maxAliases} (MAX_ALIASES)`, { limit: limits.maxAliases });
  }
  if (shape.depth > limits.maxDepth) {
    return tooComplex(`query depth ${shape.depth} exceeds the limit of ${limits.maxDepth} (MAX_QUERY_DEPTH)`, { limit: limits.maxDepth });
  }
  return null;
}

/** Below this size a document is cheap to validate whatever its shape (see checkDocumentShape). */
const SHAPE_CHECK_MIN_CHARS = 2048;

/**
 * For HTTP, before Apollo parses and validates: a large document is parsed here (maxTokens) and its
 * shape checked, so an oversized one costs a parse, not a validation (~8 µs a token). Documents that
 * do not parse are left to Apollo to report.
 */
export function checkDocumentShape(query: unknown, operationName: unknown, limits: QueryLimits): GraphQLError | null {
  if (typeof query !== 'string' || query.length < SHAPE_CHECK_MIN_CHARS) return null;
  let document: DocumentNode;
  try {
    document = parse(query, PARSE_OPTIONS);
  } catch {
    return null;
  }
  return checkShape(document, typeof operationName === 'string' ? operationName : null, limits);
}

/**
 * checkShape, then the cost: QUERY_TOO_COMPLEX when the operation exceeds a limit, else null. Runs
 * after validation; variables that do not coerce are left to execution to report.
 */
export function checkLimits(
  schema: GraphQLSchema,
  document: DocumentNode,
  operationName: string | null | undefined,
  variables: Record<string, unknown> | null | undefined,
  limits: QueryLimits,
): GraphQLError | null {
  const shapeError = checkShape(document, operationName, limits);
  if (shapeError) return shapeError;
  let cost: number;
  try {
    cost = getComplexity({
      schema,
      query: document,
      operationName: operationName ?? undefined,
      variables: variables ?? {},
      estimators: [pageEstimator, simpleEstimator({ defaultComplexity: 1 })],
      maxQueryNodes: MAX_QUERY_NODES,
    });
  } catch (err) {
    if (err instanceof GraphQLError && /maximum allowed number of nodes/.test(err.message)) {
      return tooComplex(`the query has more than ${MAX_QUERY_NODES} fields to evaluate`, { limit: MAX_QUERY_NODES });
    }
    return null; // variables that do not coerce: execution reports them
  }
  if (cost > limits.maxCost) {
    return tooComplex(`query cost ${cost} exceeds the limit of ${limits.maxCost} (MAX_QUERY_COST)`, { cost, limit: limits.maxCost });
  }
  return null;
}

/** Passing results kept per document (one per operation name and cost-relevant variable values). */
const MAX_PASSES_PER_DOCUMENT = 64;

/**
 * The variables an operation's cost can depend on: those in a `first` argument (pageEstimator) or in
 * a directive (@skip/@include drop fields). Everything else about the cost is fixed by the document.
 */
function costVariables(document: DocumentNode): string[] {
  const names = new Set<string>();
  const collect = (node: ASTNode) => visit(node, { Variable: (v) => void names.add(v.name.value) });
  visit(document, {
    Directive: (node) => void collect(node),
    Argument: (node) => void (node.name.value === 'first' && collect(node.value)),
  });
  return [...names].sort();
}

export interface OperationLimits {
  /** checkLimits for this schema and these limits, remembering which operations passed. */
  check(document: DocumentNode, operationName: string | null | undefined, variables: Record<string, unknown> | null | undefined): GraphQLError | null;
}

/**
 * checkLimits with memory: the same document (Apollo's document store and the WebSocket parse cache
 * hand back one DocumentNode per query text) with the same values of the variables its cost depends
 * on has the same cost, so a pass is remembered and the analysis (tens of µs, more than the rest of
 * a small request's GraphQL work) runs once per distinct operation rather than once per request.
 * Refusals are not remembered: they are computed again, so each carries its own error.
 */
export function createOperationLimits(schema: GraphQLSchema, limits: QueryLimits): OperationLimits {
  const passes = new WeakMap<DocumentNode, { variables: string[]; passed: Set<string> }>();
  return {
    check(document, operationName, variables) {
      let known = passes.get(document);
      if (!known) passes.set(document, (known = { variables: costVariables(document), passed: new Set() }));
      const key = JSON.stringify([operationName ?? null, ...known.variables.map((name) => variables?.[name] ?? null)]);
      if (known.passed.has(key)) return null;
      const refused = checkLimits(schema, document, operationName, variables, limits);
      if (!refused) {
        if (known.passed.size >= MAX_PASSES_PER_DOCUMENT) known.passed.clear();
        known.passed.add(key);
      }
      return refused;
    },
  };
}
