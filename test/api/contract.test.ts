/**
 * The public contract (test/fixtures/public-contract.graphql, copied from the issue) against the
 * schema: every type, field, argument, input field and enum value it names exists with exactly the
 * same type and default. Checked twice: against the SDL the code prints (what schema.graphql holds)
 * and against what the running server answers to introspection (what clients actually see).
 */
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  astFromValue,
  buildClientSchema,
  buildSchema,
  getIntrospectionQuery,
  isEnumType,
  isInputObjectType,
  isInterfaceType,
  isObjectType,
  isScalarType,
  Kind,
  parse,
  print,
  type DocumentNode,
  type GraphQLArgument,
  type GraphQLInputField,
  type GraphQLSchema,
  type InputValueDefinitionNode,
  type IntrospectionQuery,
} from 'graphql';
import { printGraphQLSchema } from '../../src/graphql/schema.js';
import { startTestServer, type TestServer } from './harness.js';

const root = (path: string) => fileURLToPath(new URL(`../../${path}`, import.meta.url));

let t: TestServer;
let contract: DocumentNode;
let printedSdl: string;
const schemas: Record<'printed' | 'served', GraphQLSchema> = {} as never;

beforeAll(async () => {
  contract = parse(await readFile(root('test/fixtures/public-contract.graphql'), 'utf8'));
  printedSdl = await printGraphQLSchema();
  schemas.printed = buildSchema(printedSdl);
  t = await startTestServer();
  const res = await t.gql<IntrospectionQuery>(getIntrospectionQuery());
  expect(res.errors).toBeUndefined();
  schemas.served = buildClientSchema(res.data!);
});
afterAll(() => t?.close());

/** The default of an argument or input field as SDL text (`20`, `"x"`, `[A, B]`), or null. */
function servedDefault(value: GraphQLArgument | GraphQLInputField): string | null {
  if (value.defaultValue === undefined) return null;
  const ast = astFromValue(value.defaultValue, value.type);
  return ast ? print(ast) : null;
}

function contractDefault(node: InputValueDefinitionNode): string | null {
  return node.defaultValue ? print(node.defaultValue) : null;
}

/**
 * Every difference between the contract and `schema`, one readable line each ([] when it conforms).
 * Also returns how many items it checked, so a test can tell that the walk saw the whole contract.
 */
function compareWithContract(doc: DocumentNode, schema: GraphQLSchema): { problems: string[]; checked: number } {
  const problems: string[] = [];
  let checked = 0;
  const compareInputValue = (where: string, node: InputValueDefinitionNode, served: GraphQLArgument | GraphQLInputField | undefined) => {
    checked++;
    if (!served) return problems.push(`${where} is missing`);
    const want = print(node.type);
    if (String(served.type) !== want) problems.push(`${where} is ${String(served.type)}, contract says ${want}`);
    const wantDefault = contractDefault(node);
    const gotDefault = servedDefault(served);
    if (wantDefault !== gotDefault) problems.push(`${where} defaults to ${gotDefault ?? 'nothing'}, contract says ${wantDefault ?? 'nothing'}`);
  };

  for (const def of doc.definitions) {
    if (!('name' in def) || !def.name) {
      problems.push(`unexpected definition of kind ${def.kind} in the contract`);
      continue;
    }
    const name = def.name.value;
    const type = schema.getType(name);
    checked++;
    switch (def.kind) {
      case Kind.SCALAR_TYPE_DEFINITION:
        if (!isScalarType(type)) problems.push(`scalar ${name} is ${type ? 'not a scalar' : 'missing'}`);
        break;
      case Kind.ENUM_TYPE_DEFINITION: {
        if (!isEnumType(type)) {
          problems.push(`enum ${name} is ${type ? 'not an enum' : 'missing'}`);
          break;
        }
        for (const value of def.values ?? []) {
          checked++;
          if (!type.getValue(value.name.value)) problems.push(`enum value ${name}.${value.name.value} is missing`);
        }
        break;
      }
      case Kind.INPUT_OBJECT_TYPE_DEFINITION: {
        if (!isInputObjectType(type)) {
          problems.push(`input ${name} is ${type ? 'not an input type' : 'missing'}`);
          break;
        }
        const fields = type.getFields();
        for (const field of def.fields ?? []) compareInputValue(`input field ${name}.${field.name.value}`, field, fields[field.name.value]);
        break;
      }
      case Kind.OBJECT_TYPE_DEFINITION:
      case Kind.INTERFACE_TYPE_DEFINITION: {
        if (!isObjectType(type) && !isInterfaceType(type)) {
          problems.push(`type ${name} is ${type ? 'not an object type' : 'missing'}`);
          break;
        }
        const fields = type.getFields();
        for (const field of def.fields ?? []) {
          const where = `${name}.${field.name.value}`;
          const served = fields[field.name.value];
          checked++;
          if (!served) {
            problems.push(`field ${where} is missing`);
            continue;
          }
          const want = print(field.type);
          if (String(served.type) !== want) problems.push(`field ${where} is ${String(served.type)}, contract says ${want}`);
          for (const arg of field.arguments ?? []) {
            compareInputValue(`argument ${where}(${arg.name.value})`, arg, served.args.find((a) => a.name === arg.name.value));
          }
        }
        break;
      }
      default:
        problems.push(`the contract's ${def.kind} ${name} is not checked`);
    }
  }
  return { problems, checked };
}

describe('the public contract', () => {
  it('is the fragment from the issue, with every kind of definition in it', () => {
    const names = contract.definitions.map((d) => ('name' in d && d.name ? d.name.value : d.kind));
    // the fixture itself is what the test binds to; make sure the file holds all of it
    expect(names).toEqual(
      expect.arrayContaining(['DateTime', 'JSON', 'SafeInt', 'Workflow', 'Query', 'Mutation', 'Subscription', 'ScheduleTransitionInput', 'SagaOp']),
    );
    expect(contract.definitions).toHaveLength(34);
  });

  describe.each(['printed', 'served'] as const)('against the %s schema', (which) => {
    it('has every type, field, argument, input field and enum value with the same type and default', () => {
      const { problems, checked } = compareWithContract(contract, schemas[which]);
      expect(problems).toEqual([]);
      // 34 definitions, 101 fields, 42 arguments, 35 input fields, 11 enum values (counted by hand)
      expect(checked).toBe(223);
    });

    it('uses Query, Mutation and Subscription as its root types', () => {
      expect(schemas[which].getQueryType()?.name).toBe('Query');
      expect(schemas[which].getMutationType()?.name).toBe('Mutation');
      expect(schemas[which].getSubscriptionType()?.name).toBe('Subscription');
    });

    it('spells the paging defaults as the contract does', () => {
      // spot checks that would catch a comparison that silently ignores defaults
      const workflows = schemas[which].getQueryType()!.getFields().workflows!;
      expect(servedDefault(workflows.args.find((a) => a.name === 'first')!)).toBe('20');
      const history = (schemas[which].getType('Workflow') as import('graphql').GraphQLObjectType).getFields().history!;
      expect(servedDefault(history.args.find((a) => a.name === 'first')!)).toBe('50');
      expect(String(history.type)).toBe('HistoryPage!');
    });
  });

  it('reports a schema that differs from it', () => {
    // the checker must notice each kind of drift; otherwise the tests above could not fail
    const drifted = printedSdl
      .replace('workflows(after: String, first: Int = 20,', 'workflows(after: String, first: Int = 25,')
      .replace(/(type StateMachine \{[\s\S]*?)states: \[String!\]!/, '$1states: [String]!')
      .replace(/(enum SagaOp \{[\s\S]*?)SREM\n/, '$1')
      .replace(/(input TransitionWorkflowInput \{[\s\S]*?)expectedVersion: Int\n/, '$1expectedVersion: String\n')
      .replace('cancelScheduledTransition(id: ID!)', 'cancelScheduledTransition(id: String!)')
      .replace(/\n {2}executedAt: DateTime\n/, '\n');
    expect(drifted).not.toBe(printedSdl);
    const { problems } = compareWithContract(contract, buildSchema(drifted));
    expect(problems.sort()).toEqual(
      [
        'argument Query.workflows(first) defaults to 25, contract says 20',
        'field StateMachine.states is [String]!, contract says [String!]!',
        'enum value SagaOp.SREM is missing',
        'input field TransitionWorkflowInput.expectedVersion is String, contract says Int',
        'argument Mutation.cancelScheduledTransition(id) is String!, contract says ID!',
        'field ScheduledTransition.executedAt is missing',
      ].sort(),
    );
  });
});

describe('schema.graphql', () => {
  it('is exactly what the code prints (npm run schema:check)', async () => {
    const committed = await readFile(root('schema.graphql'), 'utf8');
    expect(committed).toBe(printedSdl);
  });

  it('describes the same API as the running server', () => {
    // every type the code prints is served, with the same fields
    for (const [name, type] of Object.entries(schemas.printed.getTypeMap())) {
      if (name.startsWith('__')) continue;
      const served = schemas.served.getType(name);
      expect(served?.constructor.name, name).toBe(type.constructor.name);
      if (isObjectType(type) || isInputObjectType(type)) {
        const fields = (served as typeof type).getFields();
        expect(Object.keys(fields).sort(), name).toEqual(Object.keys(type.getFields()).sort());
      }
    }
  });
});
