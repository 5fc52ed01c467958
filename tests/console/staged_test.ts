// Files put in the reply box wait per conversation, in order, until sent or removed.

import assert from "node:assert/strict";
import { createStaged } from "../../static/console/staged.js";

Deno.test("createStaged(): per conversation, in order, removed or taken to send", () => {
  const staged = createStaged();
  const a = staged.add("oA", { name: "a.png" });
  const b = staged.add("oA", { name: "b.png" });
  staged.add("oB", { name: "c.png" });
  assert.deepEqual(staged.list("oA").map((i: { name: string }) => i.name), ["a.png", "b.png"]);
  assert.notEqual(a.id, b.id);
  assert.equal(staged.count(), 3);
  assert.equal(staged.remove("oA", a.id)?.name, "a.png");
  assert.equal(staged.remove("oA", a.id), null, "once only");
  assert.deepEqual(staged.take("oA").map((i: { name: string }) => i.name), ["b.png"]);
  assert.deepEqual(staged.list("oA"), []);
  assert.deepEqual(
    staged.list("oB").map((i: { name: string }) => i.name),
    ["c.png"],
    "another's stays",
  );
});
