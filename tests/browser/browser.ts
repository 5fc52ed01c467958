// Headless Chromium for the browser tests: Debian's /usr/bin/chromium driven by playwright-core.
// Without that binary the tests are skipped with a note, except in CI (CI=true), where they fail.

import assert from "node:assert/strict";
import type { Browser, BrowserContext, Page } from "playwright-core";

export const CHROMIUM_PATH = "/usr/bin/chromium";

const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--disable-quic",
  "--no-first-run",
];

/** Screen sizes the pages must work at. */
export const LAPTOP = { width: 1366, height: 820 } as const;
export const PHONE = { width: 390, height: 844 } as const;

export const ARTIFACTS_DIR = "test-artifacts/screenshots";

/** Why the browser tests cannot run here, or null when they can. */
export function chromiumMissing(): string | null {
  try {
    const info = Deno.statSync(CHROMIUM_PATH);
    return info.isFile || info.isSymlink ? null : `${CHROMIUM_PATH} is not a file`;
  } catch {
    return `${CHROMIUM_PATH} not found (apt-get install chromium)`;
  }
}

let skipNoted = false;

/**
 * Registers a test that gets a fresh headless Chromium, closed afterwards. Without Chromium the
 * test is skipped (ignored, with a note on stderr), or fails when CI=true.
 */
export function browserTest(
  name: string,
  fn: (t: Deno.TestContext, browser: Browser) => Promise<void>,
): void {
  const missing = chromiumMissing();
  const inCi = Deno.env.get("CI") === "true";
  if (missing && !inCi) {
    if (!skipNoted) {
      skipNoted = true;
      Deno.stderr.writeSync(
        new TextEncoder().encode(
          `Skipping the browser tests: ${missing}. With CI=true they fail.\n`,
        ),
      );
    }
    Deno.test({ name, ignore: true, fn: () => {} });
    return;
  }
  Deno.test(name, async (t) => {
    if (missing) throw new Error(`Cannot run the browser tests in CI: ${missing}`);
    const { chromium } = await loadPlaywright();
    const browser = await chromium.launch({ executablePath: CHROMIUM_PATH, args: CHROMIUM_ARGS });
    try {
      await fn(t, browser);
    } finally {
      await browser.close();
    }
  });
}

/**
 * Loads playwright-core. Its bundled is-wsl probes /proc/sys/fs/binfmt_misc/WSLInterop when the
 * module loads, which Deno allows only with --allow-all (more than `deno task test` grants);
 * with __IS_WSL_TEST__ set the probe waits until asked, and only opening a desktop browser
 * (never done here) asks.
 */
async function loadPlaywright(): Promise<typeof import("playwright-core")> {
  const had = Deno.env.get("__IS_WSL_TEST__");
  Deno.env.set("__IS_WSL_TEST__", "1");
  try {
    return await import("playwright-core");
  } finally {
    if (had === undefined) Deno.env.delete("__IS_WSL_TEST__");
  }
}

/** A page in its own context (own localStorage) at a laptop's or a phone's size, in Shanghai's time
 * zone unless told another. */
export async function openPage(
  browser: Browser,
  size: "laptop" | "phone" = "laptop",
  options: { timezoneId?: string } = {},
): Promise<{ context: BrowserContext; page: Page }> {
  const phone = size === "phone";
  const context = await browser.newContext({
    viewport: phone ? PHONE : LAPTOP,
    deviceScaleFactor: phone ? 2 : 1,
    isMobile: phone,
    hasTouch: phone,
    locale: "en-US",
    timezoneId: options.timezoneId ?? "Asia/Shanghai",
  });
  context.setDefaultTimeout(10_000);
  const page = await context.newPage();
  pollThroughDevTools(page);
  return { context, page };
}

/** Another tab in the context of a page from openPage (same localStorage, same browser). */
export async function openTab(context: BrowserContext): Promise<Page> {
  const page = await context.newPage();
  pollThroughDevTools(page);
  return page;
}

/**
 * The pages' Content-Security-Policy has no 'unsafe-eval', and Playwright's waitForFunction
 * evals its predicate inside the page, which the policy refuses. page.evaluate goes through
 * DevTools, which the policy does not govern: polling it checks the same thing, and the pages
 * keep running under their real policy.
 */
function pollThroughDevTools(page: Page): void {
  // deno-lint-ignore no-explicit-any
  const evaluate = page.evaluate.bind(page) as (fn: any, arg?: any) => Promise<unknown>;
  const waitForFunction = async (
    fn: unknown,
    arg?: unknown,
    options?: { timeout?: number },
  ): Promise<unknown> => {
    const timeout = options?.timeout ?? 10_000;
    const deadline = performance.now() + timeout;
    while (!(await evaluate(fn, arg).catch(() => false))) {
      if (performance.now() > deadline) {
        throw new Error(`page.waitForFunction: timed out after ${timeout} ms: ${String(fn)}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    // deno-lint-ignore no-explicit-any
    return await page.evaluateHandle(fn as any, arg);
  };
  page.waitForFunction = waitForFunction as Page["waitForFunction"];
}

/** Saves a screenshot of the page as test-artifacts/screenshots/NAME.png. */
export async function screenshot(page: Page, name: string): Promise<string> {
  await Deno.mkdir(ARTIFACTS_DIR, { recursive: true });
  const path = `${ARTIFACTS_DIR}/${name}.png`;
  await page.screenshot({ path, animations: "disabled", caret: "hide" });
  return path;
}

export const B = "/im_component/wx_official_account";

let msgIdCounter = 0;

/** WeChat's XML for a follower's message to the demo account; `fields` add to or override it. */
export function followerXml(followerId: string, fields: Record<string, string | number>): string {
  const all: Record<string, string | number> = {
    ToUserName: "gh_demo",
    FromUserName: followerId,
    CreateTime: Math.floor(Date.now() / 1000),
    ...fields,
    MsgId: fields["MsgId"] ?? `${Date.now()}${String(++msgIdCounter).padStart(4, "0")}`,
  };
  const parts = Object.entries(all).map(([name, value]) =>
    typeof value === "number"
      ? `<${name}>${value}</${name}>`
      : `<${name}><![CDATA[${value}]]></${name}>`
  );
  return `<xml>${parts.join("")}</xml>`;
}

/** Posts a follower's message as WeChat does and checks that the bridge took it. */
export async function postFollowerMessage(
  base: string,
  followerId: string,
  fields: Record<string, string | number>,
): Promise<void> {
  const res = await fetch(`${base}${B}/send_xml`, {
    method: "POST",
    headers: { "content-type": "text/xml" },
    body: followerXml(followerId, fields),
  });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`send_xml answered ${res.status}: ${text}`);
}

/** Opens the console as `agent` and waits until its socket is connected. */
export async function openConsole(page: Page, base: string, agent: string): Promise<void> {
  await page.goto(`${base}/console?userid=${agent}`);
  await page.locator('#conn[data-state="connected"]').waitFor();
}

/** The agent's contacts as GET /contacts lists them. */
export async function contactsOf(
  base: string,
  agent: string,
): Promise<Array<Record<string, unknown>>> {
  const res = await fetch(`${base}${B}/contacts?userid=${agent}`);
  assert.equal(res.status, 200);
  return (await res.json()).contacts;
}

/** A small PNG (a soft diagonal gradient), made here so the tests need no fixture file. */
export async function makePng(width: number, height: number): Promise<Uint8Array> {
  const raw = new Uint8Array((width * 3 + 1) * height);
  for (let y = 0; y < height; y++) {
    const row = y * (width * 3 + 1);
    for (let x = 0; x < width; x++) {
      const t = (x / width + y / height) / 2;
      raw.set(
        [Math.round(40 + 60 * t), Math.round(150 - 40 * t), Math.round(120 + 100 * t)],
        row + 1 + x * 3,
      );
    }
  }
  const zlib = new Uint8Array(
    await new Response(new Blob([raw]).stream().pipeThrough(new CompressionStream("deflate")))
      .arrayBuffer(),
  );
  const header = new Uint8Array(13);
  const view = new DataView(header.buffer);
  view.setUint32(0, width);
  view.setUint32(4, height);
  header.set([8, 2, 0, 0, 0], 8); // 8-bit RGB, no interlace
  const signature = [137, 80, 78, 71, 13, 10, 26, 10];
  return concat([
    new Uint8Array(signature),
    chunk("IHDR", header),
    chunk("IDAT", zlib),
    chunk("IEND", new Uint8Array()),
  ]);
}

function chunk(type: string, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(12 + data.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, data.length);
  out.set(new TextEncoder().encode(type), 4);
  out.set(data, 8);
  view.setUint32(8 + data.length, crc32(out.subarray(4, 8 + data.length)));
  return out;
}

function crc32(bytes: Uint8Array): number {
  let crc = 0xffffffff;
  for (const byte of bytes) {
    crc ^= byte;
    for (let k = 0; k < 8; k++) crc = crc & 1 ? (crc >>> 1) ^ 0xedb88320 : crc >>> 1;
  }
  return (crc ^ 0xffffffff) >>> 0;
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

/** Polls an async condition (server state, not the page's) until it holds. */
export async function waitUntil(
  condition: () => boolean | Promise<boolean>,
  explain: () => string,
  timeoutMs = 10_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`Timed out: ${explain()}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

/** Collects what the page logs with console.log, for assertions on the seed's test page. */
export function consoleLines(page: Page): string[] {
  const lines: string[] = [];
  page.on("console", (message) => {
    lines.push(message.text());
  });
  return lines;
}

/** A short H.264 MP4 (a test pattern), made with ffmpeg, which the bridge needs anyway. */
export async function makeMp4(seconds = 1, size = "320x180"): Promise<Uint8Array> {
  const path = await Deno.makeTempFile({ suffix: ".mp4" });
  try {
    const { code, stderr } = await new Deno.Command("ffmpeg", {
      args: [
        "-loglevel",
        "error",
        "-y",
        "-f",
        "lavfi",
        "-i",
        `testsrc=size=${size}:rate=10`,
        "-t",
        String(seconds),
        "-pix_fmt",
        "yuv420p",
        path,
      ],
      stdout: "null",
      stderr: "piped",
    }).output();
    if (code !== 0) {
      throw new Error(`Cannot make a test video: ${new TextDecoder().decode(stderr)}`);
    }
    return await Deno.readFile(path);
  } finally {
    await Deno.remove(path);
  }
}

/** A WebSocket frame as the console sends or receives it. */
export type Frame = {
  data?: Record<string, unknown> & { msg?: Record<string, unknown> };
  result?: { code: number; message: string };
};

/** Every frame the page's sockets send and receive, parsed, across reloads. */
export function socketFrames(page: Page): { sent: Frame[]; received: Frame[] } {
  const frames = { sent: [] as Frame[], received: [] as Frame[] };
  const parse = (payload: string | Uint8Array): Frame | null => {
    try {
      return JSON.parse(typeof payload === "string" ? payload : new TextDecoder().decode(payload));
    } catch {
      return null;
    }
  };
  page.on("websocket", (ws) => {
    ws.on("framesent", ({ payload }) => {
      const frame = parse(payload);
      if (frame) frames.sent.push(frame);
    });
    ws.on("framereceived", ({ payload }) => {
      const frame = parse(payload);
      if (frame) frames.received.push(frame);
    });
  });
  return frames;
}

/**
 * The characters of `selector`'s text that this browser's fonts do not have: drawn in the
 * element's font, each looks exactly like a code point no font covers (U+10FFFD), the empty
 * box shown for a missing glyph. Emoji are such characters where no emoji font is installed.
 */
export async function missingGlyphs(page: Page, selector: string): Promise<string[]> {
  return await page.evaluate(`(() => {
    const node = document.querySelector(${JSON.stringify(selector)});
    const font = getComputedStyle(node).font;
    const canvas = document.createElement("canvas");
    canvas.width = 64;
    canvas.height = 64;
    const ctx = canvas.getContext("2d", { willReadFrequently: true });
    const pixels = (ch) => {
      ctx.clearRect(0, 0, 64, 64);
      ctx.font = font.replace(/\\d+(\\.\\d+)?px/, "32px");
      ctx.textBaseline = "middle";
      ctx.fillText(ch, 8, 32);
      return ctx.getImageData(0, 0, 64, 64).data.join();
    };
    const missing = pixels("\\u{10FFFD}");
    const chars = [...new Set(Array.from(node.textContent).filter((ch) => ch.trim() !== ""))];
    return chars.filter((ch) => pixels(ch) === missing);
  })()`) as string[];
}

/** Closes the page as a closed tab would: "beforeunload" when it asked first, else "closed". */
export async function leaving(page: Page): Promise<string> {
  const asked = new Promise<string>((resolve) =>
    page.once("dialog", (dialog) => {
      resolve(dialog.type());
      dialog.dismiss();
    })
  );
  const closed = new Promise<string>((resolve) => page.once("close", () => resolve("closed")));
  await page.close({ runBeforeUnload: true });
  return await Promise.race([asked, closed]);
}
