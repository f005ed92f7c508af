import { test } from 'node:test'
import assert from 'node:assert/strict'
import { getParam, stripParam, addParam } from '../src/url.js'

test('getParam reads the first raw value, or undefined', () => {
  assert.equal(getParam('https://shop.example/p?a=1&ct_click=abc&b=2', 'ct_click'), 'abc')
  assert.equal(getParam('https://shop.example/p?ct_click=abc', 'ct_click'), 'abc')
  assert.equal(getParam('https://shop.example/p?ct_click=a%2Fb', 'ct_click'), 'a%2Fb')
  assert.equal(getParam('https://shop.example/p?ct_click=', 'ct_click'), '')
  assert.equal(getParam('https://shop.example/p?ct_click=x&ct_click=y', 'ct_click'), 'x')
  assert.equal(getParam('https://shop.example/p?ct_click=abc#top', 'ct_click'), 'abc')
  assert.equal(getParam('https://shop.example/p?xct_click=abc', 'ct_click'), undefined)
  assert.equal(getParam('https://shop.example/ct_click=abc', 'ct_click'), undefined)
  assert.equal(getParam('https://shop.example/p', 'ct_click'), undefined)
})

test('stripParam removes the parameter and keeps the others and the hash verbatim', () => {
  const cases = [
    ['https://s.example/p?ct_click=abc', 'https://s.example/p'],
    ['https://s.example/p?ct_click=abc#top', 'https://s.example/p#top'],
    ['https://s.example/p?a=1&ct_click=abc', 'https://s.example/p?a=1'],
    ['https://s.example/p?ct_click=abc&b=2', 'https://s.example/p?b=2'],
    ['https://s.example/p?a=1&ct_click=abc&b=2', 'https://s.example/p?a=1&b=2'],
    ['https://s.example/p?a=x%20y+z&ct_click=abc&r=/x/y#h?q', 'https://s.example/p?a=x%20y+z&r=/x/y#h?q'],
    ['https://s.example/p?a=1&ct_click=abc#h', 'https://s.example/p?a=1#h'],
    ['https://s.example/p?xct_click=1&b=2', 'https://s.example/p?xct_click=1&b=2'],
    ['https://s.example/p?ct_click=&b=2', 'https://s.example/p?b=2'],
  ]
  for (const [input, want] of cases) assert.equal(stripParam(input, 'ct_click'), want, input)
})

test('addParam appends once, before the hash, encoded', () => {
  assert.equal(addParam('https://t.example/c/ab12', 'ct_page', '/blog/post'), 'https://t.example/c/ab12?ct_page=%2Fblog%2Fpost')
  assert.equal(
    addParam('https://t.example/c/ab12?sub1=x%20y&sub2=z', 'ct_page', '/a b'),
    'https://t.example/c/ab12?sub1=x%20y&sub2=z&ct_page=%2Fa%20b'
  )
  assert.equal(addParam('https://t.example/c/ab12#frag', 'ct_page', '/'), 'https://t.example/c/ab12?ct_page=%2F#frag')
  assert.equal(addParam('https://t.example/c/ab12?a=1#frag', 'ct_page', '/'), 'https://t.example/c/ab12?a=1&ct_page=%2F#frag')
  const once = addParam('https://t.example/c/ab12', 'ct_page', '/first')
  assert.equal(addParam(once, 'ct_page', '/second'), once)
})
