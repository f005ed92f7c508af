// Publisher pages: the page path as a sub-id on click, and impressions of tracking links.
import { addParam } from './url.js'
import { body, beacon } from './transport.js'
import { safe } from './safe.js'

// The link code of a tracking link `origin/c/CODE[/?#...]`, or '' for any other href.
export function linkCode(href, origin) {
  const prefix = origin + '/c/'
  // (An SVG <a> has an object as its href: it stringifies to something else.)
  return ('' + href).indexOf(prefix) ? '' : href.slice(prefix.length).split(/[/?#]/)[0]
}

// Runs inside safe(): a browser without IntersectionObserver (or MutationObserver) throws
// at that point, after the parts that do not need it are in place.
export function publisher(cfg) {
  const origin = cfg.origin
  const d = document

  // The page as a sub-id: its path only, never its query string.
  const onClick = safe((ev) => {
    const a = ev.target.closest('a')
    if (a && linkCode(a.href, origin)) a.href = addParam(a.href, 'ct_page', location.pathname)
  })
  for (const type of ['mousedown', 'click', 'auxclick']) d.addEventListener(type, onClick, true)

  // Impressions: each tracking link once per page view, when half of it is visible. The
  // observer hands over the links that crossed together (all those in view at first), and
  // each such batch is one beacon: nothing waits in memory, so nothing is lost on unload.
  const seen = new WeakSet()
  const io = new IntersectionObserver(
    safe((entries) => {
      const events = entries
        .filter((en) => en.intersectionRatio >= 0.49)
        .map((en) => (io.unobserve(en.target), { t: 'impression', l: linkCode(en.target.href, origin) }))
      if (events[0]) beacon(origin, body('p', cfg.partner, events))
    }),
    { threshold: 0.5 }
  )
  // every link is looked at once; the tracking links among them are observed
  const scan = safe(() => {
    for (const a of d.links) if (!seen.has(a) && seen.add(a) && linkCode(a.href, origin)) io.observe(a)
  })
  scan()
  new MutationObserver(scan).observe(d.documentElement, { childList: true, subtree: true })
}
