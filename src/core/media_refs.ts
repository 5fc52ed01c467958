// Which media files a conversation names: stores answer it when a forget asks which of the
// forgotten follower's files other histories still need (their URLs carry the key).

/** A key's sha256 part: the last 64 of a run of hex digits, a dot after it. */
const HEX_RUN = /[0-9a-f]{64,}/g;
const KEY = /^([0-9a-f]{64})\.(.+)$/;

/**
 * A collector of `keys` (sha256hex.ext) in serialized history items: it adds to `named` each
 * key a text contains, as `text.includes(key)` would, reading the text once however many keys
 * are asked (a key at a time made a 200-key forget stall SQLite's scan 650 ms a page).
 */
export function keyCollector(keys: readonly string[]): (text: string, named: Set<string>) => void {
  const byHash = new Map<string, string[]>();
  const other: string[] = [];
  for (const key of keys) {
    const m = KEY.exec(key);
    if (m === null) other.push(key);
    else byHash.set(m[1]!, [...(byHash.get(m[1]!) ?? []), m[2]!]);
  }
  return (text, named) => {
    for (const key of other) if (!named.has(key) && text.includes(key)) named.add(key);
    for (const run of text.matchAll(HEX_RUN)) {
      const end = run.index + run[0].length;
      if (text.charCodeAt(end) !== 0x2e) continue;
      const hash = run[0].slice(-64);
      for (const ext of byHash.get(hash) ?? []) {
        if (text.startsWith(ext, end + 1)) named.add(`${hash}.${ext}`);
      }
    }
  };
}
