// Who gets a follower that has no agent: its last agent if online and under capacity, else
// the online agent with the fewest open contacts under capacity. One rule for every store.

import type { AgentRecord } from "./store.ts";

/** Picks an online agent for a follower, or null when none can take it. */
export function chooseAgent(
  lastAgent: string | null,
  online: Iterable<string>,
  agents: ReadonlyMap<string, AgentRecord>,
): string | null {
  const fits = (id: string): boolean => {
    const r = agents.get(id);
    return !r || r.capacity === null || r.load < r.capacity;
  };
  let best: string | null = null;
  let bestLoad = Infinity;
  for (const id of online) {
    if (!fits(id)) continue;
    if (id === lastAgent) return id;
    const load = agents.get(id)?.load ?? 0;
    if (load < bestLoad || (load === bestLoad && best !== null && id < best)) {
      best = id;
      bestLoad = load;
    }
  }
  return best;
}
