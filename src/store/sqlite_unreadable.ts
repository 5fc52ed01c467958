// Copies of journal segments that held a whole line no reader could take, kept beside the
// journal as `<segment>.log.unreadable` for whoever looks into the damage. They hold followers'
// messages as the journal did, so they follow the promises the tables keep: a follower forgotten
// has its lines taken out of them (also lines written before a forget later in the journal), and
// a copy goes once the history retention has passed since its newest commit (its mtime says
// when that was).

import { getLogger } from "@logtape/logtape";

const log = getLogger(["bridge", "store"]);

const US = "\x1f";
const SUFFIX = ".unreadable";
/** A forget's section of a line: `f`, then the follower as a JSON string (which holds no US). */
const FORGET = new RegExp(`${US}f${US}("(?:[^"\\\\${US}]|\\\\.)*")`, "g");

/** The copy kept of journal segment `path`. */
export const copyOf = (path: string): string => `${path}${SUFFIX}`;

/** The followers (as the JSON strings lines name them by) that `lines` forget. */
export function forgottenIn(lines: Iterable<string>): Set<string> {
  const ids = new Set<string>();
  for (const line of lines) for (const m of line.matchAll(FORGET)) ids.add(m[1]!);
  return ids;
}

/** Whether `line` names one of `ids` (JSON strings, as ids, frames and items write them). */
const namesAny = (line: string, ids: ReadonlySet<string>): boolean => {
  for (const id of ids) if (line.includes(id)) return true;
  return false;
};

/** The newest commit time (ms) among `lines` that say one; null when none does. */
function newestCommit(lines: string[]): number | null {
  let newest: number | null = null;
  for (const line of lines) {
    const first = line.indexOf(US);
    const t = Number(line.slice(first + 1, line.indexOf(US, first + 1)));
    if (first > 0 && Number.isFinite(t) && t > 0 && (newest === null || t > newest)) newest = t;
  }
  return newest;
}

/**
 * Keeps segment `path`'s `lines` (without newlines) as its copy, but those naming a follower in
 * `forgotten`, dated by the newest commit in it; false when it could not be written (logged:
 * the damage was, already).
 */
export function keepCopy(path: string, lines: string[], forgotten: ReadonlySet<string>): boolean {
  const kept = lines.filter((line) => !namesAny(line, forgotten));
  const copy = copyOf(path);
  try {
    Deno.writeTextFileSync(copy, kept.map((line) => `${line}\n`).join(""));
    const newest = newestCommit(kept);
    if (newest !== null) Deno.utimeSync(copy, new Date(newest), new Date(newest));
    return true;
  } catch (error) {
    log.warn("Cannot keep {copy}: {error}", { copy, error });
    return false;
  }
}

/** The copies in journal directory `dir`. */
function copiesIn(dir: string): string[] {
  try {
    return [...Deno.readDirSync(dir)].filter((e) => e.isFile && e.name.endsWith(SUFFIX))
      .map((e) => `${dir}/${e.name}`);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return [];
    throw error;
  }
}

/** Takes the lines naming the followers `followerIds` out of every copy in `dir`; each keeps
 * its date, so a forget does not make it live longer. */
export function forgetInCopies(dir: string, followerIds: Iterable<string>): void {
  for (const copy of copiesIn(dir)) forgetInCopy(copy, followerIds);
}

/** Takes the lines naming the followers `followerIds` out of the copy at `copy` (gone: none). */
export function forgetInCopy(copy: string, followerIds: Iterable<string>): void {
  const ids = new Set([...followerIds].map((id) => JSON.stringify(id)));
  if (ids.size === 0) return;
  let mtime: Date | null;
  let lines: string[];
  try {
    mtime = Deno.statSync(copy).mtime;
    lines = Deno.readTextFileSync(copy).split("\n");
  } catch (error) {
    // Gone past its retention since it was listed (or made).
    if (error instanceof Deno.errors.NotFound) return;
    throw error;
  }
  const kept = lines.filter((line) => !namesAny(line, ids));
  if (kept.length === lines.length) return;
  Deno.writeTextFileSync(copy, kept.join("\n"));
  if (mtime !== null) Deno.utimeSync(copy, mtime, mtime);
}

/** Deletes the copies in `dir` whose newest commit is `retentionMs` or more before `now` (ms):
 * the tables let go of those rows by then too. */
export function pruneCopies(dir: string, now: number, retentionMs: number): void {
  for (const copy of copiesIn(dir)) {
    const { mtime } = Deno.statSync(copy);
    if (mtime !== null && mtime.getTime() + retentionMs <= now) Deno.removeSync(copy);
  }
}
