import { test } from 'node:test'
import assert from 'node:assert/strict'
import { conversionEvent, body, pixelUrl } from '../src/transport.js'

test('a conversion carries strings, the click id and optional fields', () => {
  const items = [{ sku: 'A1', qty: 2 }]
  const e = conversionEvent({ orderId: 'o-1', amount: '49.90', currency: 'EUR', items, event: 'purchase' }, 'CLK')
  assert.equal(
    body('m', 'mk_1', [e]),
    '{"m":"mk_1","events":[{"t":"conversion","oid":"o-1","amt":"49.90","cur":"EUR","clk":"CLK","ev":"purchase","items":[{"sku":"A1","qty":2}]}]}'
  )
})

test('numbers become decimal strings and missing fields are left out', () => {
  const e = conversionEvent({ orderId: 1234, amount: 49.9, currency: 'USD' }, undefined)
  assert.equal(JSON.stringify(e), '{"t":"conversion","oid":"1234","amt":"49.9","cur":"USD"}')
  const zero = conversionEvent({ orderId: 'z', amount: 0, currency: 'EUR', event: '' }, false)
  assert.equal(JSON.stringify(zero), '{"t":"conversion","oid":"z","amt":"0","cur":"EUR"}')
  const nulls = conversionEvent({ orderId: null, amount: null, currency: 'EUR', items: null }, null)
  assert.equal(JSON.stringify(nulls), '{"t":"conversion","cur":"EUR"}')
})

test('impressions body', () => {
  assert.equal(
    body('p', 'pk_9', [{ t: 'impression', l: 'ab12' }, { t: 'impression', l: 'cd34' }]),
    '{"p":"pk_9","events":[{"t":"impression","l":"ab12"},{"t":"impression","l":"cd34"}]}'
  )
})

test('pixel URL is encoded, ordered and leaves out empty fields and items', () => {
  const e = conversionEvent({ orderId: 'A&B 1', amount: '10.00', currency: 'EUR', items: [1], event: 'sign up' }, 'CLK_-1')
  assert.equal(
    pixelUrl('https://t.example', 'mk_1', e),
    'https://t.example/p.gif?m=mk_1&t=conversion&oid=A%26B%201&amt=10.00&cur=EUR&clk=CLK_-1&ev=sign%20up'
  )
  const bare = conversionEvent({ orderId: 'o', amount: 5, currency: 'EUR' })
  assert.equal(pixelUrl('https://t.example', 'mk_1', bare), 'https://t.example/p.gif?m=mk_1&t=conversion&oid=o&amt=5&cur=EUR')
})

test('a customer reference travels in the beacon and in the pixel as cust', () => {
  const e = conversionEvent({ orderId: 'o', amount: '5', currency: 'EUR', cust: 'cus_1 &2' })
  assert.equal(JSON.stringify(e), '{"t":"conversion","oid":"o","cust":"cus_1 &2","amt":"5","cur":"EUR"}')
  assert.equal(
    pixelUrl('https://t.example', 'mk_1', e),
    'https://t.example/p.gif?m=mk_1&t=conversion&oid=o&cust=cus_1%20%262&amt=5&cur=EUR'
  )
  const none = conversionEvent({ orderId: 'o', amount: '5', currency: 'EUR', cust: null })
  assert.equal(JSON.stringify(none), '{"t":"conversion","oid":"o","amt":"5","cur":"EUR"}')
})

test('a coupon code travels in the beacon and in the pixel', () => {
  const e = conversionEvent({ orderId: 'o', amount: '5', currency: 'EUR', coupon: 'Summer 10' })
  assert.equal(JSON.stringify(e), '{"t":"conversion","oid":"o","amt":"5","cur":"EUR","coupon":"Summer 10"}')
  assert.equal(
    pixelUrl('https://t.example', 'mk_1', e),
    'https://t.example/p.gif?m=mk_1&t=conversion&oid=o&amt=5&cur=EUR&coupon=Summer%2010'
  )
  const none = conversionEvent({ orderId: 'o', amount: '5', currency: 'EUR', coupon: '' })
  assert.equal(JSON.stringify(none), '{"t":"conversion","oid":"o","amt":"5","cur":"EUR"}')
})
