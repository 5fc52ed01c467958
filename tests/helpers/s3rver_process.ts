// The child process tests/helpers/s3_server.ts starts: npm's s3rver, a real S3-protocol server,
// on a free port of 127.0.0.1 with its files in the directory given. Prints `{"port":N}` once
// it listens. Usage: deno run -A tests/helpers/s3rver_process.ts DIR BUCKET...

import S3rver from "s3rver";

const [directory, ...buckets] = Deno.args;
if (!directory) throw new Error("Usage: s3rver_process.ts DIR BUCKET...");
const server = new S3rver({
  address: "127.0.0.1",
  port: 0,
  directory,
  silent: true,
  configureBuckets: buckets.map((name) => ({ name })),
});
const { port } = await server.run();
await Deno.stdout.write(new TextEncoder().encode(JSON.stringify({ port }) + "\n"));
Deno.addSignalListener("SIGTERM", () => {
  server.close().finally(() => Deno.exit(0));
});
