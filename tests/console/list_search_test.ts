// The list's search (static/console/list_search.js): name, id, and the labels agents gave.

import assert from "node:assert/strict";
import { matchesSearch } from "../../static/console/list_search.js";

Deno.test("the list's search finds a conversation by name, id or label", () => {
  const vip = { contact_id: "oF040", name: "oF040", labels: ["VIP客户", "Refund"] };
  const plain = { contact_id: "oF041", name: "王芳" };
  assert.equal(matchesSearch(vip, ""), true);
  assert.equal(matchesSearch(vip, "VIP"), true, "a label");
  assert.equal(matchesSearch(vip, "vip"), true, "any case");
  assert.equal(matchesSearch(vip, "refund"), true);
  assert.equal(matchesSearch(plain, "VIP"), false);
  assert.equal(matchesSearch(plain, "王"), true, "a name");
  assert.equal(matchesSearch(plain, "f041"), true, "an id");
  assert.equal(matchesSearch({ contact_id: "x", labels: null }, "v"), false);
});
