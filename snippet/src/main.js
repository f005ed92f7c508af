// Entry point of s.js: read the config, load the publisher half (p.js) when the tag has
// data-partner, start the merchant side, install clicktrail() and replay the queue.
import { merchant } from './merchant.js'
import { parseConfig } from './config.js'
import { safe } from './safe.js'

safe(() => {
  const d = document
  const cfg = parseConfig(d.currentScript || d.querySelector('script[data-merchant],script[data-partner]'), navigator)
  const stub = window.clicktrail
  if (!cfg.origin || (stub && stub.ct)) return // no tracker origin, or already loaded

  if (cfg.partner) {
    // Pinned by the hash of p.js that the build puts in P_INTEGRITY, so a site that pins s.js
    // with SRI runs no unpinned code; the hash in the query keeps a cached older p.js from
    // meeting a newer s.js. p.js takes cfg from this element (publisher-main.js).
    const p = d.createElement('script')
    p.src = cfg.origin + '/p.js?' + P_INTEGRITY
    p.integrity = P_INTEGRITY
    p.crossOrigin = '' // the same as 'anonymous' (HTML: the empty keyword), 9 bytes shorter
    p.c = cfg
    d.head.append(p)
  }

  const conversion = cfg.merchant && merchant(cfg)
  const api = safe((command, data) => command == 'conversion' && conversion && conversion(data))
  api.ct = 1
  // Installed before the replay so that a bad queue cannot leave the stub in place; nothing
  // else runs in between, so the queued commands still come first and in order.
  window.clicktrail = api
  for (const args of (stub && stub.q) || []) api(...args)
})()
