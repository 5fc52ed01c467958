// `GET B/media_url?url=…`: an agent renews a media URL the bridge signed (expired or not) and
// gets the same file's URL with a fresh lifetime; the console asks when a picture stops loading.

import { HttpError } from "../http/http_error.ts";
import { json } from "../http/router.ts";
import { renewMediaUrl, type UrlSigner } from "./signed_url.ts";

/** Answers a renewal: 200 `{media_url, expires_at}`, 400 without a URL, 403 for a foreign one. */
export function renewMediaUrlRoute(url: URL, signer: UrlSigner): Response {
  const old = url.searchParams.get("url");
  if (!old) throw new HttpError(400, "Missing url: the media URL to renew");
  const renewed = renewMediaUrl(signer, old);
  if (renewed === null) {
    throw new HttpError(403, "Cannot renew url: it is not a media URL signed by this bridge");
  }
  const expiresAt = Number(new URL(renewed, "http://x").searchParams.get("e"));
  return json({ media_url: renewed, expires_at: expiresAt });
}
