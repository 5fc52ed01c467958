// A real S3-protocol server for tests: npm's s3rver in its own process (s3rver_process.ts) on a
// free port, its objects in a temp directory the test can look into. s3rver knows one key pair,
// S3RVER:S3RVER, and checks the key id but not the SigV4 signature (tests/media/sigv4_test.ts
// checks the signing against AWS's own examples).

const ROOT = new URL("../../", import.meta.url).pathname;
const CHILD = new URL("./s3rver_process.ts", import.meta.url).pathname;

/** A running s3rver. */
export interface S3Server {
  /** `http://127.0.0.1:PORT` */
  endpoint: string;
  /** MEDIA_STORE for `bucket` on this server, path-style; `params` are added to the query. */
  mediaStore(bucket: string, params?: Record<string, string>): string;
  /** Object keys stored in `bucket`, read from s3rver's own directory, sorted. */
  objects(bucket: string): Promise<string[]>;
  close(): Promise<void>;
}

/** Starts s3rver with `buckets` created. */
export async function startS3Server(buckets: string[]): Promise<S3Server> {
  const dir = await Deno.makeTempDir({ prefix: "s3rver-" });
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", CHILD, dir, ...buckets],
    cwd: ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(child.stderr).text();
  // The first line is `{"port":N}`; the rest is drained so the child never blocks on a pipe.
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let head = "";
  while (!head.includes("\n")) {
    const chunk = await reader.read();
    if (chunk.done) {
      await child.status;
      throw new Error(`s3rver did not start: ${await stderr}`);
    }
    head += chunk.value;
  }
  const { port } = JSON.parse(head.slice(0, head.indexOf("\n"))) as { port: number };
  const drained = (async () => {
    while (!(await reader.read()).done);
  })();
  const endpoint = `http://127.0.0.1:${port}`;
  return {
    endpoint,
    mediaStore(bucket, params = {}) {
      const query = new URLSearchParams({ path_style: "true", ...params });
      return `http://S3RVER:S3RVER@127.0.0.1:${port}/${bucket}?${query}`;
    },
    async objects(bucket) {
      // s3rver keeps each object as `KEY._S3rver_object` under DIR/BUCKET.
      const found: string[] = [];
      const walk = async (path: string, rel: string) => {
        for await (const entry of Deno.readDir(path)) {
          const name = rel ? `${rel}/${entry.name}` : entry.name;
          if (entry.isDirectory) await walk(`${path}/${entry.name}`, name);
          else if (name.endsWith("._S3rver_object")) {
            found.push(name.slice(0, -"._S3rver_object".length));
          }
        }
      };
      await walk(`${dir}/${bucket}`, "");
      return found.sort();
    },
    async close() {
      try {
        child.kill("SIGTERM");
      } catch {
        // Already gone.
      }
      await child.status;
      await drained;
      await stderr;
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
}
