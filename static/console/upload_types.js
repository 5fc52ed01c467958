// What a file an agent attaches is: its type read from its first bytes (a name, and so the
// browser's type, can lie), the reply it becomes, its size in words. Plain module: `deno test`
// covers it with Blobs.

/** What POST upload takes (PROTOCOL.md), and the reply each type becomes. */
export const UPLOAD_KINDS = {
  "image/jpeg": "image",
  "image/png": "image",
  "image/gif": "image",
  "audio/amr": "voice",
  "audio/mpeg": "voice",
  "video/mp4": "video",
};

/** The reply a file of `contentType` becomes: image, voice, video, or file. */
export function kindOf(contentType) {
  return UPLOAD_KINDS[contentType] ??
    (/^image\//.test(contentType)
      ? "image"
      : /^audio\//.test(contentType)
      ? "voice"
      : /^video\//.test(contentType)
      ? "video"
      : "file");
}

/** The file's type from its first bytes: a name (and so the browser's type) can lie. */
export async function sniffType(file) {
  let head;
  try {
    head = new Uint8Array(await file.slice(0, 16).arrayBuffer());
  } catch {
    return null;
  }
  const ascii = (from, to) => String.fromCharCode(...head.subarray(from, to));
  if (head[0] === 0x89 && ascii(1, 4) === "PNG") return "image/png";
  if (head[0] === 0xff && head[1] === 0xd8 && head[2] === 0xff) return "image/jpeg";
  if (ascii(0, 4) === "GIF8") return "image/gif";
  if (ascii(0, 4) === "RIFF" && ascii(8, 12) === "WEBP") return "image/webp";
  if (ascii(0, 5) === "#!AMR") return "audio/amr";
  if (ascii(0, 3) === "ID3" || (head[0] === 0xff && (head[1] & 0xe0) === 0xe0)) {
    return "audio/mpeg";
  }
  if (ascii(4, 8) === "ftyp") return ascii(8, 11) === "M4A" ? "audio/mp4" : "video/mp4";
  return null;
}

/** The Content-Type to upload with: what the bytes are, else what the browser says. */
export async function uploadTypeOf(file) {
  const sniffed = await sniffType(file);
  if (sniffed) return sniffed;
  // Bytes of no known kind under a name the bridge takes (a text file renamed .png): the
  // bridge would believe the name, so say only that they are bytes, and it refuses them.
  const claimed = String(file.type ?? "").toLowerCase();
  return !claimed || UPLOAD_KINDS[claimed] ? "application/octet-stream" : claimed;
}

/** "12 KB", "1.5 MB". */
export function formatSize(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${Math.round(bytes / 1024)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}
