// The bridge's clock, as the console counts WeChat's windows by it: a PC whose own clock is
// minutes off (no NTP on many office PCs) otherwise shows a window WeChat has closed as open,
// or loses minutes of one still open. Learned from `now` in GET contacts (the bridge's clock,
// the one `window_expires_at` counts on; an envelope's `send_time` is WeChat's CreateTime, and
// an HTTP Date header a proxy's or the host's clock, not the bridge's). Plain module, no DOM.

/** Answers slower than this say too little about when the bridge read its clock. */
export const MAX_RTT_MS = 5_000;
/** A new reading within this of the offset in use is the round trip's noise, not a change. */
export const JITTER_MS = 1_500;
/** A bridge time outside these (2020 to 2100) is not a clock reading: 0, or seconds read as
 * milliseconds, would put every window decades off. */
const EARLIEST_MS = Date.UTC(2020, 0, 1);
const LATEST_MS = Date.UTC(2100, 0, 1);

/** A clock on the bridge's time: `nowMs()`, and `observe(serverMs, sentMs, receivedMs)` for
 * each answer that says the bridge's time (`sentMs`, `receivedMs`: this PC's clock around the
 * request). `localNow` is this PC's clock (Date.now). */
export function createServerClock(localNow = () => Date.now()) {
  let offsetMs = 0;
  let known = false;
  return {
    /** Learns the offset from one answer; returns whether the offset in use changed. */
    observe(serverMs, sentMs, receivedMs) {
      const rtt = receivedMs - sentMs;
      if (typeof serverMs !== "number" || !Number.isFinite(serverMs)) return false;
      if (serverMs < EARLIEST_MS || serverMs > LATEST_MS) return false;
      if (!(rtt >= 0) || rtt > MAX_RTT_MS) return false;
      // The bridge read its clock about the middle of the round trip here.
      const sample = serverMs - (sentMs + rtt / 2);
      if (known && Math.abs(sample - offsetMs) < JITTER_MS) return false;
      offsetMs = sample;
      known = true;
      return true;
    },
    /** Now on the bridge's clock, in milliseconds. */
    nowMs() {
      return localNow() + offsetMs;
    },
    /** How far the bridge's clock is ahead of this PC's, in milliseconds (0 until known). */
    offsetMs() {
      return offsetMs;
    },
  };
}
