// The contact list's kept rows (static/console/row_cache.js): a row is rebuilt only when what
// it shows changed, and a render moves only the rows out of place.

import assert from "node:assert/strict";
import { createRowCache, syncChildren } from "../../static/console/row_cache.js";

/** The little of a DOM node syncChildren uses, counting the moves. */
class FakeNode {
  children: FakeNode[] = [];
  parent: FakeNode | null = null;
  moves = 0;
  constructor(readonly name = "") {}
  get firstChild(): FakeNode | null {
    return this.children[0] ?? null;
  }
  get nextSibling(): FakeNode | null {
    const list = this.parent?.children ?? [];
    return list[list.indexOf(this) + 1] ?? null;
  }
  insertBefore(node: FakeNode, before: FakeNode | null) {
    if (node.parent) node.parent.children.splice(node.parent.children.indexOf(node), 1);
    const at = before ? this.children.indexOf(before) : this.children.length;
    this.children.splice(at, 0, node);
    node.parent = this;
    this.moves++;
    return node;
  }
  removeChild(node: FakeNode) {
    this.children.splice(this.children.indexOf(node), 1);
    node.parent = null;
    this.moves++;
    return node;
  }
}

Deno.test("a row is built again only when its key changed", () => {
  const cache = createRowCache();
  let built = 0;
  const build = () => ({ n: ++built });
  const a = cache.row("a", "k1", build);
  assert.equal(cache.row("a", "k1", build), a);
  assert.equal(built, 1);
  assert.notEqual(cache.row("a", "k2", build), a);
  assert.equal(built, 2);
  cache.row("b", "k", build);
  cache.prune(new Set(["b"]));
  assert.equal(cache.size, 1);
});

Deno.test("syncChildren() moves the one row that moved, and drops the ones gone", () => {
  const list = new FakeNode();
  const rows = Array.from({ length: 1000 }, (_, i) => new FakeNode(`r${i}`));
  syncChildren(list, rows);
  assert.deepEqual(list.children, rows);
  list.moves = 0;
  // A message to the 500th: it goes to the top, the rest stay.
  const next = [rows[500]!, ...rows.filter((_, i) => i !== 500)];
  syncChildren(list, next);
  assert.deepEqual(list.children.map((n) => n.name), next.map((n) => n.name));
  assert.equal(list.moves, 1);
  // A filter: two left.
  list.moves = 0;
  syncChildren(list, [rows[3]!, rows[7]!]);
  assert.deepEqual(list.children.map((n) => n.name), ["r3", "r7"]);
  syncChildren(list, []);
  assert.deepEqual(list.children, []);
});
