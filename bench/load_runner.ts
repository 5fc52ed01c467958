// Runs bench/load.ts as its own process and reads back its one-line JSON result.
import type { LoadConfig, LoadResult } from "./load.ts";

const LOAD_SCRIPT = new URL("./load.ts", import.meta.url).pathname;

/** One load run; throws with the generator's stderr when it printed no result. */
export async function runLoad(config: LoadConfig): Promise<LoadResult> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", LOAD_SCRIPT, JSON.stringify(config)],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const lines = new TextDecoder().decode(out.stdout).trim().split("\n");
  try {
    // JSON has no NaN: a percentile of an empty sample comes back as null.
    return JSON.parse(lines.at(-1) ?? "", (_k, v) => v === null ? NaN : v) as LoadResult;
  } catch {
    const stderr = new TextDecoder().decode(out.stderr).trim().split("\n").slice(-3).join(" | ");
    throw new Error(`Cannot run load (${config.mode}): exit ${out.code}: ${stderr}`);
  }
}
