// `GET B/media_url?url=…`: an agent renews a media URL the bridge signed (expired or not) and
// gets the same file's URL with a fresh lifetime; the console asks when a picture stops loading.

import { HttpError } from "../http/http_error.ts";
import { json } from "../http/router.ts";
import { renewMediaUrl, type UrlSigner } from "./signed_url.ts";
import type { MediaStorage } from "./storage.ts";

/**
 * Answers a renewal: 200 `{media_url, expires_at}`, 400 without a URL, 403 for a foreign one,
 * 404 for a file `storage` does not hold.
 */
export async function renewMediaUrlRoute(
  url: URL,
  signer: UrlSigner,
  storage: Pick<MediaStorage, "stat">,
): Promise<Response> {
  const old = url.searchParams.get("url");
  if (!old) throw new HttpError(400, "Missing url: the media URL to renew");
  const renewed = renewMediaUrl(signer, old);
  if (renewed === null) {
    throw new HttpError(403, "Cannot renew url: it is not a media URL signed by this bridge");
  }
  const fresh = new URL(renewed, "http://x");
  // Every account of ACCOUNTS_FILE signs with the key AGENT_SECRET derives: the signature alone
  // would let an agent of one account renew, and so open, a picture of another's follower.
  const key = fresh.pathname.slice(fresh.pathname.lastIndexOf("/") + 1);
  // Fresh: a forgotten follower's file deleted by another instance must not be renewed.
  if (await storage.stat(key, { fresh: true }) === null) {
    throw new HttpError(404, "Cannot renew url: this account holds no such file");
  }
  const expiresAt = Number(fresh.searchParams.get("e"));
  return json({ media_url: renewed, expires_at: expiresAt });
}
