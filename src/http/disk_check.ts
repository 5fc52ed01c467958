// Whether DATA_DIR can still take writes, for /readyz: a full or read-only disk makes every
// store commit and media file fail, so the balancer should send traffic elsewhere. Deno has no
// statfs, so the check writes a small probe file; its answer is kept a few seconds so that
// frequent probes (or a caller hammering /readyz) do not turn into disk writes.

/** Checks a directory; resolves to null when writable, else what is wrong. */
export interface DiskCheck {
  check(): Promise<string | null>;
}

/** Room a probe asks for: one store commit or a small media file must still fit. */
const PROBE_BYTES = 64 * 1024;
const CACHE_MS = 2_000;

/** Creates the check for `dir` (created if missing). */
export function createDiskCheck(
  dir: string,
  options: { probeBytes?: number; cacheMs?: number; now?: () => number } = {},
): DiskCheck {
  const now = options.now ?? (() => performance.now());
  const probe = new Uint8Array(options.probeBytes ?? PROBE_BYTES);
  const cacheMs = options.cacheMs ?? CACHE_MS;
  const path = `${dir.replace(/\/+$/, "")}/.readyz-probe`;
  let last: { at: number; result: Promise<string | null> } | undefined;

  async function run(): Promise<string | null> {
    try {
      await Deno.mkdir(dir, { recursive: true });
      await Deno.writeFile(path, probe);
      return null;
    } catch (error) {
      const code = (error as { code?: string }).code;
      return code === "ENOSPC"
        ? "data directory is full"
        : `data directory is not writable (${code ?? (error as Error).name})`;
    } finally {
      await Deno.remove(path).catch(() => {});
    }
  }

  return {
    check() {
      const t = now();
      if (last === undefined || t - last.at >= cacheMs) last = { at: t, result: run() };
      return last.result;
    },
  };
}
