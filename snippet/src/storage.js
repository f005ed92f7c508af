// First-party storage of the click id for the attribution window: localStorage `ct_click`
// = {id, exp} plus a cookie `ct_click` on the merchant's own host.
import { safe } from './safe.js'

export const KEY = 'ct_click' // also the landing URL's parameter (merchant.js)

// Click ids are URL-safe base64 from the tracker (46 characters today); anything else is
// ignored. (undefined, null and objects stringify to something that does not match.)
export const isId = (id) => /^[\w-]{16,128}$/.test(id)

export const record = (id, days, now) => JSON.stringify({ id, exp: now + days * 864e5 })

// The id of a stored record, or undefined when it is missing, malformed or expired at `now`.
export const readRecord = safe((json, now) => {
  const r = JSON.parse(json)
  if (r.exp > now && isId(r.id)) return r.id
})

export const cookie = (id, days, secure) =>
  KEY + '=' + id + '; path=/; max-age=' + days * 86400 + '; SameSite=Lax' + (secure ? '; Secure' : '')

// The click id in a `document.cookie` string, or undefined.
export const readCookie = (str) => (/(^|; )ct_click=([\w-]{16,128})(;|$)/.exec(str) || [])[2]

// (Where the cookie cannot be set, as in a sandboxed frame, localStorage cannot be used either.)
export const save = safe((id, days) => {
  document.cookie = cookie(id, days, location.protocol == 'https:')
  localStorage.setItem(KEY, record(id, days, Date.now()))
})

export const load = safe(() => readRecord(localStorage.getItem(KEY), Date.now()) || readCookie(document.cookie))
