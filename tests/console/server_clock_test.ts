// The bridge's clock as the console learns it (static/console/server_clock.js): from `now` in
// GET contacts, over a PC clock minutes off, steady through a round trip's noise.

import assert from "node:assert/strict";
import { createServerClock, MAX_RTT_MS } from "../../static/console/server_clock.js";

Deno.test("a PC 10 minutes fast counts on the bridge's time", () => {
  const bridge = Date.UTC(2026, 11, 4, 12, 0, 0);
  let local = bridge + 600_000;
  const clock = createServerClock(() => local);
  assert.equal(clock.nowMs(), local, "nothing learned: the PC's own");
  assert.equal(clock.observe(bridge, local - 40, local), true);
  assert.ok(Math.abs(clock.nowMs() - bridge) <= 100, `${clock.nowMs() - bridge}`);
  local += 30_000;
  assert.ok(Math.abs(clock.nowMs() - (bridge + 30_000)) <= 100);
});

Deno.test("a PC 10 minutes slow too; a round trip's noise changes nothing", () => {
  const bridge = Date.UTC(2026, 11, 4, 12, 0, 0, 700);
  const local = bridge - 600_000;
  const clock = createServerClock(() => local);
  clock.observe(bridge, local - 10, local);
  const offset = clock.offsetMs();
  assert.ok(Math.abs(offset - 600_000) <= 100, `${offset}`);
  // The next answer, a slower one: no change, no redraw.
  assert.equal(clock.observe(bridge + 900, local + 100, local + 1_200), false);
  assert.equal(clock.offsetMs(), offset);
});

Deno.test("answers that say nothing reliable are not learned from", () => {
  const clock = createServerClock(() => 1_000_000);
  assert.equal(clock.observe(undefined, 0, 10), false);
  assert.equal(clock.observe(Number.NaN, 0, 10), false);
  assert.equal(clock.observe(5_000_000, 0, MAX_RTT_MS + 1), false, "too slow");
  assert.equal(clock.observe(5_000_000, 10, 0), false, "time ran back");
  assert.equal(clock.offsetMs(), 0);
  // A bridge's `now` of 0, or in milliseconds where seconds belong (read as ms × 1000).
  const onTime = createServerClock(() => Date.UTC(2026, 11, 4));
  assert.equal(onTime.observe(0, Date.UTC(2026, 11, 4), Date.UTC(2026, 11, 4)), false);
  assert.equal(onTime.observe(Date.UTC(2026, 11, 4) * 1000, 0, 10), false);
  assert.equal(onTime.offsetMs(), 0);
});

Deno.test("a PC clock set right later (NTP) is followed", () => {
  let local = 0;
  const clock = createServerClock(() => local);
  const bridge = Date.UTC(2026, 11, 4, 12, 0, 0);
  local = bridge + 600_000;
  clock.observe(bridge, local, local);
  local = bridge + 60_000;
  assert.equal(clock.observe(bridge + 60_000, local, local), true);
  assert.ok(Math.abs(clock.offsetMs()) <= 100);
});
