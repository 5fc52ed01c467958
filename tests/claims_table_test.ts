// docs/claims.md maps every documented behaviour to the test that shows it. A merge once left a
// section's table without its separator line, and the formatter folded 55 rows into one
// paragraph no reader could use; a row can also name a file that was renamed since.

import assert from "node:assert/strict";

const ROOT = new URL("../", import.meta.url);
const text = await Deno.readTextFile(new URL("docs/claims.md", ROOT));

Deno.test("docs/claims.md: each section's claims are a table, each naming test files that exist", async () => {
  const lines = text.split("\n");
  let rows = 0;
  for (const [i, line] of lines.entries()) {
    const inTable = line.startsWith("|");
    if (!inTable) {
      assert.ok(!/ \| \| /.test(line), `line ${i + 1} is table rows run together: ${line}`);
      continue;
    }
    const next = lines[i + 1] ?? "";
    const previous = lines[i - 1] ?? "";
    // A header row is followed by its separator.
    if (!previous.startsWith("|")) {
      assert.match(next, /^\|[\s|:-]+\|$/, `line ${i + 1}: a table header without its separator`);
      continue;
    }
    if (/^\|[\s|:-]+\|$/.test(line)) continue;
    rows++;
    for (const [, path] of line.matchAll(/`(tests\/[\w./-]+\.ts)`/g)) {
      const found = await Deno.stat(new URL(path!, ROOT)).then(() => true, () => false);
      assert.ok(found, `line ${i + 1} names ${path}, which is not there`);
    }
  }
  assert.ok(rows > 300, `${rows} claims`);
});
