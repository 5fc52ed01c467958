// Reads MEDIA_STORE, the one variable that says where media files live: `disk` (the default,
// DATA_DIR/media) or an S3-compatible object store written as a URL, with the endpoint, the
// bucket, an optional key prefix, the region, the credentials and how URLs are formed.

/** Where media files live. */
export type MediaStoreConfig =
  | { kind: "disk" }
  | S3StoreConfig;

/** An S3-compatible bucket (AWS S3, Tencent COS, Alibaba OSS, MinIO…). */
export interface S3StoreConfig {
  kind: "s3";
  /** `https://host[:port]` (or `http://` for a store on the local network), no path. */
  endpoint: string;
  bucket: string;
  /** Prepended to every object key: `""` or `folder/`. */
  prefix: string;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
  /** `endpoint/bucket/key` (MinIO, s3rver) instead of `bucket.endpoint/key` (AWS, COS, OSS). */
  pathStyle: boolean;
  /** Agents' browsers are sent to the store's own presigned URLs instead of through the bridge. */
  presign: boolean;
}

const BUCKET_PATTERN = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;
const KNOWN_PARAMS = new Set(["region", "path_style", "presign"]);

/**
 * Parses `disk`, or `https://KEY:SECRET@host[:port]/bucket[/prefix]?region=…&path_style=…&presign=…`
 * (`s3://` means `https://`; `http://` only for a store on a trusted network); throws
 * SyntaxError saying what is wrong, never echoing the secret.
 */
export function parseMediaStore(raw: string | undefined): MediaStoreConfig {
  if (raw === undefined || raw === "" || raw === "disk") return { kind: "disk" };
  const scheme = /^([a-z0-9+]+):\/\//i.exec(raw)?.[1]?.toLowerCase();
  if (scheme !== "https" && scheme !== "http" && scheme !== "s3") {
    throw new SyntaxError(
      "expected disk, or https://KEY:SECRET@host/bucket?region=… (s3:// and http:// also work)",
    );
  }
  let url: URL;
  try {
    url = new URL(scheme === "s3" ? `https://${raw.slice("s3://".length)}` : raw);
  } catch {
    throw new SyntaxError("not a URL (percent-encode / + @ : in the key and secret)");
  }
  const accessKeyId = decodeURIComponent(url.username);
  const secretAccessKey = decodeURIComponent(url.password);
  if (accessKeyId === "" || secretAccessKey === "") {
    throw new SyntaxError("the URL carries no credentials: write https://KEY:SECRET@host/bucket");
  }
  const [bucket = "", ...rest] = url.pathname.replace(/^\/+/, "").split("/");
  if (!BUCKET_PATTERN.test(bucket)) {
    throw new SyntaxError(
      `bucket "${bucket}" is not a bucket name (3-63 of a-z 0-9 . -): write https://KEY:SECRET@host/bucket`,
    );
  }
  const folder = rest.filter((part) => part !== "").map(decodeURIComponent).join("/");
  for (const name of url.searchParams.keys()) {
    if (!KNOWN_PARAMS.has(name)) {
      throw new SyntaxError(`unknown parameter "${name}" (known: ${[...KNOWN_PARAMS].join(", ")})`);
    }
  }
  const flag = (name: string): boolean => {
    const value = url.searchParams.get(name);
    if (value === null || value === "false") return false;
    if (value === "true") return true;
    throw new SyntaxError(`${name} must be true or false, got "${value}"`);
  };
  const region = url.searchParams.get("region") ?? "us-east-1";
  if (!/^[a-z0-9-]{2,40}$/.test(region)) {
    throw new SyntaxError(`region "${region}" is not a region name`);
  }
  return {
    kind: "s3",
    endpoint: `${url.protocol}//${url.host}`,
    bucket,
    prefix: folder === "" ? "" : `${folder}/`,
    region,
    accessKeyId,
    secretAccessKey,
    pathStyle: flag("path_style"),
    presign: flag("presign"),
  };
}
