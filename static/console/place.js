// A follower's last reported place (WeChat's LOCATION, kept on the contact as `location`): what
// the conversation's header shows of it. Plain module, no DOM.

/** The header's view of `location` ({latitude, longitude, precision, time}), or null for none. */
export function placeView(location) {
  const { latitude, longitude, precision, time } = location ?? {};
  if (typeof latitude !== "number" || typeof longitude !== "number") return null;
  if (!Number.isFinite(latitude) || !Number.isFinite(longitude)) return null;
  return {
    // Two decimals, about a kilometre: where the follower is, not a street address on screen.
    coords: `${latitude.toFixed(2)}, ${longitude.toFixed(2)}`,
    // Amap (高德) takes longitude first; a plain https page, opened apart from the console.
    href: `https://uri.amap.com/marker?position=${longitude},${latitude}`,
    precision: Math.round(Number(precision) || 0),
    time: Number(time) || 0,
  };
}

/** The contact's `location` from a LOCATION 102's msg and its send_time, or null if unusable. */
export function locationFromReport(msg, sendTime) {
  const view = placeView(msg);
  if (!view) return null;
  return {
    latitude: msg.latitude,
    longitude: msg.longitude,
    precision: Number(msg.precision) || 0,
    time: Number(sendTime) || 0,
  };
}
