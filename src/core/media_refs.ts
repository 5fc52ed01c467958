// Which media files a conversation names: stores answer it when a forget asks which of the
// forgotten follower's files other histories still need (their URLs carry the key).

/** Adds to `named` each of `keys` that the serialized history item `text` contains. */
export function collectNamed(text: string, keys: readonly string[], named: Set<string>): void {
  for (const key of keys) if (!named.has(key) && text.includes(key)) named.add(key);
}
