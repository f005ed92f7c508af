// Entry point: read the config, start the modes, install clicktrail() and replay the queue.
import { parseConfig } from './config.js'
import { merchant } from './merchant.js'
import { publisher } from './publisher.js'
import { safe } from './safe.js'

safe(() => {
  const w = window
  const d = document
  const cfg = parseConfig(d.currentScript || d.querySelector('script[data-merchant],script[data-partner]'), navigator)
  const stub = w.clicktrail
  if (!cfg.origin || (stub && stub.ct)) return // no tracker origin, or already loaded

  const conversion = cfg.merchant && merchant(cfg)
  if (cfg.partner) safe(publisher)(cfg)

  const api = safe((command, data) => command == 'conversion' && conversion && conversion(data))
  api.ct = 1
  // Installed before the replay so that a bad queue cannot leave the stub in place; nothing
  // else runs in between, so the queued commands still come first and in order.
  w.clicktrail = api
  for (const args of (stub && stub.q) || []) api(...args)
})()
