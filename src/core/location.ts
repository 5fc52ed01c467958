// A follower's reported location (WeChat's LOCATION event): sent on entering the chat, or every
// 5 s while it is open. The contact keeps the last; a report of the same place adds nothing.

/** Where a follower reported being; `at` (ms) is when it was first reported there. */
export interface Place {
  latitude: number;
  longitude: number;
  precision: number;
  at: number;
}

/** Reports closer than this, in metres, are the same place (GPS jitter of a follower sitting). */
export const SAME_PLACE_M = 10;

const METRES_PER_DEGREE = 111_320;

/** Whether two reports name the same place, to SAME_PLACE_M (flat earth: metres apart). */
export function samePlace(a: Place, b: Place): boolean {
  const dy = (a.latitude - b.latitude) * METRES_PER_DEGREE;
  // The short way round: 179.99999 and -179.99999 are 2 m apart on the 180th meridian, not
  // 360 degrees (a follower sitting there was a new place at every report). Written as
  // redis_scripts.ts's copy is, whose % is Lua's: of a number >= 0 the two agree.
  let dLon = Math.abs(a.longitude - b.longitude) % 360;
  if (dLon > 180) dLon = 360 - dLon;
  const dx = dLon * METRES_PER_DEGREE * Math.cos(a.latitude * Math.PI / 180);
  return dx * dx + dy * dy <= SAME_PLACE_M * SAME_PLACE_M;
}

/** The place a LOCATION envelope's msg names, or null when its coordinates are not numbers. */
export function placeOf(msg: Record<string, unknown>, at: number): Place | null {
  const { latitude, longitude, precision } = msg;
  if (typeof latitude !== "number" || typeof longitude !== "number") return null;
  if (!Number.isFinite(latitude) || !Number.isFinite(longitude)) return null;
  return {
    latitude,
    longitude,
    precision: typeof precision === "number" && Number.isFinite(precision) ? precision : 0,
    at,
  };
}
