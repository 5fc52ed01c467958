// The key media URLs are signed with. It must outlive restarts (history keeps the URLs) and be
// the same on every instance: derived from AGENT_SECRET when there is one, else kept in a file
// under DATA_DIR, made on first start.

import { createHmac } from "node:crypto";

/** Loads (or creates) the media URL key. */
export async function loadMediaSecret(dataDir: string, agentSecret?: string): Promise<Uint8Array> {
  if (agentSecret) {
    return new Uint8Array(
      createHmac("sha256", agentSecret).update("bridge media urls v1").digest(),
    );
  }
  const path = `${dataDir}/media-url.key`;
  try {
    const bytes = await Deno.readFile(path);
    if (bytes.byteLength >= 32) return bytes;
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  await Deno.mkdir(dataDir, { recursive: true });
  const key = crypto.getRandomValues(new Uint8Array(32));
  await Deno.writeFile(path, key, { mode: 0o600 });
  return key;
}
