// The layers the folders show, read from every import in src/: the protocol imports nothing of
// ours, the core only the protocol, the edges the core and the protocol, and only main.ts and
// the composition root sit above the edges. No file reaches itself through its imports.

import assert from "node:assert/strict";
import { join } from "node:path";

const ROOT = new URL("../", import.meta.url).pathname;
const EDGES = new Set(["wechat", "agents", "replies", "media", "store", "http"]);

/** 0 protocol, 1 core, 2 edges, 3 the composition root (src/*.ts), 4 main.ts. */
function layerOf(path: string): number {
  if (path === "main.ts") return 4;
  const [top, folder, rest] = path.split("/");
  if (top !== "src") throw new Error(`${path} is outside src/`);
  if (rest === undefined) return 3;
  if (folder === "protocol") return 0;
  if (folder === "core") return 1;
  if (EDGES.has(folder!)) return 2;
  throw new Error(`src/${folder}/ is in no layer: add it to the rule`);
}

/** Deno's own module graph from main.ts (import map resolved, type and dynamic imports
 * included), as repo path -> the repo paths it imports. */
async function readGraph(): Promise<Map<string, string[]>> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", "main.ts"],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) throw new Error(new TextDecoder().decode(out.stderr));
  type Dep = { code?: { specifier?: string }; type?: { specifier?: string } };
  const info = JSON.parse(new TextDecoder().decode(out.stdout)) as {
    modules: Array<{ specifier: string; dependencies?: Dep[] }>;
  };
  const local = (specifier: string | undefined) =>
    specifier?.startsWith(`file://${ROOT}`) ? specifier.slice(`file://${ROOT}`.length) : null;
  const graph = new Map<string, string[]>();
  for (const module of info.modules) {
    const from = local(module.specifier);
    if (from === null) continue;
    const targets = (module.dependencies ?? []).flatMap((d) =>
      [local(d.code?.specifier), local(d.type?.specifier)].filter((p): p is string => p !== null)
    );
    graph.set(from, [...new Set(targets)]);
  }
  return graph;
}

/** Every `.ts`/`.js` file under src/. */
async function sourceFiles(dir = "src"): Promise<string[]> {
  const files: string[] = [];
  for await (const entry of Deno.readDir(join(ROOT, dir))) {
    const path = join(dir, entry.name);
    if (entry.isDirectory) files.push(...await sourceFiles(path));
    else if (/\.(ts|js|mjs|tsx)$/.test(path)) files.push(path);
  }
  return files;
}

/** The imports that break the layer rule, as "from -> to" lines. */
export function upwardImports(graph: Map<string, string[]>): string[] {
  const bad: string[] = [];
  for (const [from, targets] of graph) {
    const mine = layerOf(from);
    for (const to of targets) {
      // A layer imports its own and those below: the protocol (layer 0) only the protocol.
      if (layerOf(to) > mine) bad.push(`${from} -> ${to}`);
    }
  }
  return bad;
}

/** One import cycle, as the files around it, or null. */
export function findCycle(graph: Map<string, string[]>): string[] | null {
  const state = new Map<string, "open" | "done">();
  const stack: string[] = [];
  const dfs = (node: string): string[] | null => {
    state.set(node, "open");
    stack.push(node);
    for (const next of graph.get(node) ?? []) {
      if (state.get(next) === "open") return [...stack.slice(stack.indexOf(next)), next];
      if (state.get(next) === undefined) {
        const cycle = dfs(next);
        if (cycle) return cycle;
      }
    }
    stack.pop();
    state.set(node, "done");
    return null;
  };
  for (const node of graph.keys()) {
    if (state.get(node) === undefined) {
      const cycle = dfs(node);
      if (cycle) return cycle;
    }
  }
  return null;
}

Deno.test("src/ keeps its layers: protocol, core, edges, composition root", async (t) => {
  const graph = await readGraph();

  await t.step("every file in src/ is part of the server main.ts starts", async () => {
    const unreached = (await sourceFiles()).filter((path) => !graph.has(path));
    assert.deepEqual(unreached, []);
  });
  await t.step("every dynamic import names its module, so the graph sees it", async () => {
    const hidden: string[] = [];
    for (const path of await sourceFiles()) {
      const text = await Deno.readTextFile(join(ROOT, path));
      for (const m of text.matchAll(/\bimport\s*\(\s*([^)\s])/g)) {
        if (m[1] !== '"' && m[1] !== "'") hidden.push(path);
      }
    }
    assert.deepEqual(hidden, []);
  });
  await t.step("no import goes up a layer, and the protocol imports nothing of ours", () => {
    assert.deepEqual(upwardImports(graph), []);
  });
  await t.step("no import cycle", () => {
    assert.equal(findCycle(graph)?.join(" -> ") ?? null, null);
  });
  await t.step("the rule itself catches an upward import and a cycle", () => {
    const bad = new Map([
      ["src/protocol/envelope.ts", ["src/core/model.ts"]],
      ["src/core/model.ts", ["src/protocol/envelope.ts"]],
      ["src/core/hub.ts", ["src/wechat/xml.ts"]],
      ["src/wechat/xml.ts", []],
    ]);
    assert.deepEqual(upwardImports(bad), [
      "src/protocol/envelope.ts -> src/core/model.ts",
      "src/core/hub.ts -> src/wechat/xml.ts",
    ]);
    assert.deepEqual(findCycle(bad), [
      "src/protocol/envelope.ts",
      "src/core/model.ts",
      "src/protocol/envelope.ts",
    ]);
  });
});

Deno.test("nothing in the repository reads outside it", async () => {
  const skip = new Set([".git", "node_modules", "data", "test-artifacts", "results"]);
  const offenders: string[] = [];
  // Spelled in two parts so this file does not name what it looks for.
  const shared = "../" + "shared/";
  const machine = /["'`(\s]\/work\//;
  // A `join` of a parent and the folder's name, as well as the path spelled whole.
  const sharedSegment = new RegExp(`["'\`]\\.\\.["'\`]\\s*,\\s*["'\`]${"sha" + "red"}\\b`);
  const visit = async (dir: string) => {
    for await (const entry of Deno.readDir(join(ROOT, dir))) {
      if (skip.has(entry.name)) continue;
      const path = join(dir, entry.name);
      if (entry.isDirectory) await visit(path);
      else if (/\.(ts|js|mjs|md|json|html|css|sh)$|^run$/.test(entry.name)) {
        const text = await Deno.readTextFile(join(ROOT, path));
        if (text.includes(shared) || machine.test(text) || sharedSegment.test(text)) {
          offenders.push(path);
        }
      }
    }
  };
  await visit(".");
  assert.deepEqual(offenders, []);
});

Deno.test("fixtures are the published bytes (tests/fixtures/SHA256SUMS)", async () => {
  const dir = join(ROOT, "tests/fixtures");
  const sums = await Deno.readTextFile(join(dir, "SHA256SUMS"));
  const changed: string[] = [];
  for (const line of sums.trim().split("\n")) {
    const [want, name] = line.split(/\s+/);
    const bytes = await Deno.readFile(join(dir, name!));
    const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
    const got = [...digest].map((b) => b.toString(16).padStart(2, "0")).join("");
    if (got !== want) changed.push(name!);
  }
  // A formatter or an editor that rewrites a sample tests something WeChat never sent.
  assert.deepEqual(changed, []);
});
