import { test } from 'node:test'
import assert from 'node:assert/strict'
import { parseConfig } from '../src/config.js'

// A stand-in for the <script> element: its resolved src and its data- attributes.
const tag = (src, data = {}) => ({ src, dataset: data })

test('merchant tag with defaults', () => {
  assert.deepEqual(parseConfig(tag('https://t.example/s.js', { merchant: 'mk_1' }), {}), {
    origin: 'https://t.example',
    merchant: 'mk_1',
    partner: '',
    days: 30,
    store: true,
  })
})

test('publisher tag, origin keeps the port and drops path and query', () => {
  const cfg = parseConfig(tag('http://localhost:8000/static/s.js?v=3', { partner: 'pk_2' }), {})
  assert.equal(cfg.origin, 'http://localhost:8000')
  assert.equal(cfg.partner, 'pk_2')
  assert.equal(cfg.merchant, '')
})

test('only http(s) script sources give a tracker origin', () => {
  assert.equal(parseConfig(tag('file:///tmp/s.js'), {}).origin, '')
  assert.equal(parseConfig(tag(''), {}).origin, '')
  assert.equal(parseConfig(tag(undefined), {}).origin, '')
})

test('attribution window', () => {
  assert.equal(parseConfig(tag('https://t.example/s.js', { window: '7' }), {}).days, 7)
  assert.equal(parseConfig(tag('https://t.example/s.js', { window: '0' }), {}).days, 30)
  assert.equal(parseConfig(tag('https://t.example/s.js', { window: '-3' }), {}).days, 30)
  assert.equal(parseConfig(tag('https://t.example/s.js', { window: 'soon' }), {}).days, 30)
  assert.equal(parseConfig(tag('https://t.example/s.js', { window: '7.5' }), {}).days, 7) // whole days
})

test('cookieless mode and Global Privacy Control turn storage off', () => {
  const src = 'https://t.example/s.js'
  assert.equal(parseConfig(tag(src, { storage: 'none' }), {}).store, false)
  assert.equal(parseConfig(tag(src), { globalPrivacyControl: true }).store, false)
  assert.equal(parseConfig(tag(src), { globalPrivacyControl: false }).store, true)
  assert.equal(parseConfig(tag(src, { gpc: 'ignore' }), { globalPrivacyControl: true }).store, true)
  assert.equal(parseConfig(tag(src, { gpc: 'ignore', storage: 'none' }), { globalPrivacyControl: true }).store, false)
})

test('Do Not Track turns storage off only where the site opts in', () => {
  const src = 'https://t.example/s.js'
  assert.equal(parseConfig(tag(src), { doNotTrack: '1' }).store, true)
  assert.equal(parseConfig(tag(src, { dnt: 'honor' }), { doNotTrack: '1' }).store, false)
  assert.equal(parseConfig(tag(src, { dnt: 'honor' }), { doNotTrack: '0' }).store, true)
  assert.equal(parseConfig(tag(src, { dnt: 'honor' }), {}).store, true)
})
