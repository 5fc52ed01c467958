// How many files one agent has the bridge hold in memory at once: its uploads (`POST B/upload`)
// and its replies' `media_url` downloads, counted together, so neither path is a way around the
// other's limit. One counter per account bridge, made by the composition root.

/** Files one agent may have under way at once. Each is held whole in memory (10 MB, and copies
 * while it is stored or uploaded): a program that sent 50 uploads at once took the bridge from
 * 70 MB to 800 MB. The console sends one at a time a tab. */
export const FILES_PER_AGENT = 4;

/** Counts each agent's files under way. */
export interface AgentFiles {
  /** Takes a place for one of the agent's files: its release, or null when it has its
   * FILES_PER_AGENT already (answer 429 with Retry-After then). */
  take(agentId: string): (() => void) | null;
}

/** Creates the counter. */
export function createAgentFiles(max: number = FILES_PER_AGENT): AgentFiles {
  const underWay = new Map<string, number>();
  return {
    take(agentId) {
      const running = underWay.get(agentId) ?? 0;
      if (running >= max) return null;
      underWay.set(agentId, running + 1);
      let released = false;
      return () => {
        // A release called twice (a path that fails after it gave its place back) frees one.
        if (released) return;
        released = true;
        const left = (underWay.get(agentId) ?? 1) - 1;
        if (left > 0) underWay.set(agentId, left);
        else underWay.delete(agentId);
      };
    },
  };
}

/** The sentence a refused agent is told, for the path it used. */
export function tooManyFiles(agentId: string, doing: string): string {
  return `Cannot ${doing}: agent ${agentId} has ${FILES_PER_AGENT} uploads and media_url replies under way; send the next once one is done`;
}
