import { Field, ID, Int, ObjectType } from 'type-graphql';

@ObjectType()
export class TransitionRule {
  @Field(() => String)
  from!: string;

  @Field(() => [String])
  to!: string[];
}

@ObjectType({ description: 'A state machine definition, one version of it.' })
export class StateMachine {
  @Field(() => ID)
  name!: string;

  @Field(() => Int)
  version!: number;

  @Field(() => String)
  initialState!: string;

  @Field(() => [String])
  states!: string[];

  @Field(() => [String], { description: 'States with no way out.' })
  terminalStates!: string[];

  @Field(() => [TransitionRule])
  transitions!: TransitionRule[];
}
