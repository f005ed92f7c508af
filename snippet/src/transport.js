// Payloads and how they travel: sendBeacon with a string body (text/plain, so no CORS
// preflight), or an image pixel for conversions when the beacon cannot be queued.
import { safe } from './safe.js'

// a string, or undefined for nothing (undefined, null, false, '')
const text = (v) => (v || v === 0 ? '' + v : undefined)

// One conversion event as POST /e expects it; fields left undefined are not sent
// (JSON.stringify and pixelUrl skip them).
export const conversionEvent = (d, clk) => ({
  t: 'conversion',
  oid: text(d.orderId),
  cust: text(d.cust), // the merchant's customer reference (kept only as a keyed hash)
  amt: text(d.amount),
  cur: text(d.currency),
  clk: text(clk),
  ev: text(d.event),
  coupon: text(d.coupon),
  items: d.items || undefined,
})

// The body of POST /e: {"m": key, "events": [...]} or {"p": key, "events": [...]}.
export const body = (field, key, events) => JSON.stringify({ [field]: key, events })

// GET /p.gif for one conversion event (items cannot travel in a URL).
export function pixelUrl(origin, merchant, e) {
  let u = origin + '/p.gif?m=' + encodeURIComponent(merchant)
  for (const k in e) if (e[k] && k != 'items') u += '&' + k + '=' + encodeURIComponent(e[k])
  return u
}

// POST origin/e by sendBeacon; true when the browser queued it.
export const beacon = safe((origin, data) => navigator.sendBeacon(origin + '/e', data))
