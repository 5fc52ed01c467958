// What the tests of damaged journal lines share: the segment a running bridge writes, and a
// copy of one with a line damaged, written where the next bridge starts.

/** The journal segment being written under `dataDir` (it stays while the bridge runs). */
export function liveSegment(dataDir: string): { path: string; name: string; text: string } {
  const name = [...Deno.readDirSync(`${dataDir}/bridge.journal`)]
    .map((e) => e.name).filter((n) => n.endsWith(".log")).sort().at(-1)!;
  const path = `${dataDir}/bridge.journal/${name}`;
  return { path, name, text: Deno.readTextFileSync(path) };
}

/** Writes segment `name` as `lines` into `dataDir`'s new journal, line `at` whole (its newline
 * kept) but its agent's id no string, so no reader can take it; returns the segment's path. */
export function writeDamaged(dataDir: string, name: string, lines: string[], at: number): string {
  const damaged = [...lines];
  damaged[at] = damaged[at]!.replace('\x1fl\x1f"', '\x1fl\x1fx"');
  Deno.mkdirSync(`${dataDir}/bridge.journal`);
  const path = `${dataDir}/bridge.journal/${name}`;
  Deno.writeTextFileSync(path, damaged.join("\n"));
  return path;
}
