// Requests to one S3-compatible bucket, signed with AWS Signature V4 by aws4fetch: object URLs
// (path-style or virtual-hosted), signed requests with a deadline for the answer's headers, and
// presigned GET URLs that a browser can open without credentials.

import { AwsClient } from "aws4fetch";
import type { S3StoreConfig } from "./media_store_url.ts";

/** What `createS3Client` needs besides the bucket's settings. */
export interface S3ClientOptions {
  fetch?: typeof fetch;
  /** Deadline for a store's answer (its headers; a body streams as long as it takes). */
  timeoutMs?: number;
  /** The signing clock, as `YYYYMMDDTHHMMSSZ` comes from it; tests fix it for AWS's vectors. */
  now?: () => number;
}

/** A bucket, as the bridge speaks to it. */
export interface S3Client {
  /** The object's URL, unsigned. */
  objectUrl(objectKey: string): string;
  /** A signed request; `objectKey` null addresses the bucket itself. */
  request(method: string, objectKey: string | null, init?: RequestInit): Promise<Response>;
  /** A GET URL valid for `expiresS` seconds (1 s to 7 days, S3's limits). */
  presign(objectKey: string, expiresS: number): Promise<string>;
}

/** Longest a presigned URL may live (SigV4's X-Amz-Expires limit). */
export const MAX_PRESIGN_S = 7 * 24 * 3600;

/** A client for `config`'s bucket. */
export function createS3Client(config: S3StoreConfig, options: S3ClientOptions = {}): S3Client {
  const doFetch = options.fetch ?? fetch;
  const timeoutMs = options.timeoutMs ?? 15_000;
  const now = options.now ?? Date.now;
  const aws = new AwsClient({
    accessKeyId: config.accessKeyId,
    secretAccessKey: config.secretAccessKey,
    service: "s3",
    region: config.region,
  });
  const endpoint = new URL(config.endpoint);
  const bucketBase = config.pathStyle
    ? `${endpoint.protocol}//${endpoint.host}/${config.bucket}`
    : `${endpoint.protocol}//${config.bucket}.${endpoint.host}`;
  const datetime = () => new Date(now()).toISOString().replace(/[:-]|\.\d{3}/g, "");
  // S3 keys are paths: each segment encoded, the slashes kept.
  const objectUrl = (objectKey: string) =>
    `${bucketBase}/${objectKey.split("/").map(encodeURIComponent).join("/")}`;

  return {
    objectUrl,

    async request(method, objectKey, init = {}) {
      const url = objectKey === null ? `${bucketBase}/` : objectUrl(objectKey);
      const headers = new Headers(init.headers);
      // Unsigned payload unless the caller states the body's hash (a PUT does: the key is it).
      if (!headers.has("x-amz-content-sha256")) {
        headers.set("x-amz-content-sha256", "UNSIGNED-PAYLOAD");
      }
      const signed = await aws.sign(url, {
        ...init,
        method,
        headers,
        // Every header the bridge sets is signed (Range too, as in AWS's own examples).
        aws: { datetime: datetime(), allHeaders: true },
      });
      const controller = new AbortController();
      const timer = setTimeout(
        () => controller.abort(new Error(`object store did not answer within ${timeoutMs} ms`)),
        timeoutMs,
      );
      try {
        return await doFetch(signed, { signal: controller.signal });
      } finally {
        clearTimeout(timer);
      }
    },

    async presign(objectKey, expiresS) {
      const seconds = Math.min(MAX_PRESIGN_S, Math.max(1, Math.floor(expiresS)));
      const signed = await aws.sign(`${objectUrl(objectKey)}?X-Amz-Expires=${seconds}`, {
        method: "GET",
        aws: { signQuery: true, datetime: datetime() },
      });
      return signed.url;
    },
  };
}
