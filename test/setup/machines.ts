/** State machine definitions the tests share. */

/** A document review machine: draft -> review -> (draft | published) -> archived (terminal). */
export function documentMachine(name = 'doc') {
  return {
    name,
    initialState: 'draft',
    states: ['draft', 'review', 'published', 'archived'],
    transitions: [
      { from: 'draft', to: ['review'] },
      { from: 'review', to: ['draft', 'published'] },
      { from: 'published', to: ['archived'] },
    ],
  };
}
