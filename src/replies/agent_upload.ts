// An agent's file for a reply: checked against WeChat's types and sizes, uploaded through
// `media/upload` for its media_id (kept locally in demo mode), and stored so the agent's
// console can show what it sent.

import { HttpError } from "../http/http_error.ts";
import { type AgentFiles, createAgentFiles, tooManyFiles } from "./agent_files.ts";
import { readBodyLimited } from "../http/limits.ts";
import { extensionOf } from "../media/serve.ts";
import { mediaUrlOf, type UrlSigner } from "../media/signed_url.ts";
import type { MediaStorage } from "../media/storage.ts";
import type { ToolLimiter } from "../media/tool_limiter.ts";
import { VOICE_MAX_SECONDS } from "../media/transcode.ts";
import { voiceFault, voiceTooLong } from "./upload_rules.ts";
import { WechatApiError, type WechatClient } from "../wechat/api_client.ts";

/** WeChat's limits for temporary media, by type (its documentation's figures). */
const KINDS: Record<string, { type: "image" | "voice" | "video"; maxBytes: number }> = {
  "image/jpeg": { type: "image", maxBytes: 10 * 1024 * 1024 },
  "image/png": { type: "image", maxBytes: 10 * 1024 * 1024 },
  "image/gif": { type: "image", maxBytes: 10 * 1024 * 1024 },
  "audio/amr": { type: "voice", maxBytes: 2 * 1024 * 1024 },
  "audio/mpeg": { type: "voice", maxBytes: 2 * 1024 * 1024 },
  "video/mp4": { type: "video", maxBytes: 10 * 1024 * 1024 },
};

const ascii = (bytes: Uint8Array, at: number, text: string): boolean =>
  [...text].every((c, i) => bytes[at + i] === c.charCodeAt(0));

/** Whether the file's first bytes are those of its declared type: WeChat (and the agents'
 * browsers) must not be handed a text file called an image. */
function looksLike(contentType: string, b: Uint8Array): boolean {
  switch (contentType) {
    case "image/jpeg":
      return b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff;
    case "image/png":
      return b[0] === 0x89 && ascii(b, 1, "PNG");
    case "image/gif":
      return ascii(b, 0, "GIF8");
    case "audio/amr":
      return ascii(b, 0, "#!AMR");
    case "audio/mpeg":
      return ascii(b, 0, "ID3") || (b[0] === 0xff && ((b[1] ?? 0) & 0xe0) === 0xe0);
    case "video/mp4":
      return ascii(b, 4, "ftyp");
    default:
      return false;
  }
}

/** What the upload route needs. */
export interface AgentUploadDeps {
  storage: MediaStorage;
  signer: UrlSigner;
  /** null in demo mode: the file gets a local media_id. */
  client: WechatClient | null;
  /** Remembers a demo media_id's file, so demo replies can be shown. */
  onDemoMedia?: (mediaId: string, bytes: Uint8Array, contentType: string) => Promise<void>;
  /** The bridge's one limit on ffmpeg and ffprobe runs at once. */
  limiter: ToolLimiter;
  /** The ffprobe binary; default `ffprobe` on PATH. */
  ffprobe?: string;
  /** The account's count of each agent's files under way, shared with `media_url` replies. */
  files?: AgentFiles;
}

/** Creates the handler of `POST B/upload`: the raw file as the body, its type in Content-Type. */
export function createAgentUpload(deps: AgentUploadDeps) {
  const files = deps.files ?? createAgentFiles();
  return async function upload(req: Request, publicBase: string, agentId: string) {
    const release = files.take(agentId);
    if (release === null) {
      throw new HttpError(429, tooManyFiles(agentId, "upload"), { "retry-after": "1" });
    }
    try {
      return await uploadOne(req, publicBase);
    } finally {
      release();
    }
  };

  async function uploadOne(req: Request, publicBase: string): Promise<Response> {
    const contentType = (req.headers.get("content-type") ?? "").split(";")[0]!.trim().toLowerCase();
    const kind = KINDS[contentType];
    if (!kind) {
      throw new HttpError(
        415,
        `Cannot upload ${contentType || "a file without Content-Type"}: send ${
          Object.keys(KINDS).join(", ")
        }`,
      );
    }
    const bytes = await readBodyLimited(req, kind.maxBytes).catch((error) => {
      // The agent reads why in the console: WeChat's limit for the type, not the body's size.
      if (!(error instanceof HttpError) || error.status !== 413) throw error;
      throw new HttpError(
        413,
        `Cannot upload: WeChat takes a ${kind.type} of at most ${kind.maxBytes} bytes (${
          kind.maxBytes / 1024 / 1024
        } MB); the file is larger`,
      );
    });
    if (bytes.byteLength === 0) throw new HttpError(400, "Cannot upload an empty file");
    if (!looksLike(contentType, bytes)) {
      throw new HttpError(415, `Cannot upload: the file is not ${contentType}`);
    }
    const ext = extensionOf(contentType) ?? "bin";
    const unplayable = kind.type === "voice" ? voiceFault(bytes, ext) : null;
    if (unplayable !== null) {
      throw new HttpError(415, `Cannot upload: the file is not a playable voice: ${unplayable}`);
    }
    if (kind.type === "voice") {
      // WeChat takes a voice of at most 60 s: the agent hears it now, as on the media_url path,
      // not from an errcode after the reply is written.
      const tooLong = await voiceTooLong(bytes, VOICE_MAX_SECONDS, {
        limiter: deps.limiter,
        ...(deps.ffprobe ? { ffprobe: deps.ffprobe } : {}),
      });
      if (tooLong !== null) {
        throw new HttpError(
          415,
          `Cannot upload: WeChat takes a voice of at most ${VOICE_MAX_SECONDS} s; the file ${tooLong}`,
        );
      }
    }
    const key = await deps.storage.put(bytes, ext);
    // WeChat reads the format from the name's extension (40005 without one): the agent's name
    // keeps its stem, the extension is the type's.
    const given = new URL(req.url).searchParams.get("filename")?.replace(/\.[^.]*$/, "") ?? "";
    const filename = `${given.trim() || "upload"}.${ext}`;
    let mediaId: string;
    if (deps.client) {
      try {
        mediaId = await deps.client.uploadMedia(kind.type, bytes, filename, contentType);
      } catch (error) {
        if (!(error instanceof WechatApiError)) throw error;
        throw new HttpError(502, `WeChat refused the upload: ${error.errmsg} (${error.errcode})`);
      }
    } else {
      mediaId = `demo_${key.slice(0, 32)}`;
      await deps.onDemoMedia?.(mediaId, bytes, contentType);
    }
    const body = {
      media_id: mediaId,
      type: kind.type,
      media_url: mediaUrlOf(deps.signer, publicBase, key),
      size: bytes.byteLength,
    };
    return new Response(JSON.stringify(body), {
      status: 201,
      headers: { "content-type": "application/json; charset=utf-8", "cache-control": "no-store" },
    });
  }
}
