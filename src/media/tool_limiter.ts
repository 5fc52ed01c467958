// How many ffmpeg and ffprobe processes the bridge runs at once: one limiter, made by the
// composition root and handed to every path that starts one (follower media, video covers,
// voice uploads), so a burst of any of them cannot take every core.

/** Runs tasks at most a fixed number at once; the rest wait in order. */
export interface ToolLimiter {
  /** Runs `task` when a slot is free, and frees the slot when it settles. */
  run<T>(task: () => Promise<T>): Promise<T>;
}

/** ffmpeg runs at once by default: two keep a 2-core machine answering WeChat in time. */
export const DEFAULT_MAX_TOOL_RUNS = 2;

/** Creates a limiter of `max` tasks at once. */
export function createToolLimiter(max: number = DEFAULT_MAX_TOOL_RUNS): ToolLimiter {
  let running = 0;
  const waiting: Array<() => void> = [];
  return {
    async run(task) {
      // A finishing task hands its slot straight to the next waiter, so none can jump the queue.
      if (running >= max) await new Promise<void>((resolve) => waiting.push(resolve));
      else running++;
      try {
        return await task();
      } finally {
        const next = waiting.shift();
        if (next) next();
        else running--;
      }
    },
  };
}
