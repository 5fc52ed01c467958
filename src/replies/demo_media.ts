// Demo mode's stand-in for WeChat's media: without credentials, the follower simulator's uploads
// and agents' files get local media ids, and `media/get` is answered from them.

import { HttpError } from "../http/http_error.ts";
import { readBodyLimited } from "../http/limits.ts";
import { json } from "../http/router.ts";
import type { GetMedia } from "../media/pipeline.ts";
import { extensionOf } from "../media/serve.ts";
import { mediaUrlOf, type UrlSigner } from "../media/signed_url.ts";
import type { MediaStorage } from "../media/storage.ts";

/** What the demo media needs. */
export interface DemoMediaDeps {
  storage: MediaStorage;
  signer: UrlSigner;
  maxBytes: number;
}

/** Creates the demo media store: `getMedia` for the pipeline, `upload` for the simulator. */
export function createDemoMedia(deps: DemoMediaDeps) {
  const files = new Map<string, { bytes: Uint8Array; contentType: string }>();
  const getMedia: GetMedia = (id) => {
    const file = files.get(id);
    if (!file) return Promise.reject(new Error(`No demo media ${id}`));
    return Promise.resolve({ kind: "file" as const, ...file });
  };
  return {
    getMedia,
    /** Keeps a file under a demo media id. */
    remember(mediaId: string, bytes: Uint8Array, contentType: string): void {
      files.set(mediaId, { bytes, contentType });
    },
    /** `POST B/demo/media`: the simulator's picture, answered with its media_id and URL. */
    async upload(req: Request, publicBase: string): Promise<Response> {
      const type = req.headers.get("content-type") ?? "";
      const ext = extensionOf(type);
      if (!ext || !type.startsWith("image/")) {
        throw new HttpError(415, "Send an image (JPEG, PNG, GIF or WebP)");
      }
      const bytes = await readBodyLimited(req, Math.min(deps.maxBytes, 10 * 1024 * 1024));
      const key = await deps.storage.put(bytes, ext);
      const mediaId = `demo_${key.slice(0, 32)}`;
      files.set(mediaId, { bytes, contentType: type });
      return json({
        media_id: mediaId,
        pic_url: mediaUrlOf(deps.signer, publicBase, key),
      });
    },
  };
}
