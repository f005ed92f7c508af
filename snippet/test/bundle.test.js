// The bundles, built from src/ exactly as `npm run build` does, run in a bare VM context with
// stand-ins for the few browser APIs they touch. Checks what is sent, and what is not.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import vm from 'node:vm'
import { bundle, integrity } from '../scripts/options.mjs'

const { 's.js': code, 'p.js': publisherCode } = await bundle()
const ID = 'AZNu3rN4q2vXo4Gx7A9kQmH3L8pZbC1dEfGhIjKlMnOpQr'
const OTHER = 'BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB'

// A page: `data` are the script tag's data- attributes; `before(window)` runs before the
// snippet (the queue stub, stored values). Returns the window and what the page saw.
function page({ url = 'https://shop.example/landing', data = {}, gpc, beacon = true, before } = {}) {
  const seen = { beacons: [], images: [], cookies: [], replaced: [], listeners: [], observed: [], scripts: [] }
  const store = new Map()
  const w = vm.createContext({})
  Object.assign(w, {
    window: w,
    location: { href: url, protocol: new URL(url).protocol, pathname: new URL(url).pathname },
    history: { state: { spa: 1 }, replaceState: (state, _, u) => seen.replaced.push([state, u]) },
    navigator: {
      globalPrivacyControl: gpc,
      sendBeacon:
        beacon === 'missing'
          ? undefined
          : function (u, b) {
              if (this !== w.navigator) throw new TypeError('Illegal invocation')
              if (beacon === 'throws') throw new Error('blocked')
              seen.beacons.push([u, b])
              return beacon
            },
    },
    localStorage: { getItem: (k) => (store.has(k) ? store.get(k) : null), setItem: (k, v) => store.set(k, String(v)) },
    Image: class {
      set src(u) {
        seen.images.push(u)
      }
    },
    document: {
      currentScript: { src: 'https://t.example/s.js', dataset: data },
      querySelector: () => null,
      createElement: (tag) => ({ tag }),
      head: { append: (el) => seen.scripts.push(el) },
      links: [],
      documentElement: {},
      addEventListener: (type, f, capture) => seen.listeners.push([type, f, capture]),
      get cookie() {
        return seen.cookies.map((c) => c.split(';')[0]).join('; ')
      },
      set cookie(c) {
        seen.cookies.push(c)
      },
    },
  })
  if (before) vm.runInContext(before, w)
  vm.runInContext(code, w)
  // What the browser does with a script s.js adds: p.js runs, as its own <script>, when the
  // element asks for it and pins exactly these bytes.
  for (const el of seen.scripts) {
    if (el.src == `https://t.example/p.js?${integrity(publisherCode)}` && el.integrity == integrity(publisherCode)) {
      w.document.currentScript = el
      vm.runInContext(publisherCode, w)
    }
  }
  return { w, seen, store }
}

const STUB = 'window.clicktrail = window.clicktrail || function(){(window.clicktrail.q = window.clicktrail.q || []).push(arguments)};'

test('a plain merchant page sends nothing and stores nothing', () => {
  const { w, seen, store } = page({ data: { merchant: 'mk_1' } })
  assert.deepEqual(seen.scripts, []) // p.js is for publisher pages only
  assert.deepEqual(seen.beacons, [])
  assert.deepEqual(seen.images, [])
  assert.deepEqual(seen.cookies, [])
  assert.deepEqual(seen.replaced, [])
  assert.equal(store.size, 0)
  assert.equal(typeof w.clicktrail, 'function')
})

test('landing keeps the click id first-party and takes it out of the URL', () => {
  const { seen, store } = page({ url: `https://shop.example/p?a=1&ct_click=${ID}#top`, data: { merchant: 'mk_1', window: '7' } })
  assert.deepEqual(seen.cookies, [`ct_click=${ID}; path=/; max-age=604800; SameSite=Lax; Secure`])
  const rec = JSON.parse(store.get('ct_click'))
  assert.equal(rec.id, ID)
  assert.ok(Math.abs(rec.exp - (Date.now() + 7 * 864e5)) < 5000)
  assert.deepEqual(seen.replaced, [[{ spa: 1 }, 'https://shop.example/p?a=1#top']])
  assert.deepEqual(seen.beacons, [])
})

test('queued commands are replayed in order, then clicktrail is the real function', () => {
  const { w, seen } = page({
    url: `https://shop.example/thanks?ct_click=${ID}`,
    data: { merchant: 'mk_1' },
    before: STUB + "clicktrail('conversion', {orderId: 'o1', amount: 49.9, currency: 'EUR'}); clicktrail('unknown'); clicktrail('conversion', {orderId: 'o2', amount: '10.00', currency: 'EUR', event: 'upsell'})",
  })
  assert.deepEqual(
    seen.beacons.map(([u, b]) => [u, JSON.parse(b)]),
    [
      ['https://t.example/e', { m: 'mk_1', events: [{ t: 'conversion', oid: 'o1', amt: '49.9', cur: 'EUR', clk: ID }] }],
      ['https://t.example/e', { m: 'mk_1', events: [{ t: 'conversion', oid: 'o2', amt: '10.00', cur: 'EUR', clk: ID, ev: 'upsell' }] }],
    ]
  )
  assert.equal(typeof seen.beacons[0][1], 'string') // text/plain: no CORS preflight
  assert.equal(w.clicktrail.q, undefined)
  w.clicktrail('conversion', { orderId: 'o3', amount: 1, currency: 'EUR' })
  assert.equal(seen.beacons.length, 3)
})

test('a later page reads the stored id; an expired one is ignored', () => {
  const live = page({
    data: { merchant: 'mk_1' },
    before: `localStorage.setItem('ct_click', JSON.stringify({id: '${ID}', exp: Date.now() + 1000}))`,
  })
  live.w.clicktrail('conversion', { orderId: 'o', amount: 1, currency: 'EUR' })
  assert.equal(JSON.parse(live.seen.beacons[0][1]).events[0].clk, ID)

  const expired = page({
    data: { merchant: 'mk_1' },
    before: `localStorage.setItem('ct_click', JSON.stringify({id: '${ID}', exp: Date.now() - 1}))`,
  })
  expired.w.clicktrail('conversion', { orderId: 'o', amount: 1, currency: 'EUR' })
  assert.equal('clk' in JSON.parse(expired.seen.beacons[0][1]).events[0], false)
})

test('the cookie is the fallback when localStorage has nothing', () => {
  const { w, seen } = page({ data: { merchant: 'mk_1' }, before: `document.cookie = 'x=1'; document.cookie = 'ct_click=${OTHER}'` })
  w.clicktrail('conversion', { orderId: 'o', amount: 1, currency: 'EUR' })
  assert.equal(JSON.parse(seen.beacons[0][1]).events[0].clk, OTHER)
})

test('Global Privacy Control: nothing stored, the id still used on this page', () => {
  const { w, seen, store } = page({ url: `https://shop.example/?ct_click=${ID}`, data: { merchant: 'mk_1' }, gpc: true, before: `localStorage.setItem('ct_click', JSON.stringify({id: '${OTHER}', exp: Date.now() + 1000}))` })
  assert.deepEqual(seen.cookies, [])
  assert.equal(JSON.parse(store.get('ct_click')).id, OTHER) // untouched
  w.clicktrail('conversion', { orderId: 'o', amount: 1, currency: 'EUR' })
  assert.equal(JSON.parse(seen.beacons[0][1]).events[0].clk, ID)
})

test('cookieless mode: nothing stored, nothing read back', () => {
  const { w, seen, store } = page({ data: { merchant: 'mk_1', storage: 'none' }, before: `localStorage.setItem('ct_click', JSON.stringify({id: '${OTHER}', exp: Date.now() + 1000}))` })
  w.clicktrail('conversion', { orderId: 'o', amount: 1, currency: 'EUR' })
  assert.equal('clk' in JSON.parse(seen.beacons[0][1]).events[0], false)
  assert.deepEqual(seen.cookies, [])
  assert.equal(store.size, 1)
})

test('the pixel is the fallback when sendBeacon refuses, is missing or throws', () => {
  for (const beacon of [false, 'missing', 'throws']) {
    const { w, seen } = page({ url: `https://shop.example/?ct_click=${ID}`, data: { merchant: 'mk_1' }, beacon })
    w.clicktrail('conversion', { orderId: 'A&B', amount: '5.00', currency: 'EUR', items: [{ sku: 1 }] })
    assert.deepEqual(seen.images, [`https://t.example/p.gif?m=mk_1&t=conversion&oid=A%26B&amt=5.00&cur=EUR&clk=${ID}`], String(beacon))
  }
})

test('nothing reaches the host page when everything fails', () => {
  const { w } = page({ data: { merchant: 'mk_1' }, beacon: 'throws', before: 'Image = function () { throw new Error("no") }' })
  assert.doesNotThrow(() => w.clicktrail('conversion', { orderId: 'o', amount: 1, currency: 'EUR' }))
  assert.doesNotThrow(() => w.clicktrail('conversion'))
  assert.doesNotThrow(() => w.clicktrail('conversion', null))
  // a broken tag does not throw either
  assert.doesNotThrow(() => page({ before: 'document.currentScript = null' }))
})

test('publisher page: click adds the page path once; no IntersectionObserver is no error', () => {
  const { seen } = page({ url: 'https://blog.example/reviews/best?utm_source=x&secret=1', data: { partner: 'pk_1' } })
  const clicks = seen.listeners.filter(([, , capture]) => capture === true)
  assert.deepEqual(clicks.map(([t]) => t).sort(), ['auxclick', 'click', 'mousedown'])
  const link = { href: 'https://t.example/c/ab12?sub1=x' }
  const other = { href: 'https://elsewhere.example/c/ab12' }
  for (const a of [link, other]) {
    for (const [, f] of clicks) f({ target: { closest: () => a } })
  }
  assert.equal(link.href, 'https://t.example/c/ab12?sub1=x&ct_page=%2Freviews%2Fbest')
  assert.equal(other.href, 'https://elsewhere.example/c/ab12')
  assert.deepEqual(seen.beacons, [])
})

test('publisher page: each visible tracking link is counted once, in one beacon per batch', () => {
  const before = `
    var links = [{href: 'https://t.example/c/aa'}, {href: 'https://t.example/c/bb?x=1'}, {href: 'https://other.example/c/cc'}]
    document.links = links
    var observed = [], unobserved = [], fire, mutate, ioOpts
    IntersectionObserver = function (cb, opts) { fire = cb; ioOpts = opts; this.observe = (el) => observed.push(el); this.unobserve = (el) => unobserved.push(el) }
    MutationObserver = function (cb) { mutate = cb; this.observe = () => {} }`
  const { w, seen } = page({ data: { partner: 'pk_1' }, before })
  const run = (s) => vm.runInContext(s, w)
  const val = (expr) => JSON.parse(run('JSON.stringify(' + expr + ')')) // arrays from the VM's realm
  assert.deepEqual(val('observed.map(a => a.href)'), ['https://t.example/c/aa', 'https://t.example/c/bb?x=1'])
  assert.deepEqual(val('ioOpts'), { threshold: 0.5 })
  assert.deepEqual(seen.beacons, []) // nothing on load
  run('fire([{target: links[0], intersectionRatio: 1}, {target: links[1], intersectionRatio: 0.2}])')
  assert.deepEqual(seen.beacons, [['https://t.example/e', '{"p":"pk_1","events":[{"t":"impression","l":"aa"}]}']])
  run('fire([{target: links[1], intersectionRatio: 0.5}])')
  assert.equal(seen.beacons[1][1], '{"p":"pk_1","events":[{"t":"impression","l":"bb"}]}')
  assert.deepEqual(val('unobserved.map(a => a.href)'), ['https://t.example/c/aa', 'https://t.example/c/bb?x=1'])
  // links added later are observed, the old ones not twice
  run("links.push({href: 'https://t.example/c/dd'}); mutate([])")
  assert.deepEqual(val('observed.map(a => a.href)').slice(2), ['https://t.example/c/dd'])
})

test('a publisher tag loads p.js once, pinned by its hash, in CORS mode, with the config', () => {
  const { w, seen } = page({ data: { partner: 'pk_1', merchant: 'mk_1' } })
  const sri = integrity(publisherCode)
  assert.match(sri, /^sha256-[A-Za-z0-9+/]{43}=$/)
  assert.equal(seen.scripts.length, 1)
  const [el] = seen.scripts
  assert.deepEqual(
    { tag: el.tag, src: el.src, integrity: el.integrity, crossOrigin: el.crossOrigin },
    { tag: 'script', src: `https://t.example/p.js?${sri}`, integrity: sri, crossOrigin: '' } // '' is 'anonymous'
  )
  assert.deepEqual({ origin: el.c.origin, partner: el.c.partner }, { origin: 'https://t.example', partner: 'pk_1' })
  assert.equal(typeof w.clicktrail, 'function') // the merchant side as well, on the same tag
})

test('p.js loaded by anything but s.js does nothing and throws nothing', () => {
  const w = vm.createContext({ document: { currentScript: { src: 'https://t.example/p.js' } } })
  assert.doesNotThrow(() => vm.runInContext(publisherCode, w))
  assert.doesNotThrow(() => vm.runInContext(publisherCode, vm.createContext({ document: { currentScript: null } })))
})
