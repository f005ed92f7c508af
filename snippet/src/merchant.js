// Merchant pages: keep the click id from the landing URL, send conversions.
import { getParam, stripParam } from './url.js'
import { KEY as PARAM, isId, save, load } from './storage.js'
import { conversionEvent, body, pixelUrl, beacon } from './transport.js'
import { safe } from './safe.js'

// Returns the handler of clicktrail('conversion', data).
export function merchant(cfg) {
  let clk // the landing page's click id, in memory for this page view
  safe(() => {
    const href = location.href
    const id = getParam(href, PARAM)
    if (id) {
      if (isId(id)) {
        clk = id
        if (cfg.store) save(id, cfg.days)
      }
      history.replaceState(history.state, '', stripParam(href, PARAM))
    }
  })()

  return (data) => {
    const e = conversionEvent(data, clk || (cfg.store && load()))
    if (!beacon(cfg.origin, body('m', cfg.merchant, [e]))) {
      new Image().src = pixelUrl(cfg.origin, cfg.merchant, e)
    }
  }
}
